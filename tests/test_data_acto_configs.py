"""ACTO's data sets through acto.py with their config/acto files (two epochs: one warm-up, one robust)."""
import os

import pytest

from fixtures_data import config_path, write_cifar, write_food101n, write_webfg

TAGS = {"cifar80": "cifar80_sym_0.2", "web-aircraft": "web-aircraft_real_0", "web-bird": "web-bird_real_0",
        "web-car": "web-car_real_0", "food101n": "food101n_real_0.2"}


def write_fixture(name, root):
    if name in ("cifar80", "cifar100"):
        write_cifar(root, "cifar100", train_labels=[(7 * i) % 100 for i in range(24)],
                    test_labels=list(range(0, 100, 9)))
    elif name == "food101n":
        write_food101n(root)
    else:
        write_webfg(root)


@pytest.mark.parametrize("name", sorted(TAGS))
def test_acto_on_fixture(name, tmp_path):
    import acto

    root = str(tmp_path / name)
    write_fixture(name, root)
    out = tmp_path / "out"
    acto.main(["--config", config_path("acto", name), "--set", f"data_path={root}", "--backbone", "test_resnet",
               "--set", "resolution=32", "--epochs", "2", "--set", "warmup_epochs=1", "--set", "pretrained=false",
               "--set", "num_workers=0", "--set", "batch_size=4", "--set", "test_batch_size=8",
               "--output_dir", str(out)])
    assert os.path.isfile(out / "acto" / f"test_resnet_scratch_{TAGS[name]}.json")
