"""Config parsing (utils/training/config.py) in-process and through the real stage_1.py command line.

Precedence is YAML file -> named overrides -> ``--set`` (later layer wins); every bad value is
one line naming the key (or path) and exit status 2, without a traceback.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

import stage_1
from utils.training.config import REPO_ROOT, default_config_path, parse_config
from utils.core.errors import ConfigError, DataError, UsageError
from utils.core.entry import run_main

from fixtures_data import SUBPROCESS_ENV


PROG = "stage_1.py"


def parse(argv, scope="stage1", **kw):
    return parse_config(list(argv), prog=PROG, scope=scope, **kw)


def write_yaml(path, mapping) -> str:
    path.write_text(yaml.safe_dump(mapping))
    return str(path)


# ----------------------------------------------------------------------------------- precedence

def test_yaml_then_named_then_set(tmp_path):
    cfg_file = write_yaml(tmp_path / "c.yaml", {"noise_ratio": 0.2, "epochs": 7, "batch_size": 16,
                                                 "noise_mode": "asym", "lr": 0.5})
    cfg = parse(["--config", cfg_file])
    assert (cfg.noise_ratio, cfg.epochs, cfg.batch_size, cfg.noise_mode, cfg.lr) == (0.2, 7, 16, "asym", 0.5)
    assert cfg.source == cfg_file

    # named overrides beat the file; untouched file values stay
    cfg = parse(["--config", cfg_file, "--noise_ratio", "0.3", "--epochs", "2"])
    assert (cfg.noise_ratio, cfg.epochs, cfg.batch_size, cfg.noise_mode) == (0.3, 2, 16, "asym")

    # --set beats named overrides, wherever it stands on the command line
    for argv in (["--config", cfg_file, "--noise_ratio", "0.3", "--set", "noise_ratio=0.5"],
                 ["--set", "noise_ratio=0.5", "--config", cfg_file, "--noise_ratio", "0.3"]):
        assert parse(argv).noise_ratio == 0.5

    # repeated --set: the last one wins
    cfg = parse(["--config", cfg_file, "--set", "epochs=4", "--set", "epochs=9"])
    assert cfg.epochs == 9
    # --set values are YAML
    cfg = parse(["--config", cfg_file, "--set", "pretrained=false", "--set", "data_path=/data/c100",
                 "--set", "lr=0.25", "--set", "step_milestones=[2, 3]"])
    assert cfg.pretrained is False and cfg.data_path == "/data/c100" and cfg.lr == 0.25
    assert cfg.step_milestones == [2, 3]
    # integers are accepted for float keys and converted
    cfg = parse(["--config", cfg_file, "--noise_ratio", "1"])
    assert cfg.noise_ratio == 1.0 and isinstance(cfg.noise_ratio, float)


def test_cfg_alias_and_resume_flag(tmp_path):
    cfg_file = write_yaml(tmp_path / "c.yaml", {"epochs": 11, "seed": 3})
    a = parse(["--cfg", cfg_file])
    b = parse(["--config", cfg_file])
    assert a.to_dict() == b.to_dict()
    assert a.epochs == 11 and a.seed == 3 and a.resume is False
    assert parse(["--cfg", cfg_file, "--resume"]).resume is True


def test_default_is_the_digits_config():
    cfg = parse([])
    path = default_config_path("stage1")
    assert path == os.path.join(REPO_ROOT, "config", "stage1", "digits.yaml")
    assert cfg.source == path and cfg.dataset == "digits"
    with open(path) as f:
        shipped = yaml.safe_load(f)
    for key, value in shipped.items():
        assert cfg[key] == value, key
    # keys not in the file have their defaults
    assert cfg.noise_convention == "ido" and cfg.resume is False and cfg.output_dir == "."


def test_empty_yaml_gives_defaults(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    cfg = parse(["--config", str(empty)])
    assert cfg.dataset == "digits" and cfg.backbone == "resnet50" and cfg.pretrained is True
    assert cfg.noise_ratio == 0.4 and cfg.epochs == 5


def test_gpuid_is_device_cuda_n():
    assert parse(["--gpuid", "3"]).device == "cuda:3"
    assert parse(["--device", "cpu"]).device == "cpu"
    with pytest.raises(ConfigError, match="device"):
        parse(["--device", "cpu", "--gpuid", "1"])
    with pytest.raises(ConfigError, match="device"):
        parse(["--device", "gpu"])


def test_config_is_read_only():
    cfg = parse([])
    with pytest.raises(AttributeError):
        cfg.epochs = 3
    before = cfg.epochs
    assert cfg.replace(epochs=before + 1).epochs == before + 1
    assert cfg.epochs == before
    with pytest.raises(ConfigError, match="epochs"):
        cfg.replace(epochs=0)


# ----------------------------------------------------------------------------------------- tag

@pytest.mark.parametrize("argv, tag", [
    (["--backbone", "resnet50", "--set", "dataset=cifar100", "--noise_mode", "sym", "--noise_ratio", "0.4"],
     "resnet50_pretrained_cifar100_sym_0.4"),
    (["--backbone", "test_resnet", "--set", "pretrained=false", "--noise_mode", "asym", "--noise_ratio", "0.2"],
     "test_resnet_scratch_digits_asym_0.2"),
    (["--backbone", "ViT-B", "--set", "dataset=cifar10", "--noise_mode", "idn", "--noise_ratio", "0.45"],
     "ViT-B_pretrained_cifar10_idn_0.45"),
    # a local weights file counts as pretrained
    (["--backbone", "convnext-B", "--set", "pretrained=false", "--set", "pretrained_path=/w.pth",
      "--noise_ratio", "0.8"], "convnext-B_pretrained_digits_sym_0.8"),
])
def test_tag_format(tmp_path, argv, tag):
    empty = tmp_path / "e.yaml"
    empty.write_text("{}\n")
    assert parse(["--config", str(empty)] + argv).tag == tag


def test_tag_of_default_config():
    cfg = parse([])
    expected = "{}_{}_{}_{}_{:g}".format(cfg.backbone, "pretrained" if cfg.pretrained else "scratch",
                                          cfg.dataset, cfg.noise_mode, cfg.noise_ratio)
    assert cfg.tag == expected == "test_resnet_scratch_digits_sym_0.4"


# ------------------------------------------------------------------------------- bad values

BAD_IN_PROCESS = [
    (["--noise_ratio", "1.5"], "noise_ratio"),
    (["--noise_ratio", "-0.1"], "noise_ratio"),
    (["--epochs", "0"], "epochs"),
    (["--set", "batch_size=0"], "batch_size"),
    (["--set", "unknown_key=1"], "unknown_key"),
    (["--set", "epochs=abc"], "epochs"),
    (["--set", "epochs=2.5"], "epochs"),
    (["--set", "pretrained=maybe"], "pretrained"),
    (["--set", "pretrained=1"], "pretrained"),
    (["--set", "lr=-1.0"], "lr"),
    (["--set", "noise_ratio=.nan"], "noise_ratio"),
    (["--noise_mode", "foo"], "noise_mode"),
    (["--set", "dataset=imagenet22k"], "dataset"),
    (["--set", "backbone="], "backbone"),
    (["--set", "step_milestones=3"], "step_milestones"),
    (["--set", "epochs"], "epochs"),                 # no "=": --set expects KEY=VALUE
    (["--seed", "-1"], "seed"),
]


@pytest.mark.parametrize("argv, key", BAD_IN_PROCESS, ids=[" ".join(a) for a, _ in BAD_IN_PROCESS])
def test_bad_values_raise_config_error_naming_the_key(argv, key):
    with pytest.raises(ConfigError) as info:
        parse(argv)
    message = str(info.value)
    assert key in message and "\n" not in message


def test_unknown_option_and_missing_value_are_config_errors():
    with pytest.raises(ConfigError, match="--no_such_flag"):
        parse(["--no_such_flag", "1"])
    with pytest.raises(ConfigError, match="epochs"):
        parse(["--epochs"])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as info:
        parse(["--config", str(tmp_path / "missing.yaml")])
    assert str(tmp_path / "missing.yaml") in str(info.value)

    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2\nlr: 0.1\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        parse(["--config", str(bad)])
    assert str(bad) in str(info.value)

    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        parse(["--config", str(not_mapping)])

    unknown = write_yaml(tmp_path / "unknown.yaml", {"epochz": 3})
    with pytest.raises(ConfigError, match="epochz") as info:
        parse(["--config", unknown])
    assert unknown in str(info.value)  # names the file the key came from

    wrong_type = write_yaml(tmp_path / "wt.yaml", {"batch_size": "big"})
    with pytest.raises(ConfigError, match="batch_size"):
        parse(["--config", wrong_type])


@pytest.mark.parametrize("key, value, own_scope, other_scope", [
    ("bmm", "class", "stage2", "stage1"),
    ("entropy_weight", "plain", "stage2", "stage1"),
    ("base_model", "x.pt", "stage2", "stage1"),
    ("frozen", "true", "stage1", "stage2"),
    ("scheduler", "step", "stage1", "stage2"),
    ("randaug_n", "1", "stage2", "stage1"),
])
def test_stage_only_keys_rejected_in_other_scope(tmp_path, key, value, own_scope, other_scope):
    empty = tmp_path / "e.yaml"
    empty.write_text("{}\n")
    ok = parse(["--config", str(empty), "--set", f"{key}={value}"], scope=own_scope)
    assert key in ok
    with pytest.raises(ConfigError, match=key) as info:
        parse(["--config", str(empty), "--set", f"{key}={value}"], scope=other_scope)
    assert other_scope in str(info.value)
    # the same key in a YAML file is rejected too
    in_file = write_yaml(tmp_path / "k.yaml", {key: yaml.safe_load(value)})
    with pytest.raises(ConfigError, match=key):
        parse(["--config", in_file], scope=other_scope)
    # and a stage-1 config has no stage-2 keys at all (and vice versa)
    assert key not in parse(["--config", str(empty)], scope=other_scope)


def test_forced_values(tmp_path):
    empty = tmp_path / "e.yaml"
    empty.write_text("{}\n")
    cfg = parse(["--config", str(empty)], scope="stage2", forced={"bmm": "class"})
    assert cfg.bmm == "class"
    assert parse(["--config", str(empty), "--set", "bmm=class"], scope="stage2", forced={"bmm": "class"}).bmm == "class"
    with pytest.raises(ConfigError, match="bmm"):
        parse(["--config", str(empty), "--set", "bmm=global"], scope="stage2", forced={"bmm": "class"})


@pytest.mark.parametrize("where", ["--set", "file", "named"])
def test_scientific_notation_floats(tmp_path, where):
    if where == "--set":
        cfg = parse(["--set", "lr=3e-4", "--set", "weight_decay=1e-5"])
        assert cfg.lr == pytest.approx(3e-4) and cfg.weight_decay == pytest.approx(1e-5)
    elif where == "file":
        cfg = parse(["--config", write_yaml_text(tmp_path / "s.yaml", "lr: 3e-4\nweight_decay: 1e-5\n")])
        assert cfg.lr == pytest.approx(3e-4) and cfg.weight_decay == pytest.approx(1e-5)
    else:
        assert parse(["--noise_ratio", "4e-1"]).noise_ratio == pytest.approx(0.4)


def write_yaml_text(path, text) -> str:
    path.write_text(text)
    return str(path)


# ------------------------------------------------- the entry point: one line, exit 2 (in-process)

def _cifar100_yaml(tmp_path) -> str:
    repo_cfg = os.path.join(REPO_ROOT, "config", "stage1", "cifar100.yaml")
    if os.path.isfile(repo_cfg):
        return repo_cfg
    return write_yaml(tmp_path / "cifar100.yaml", {"dataset": "cifar100", "backbone": "resnet50",
                                                   "pretrained": True, "noise_mode": "sym", "noise_ratio": 0.4})


def _entry_point_cases(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("epochs: [1, 2\n")
    out = str(tmp_path / "out")
    return [
        (["--noise_ratio", "1.5"], "noise_ratio"),
        (["--set", "not_a_key=3"], "not_a_key"),
        (["--set", "epochs=abc"], "epochs"),
        (["--set", "pretrained=maybe"], "pretrained"),
        (["--noise_mode", "foo"], "noise_mode"),
        (["--set", "bmm=class"], "bmm"),
        (["--config", str(tmp_path / "nope.yaml")], str(tmp_path / "nope.yaml")),
        (["--config", str(bad_yaml)], str(bad_yaml)),
        (["--config", _cifar100_yaml(tmp_path), "--set", "data_path=/nonexistent", "--output_dir", out,
          "--device", "cpu", "--set", "num_workers=0"], "/nonexistent"),
    ]


def test_entry_point_errors_in_process(tmp_path, capsys):
    for argv, needle in _entry_point_cases(tmp_path):
        with pytest.raises(SystemExit) as info:
            run_main(stage_1.main, argv)
        assert info.value.code == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.endswith("\n"), (argv, err)
        assert needle in err and "Traceback" not in err, (argv, err)


def test_missing_cifar_is_a_data_error(tmp_path):
    argv = ["--config", _cifar100_yaml(tmp_path), "--set", "data_path=/nonexistent/c100",
            "--output_dir", str(tmp_path), "--device", "cpu"]
    with pytest.raises(DataError, match="/nonexistent/c100"):
        stage_1.main(argv)


# ----------------------------------------------------------------- the real command line (subprocess)

@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """Start every bad command line at once (each pays the torch/timm import), then collect them."""
    tmp = tmp_path_factory.mktemp("cli")
    cifar_yaml = os.path.join(REPO_ROOT, "config", "stage1", "cifar100.yaml")
    if not os.path.isfile(cifar_yaml):
        cifar_yaml = write_yaml(tmp / "cifar100.yaml", {"dataset": "cifar100", "backbone": "resnet50",
                                                         "pretrained": True, "epochs": 5})
    out = tmp / "out"
    # Every kind of bad value is checked in-process above (same run_main path); here the real
    # interpreter runs two of them (each subprocess costs ~4 s of CPU for importing torch and timm).
    cases = {
        "range": (["--noise_ratio", "1.5"], "noise_ratio"),
        # --cfg alias; --print_config shows the resolved config before the data are looked for
        "nodata": (["--cfg", cifar_yaml, "--print_config", "--set", "data_path=/nonexistent", "--output_dir", str(out),
                    "--device", "cpu", "--backbone", "test_resnet", "--noise_mode", "sym", "--noise_ratio", "0.3",
                    "--set", "noise_ratio=0.35", "--set", "num_workers=0", "--set", "pretrained=false"],
                   "/nonexistent"),
    }
    procs = {name: subprocess.Popen([sys.executable, "stage_1.py"] + argv, cwd=REPO_ROOT,
                                    env=SUBPROCESS_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (argv, _) in cases.items()}
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        results[name] = (proc.returncode, stdout, stderr, cases[name][1])
    return results, out


@pytest.mark.slow
@pytest.mark.parametrize("case", ["range", "nodata"])
def test_cli_error_is_one_line_exit_2(cli_results, case):
    results, _ = cli_results
    returncode, stdout, stderr, needle = results[case]
    assert returncode == 2, stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert needle in lines[0]
    assert lines[0].startswith("stage_1.py: error: ")


@pytest.mark.slow
def test_cli_precedence_in_printed_config(cli_results):
    """The run that stops at the missing CIFAR folder printed its resolved config (--print_config) and,
    stopping before it claimed its outputs, wrote nothing (no config.yaml, no empty run folder)."""
    results, out = cli_results
    stdout = results["nodata"][1]
    printed = stdout[stdout.index("config:\n") + len("config:\n"):]
    cfg = yaml.safe_load(printed[:printed.index("\n\n")] if "\n\n" in printed else printed)
    assert cfg["noise_ratio"] == 0.35            # --set beat --noise_ratio 0.3
    assert cfg["backbone"] == "test_resnet"       # named override beat the file
    assert cfg["dataset"] == "cifar100"           # from the file (given with --cfg)
    assert cfg["data_path"] == "/nonexistent" and cfg["num_workers"] == 0
    assert "bmm" not in cfg
    assert not out.exists(), sorted(str(p) for p in out.rglob("*"))


def test_usage_error_hierarchy():
    assert issubclass(ConfigError, UsageError) and issubclass(DataError, UsageError)
