"""IDO against the methods a user would pick instead, on scikit-learn's digits with synthetic noise.

    pip install -r requirements-bench.txt
    python benchmarks/noise_robustness.py            # the full grid: 5 noise settings x 3 seeds
    python benchmarks/noise_robustness.py --quick    # 1 seed, 2 settings (a smoke run, ~13.5 min on 2 cores)

For every (noise setting, seed) cell, all methods train on the same noisy-label file (one
``noise_dir`` per cell) with the digits defaults of the real entry points:

* ``standard``   ``stage_1.py --epochs 40``: cross-entropy for as many epochs as IDO's two stages;
* ``ido_global`` ``stage_1.py`` (10 epochs) then ``stage_2.py`` (30 epochs, one beta mixture);
* ``ido_class``  the same stage 1 then ``stage_2_class.py`` (one beta mixture per noisy class);
* ``acto``       ``acto.py`` (40 epochs, 8 of warm-up);
* ``cleanlab``   ``benchmarks/confident_learning.py``: 4-fold cross-validated probabilities from the
  same network (20 epochs per fold), ``cleanlab.filter.find_label_issues``, 40 epochs on the kept samples.

IDO's split of the 40 epochs (``--ido_epochs``, default 10 + 30) is the one setting adapted to a
model trained from scratch: its label-wave minimum (the base model) comes at epoch 4-10, and stage 2
retrains from that early model, so it gets most of the budget (the paper's pretrained schedule is
5 + 10 epochs, also more for stage 2).  With the entry points' own 20 + 20, stage 2 ends under-trained.

Each job is a subprocess (``--jobs`` at a time, the CPU threads shared among them); its output goes
to ``{work_dir}/{setting}_seed{seed}/{job}.log``.  A finished job leaves ``{job}.done.json`` (its wall
time and its command) and is not run again, so an interrupted grid continues where it stopped.  At the end the
results are summarised into ``--out`` (default ``docs/benchmarks.md``, ``runs/.../benchmarks_quick.md``
with ``--quick``) and a plot beside it; a hand-written reading below the line
``<!-- reading -->`` of an existing file is kept.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from utils.io import save_figure, save_json, save_text  # noqa: E402

SETTINGS = ("sym:0.2", "sym:0.4", "sym:0.6", "asym:0.4", "idn:0.4")
QUICK_SETTINGS = ("sym:0.4", "asym:0.4")
SEEDS = (0, 1, 2)
IDO_EPOCHS = (10, 30)  # stage 1 + stage 2, adapted to a model from scratch (see the docstring)
METHODS = ("standard", "ido_global", "ido_class", "acto", "cleanlab")
LABELS = {"standard": "standard CE", "ido_global": "IDO (global BMM)", "ido_class": "IDO (class-wise BMM)",
          "acto": "ACTO", "cleanlab": "confident learning"}
READING_MARK = "<!-- reading -->"
TAG = "test_resnet_scratch_digits_{mode}_{ratio}"


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

    @property
    def name(self) -> str:
        return f"{self.mode}_{self.ratio:g}_seed{self.seed}"

    @property
    def setting(self) -> str:
        return f"{self.mode}:{self.ratio:g}"


def build_cell(mode: str, ratio: float, seed: int, work_dir: str, *, ido_epochs: tuple[int, int] = IDO_EPOCHS) -> Cell:
    cell = Cell(mode, ratio, seed)
    root = os.path.join(work_dir, cell.name)
    tag = TAG.format(mode=mode, ratio=f"{ratio:g}")
    common = ["--noise_mode", mode, "--noise_ratio", f"{ratio:g}", "--seed", str(seed), "--device", "cpu",
              "--set", f"noise_dir={os.path.join(root, 'noise_file')}"]

    def out(sub):
        return ["--output_dir", os.path.join(root, sub)]

    py = sys.executable
    stage1_epochs, stage2_epochs = (str(e) for e in ido_epochs)
    total = str(sum(ido_epochs))
    cell.jobs = [
        Job("standard", cell.name, [py, "stage_1.py", *common, *out("standard"), "--epochs", total],
            f"standard/stage1/{tag}_wrongevent.json", methods=("standard",)),
        Job("ido_stage1", cell.name, [py, "stage_1.py", *common, *out("ido"), "--epochs", stage1_epochs],
            f"ido/stage1/{tag}_wrongevent.json", methods=("ido_global", "ido_class")),
        Job("ido_global", cell.name, [py, "stage_2.py", *common, *out("ido"), "--epochs", stage2_epochs],
            f"ido/stage2/{tag}_global.json", after=("ido_stage1",), methods=("ido_global",)),
        Job("ido_class", cell.name, [py, "stage_2_class.py", *common, *out("ido"), "--epochs", stage2_epochs],
            f"ido/stage2/{tag}_class.json", after=("ido_stage1",), methods=("ido_class",)),
        Job("acto", cell.name, [py, "acto.py", *common, *out("acto"), "--epochs", total], f"acto/acto/{tag}.json",
            methods=("acto",)),
        Job("cleanlab", cell.name, [py, "benchmarks/confident_learning.py", *common, *out("cleanlab")],
            f"cleanlab/cleanlab/{tag}.json", methods=("cleanlab",)),
    ]
    return cell


def done_path(work_dir: str, job: Job) -> str:
    return os.path.join(work_dir, job.cell, f"{job.name}.done.json")


def is_done(work_dir: str, job: Job) -> bool:
    """Finished, with the same command (another ``--ido_epochs`` reruns what it changes)."""
    path = done_path(work_dir, job)
    if not (os.path.isfile(path) and os.path.isfile(os.path.join(work_dir, job.cell, job.result))):
        return False
    return read_json(path).get("argv") == job.argv[1:]


def run_grid(cells: list[Cell], *, work_dir: str, jobs: int) -> None:
    """Run every unfinished job, ``jobs`` at a time, respecting each cell's order."""
    from tqdm import tqdm

    by_key = {job.key: job for cell in cells for job in cell.jobs}
    pending = [job for job in by_key.values() if not is_done(work_dir, job)]
    total = sum(len(cell.jobs) for cell in cells)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TQDM_DISABLE="1")
    running: dict[str, tuple[Job, subprocess.Popen, float, object]] = {}
    bar = tqdm(total=total, initial=total - len(pending), desc="grid", unit="job", dynamic_ncols=True)
    shown = ""
    try:
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
    finally:
        for job, proc, _, log in running.values():
            proc.terminate()
            log.close()
        bar.close()


