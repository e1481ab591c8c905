"""ACTO's data sets through acto.py with their config/acto files (two epochs: one warm-up, one robust)."""
import csv
import json

import pytest

from fixtures_data import config_path, write_cifar, write_food101n, write_webfg

TAGS = {"cifar80": "cifar80_sym_0.2", "web-aircraft": "web-aircraft_real_0", "web-bird": "web-bird_real_0",
        "web-car": "web-car_real_0", "food101n": "food101n_real_0.2"}


def write_fixture(name, root):
    """Write the fixture; returns its number of training images."""
    if name in ("cifar80", "cifar100"):
        info = write_cifar(root, "cifar100", train_labels=[(7 * i) % 100 for i in range(24)],
                           test_labels=list(range(0, 100, 9)))
    elif name == "food101n":
        info = write_food101n(root)
    else:
        info = write_webfg(root)
    return len(info["train_labels"])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TAGS))
def test_acto_on_fixture(name, tmp_path):
    import acto

    root = str(tmp_path / name)
    n = write_fixture(name, root)
    out = tmp_path / "out"
    result = acto.main(["--config", config_path("acto", name), "--set", f"data_path={root}", "--backbone", "test_resnet",
               "--set", "resolution=32", "--epochs", "2", "--set", "warmup_epochs=1", "--set", "pretrained=false",
               "--set", "num_workers=0", "--set", "batch_size=4", "--set", "test_batch_size=8",
               "--output_dir", str(out)])
    stem = out / "acto" / f"test_resnet_scratch_{TAGS[name]}"
    saved = json.loads(open(f"{stem}.json").read())
    assert saved == json.loads(json.dumps(result))
    assert saved["phase"] == ["warmup", "robust"] and len(saved["test_acc"]) == 2
    assert saved["selected_size"][0] is None and 0 <= saved["selected_size"][1] <= n
    with open(f"{stem}_samples.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == n  # every training image of the fixture, each once
