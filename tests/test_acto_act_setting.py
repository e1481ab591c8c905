"""ACTO in ACT's own setting: the ACT-native configs (config/acto/*_act.yaml) and the RTM summary of Table 1."""
import json
import os
import statistics
from types import SimpleNamespace

import pytest
import timm

from fixtures_data import config_path
from test_data_acto_configs import write_fixture
from utils.training.config import ACTO, _read_yaml, resolve

ACT_SETS = ("cifar100", "cifar80", "web-aircraft", "web-bird", "web-car", "food101n")
FAST = ["--epochs", "2", "--set", "warmup_epochs=1", "--set", "num_workers=0", "--set", "batch_size=4",
        "--set", "test_batch_size=8", "--device", "cpu"]


def act_config(name):
    path = config_path("acto", f"{name}_act")
    return resolve([(path, _read_yaml(path))], ACTO, path)


@pytest.mark.parametrize("name", ("cifar100", "cifar80"))
def test_cifar_configs_are_act_main_py(name):
    cfg = act_config(name)
    assert (cfg.backbone, cfg.pretrained, cfg.resolution, cfg.views) == ("act_cnn", False, 32, "act")
    assert (cfg.optimizer, cfg.momentum, cfg.nesterov, cfg.weight_decay, cfg.lr, cfg.warmup_lr) == \
        ("sgd", 0.9, True, 5e-4, 1e-3, 1e-3)
    assert (cfg.epochs, cfg.warmup_epochs, cfg.batch_size, cfg.lr_plan, cfg.ntm_lr_plan) == \
        (100, 20, 128, "cosine:20,5e-4,100", None)
    assert (cfg.noise_convention, cfg.noise_seed, cfg.label_smoothing, cfg.selection_rule) == \
        ("act", 0, 0.0, "paper_fig2")


@pytest.mark.parametrize("name", ("web-aircraft", "web-bird", "web-car", "food101n"))
def test_web_and_food_configs_are_acts(name):
    cfg = act_config(name)
    assert cfg.backbone in timm.list_pretrained("resnet50.tv_in1k") and cfg.pretrained and cfg.views == "act"
    assert (cfg.label_smoothing, cfg.selection_rule, cfg.ntm_lr_plan, cfg.ntm_lr) == \
        (0.35, "web_variant", "baseline", 1e-3)
    assert (cfg.optimizer, cfg.momentum, cfg.nesterov, cfg.weight_decay) == ("sgd", 0.9, True, 5e-4)
    if name == "food101n":  # the ACT README's command
        assert (cfg.resolution, cfg.epochs, cfg.warmup_epochs, cfg.batch_size, cfg.lr, cfg.warmup_lr,
                cfg.lr_plan) == (224, 50, 5, 100, 5e-4, 1e-3, "cosine:5,5e-5,50")
    else:
        assert (cfg.resolution, cfg.epochs, cfg.warmup_epochs, cfg.lr, cfg.lr_plan) == \
            (448, 100, 20, 1e-3, "cosine:20,5e-4,100")


@pytest.mark.slow
@pytest.mark.parametrize("name", ACT_SETS)
def test_act_config_runs_on_fixture(name, tmp_path):
    """Each ACT config through acto.py (one warm-up, one robust epoch).  The web and food sets swap the
    ResNet-50 (torchvision weights, not downloadable here) for a tiny timm model at 32 px."""
    import acto

    root = str(tmp_path / name)
    write_fixture(name, root)
    out = tmp_path / "out"
    extra = [] if name.startswith("cifar") else ["--backbone", "test_resnet", "--set", "pretrained=false",
                                                  "--set", "resolution=32"]
    result = acto.main(["--config", config_path("acto", f"{name}_act"), "--set", f"data_path={root}",
                        "--output_dir", str(out), *FAST, *extra])
    saved = json.loads((out / "acto" / f"{result['tag']}.json").read_text())
    assert saved["backbone"] == ("act_cnn" if name.startswith("cifar") else "test_resnet")
    assert len(saved["test_acc"]) == 2 and saved["last_k"] == 2
    assert saved["last_k_std"] == pytest.approx(statistics.pstdev(saved["test_acc"]), abs=1e-3)
    log = (out / "checkpoint" / f"acto_{result['tag']}" / "train.log").read_text()
    assert "population std" in log and "views: act" in log


def test_rtm_summary_is_acts_table1_metric():
    """Mean and population std of the RTM's test accuracy over the last 10 epochs, beside last and best."""
    import acto

    accs = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 61.0, 62.0, 63.0, 64.0, 65.0, 66.0, 70.0]
    keys = ("selected_size", "selected_frac", "selected_precision", "selected_recall", "mined_size", "mined_share",
            "mining_active_frac", "mean_metric", "train_loss")
    history = [{"epoch": i + 1, "phase": "warmup" if i < 3 else "robust", "test_acc": a, "ntm_test_acc": a - 1,
                **dict.fromkeys(keys)} for i, a in enumerate(accs)]
    cfg = SimpleNamespace(tag="t", seed=0, dataset="d", backbone="act_cnn", noise_mode="sym", noise_ratio=0.2,
                          noise_convention="act", epochs=13, warmup_epochs=3, selection_rule="paper_fig2")
    result = acto.summarize(cfg, history, SimpleNamespace(test_sets={"test": None}, noise_info={}), "p", "q")
    assert (result["last_acc"], result["best_acc"], result["best_epoch"], result["last_k"]) == (70.0, 70.0, 13, 10)
    assert result["last_k_mean"] == pytest.approx(60.1)          # epochs 4..13
    assert result["last_k_std"] == pytest.approx(8.3120, abs=1e-4)  # population std (the sample std is 8.762)


@pytest.mark.slow
def test_ido_stages_run_on_act_cnn_with_act_views(tmp_path):
    """IDO's two stages on ACT's network and views (one epoch each, CIFAR-100 fixture)."""
    import torch

    from fixtures_data import run_both_stages

    root = str(tmp_path / "c100")
    write_fixture("cifar100", root)
    first, second = run_both_stages("cifar100", root, str(tmp_path / "out"), "--backbone", "act_cnn",
                                    "--set", "views=act")
    state = torch.load(first["base_model_path"], weights_only=True)
    assert state["head.0.weight"].shape == (512, 256) and state["head.3.weight"].shape == (100, 512)
    assert len(second["test_acc"]) == 1 and "act_cnn_scratch_cifar100" in first["base_model_path"]