# ------------------------------------------------------------------------------------------ results

def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def last(values):
    return values[-1] if isinstance(values, list) else values


def cell_results(cell: Cell, work_dir: str) -> dict[str, dict]:
    """``{method: {last_acc, best_acc, auc, clean_precision, clean_recall, seconds}}`` of one finished cell."""
    root = os.path.join(work_dir, cell.name)
    jobs = {job.name: job for job in cell.jobs}
    seconds = {m: 0.0 for m in METHODS}
    for job in cell.jobs:
        for method in job.methods:
            seconds[method] += read_json(done_path(work_dir, job))["seconds"]
    out = {}
    standard = read_json(os.path.join(root, jobs["standard"].result))["test_acc"]
    out["standard"] = {"last_acc": standard[-1], "best_acc": max(standard)}
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


def mean_std(values: list) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(cells: list[Cell], work_dir: str) -> dict:
    """``{setting: {method: {metric: (mean, std) | None}}}`` over seeds, plus the seeds used."""
    per_setting: dict[str, dict[str, dict[str, list]]] = {}
    seeds: dict[str, list[int]] = {}
    for cell in cells:
        res = cell_results(cell, work_dir)
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


def plot(summary: dict, settings: list[str], path: str) -> None:
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
    ax.set_title("digits, test_resnet from scratch (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    save_figure(fig, path)
    plt.close(fig)


def report(summary: dict, settings: list[str], *, command: str, out: str, jobs: int,
           ido_epochs: tuple[int, int]) -> str:
    stage1_epochs, stage2_epochs = ido_epochs
    total = stage1_epochs + stage2_epochs
    table = summary["table"]
    seeds = sorted({s for v in summary["seeds"].values() for s in v})
    lines = [
        "# Noise robustness on digits: IDO against standard training, ACTO and confident learning", "",
        f"Produced by `{command}` on {machine()}, {time.strftime('%Y-%m-%d')}, {jobs} jobs at a time "
        f"({max(1, (os.cpu_count() or 1) // jobs)} thread(s) each); seeds {', '.join(map(str, seeds))}.",
        "",
        "Data: scikit-learn's digits (1,257 training / 540 test images, 8×8 up-sampled to 32 px), a tiny timm "
        "ResNet (`test_resnet`) from scratch, the digits defaults of the entry points (AdamW 3e-3). Within a "
        "(setting, seed) cell every method trains on the same noisy-label file. Standard training runs for "
        f"{total} epochs (= IDO's stage 1 {stage1_epochs} + stage 2 {stage2_epochs}); ACTO for {total} (8 warm-up); "
        "confident learning trains 4 folds × 20 epochs for its out-of-sample probabilities, then 40 epochs on "
        "the samples it keeps.", "",
        "## Test accuracy (%), last epoch (mean ± std over seeds)", "",
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
              "## Test accuracy (%), best epoch (test-set model selection, for reference)", "",
              "| method | " + " | ".join(s.replace(":", " ") for s in settings) + " |",
              "|---|" + "---|" * len(settings)]
    for method in METHODS:
        lines.append(f"| {LABELS[method]} | " + " | ".join(fmt(table[s][method]["best_acc"]) for s in settings) + " |")
    lines += ["", "IDO's base model (the stage-1 label-wave checkpoint that stage 2 starts from): " +
              ", ".join(f"{s.replace(':', ' ')} {fmt(table[s]['ido_class']['base_acc'])}" for s in settings) + ".",
              "", "## Noise detection at the end of training", "",
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
    lines += ["", "## Wall time per run (s, mean over cells; jobs ran concurrently)", "",
              "| method | " + " | ".join(s.replace(":", " ") for s in settings) + " |",
              "|---|" + "---|" * len(settings)]
    for method in METHODS:
        lines.append(f"| {LABELS[method]} | " + " | ".join(f"{table[s][method]['seconds'][0]:.0f}"
                                                           for s in settings) + " |")
    lines += ["", f"IDO's times include its stage 1. ![accuracy per setting]({os.path.basename(plot_path(out))})", ""]
    return "\n".join(lines)


def plot_path(out: str) -> str:
    return os.path.splitext(out)[0] + ".png"


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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"1 seed, settings {' '.join(QUICK_SETTINGS)}")
    parser.add_argument("--settings", nargs="+", type=parse_setting, default=None, metavar="MODE:RATIO")
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="subprocesses at a time")
    parser.add_argument("--work_dir", default=None, help="where the runs go (default runs/noise_robustness[_quick])")
    parser.add_argument("--out", default=None, help="the report (default docs/benchmarks.md)")
    parser.add_argument("--ido_epochs", nargs=2, type=int, default=IDO_EPOCHS, metavar=("STAGE1", "STAGE2"),
                        help="IDO's epochs per stage; standard training and ACTO get their sum (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        import cleanlab  # noqa: F401
    except ImportError:
        parser.error("cleanlab is missing: pip install -r requirements-bench.txt")
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    if min(args.ido_epochs) < 1:
        parser.error("--ido_epochs: both stages need >= 1 epoch")
    ido_epochs = tuple(args.ido_epochs)
    settings = args.settings or [parse_setting(s) for s in (QUICK_SETTINGS if args.quick else SETTINGS)]
    seeds = args.seeds or ([0] if args.quick else list(SEEDS))
    suffix = "_quick" if args.quick else ""
    work_dir = os.path.abspath(args.work_dir or os.path.join(REPO, "runs", f"noise_robustness{suffix}"))
    out = args.out or (os.path.join(work_dir, "benchmarks_quick.md") if args.quick
                       else os.path.join(REPO, "docs", "benchmarks.md"))
    cells = [build_cell(mode, ratio, seed, work_dir, ido_epochs=ido_epochs) for mode, ratio in settings for seed in seeds]
    for cell in cells:
        os.makedirs(os.path.join(work_dir, cell.name), exist_ok=True)
    started = time.perf_counter()
    run_grid(cells, work_dir=work_dir, jobs=args.jobs)
    summary = summarise(cells, work_dir)
    names = [f"{mode}:{ratio:g}" for mode, ratio in settings]
    command = "python benchmarks/noise_robustness.py" + (" --quick" if args.quick else "")
    if args.settings:
        command += " --settings " + " ".join(names)
    if args.seeds:
        command += " --seeds " + " ".join(map(str, seeds))
    if ido_epochs != IDO_EPOCHS:
        command += " --ido_epochs {} {}".format(*ido_epochs)
    text = report(summary, names, command=command, out=out, jobs=args.jobs, ido_epochs=ido_epochs)
    if os.path.isfile(out):
        with open(out, encoding="utf-8") as f:
            previous = f.read()
        if READING_MARK in previous:
            text += "\n" + READING_MARK + previous.split(READING_MARK, 1)[1]
    plot(summary, names, plot_path(out))
    save_text(text, out)
    save_json({"settings": names, "seeds": seeds, "table": summary["table"], "raw": summary["raw"]},
              os.path.join(work_dir, "summary.json"))
    print(f"{len(cells)} cells in {time.perf_counter() - started:.0f} s: {out}")
    return summary


if __name__ == "__main__":
    main()
