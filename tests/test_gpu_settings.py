"""GPU settings without a GPU (torch.cuda's queries faked): one bf16 rule for training and predict.py,
``precision: auto`` / ``channels_last: auto`` decided per device and recorded decided, the TF32 / cuDNN switches
of a run, and the own-data configs that use them while changing nothing on the CPU."""
from __future__ import annotations

import os
import warnings

import pytest
import torch

import predict
from utils.core.gpu import auto_precision, has_bf16_units, set_backends
from utils.training.config import REPO_ROOT, parse_config
from utils.training.outputs import Stage1Outputs
from utils.training.run import device_settings, start_run, training_settings

GPU = torch.device("cuda", 0)
CPU = torch.device("cpu")


@pytest.fixture
def fake_gpu(monkeypatch):
    """A GPU of the capability ``fake_gpu(major, minor)``; torch.cuda.is_bf16_supported says True (emulation)."""
    def make(capability, name="Fake GPU"):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    return make


@pytest.fixture
def backends():
    """Restore the process-wide switches a test sets."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark = saved


@pytest.mark.parametrize("capability, precision", [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"),
                                                    ((9, 0), "bf16")])
def test_bf16_needs_bf16_units_not_emulation(fake_gpu, capability, precision):
    """V100 (7.0) and T4 (7.5) emulate bf16 (is_bf16_supported() is True there): they get fp16."""
    fake_gpu(capability)
    assert has_bf16_units(GPU) is (precision == "bf16")
    assert auto_precision(GPU) == precision
    assert auto_precision(CPU) == "fp32" and not has_bf16_units(CPU)


@pytest.mark.parametrize("capability, dtype", [((7, 0), torch.float16), ((9, 0), torch.bfloat16)])
def test_predict_takes_the_same_half_type_as_training(fake_gpu, capability, dtype):
    fake_gpu(capability)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available, disabling autocast": only its dtype is read
        amp = predict.autocast_for(GPU)
    assert amp.fast_dtype == dtype and amp.device == "cuda"
    with predict.autocast_for(CPU):  # the CPU predicts in fp32
        assert not torch.is_autocast_enabled("cpu")


def test_auto_settings_are_decided_for_the_device_and_recorded_decided(fake_gpu):
    cfg = parse_config(["--set", "precision=auto", "--set", "channels_last=auto"], prog="stage_1.py", scope="stage1")
    on_cpu, notes = device_settings(cfg, CPU)
    assert (on_cpu.precision, on_cpu.channels_last) == ("fp32", False)
    assert notes == ["precision auto: fp32 on cpu", "channels_last auto: False on cpu"]
    fake_gpu((9, 0), "NVIDIA H100 80GB HBM3")
    on_gpu, notes = device_settings(cfg, GPU)
    assert (on_gpu.precision, on_gpu.channels_last) == ("bf16", True)
    assert notes[0] == "precision auto: bf16 on cuda:0 (NVIDIA H100 80GB HBM3)"
    # what a checkpoint and stage 1's JSON record: the decision, so another kind of device is refused by name
    assert training_settings(on_gpu)["precision"] == "bf16" and training_settings(on_cpu)["precision"] == "fp32"
    fixed = parse_config(["--set", "precision=fp16"], prog="stage_1.py", scope="stage1")
    assert device_settings(fixed, GPU) == (fixed, [])  # an explicit value is kept


def test_a_run_sets_tf32_and_cudnn_benchmark_and_keeps_auto_in_config_yaml(tmp_path, backends):
    set_backends(tf32=False, cudnn_benchmark=False)
    run = start_run(["--output_dir", str(tmp_path), "--device", "cpu", "--set", "tf32=true", "--set",
                     "cudnn_benchmark=true", "--set", "precision=auto"], prog="stage_1.py", scope="stage1",
                    outputs=Stage1Outputs.of)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.benchmark
    assert run.cfg.precision == "fp32" and run.precision.dtype is None
    assert "precision: auto" in open(run.log.files.config, encoding="utf-8").read()
    start_run(["--output_dir", str(tmp_path), "--device", "cpu"], prog="stage_1.py", scope="stage1",
              outputs=Stage1Outputs.of)
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.benchmark  # each run its own


OWN = [(scope, name) for scope in ("stage1", "stage2", "acto") for name in ("imagefolder", "csv")]


@pytest.mark.parametrize("scope, name", OWN)
def test_own_data_configs_take_the_gpu_settings_and_change_nothing_on_the_cpu(fake_gpu, scope, name):
    path = os.path.join(REPO_ROOT, "config", scope, f"{name}.yaml")
    cfg = parse_config(["--config", path], prog="x", scope=scope)
    assert (cfg.precision, cfg.channels_last, cfg.tf32, cfg.cudnn_benchmark) == ("auto", "auto", True, True)
    on_cpu, _ = device_settings(cfg, CPU)
    assert (on_cpu.precision, on_cpu.channels_last) == ("fp32", False)  # the CPU's defaults
    fake_gpu((8, 0))
    assert device_settings(cfg, GPU)[0].precision == "bf16"


@pytest.mark.parametrize("scope", ["stage1", "stage2"])
def test_paper_configs_keep_the_official_fp32(scope):
    """IDO's published numbers were trained in fp32 (docs/fidelity.md#ido-12-backbones-and-optimisers)."""
    cfg = parse_config(["--config", os.path.join(REPO_ROOT, "config", scope, "cifar100.yaml")], prog="x", scope=scope)
    assert (cfg.precision, cfg.channels_last, cfg.tf32, cfg.cudnn_benchmark) == ("fp32", False, False, False)


def test_clean_labels_compares_a_stages_settings_decided_as_the_run_records_them(fake_gpu, monkeypatch, tmp_path):
    """A finished or stopped stage recorded ``precision: auto`` decided (bf16 on this GPU); clean_labels.py's
    re-run must compare its own config decided the same way, or it would start a finished stage anew."""
    import clean_labels

    fake_gpu((9, 0))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    args = clean_labels.build_parser().parse_args([str(tmp_path), "--acto", "--output_dir", str(tmp_path / "out")])
    dataset, data_sets = clean_labels.data_settings(args.data)
    argvs = {scope: clean_labels.stage_argv(args, scope, dataset, data_sets) for scope in ("stage1", "stage2", "acto")}
    configs = clean_labels.configs_of(argvs)
    assert {scope: (cfg.precision, cfg.channels_last) for scope, cfg in configs.items()} == {
        scope: ("bf16", True) for scope in argvs}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert {cfg.precision for cfg in clean_labels.configs_of(argvs).values()} == {"fp32"}
