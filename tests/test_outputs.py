"""Every file a method writes is named by its outputs definition (utils/training/outputs.py), ``--outputs`` prints
those names, and metrics.csv carries every loss term of stage 2 and ACTO, adding up to the logged loss."""
from __future__ import annotations

import csv
import os

import pytest

import acto
import clean_labels
import stage_1
import stage_2_class
from utils.core.errors import ConfigError
from utils.training.config import parse_config
from utils.training.outputs import ActoOutputs, ReportFiles, Stage1Outputs, Stage2Outputs, print_outputs

COMMON = ["--batch_size", "128", "--set", "resolution=16", "--device", "cpu"]


def files_under(root) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, names in os.walk(root) for f in names)


def read_metrics(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Digits stage 1, class-wise stage 2 and ACTO (1 warm-up + 2 robust epochs) in one output folder."""
    out = str(tmp_path_factory.mktemp("outputs"))
    argv = COMMON + ["--output_dir", out]
    stage_1.main(argv + ["--epochs", "3"])
    stage_2_class.main(argv + ["--epochs", "2"])
    acto.main(argv + ["--epochs", "3", "--set", "warmup_epochs=1"])
    outputs = {"stage1": Stage1Outputs.of(parse_config(argv, prog="stage_1.py", scope="stage1")),
               "stage2": Stage2Outputs.of(parse_config(argv, prog="stage_2_class.py", scope="stage2",
                                                       forced={"bmm": "class"})),
               "acto": ActoOutputs.of(parse_config(argv, prog="acto.py", scope="acto"))}
    return out, outputs


@pytest.mark.slow
def test_every_file_written_is_one_the_definitions_name(runs):
    out, outputs = runs
    written = files_under(out)
    foreign = [p for p in written if not any(o.owns(p) for o in outputs.values())]
    assert not foreign, f"written but named by no outputs definition: {foreign}"
    # and the other way round: what the definitions name as outputs was written (bad_images.txt only with
    # check_images; stage 2's inputs are stage 1's outputs)
    for method, o in outputs.items():
        missing = [f"{name}: {p}" for name, p in o.files().items()
                   if not name.startswith("input.") and name not in ("run.folder", "run.bad_images", "data_cache")
                   and not os.path.isfile(p)]
        assert not missing, f"{method} names files it did not write: {missing}"
    assert outputs["stage2"].input.wrong_events == outputs["stage1"].wrong_events
    assert outputs["stage2"].input.base_model == outputs["stage1"].base_model


@pytest.mark.slow
def test_stage2_metrics_carry_every_loss_term_adding_up_to_the_loss(runs):
    rows = read_metrics(runs[1]["stage2"].run.metrics)
    assert len(rows) == 2
    for row in rows:
        terms = [float(row[k]) for k in ("loss_clean", "loss_hard", "loss_noisy")]
        assert sum(terms) == pytest.approx(float(row["train_loss"]), abs=5e-6)
        weights = [float(row[k]) for k in ("weight_clean", "weight_hard", "weight_noisy")]
        assert all(0.0 <= w <= 1.0 for w in weights) and weights[0] > 0
        # 1 - clean posterior is the noisy term's weight (noisy_weight: one_minus_clean), per sample and in the mean
        assert weights[0] + weights[2] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_acto_metrics_carry_both_models_and_both_robust_terms(runs):
    rows = read_metrics(runs[1]["acto"].run.metrics)
    assert [row["phase"] for row in rows] == ["warmup", "robust", "robust"]
    for row in rows:
        assert float(row["loss_rtm"]) + float(row["loss_ntm"]) == pytest.approx(float(row["train_loss"]), abs=5e-6)
    warmup, robust = rows[0], rows[1:]
    assert float(warmup["loss_penalty"]) < 0  # the negative-entropy penalty
    assert warmup["loss_selection"] == "" and warmup["loss_consistency"] == ""
    for row in robust:
        # L_R = s L_sel + (1 - s) L_CR with the digits config's selection_weight 0.8
        mixed = 0.8 * float(row["loss_selection"]) + 0.2 * float(row["loss_consistency"])
        assert mixed == pytest.approx(float(row["loss_rtm"]), abs=5e-6)
        assert row["loss_penalty"] == ""


def test_outputs_print_one_path_or_every_name(tmp_path, capsys):
    cfg = parse_config(["--output_dir", str(tmp_path)], prog="stage_2_class.py", scope="stage2",
                       forced={"bmm": "class"})
    out = Stage2Outputs.of(cfg)
    stem = os.path.join(str(tmp_path), "stage2", "test_resnet_scratch_digits_sym_0.4_class")
    assert out.report == ReportFiles.at(stem) and out.model == stem + "_model.pt" and out.result == stem + ".json"
    print_outputs({"stage2": out}, "model")
    assert capsys.readouterr().out == stem + "_model.pt\n"
    print_outputs({"stage2": out}, "all")
    lines = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert lines["samples"] == stem + "_samples.csv" and lines["run.last"].endswith(
        "checkpoint/stage2_test_resnet_scratch_digits_sym_0.4_class/last.pt")
    with pytest.raises(ConfigError, match=r"^--outputs modle: no such output; one of all, result, bmm_plot, model"):
        print_outputs({"stage2": out}, "modle")


def test_stage2_reads_the_files_its_config_names():
    cfg = parse_config(["--set", "wrong_events=/w/counts.npy", "--set", "base_model=/w/base.pt"],
                       prog="stage_2.py", scope="stage2")
    inputs = Stage2Outputs.of(cfg).input
    assert (inputs.wrong_events, inputs.wrong_events_meta, inputs.base_model) == \
        ("/w/counts.npy", "/w/counts.json", "/w/base.pt")


def test_a_renamed_run_folder_is_the_run_name(tmp_path):
    cfg = parse_config(["--output_dir", str(tmp_path), "--set", "run_name=mine"], prog="acto.py", scope="acto")
    out = ActoOutputs.of(cfg)
    assert out.run.last == os.path.join(str(tmp_path), "checkpoint", "mine", "last.pt")
    assert out.owns(os.path.join(str(tmp_path), "checkpoint", "mine", "last.memory.bank.0123456789abcdef.npy"))
    assert not out.owns(os.path.join(str(tmp_path), "checkpoint", "mine", "notes.txt"))
    assert not out.owns(os.path.join(str(tmp_path), "stage2", "anything.json"))


@pytest.mark.slow
def test_entry_points_and_clean_labels_print_their_outputs(tmp_path, capsys):
    """``--outputs NAME`` ends the command before anything runs, printing the path the run would write."""
    with pytest.raises(SystemExit) as stop:
        stage_2_class.main(["--output_dir", str(tmp_path), "--outputs", "review"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == os.path.join(
        str(tmp_path), "stage2", "test_resnet_scratch_digits_sym_0.4_class_review.html") + "\n"
    (tmp_path / "imgs" / "train" / "a").mkdir(parents=True)
    assert clean_labels.main([str(tmp_path / "imgs"), "--output_dir", str(tmp_path / "o"), "--backbone",
                              "test_resnet", "--outputs", "stage2.model"]) == {}
    assert capsys.readouterr().out == os.path.join(
        str(tmp_path / "o"), "stage2", "test_resnet_pretrained_imagefolder_real_0_class_model.pt") + "\n"
    assert not os.path.exists(tmp_path / "o")
