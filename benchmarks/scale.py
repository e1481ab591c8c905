"""Per-sample machinery at ImageNet / WebVision size, measured without a network (issue: "a million images").

    python benchmarks/scale.py --write-docs         # N = 50k, 400k, 1.28M; C = 1,000; into docs/performance.md
    python benchmarks/scale.py --quick --out FILE   # N = 2,000 and 10,000, C = 50: the test's run (< 2 minutes)
    python benchmarks/scale.py --sizes 2400000 --max-gb 10    # prints the table only

The table goes into docs/performance.md only with ``--write-docs`` (a quick or partial run must not replace
the measured one), into FILE with ``--out FILE``, and is printed in every case.

Every component is called directly on synthetic inputs of the real shapes (N samples, C classes) and
runs in its own process, forked from this one after the imports, so each gets its own peak memory:

* seconds: wall time of the component alone (inputs are built before the clock starts), and the CPU
  time of its process (user + system), which a busy shared machine inflates less;
* peak MB: the most host memory the component added, ``VmHWM - VmRSS`` of its process, the peak
  (high-water mark) reset through ``/proc/self/clear_refs`` just before it starts.  The device-side
  parts (the ACTO bank, the report's per-batch reduction) run on this machine's CPU, so their
  tensors are in this figure; with ``--device cuda`` the column ``device MB`` adds
  ``torch.cuda.max_memory_allocated`` over the component.

Where a component changed, the old version is kept here (only here; the report's table as N dicts is
tests/reference.py's ``sample_rows``, which the CSV writer's exactness test compares against) and measured
in the same run: ``before`` rows use it, ``after`` rows the code as it is; a ``before`` whose estimated
memory exceeds ``--max-gb`` is not run and the row says so.  The listing of files and the paths held by DataLoader
workers are measured by their own script (``dataloader/`` listing benchmark) and added beside this
table by hand.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataloader.holdout import stratified_holdout  # noqa: E402
from dataloader.noise import (IDN_MAX_SAMPLES_X_CLASSES, IdnTooLarge, _idn_labels, check_idn_size,  # noqa: E402
                              load_or_create_noisy_labels)  # noqa: E402
from utils.method.sample_weights import SampleWeights  # noqa: E402
from utils.method.acto import ActoMemory  # noqa: E402
from utils.method.bmm import BetaMixture  # noqa: E402
from utils.core.distributed import EpochShuffleSampler  # noqa: E402
from utils.training.engine import reduce_probabilities  # noqa: E402
from utils.core.io import save_json, save_text, save_torch  # noqa: E402
from utils.method.metrics import detection_auc, split_quality  # noqa: E402
from utils.training.outputs import ReportFiles  # noqa: E402
from utils.training.runlog import RunLog  # noqa: E402
from utils.report.sample_report import (COLUMNS, _InMemoryPaths, scores_from_predictions,  # noqa: E402
                                        summarize, write_samples_csv)
from tests.reference import sample_rows  # noqa: E402  (the table as N dicts: the CSV writer's before)
from utils.method.wrong_events import EpochPredictions, LabelWave, WrongEvents  # noqa: E402
from benchmarks.docs_output import add_output_options, output_path, write_section as _write_section  # noqa: E402

MB = 1 << 20
EPOCHS_OF_HISTORY = 100  # stage 2's BMM history: what last.pt holds at epoch 100
BEGIN, END = "<!-- scale.py: begin -->", "<!-- scale.py: end -->"
DOCS_PAGE = os.path.join("docs", "performance.md")


# ------------------------------------------------------------------------------------- inputs

def _labels(n: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, c, n)


def _counts(n: int, noisy: np.ndarray, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.poisson(3, n) + 12 * noisy


def _noisy_mask(n: int) -> np.ndarray:
    return np.random.default_rng(2).random(n) < 0.3


def _batches(n: int, c: int, batch: int = 1024):
    """Logits of an evaluation pass, one batch at a time (made here, as a model would)."""
    g = torch.Generator().manual_seed(0)
    for start in range(0, n, batch):
        size = min(batch, n - start)
        yield torch.arange(start, start + size), 4 * torch.randn(size, c, generator=g)


# ------------------------------------------------------------------ the versions before this change

def _old_report_pass(n, c, given):
    """engine.predict_probabilities + sample_scores (now tests/reference.py) before: N x C softmax on the host,
    then a float64 copy."""
    out = [torch.softmax(logits.float(), dim=1).cpu() for _, logits in _batches(n, c)]
    probs = np.asarray(torch.cat(out).numpy(), dtype=np.float64)
    predicted = probs.argmax(axis=1)
    return predicted, probs.max(axis=1), probs[np.arange(n), given]


def _old_write(scores, path, paths, names):
    """sample_rows (N dicts) and the whole CSV as one string, as before."""
    rows = sample_rows(scores, paths=list(paths[i] for i in range(len(paths))), class_names=names)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    save_text(buffer.getvalue(), path)


def _old_bank_end_epoch(bank, rows, updated):
    """ActoMemory.end_epoch before: clone, division and where over the whole bank."""
    rows, updated = rows.clone(), updated.clone()
    hit = updated > 0
    return torch.where(hit[:, None], rows / updated.clamp(min=1.0)[:, None], bank)


def _old_block_merge(mem, updated, reduce_sum):
    """ActoMemory._merge_bank at 006d548: every row divided by the number of processes that updated it."""
    n, c = mem.bank.shape
    step = max(1, mem.MERGE_BLOCK_BYTES // max(1, c * mem.bank.element_size()))
    for start in range(0, n, step):
        block = mem.bank[start:start + step]
        total = updated[start:start + step]
        untouched = total == 0
        kept = block[untouched]
        block.mul_(mem._updated[start:start + step, None])
        merged = reduce_sum(block)
        merged.div_(total.clamp(min=1.0)[:, None])
        merged[untouched] = kept
        if merged is not block:
            block.copy_(merged)


def _old_bank_checkpoint(mem, path):
    """last.pt at 006d548: the counter and a host copy of the whole bank pickled into it."""
    save_torch({"memory": {"counter": mem.counter.clone(), "bank": mem.bank.clone()}}, path)


def _old_detection(weights: SampleWeights, counts, is_noisy):
    posterior = weights.clean_posterior(counts)
    detection_auc(posterior, is_noisy)
    split_quality(posterior >= 0.5, ~is_noisy)


def _old_holdout(labels, fraction, seed):
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        held[rng.permutation(members)[:int(round(fraction * len(members)))]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


# ------------------------------------------------------------------------------------ components
# each: (prepare(n, c) -> state, run(state) -> note or None, estimated_bytes(n, c) or None)

def _report_scores(n, c):
    given, noisy = _labels(n, c), _noisy_mask(n)
    counts = _counts(n, noisy)
    predicted = np.random.default_rng(3).integers(0, c, n)
    prob = np.random.default_rng(4).random(n).astype(np.float32)
    score = np.random.default_rng(5).random(n)
    true = np.where(noisy, (given + 1) % c, given)
    return scores_from_predictions(predicted, prob, prob, given, label_score=score, wrong_events=counts,
                                   true_label=true)


def comp_report_reduce(variant):
    def prepare(n, c):
        return n, c, _labels(n, c)

    def run(state):
        n, c, given = state
        if variant == "before":
            _old_report_pass(n, c, given)
            return None
        predicted = torch.zeros(n, dtype=torch.int64)
        predicted_prob, given_prob = torch.zeros(n), torch.zeros(n)
        given_t = torch.as_tensor(given)
        for index, logits in _batches(n, c):
            p, pp, gp = reduce_probabilities(torch.softmax(logits, dim=1), given_t[index])
            predicted[index], predicted_prob[index], given_prob[index] = p, pp, gp
        return None
    # the logits of a batch are made in the loop (as a model would): that time is in both variants
    return prepare, run, (lambda n, c: 12 * n * c) if variant == "before" else None


def comp_report_write(variant):
    def prepare(n, c):
        tmp = tempfile.mkdtemp()
        return _report_scores(n, c), ReportFiles.at(os.path.join(tmp, "r")), [f"class {k}" for k in range(c)], c

    def run(state):
        scores, files, names, c = state
        paths = _InMemoryPaths(len(scores))
        if variant == "before":
            _old_write(scores, files.samples, paths, names)
        else:
            write_samples_csv(scores, files.samples, paths=paths, class_names=names)
        save_json(summarize(scores, num_classes=c, class_names=names), files.summary)
        return f"CSV {os.path.getsize(files.samples):,} bytes"
    return prepare, run, (lambda n, c: 700 * n) if variant == "before" else None


def _bank(n, c):
    mem = ActoMemory(torch.as_tensor(_labels(n, c)), c)
    mem._updated.fill_(1.0)  # every row updated this epoch, by this process
    return mem


def comp_bank_end_epoch(variant):
    def prepare(n, c):
        mem = _bank(n, c)
        if variant == "before":
            return mem.bank, mem.bank.clone(), mem._updated
        return mem

    def run(state):
        if variant == "before":
            _old_bank_end_epoch(*state)
            return "bank + its epoch buffer of rows held: 2 banks"
        state.end_epoch()  # one process: nothing to merge
        return "1 bank held, updated in place"
    return prepare, run, (lambda n, c: 4 * n * c * 5) if variant == "before" else (lambda n, c: 4 * n * c)


def comp_bank_merge(variant):
    """What the DDP block merge computes on a rank, without the network: the all-reduce is the identity (a
    real rank adds it, and Runtime.reduce_sum's copy of each 64 MB block).  The rows of the sampler's padding
    (seen by two ranks) are a handful; here every row counts once, as for all others."""
    def prepare(n, c):
        mem = _bank(n, c)
        return mem, mem._updated.clone()

    def run(state):
        mem, updated = state
        if variant == "before":
            _old_block_merge(mem, updated, lambda t: t)
        else:
            mem._merge_bank(updated, lambda t: t)
        return "blocks of 64 MB; the all-reduce not included"
    return prepare, run, lambda n, c: 4 * n * c


def comp_bank_checkpoint(variant):
    def prepare(n, c):
        mem = ActoMemory(torch.as_tensor(_labels(n, c)), c)
        folder = tempfile.mkdtemp()
        return mem, folder

    def run(state):
        mem, folder = state
        path = os.path.join(folder, "last.pt")
        if variant == "before":
            _old_bank_checkpoint(mem, path)
            size = os.path.getsize(path)
            os.remove(path)
            return f"last.pt {size / MB:,.0f} MB (the bank inside)"
        log = RunLog(folder)
        log.save_state({"memory": mem.state_dict()}, arrays={"memory.bank": mem.bank})
        state_ = log.load_state()
        file = state_["arrays"]["memory.bank"]["file"]
        size, small = os.path.getsize(os.path.join(folder, file)), os.path.getsize(path)
        start = time.perf_counter()
        log.load_arrays(state_, {"memory.bank": mem.bank})  # --resume: read back into the bank, in place
        read = time.perf_counter() - start
        shutil.rmtree(folder)
        return f"bank file {size:,} bytes + last.pt {small / MB:.1f} MB; includes reading it back ({read:.2f} s)"
    return prepare, run, (lambda n, c: 8 * n * c) if variant == "before" else (lambda n, c: 4 * n * c)


def comp_idn(variant):
    def prepare(n, c):
        if n * c > IDN_MAX_SAMPLES_X_CLASSES:  # refused before the pixels are read: none are made
            return n, c, _labels(n, c), None
        return n, c, _labels(n, c), np.random.default_rng(6).integers(0, 256, (n, 192), dtype=np.uint8)

    def run(state):
        n, c, labels, feats = state
        try:
            check_idn_size(n, c)
        except IdnTooLarge:
            return "refused at once (N x C > 1e8)"
        _idn_labels(np.random.default_rng(0), labels, 0.2, c, feats)
        return "D = 192 (8 x 8 RGB); C x D x C normals drawn"
    # refused sizes need nothing; the others hold the scores, their cdf and the features
    return prepare, run, lambda n, c: 0 if n * c > IDN_MAX_SAMPLES_X_CLASSES else 16 * n * c + 192 * n


def comp_detection(variant):
    def prepare(n, c):
        labels, noisy = _labels(n, c), _noisy_mask(n)
        counts = _counts(n, noisy)
        weights = SampleWeights(class_wise=True, noisy_labels=labels, num_classes=c, device=torch.device("cpu"),
                                new_events=2)
        weights.fit(counts, iterations=2)
        return weights, counts, noisy

    def run(state):
        weights, counts, noisy = state
        if variant == "before":
            _old_detection(weights, counts, noisy)
        else:
            weights.detection(counts, noisy)
        return "class-wise, per stage-2 epoch"
    return prepare, run, None


def comp_bmm_fit(variant):
    def prepare(n, c):
        labels, noisy = _labels(n, c), _noisy_mask(n)
        return labels, _counts(n, noisy), c

    def run(state):
        labels, counts, c = state
        SampleWeights(class_wise=True, noisy_labels=labels, num_classes=c, device=torch.device("cpu"),
                      new_events=2).fit(counts, iterations=2)
        BetaMixture(num_groups=1).fit(counts, max_iter=1)
        return "class-wise 2 EM iterations + lookup table, global 1"
    return prepare, run, None


def comp_bmm_history(variant):
    def prepare(n, c):
        bmm = BetaMixture(num_groups=c)
        labels, noisy = _labels(n, c), _noisy_mask(n)
        bmm.fit(_counts(n, noisy), groups=labels, max_iter=2)
        return bmm

    def run(state):
        row = {"epoch": 1, "lr": 0.01, "train_loss": 0.5, "test_acc": 70.0}
        if variant == "before":  # the whole history with its mixtures, pickled into last.pt at epoch 100
            size = len(pickle.dumps([{**row, "bmm": state.describe()} for _ in range(EPOCHS_OF_HISTORY)]))
        else:  # last.pt without them; one line of bmm_history.jsonl per epoch
            size = len(pickle.dumps([row] * EPOCHS_OF_HISTORY)) + len(str(state.describe()))
        return f"written at epoch {EPOCHS_OF_HISTORY}: {size / MB:.2f} MB"
    return prepare, run, None


def comp_wrong_events(variant):
    def prepare(n, c):
        wrong, preds = WrongEvents(n), EpochPredictions(n)
        wrong.epoch_events.fill_(1)
        preds.record(torch.arange(n), torch.as_tensor(_labels(n, c)))
        return wrong, preds

    def run(state):
        wrong, preds = state
        wrong.end_epoch()
        preds.end_epoch()
        return "WrongEvents + EpochPredictions end_epoch"
    return prepare, run, None


def comp_label_wave(variant):
    def prepare(n, c):
        wave = LabelWave()
        wave.observe(0, torch.as_tensor(_labels(n, c, 7)))
        return wave, torch.as_tensor(_labels(n, c, 8))

    def run(state):
        wave, predictions = state
        wave.observe(1, predictions)
        return None
    return prepare, run, None


def comp_sampler(variant):
    def prepare(n, c):
        sampler = EpochShuffleSampler(n, seed=0, rank=0, world_size=8)
        sampler.set_epoch(3)
        return sampler

    def run(state):
        for _ in state:
            pass
        return "one epoch's indices of rank 0 of 8"
    return prepare, run, None


def comp_holdout(variant):
    def prepare(n, c):
        return _labels(n, c)

    def run(labels):
        (_old_holdout if variant == "before" else lambda l, fraction, seed: stratified_holdout(
            l, fraction=fraction, seed=seed))(labels, 0.1, 0)
        return "val_fraction 0.1, once per job"
    return prepare, run, None


def comp_noise_cache(variant):
    def prepare(n, c):
        return _labels(n, c), c, tempfile.mkdtemp()

    def run(state):
        labels, c, folder = state
        kw = dict(cache_dir=folder, dataset="own", mode="sym", ratio=0.2, seed=1, convention="ido", num_classes=c)
        load_or_create_noisy_labels(labels, **kw)
        start = time.perf_counter()
        load_or_create_noisy_labels(labels, **kw)
        return f"sym: generate + write; read again {time.perf_counter() - start:.2f} s"
    return prepare, run, None


COMPONENTS = {
    "report: per-batch reduction of the evaluation": (comp_report_reduce, True),
    "report: table, CSV and summary": (comp_report_write, True),
    "ACTO bank: end_epoch, one process": (comp_bank_end_epoch, True),
    "ACTO bank: DDP block merge on a rank": (comp_bank_merge, True),
    "ACTO bank: checkpoint": (comp_bank_checkpoint, True),
    "idn noise": (comp_idn, False),
    "stage 2 detection() per epoch": (comp_detection, True),
    "stage 2 BMM history in last.pt": (comp_bmm_history, True),
    "BMM fits per epoch": (comp_bmm_fit, False),
    "wrong-event merge per epoch": (comp_wrong_events, False),
    "label wave per epoch": (comp_label_wave, False),
    "sampler per epoch": (comp_sampler, False),
    "stratified holdout": (comp_holdout, True),
    "noise cache": (comp_noise_cache, False),
}


# ---------------------------------------------------------------------------------------- running

def _status(key: str) -> int:
    """A VmXXX line of /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _child(name: str, variant: str, n: int, c: int, device: str, write) -> None:
    prepare, run, _ = COMPONENTS[name][0](variant)
    state = prepare(n, c)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    base = _status("VmHWM")  # the resident size at the reset (VmRSS read now may already be lower: freed pages)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start, cpu_start = time.perf_counter(), time.process_time()
    note = run(state)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    # the kernel's resident counters are synced lazily (per-thread batches of pages), so a run that adds
    # nothing can read a few kB below the base: that is zero
    peak = max(0, _status("VmHWM") - base)
    device_mb = torch.cuda.max_memory_allocated() / MB if device == "cuda" else None
    write(pickle.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_mb": peak / MB, "device_mb": device_mb, "note": note}))


def measure(name: str, variant: str, n: int, c: int, *, device: str = "cpu", max_bytes: float) -> dict:
    """Run one component in a forked process; its row (``skipped`` where the estimate exceeds ``max_bytes``)."""
    estimate = COMPONENTS[name][0](variant)[2]
    row = {"component": name, "variant": variant, "n": n, "c": c}
    if estimate is not None and estimate(n, c) > max_bytes:
        return {**row, "skipped": f"needs about {estimate(n, c) / 2 ** 30:.0f} GiB, over the {max_bytes / 2 ** 30:g} "
                                  "GiB allowed (--max-gb)"}
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, send the result, leave without running the parent's exit handlers
        os.close(read)
        code = 0
        try:
            torch.set_num_threads(1)
            with os.fdopen(write, "wb") as f:
                _child(name, variant, n, c, device, f.write)
        except BaseException as err:  # noqa: BLE001 - reported by the parent
            print(f"{name} {variant} N={n}: {err!r}", file=sys.stderr)
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        payload = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not payload:
        return {**row, "skipped": "failed (see the error above)"}
    return {**row, **pickle.loads(payload)}


def _fmt_n(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__)), check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = _status("VmRSS") and os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB"


def report(rows: list[dict], *, sizes, classes: int, device: str, command: str = "") -> str:
    command = command or ("--quick" if sizes[-1] < 50_000 else "")
    lines = [BEGIN, f"## Per-sample machinery at scale (`benchmarks/scale.py`)", "",
             f"Measured by `python benchmarks/scale.py{' ' + command if command else ''}` on {_machine()}, "
             f"torch {torch.__version__}, one thread per component, device `{device}`, commit {_commit()}, "
             f"{date.today().isoformat()}. C = {classes:,} classes; each cell is wall seconds (CPU seconds of the "
             "component's process: the better figure where the machine was shared) / peak MB the component "
             "added (its own forked process; see the script's docstring for the method). `before` is the code "
             "before the change the row measures, kept in the script for this comparison.", ""]
    head = "| component | variant | " + " | ".join(f"N = {_fmt_n(n)}" for n in sizes) + " | notes (largest N) |"
    lines += [head, "|---" * (len(sizes) + 3) + "|"]
    keyed = {(r["component"], r["variant"], r["n"]): r for r in rows}
    for name in COMPONENTS:
        for variant in (("before", "after") if COMPONENTS[name][1] else ("after",)):
            cells, note = [], ""
            for n in sizes:
                r = keyed.get((name, variant, n))
                if r is None:
                    cells.append("-")
                elif "skipped" in r:
                    cells.append(f"not run ({r['skipped']})")
                else:
                    device_part = f" / {r['device_mb']:.0f} MB on the device" if r.get("device_mb") is not None else ""
                    cells.append(f"{r['seconds']:.3f} s ({r['cpu_seconds']:.3f} s CPU) / {r['peak_mb']:.0f} MB"
                                 f"{device_part}")
                    note = r.get("note") or note
            lines.append(f"| {name} | {variant if COMPONENTS[name][1] else ''} | " + " | ".join(cells)
                         + f" | {note} |")
    lines += [END]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: str) -> str:
    """Put ``text`` between the markers in ``path`` (replacing an earlier run's), or append it."""
    return _write_section(text, path, BEGIN, END)


