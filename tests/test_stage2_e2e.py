"""Stage 2 end to end on digits: stage_1.py -> stage_2.py -> stage_2_class.py, through the entry points."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import stage_1
import stage_2
import stage_2_class
from utils.core.errors import DataError

TAG = "test_resnet_scratch_digits_sym_0.4"
COMMON = ["--batch_size", "128", "--set", "resolution=16", "--device", "cpu"]
STAGE2_EPOCHS = 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("stage2")
    argv = COMMON + ["--output_dir", str(out)]
    first = stage_1.main(argv + ["--epochs", "3"])
    global_ = stage_2.main(argv + ["--epochs", str(STAGE2_EPOCHS)])
    class_ = stage_2_class.main(argv + ["--epochs", str(STAGE2_EPOCHS)])
    return out, first, global_, class_


@pytest.mark.slow
def test_exactly_the_stage2_files(runs):
    out = runs[0]
    report = ("_samples.csv", "_summary.json", "_suspects.png", "_review.html", "_model.pt")
    assert sorted(p.name for p in (out / "stage2").iterdir()) == sorted(
        [f"{TAG}_class.json", f"{TAG}_class_bmm.png", f"{TAG}_global.json", f"{TAG}_global_bmm.png"]
        + [f"{TAG}_{bmm}{suffix}" for bmm in ("global", "class") for suffix in report])
    for bmm in ("global", "class"):
        run_dir = out / "checkpoint" / f"stage2_{TAG}_{bmm}"
        assert sorted(p.name for p in run_dir.iterdir()) == ["bmm_history.jsonl", "config.yaml", "last.pt",
                                                             "metrics.csv", "train.log"]
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("bmm", ["global", "class"])
def test_result_file(runs, bmm):
    out = runs[0]
    result = json.loads((out / "stage2" / f"{TAG}_{bmm}.json").read_text())
    assert result == (runs[2] if bmm == "global" else runs[3])
    assert result["bmm"] == bmm and len(result["test_acc"]) == STAGE2_EPOCHS
    assert result["last_acc"] == result["test_acc"][-1] and result["best_acc"] == max(result["test_acc"])
    # stage 2 starts from the base model: its accuracy is the one stage 1 logged at the base epoch
    meta = json.loads((out / "stage1" / f"{TAG}_wrongevent.json").read_text())
    assert result["base_acc"] == pytest.approx(meta["test_acc"][meta["base_model_epoch"] - 1], abs=1e-3)
    # digits knows the true labels: detection quality per epoch, consistent with the split size
    n, noisy = meta["num_samples"], round(meta["realised_noise_rate"] * meta["num_samples"])
    for key in ("auc", "clean_size", "clean_precision", "clean_recall"):
        assert len(result[key]) == STAGE2_EPOCHS and None not in result[key]
    for auc, size, precision, recall in zip(result["auc"], result["clean_size"], result["clean_precision"],
                                            result["clean_recall"]):
        assert 0.5 < auc <= 1.0 and 0 < size <= n
        assert precision * size == pytest.approx(recall * (n - noisy), abs=1e-3)  # both are |kept & clean|
    groups = 10 if bmm == "class" else 1
    assert all(len(params) == groups for params in result["bmm_params"])


@pytest.mark.slow
def test_wrong_events_keep_growing_by_at_most_one_per_view(runs):
    out = runs[0]
    stage1 = np.load(out / "stage1" / f"{TAG}_wrongevent.npy")
    for bmm in ("global", "class"):
        state = torch.load(out / "checkpoint" / f"stage2_{TAG}_{bmm}" / "last.pt", weights_only=True)
        grown = state["wrong_events"]["counts"].numpy() - stage1
        assert grown.min() >= 0 and grown.max() <= 2 * STAGE2_EPOCHS  # +1 per view (weak, strong) per epoch
        assert grown.sum() > 0


@pytest.mark.slow
def test_wrong_events_of_other_noisy_labels_are_refused(runs):
    out = runs[0]
    # same tag and paths, other noisy labels (another noise seed): the fingerprint differs
    with pytest.raises(DataError, match="was made for other samples or noisy labels .fingerprint mismatch"):
        stage_2.main(COMMON + ["--output_dir", str(out), "--epochs", "1", "--set", "noise_seed=7"])


@pytest.mark.slow
def test_missing_stage1_files_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "stage_2_class.py", "--output_dir", str(tmp_path), "--device", "cpu"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not found; run stage 1 first" in lines[0], proc.stderr
    assert not (tmp_path / "stage2").exists()


@pytest.mark.slow
def test_digits_default_writes_the_report_and_the_model(runs):
    """In-memory data: paths ``train/<index>``, true labels known, detection quality of the flags in the summary;
    the exported model's weights are the final ones."""
    import csv

    from model.export import load_exported
    from utils.method.metrics import detection_auc

    out = runs[0]
    with open(out / "stage2" / f"{TAG}_class_samples.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["path"] for r in rows) == sorted(f"train/{i}" for i in range(len(rows)))
    assert all(r["path"] == f"train/{r['index']}" for r in rows)
    summary = json.loads((out / "stage2" / f"{TAG}_class_summary.json").read_text())
    flagged = np.array([r["is_label_issue"] == "True" for r in rows])
    noisy = np.array([r["given_label"] != r["true_label"] for r in rows])
    det = summary["detection"]
    assert det["num_wrong_labels"] == noisy.sum() and summary["num_flagged"] == flagged.sum()
    assert det["precision"] == pytest.approx((flagged & noisy).sum() / flagged.sum())
    assert det["recall"] == pytest.approx((flagged & noisy).sum() / noisy.sum())
    # the CSV keeps six significant digits of the score: ties may differ from the full-precision AUC
    assert det["auc"] == pytest.approx(detection_auc(np.array([float(r["label_score"]) for r in rows]), noisy),
                                       abs=1e-3)
    model, meta = load_exported(str(out / "stage2" / f"{TAG}_class_model.pt"))
    final = torch.load(out / "checkpoint" / f"stage2_{TAG}_class" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(model.state_dict()[k], final[k]) for k in final)
    assert meta["test_transform"] == {"family": "small", "resolution": 16} and meta["dataset"] == "digits"


@pytest.mark.slow
def test_resume_reads_the_mixtures_from_their_own_file_and_gives_the_same_result(runs, tmp_path, monkeypatch):
    # last.pt holds no growing list of mixtures (one line per epoch in bmm_history.jsonl instead); a run
    # stopped after epoch 1 and resumed gives the uninterrupted result, mixtures of every epoch included
    import shutil

    from utils.training.runlog import RunLog

    out = runs[0]
    for part in ("stage1", "base_model"):
        shutil.copytree(out / part, tmp_path / part)
    argv = COMMON + ["--output_dir", str(tmp_path), "--epochs", str(STAGE2_EPOCHS)]
    real = RunLog.write_metrics

    def stop_after_first_epoch(self, history):
        real(self, history)
        raise RuntimeError("stopped")
    monkeypatch.setattr(RunLog, "write_metrics", stop_after_first_epoch)
    with pytest.raises(RuntimeError, match="stopped"):
        stage_2_class.main(argv)
    monkeypatch.setattr(RunLog, "write_metrics", real)
    run_dir = tmp_path / "checkpoint" / f"stage2_{TAG}_class"
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert state["epoch"] == 0 and "bmm" not in state["history"][0]
    with open(run_dir / "bmm_history.jsonl", "a") as f:
        f.write('[{"an epoch whose last.pt was never written": 1}]\n')
    resumed = stage_2_class.main(argv + ["--resume"])
    assert resumed == runs[3]
    assert len((run_dir / "bmm_history.jsonl").read_text().splitlines()) == STAGE2_EPOCHS