def _warm_imports() -> None:
    """Import what the components import lazily, once, before forking: not part of any component's time."""
    import scipy.stats  # noqa: F401
    import sklearn.metrics  # noqa: F401


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 2,000 and 10,000, C = 50 (for the tests)")
    parser.add_argument("--sizes", default="50000,400000,1280000", help="comma-separated N")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--max-gb", type=float, default=10.0, help="skip a component estimated above this")
    parser.add_argument("--only", default=None, help="comma-separated component names (prefixes)")
    add_output_options(parser, DOCS_PAGE)
    parser.add_argument("--table-only", action="store_true", help="write the table from --rows, measure nothing")
    parser.add_argument("--rows", default=None, help="JSON-lines file: each row is appended as it is measured, "
                        "and rows already there are not measured again (an interrupted run continues)")
    args = parser.parse_args(argv)
    sizes = [2000, 10_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    classes = 50 if args.quick else args.classes
    _warm_imports()
    names = [n for n in COMPONENTS if not args.only or any(n.startswith(p) for p in args.only.split(","))]
    rows = []
    if args.rows and os.path.exists(args.rows):  # rows of an interrupted run: not measured again
        with open(args.rows) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    done = {(r["component"], r["variant"], r["n"]) for r in rows}
    for n in sizes:
        for name in names:
            for variant in (("before", "after") if COMPONENTS[name][1] else ("after",)):
                if (name, variant, n) in done or args.table_only:
                    continue
                row = measure(name, variant, n, classes, device=args.device, max_bytes=args.max_gb * 2 ** 30)
                rows.append(row)
                if args.rows:
                    with open(args.rows, "a") as f:
                        f.write(json.dumps(row) + "\n")
                shown = row.get("skipped") or f"{row['seconds']:.3f} s, {row['peak_mb']:.0f} MB  {row.get('note') or ''}"
                print(f"N={n:>9,} {name} [{variant}]: {shown}", flush=True)
    text = report(rows, sizes=sizes, classes=classes, device=args.device,
                  command=" ".join(sys.argv[1:] if argv is None else argv))
    print(text)
    out = output_path(args, DOCS_PAGE)
    if out:
        write_section(text, out)
    return {"rows": rows, "out": out}


if __name__ == "__main__":
    main()
