"""The first day on a GPU node: one command that measures what the project's GPU paths do, into one JSON.

    python benchmarks/gpu_check.py [--device cuda|cuda:N|cpu] [--out FILE] [--write-docs]
    python benchmarks/gpu_check.py --tiny --device cpu      # the same keys in seconds (what the tests run)

On the device it finds (``--device`` to choose) it measures, with the real models (``model.create_model``,
``model.pair``), the real steps (utils/method/steps.py) inside the real engine (``train_one_epoch``) and the real
run set-up (``start_run``, ``place_model``, ``Run.save_state`` / ``Run.load_state``):

* ``host_syncs``: host syncs per training step of stage 1, stage 2 (class-wise), ACTO's warm-up and robust
  steps, in fp32, bf16 and fp16, fresh and after a resume from last.pt (benchmarks/host_syncs.py; the JSON's
  ``counter`` names what was counted: CUDA's sync debug mode, or HostReads off CUDA); ``resumed`` also holds the
  time to resume (load last.pt, then continue to the end of the first step);
* ``pass_syncs``: host syncs per batch of the evaluation pass (``evaluate``) and of the per-sample report's pass
  (``predict_labels``);
* ``speed``: images/s of the stage-1 and stage-2 steps against a plain timm cross-entropy step with the same
  model, input and precision (benchmarks/overhead.py's rounds; the ratio is the figure), for a CNN and a ViT;
* ``loader``: images/s of the own-data file loader on JPEG files with the stage-1 and stage-2 views and the
  config's workers, against the training step's images/s;
* ``memory``: peak GPU memory of one step of each method at the paper configs' batch sizes (null off CUDA);
* ``nccl``: with 2+ GPUs, each method under ``torchrun --nproc_per_node=2`` (digits, tiny epochs): exit status,
  hang, process group destroyed ("skipped: 1 GPU" otherwise).

Every record has the keys of :data:`RECORDS` in every mode, with ``skipped`` (why it was not measured) and
``error`` (what failed; the exit status is then 1).  The JSON goes to ``--out`` (default
runs/gpu_check/gpu_check.json); ``--write-docs`` also replaces this benchmark's section of docs/performance.md.
``--tiny`` measures small models (test_resnet, test_vit) at 16 px for a few steps: the same code paths and the
same JSON keys, in about a minute on a CPU.  The full mode keeps each part within a budget (:data:`FULL`), under
10 minutes on one GPU.
"""
from __future__ import annotations

import os

# an epoch bar per measurement would bury the progress lines; tqdm reads this when it is imported (torch imports
# it), so before any import; only as a program: imported by a test it would reach the test's child processes
if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import shlex  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from typing import Any, Callable, Mapping, Sequence  # noqa: E402

import torch  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.docs_output import REPO, write_section  # noqa: E402
from benchmarks.host_syncs import SyncCounter, count_epoch  # noqa: E402
from benchmarks.loader import photo_crops  # noqa: E402
from benchmarks.method_setups import (FINGERPRINT, MEAN, STD, METHODS, build_setup, config_path,  # noqa: E402
                                      method_run, paper_config, synthetic_batches)
from benchmarks.overhead import machine, paired_ratio, step_benchmark  # noqa: E402
from dataloader import build_data  # noqa: E402
from dataloader.device_normalise import DeviceNormaliser  # noqa: E402
from model import create_model  # noqa: E402
from utils.core.distributed import choose_device  # noqa: E402
from utils.core.entry import run_main  # noqa: E402
from utils.core.errors import ConfigError, UsageError, user_message  # noqa: E402
from utils.core.io import save_json  # noqa: E402
from utils.core.workers import resolve_num_workers  # noqa: E402
from utils.training.engine import evaluate, make_loaders, predict_labels, seed_epoch  # noqa: E402
from utils.report.sample_report import DigestedImages  # noqa: E402
from utils.training.run import place_model  # noqa: E402

DEFAULT_OUT = os.path.join("runs", "gpu_check", "gpu_check.json")
DOCS_PAGE = os.path.join("docs", "performance.md")
BEGIN, END = "<!-- gpu_check.py: begin -->", "<!-- gpu_check.py: end -->"  # its section of the page
NOT_DESTROYED = "destroy_process_group() was not called"  # torch's warning when a group is left to the exit
MIB = 2 ** 20

PRECISIONS = ("fp32", "bf16", "fp16")
SYNC_METHODS = tuple(METHODS)                       # stage1, stage2, acto_warmup, acto_robust
PASSES = ("evaluate", "predict_labels")             # the evaluation pass and the per-sample report's pass
ROLES = ("cnn", "vit")                              # the two backbone families of the paper configs
LOADER_STAGES = ("stage1", "stage2")
MEMORY_METHODS = {"stage1": "stage1", "stage2": "stage2", "acto": "acto_robust"}  # ACTO's larger step: robust
NCCL_PROGRAMS = {  # method -> (entry point, its extra arguments); run in this order (stage 2 reads stage 1)
    "stage1": ("stage_1.py", ["--epochs", "2"]),
    "stage2": ("stage_2_class.py", ["--epochs", "1"]),
    "acto": ("acto.py", ["--epochs", "2", "--set", "warmup_epochs=1"]),
}

COMMON = ("skipped", "error")  # in every record: why it was not measured / what failed (else null)
_SYNCS = ("backbone", "batch_size", "first_step", "per_step", "per_step_counts", "epoch_total", "steps", "sites")
RECORDS: Mapping[str, tuple[str, ...]] = {
    "syncs": _SYNCS,
    "syncs_resumed": _SYNCS + ("load_s", "to_first_step_s"),
    "pass_syncs": ("backbone", "batch_size", "per_batch", "fixed", "sites"),
    "speed": ("backbone", "resolution", "batch_size", "channels_last", "plain_images_per_s", "stage1_images_per_s",
              "two_view_images_per_s", "stage2_global_images_per_s", "stage2_class_images_per_s", "stage1_over_plain",
              "stage2_global_over_two_view", "stage2_class_over_two_view", "steps", "rounds", "matmul_tf32",
              "cudnn_tf32", "cudnn_benchmark"),
    "loader": ("config", "workers", "batch_size", "resolution", "images", "image_size", "first_batch_s",
               "images_per_s", "epoch_images_per_s", "step_images_per_s", "loader_over_step"),
    "memory": ("config", "backbone", "batch_size", "precision", "channels_last", "resolution", "num_samples",
               "allocated_before_mib", "peak_allocated_mib", "peak_reserved_mib", "note"),
    "nccl": ("command", "exit_code", "seconds", "hung", "group_destroyed", "output_tail"),
}
HEADER = ("mode", "device", "gpus", "counter", "machine", "torch", "threads", "date", "command", "elapsed_s",
          "errors")


@dataclass(frozen=True)
class Mode:
    """What one mode measures: the sizes of every part and each part's time budget (seconds; None: none)."""

    name: str
    roles: Mapping[str, str]            # role -> backbone
    resolution: int
    batch: int | None                   # None: the paper config's batch_size (and test_batch_size for passes)
    num_samples: int                    # N of the per-sample state (CIFAR-100: 50,000)
    num_classes: int
    sync_steps: int                     # steps of a counted epoch (>= 3)
    pass_batches: tuple[int, int]       # the two pass lengths whose difference is counted
    speed_precisions: tuple[str, ...]
    speed_steps: int
    speed_rounds: int
    loader_images: int
    loader_image_size: tuple[int, int]  # (width, height) of the JPEG files
    loader_resolution: int | None       # None: the own-data config's (224)
    memory_steps: int
    nccl_timeout_s: float
    torch_threads: int | None           # on the CPU (None: torch's default)
    budgets: Mapping[str, float] | None


FULL = Mode("full", roles={"cnn": "resnet50", "vit": "ViT-B"}, resolution=224, batch=None, num_samples=50_000,
            num_classes=100, sync_steps=6, pass_batches=(2, 4), speed_precisions=PRECISIONS, speed_steps=4,
            speed_rounds=5, loader_images=4096, loader_image_size=(500, 375), loader_resolution=None,
            memory_steps=2, nccl_timeout_s=240.0, torch_threads=None,
            # a part stops starting measurements once its budget is spent, so it may overrun by one measurement
            # (the longest: ViT-B fp32 speed, about 40 s estimated on an H100); on one GPU 470 s in all
            budgets={"host_syncs": 130, "pass_syncs": 30, "speed": 180, "loader": 80, "memory": 50, "nccl": 300})
# One torch thread on the CPU: at 2 threads a loaded machine's spinning OpenMP threads cost 10-50x the CPU time.
TINY = Mode("tiny", roles={"cnn": "test_resnet", "vit": "test_vit"}, resolution=16, batch=8, num_samples=64,
            num_classes=10, sync_steps=4, pass_batches=(1, 2), speed_precisions=("fp32", "bf16"), speed_steps=1,
            speed_rounds=2, loader_images=48, loader_image_size=(40, 30), loader_resolution=16, memory_steps=2,
            nccl_timeout_s=240.0, torch_threads=1, budgets=None)


# --------------------------------------------------------------------------------------------------------------
# the JSON's shape, declared once
# --------------------------------------------------------------------------------------------------------------

def record(kind: str, *, skipped: str | None = None, error: str | None = None, **values) -> dict:
    """A record of ``kind`` (a key of :data:`RECORDS`): every field given, none other (a measurement that forgets
    one fails here, in every mode alike), then ``skipped`` and ``error``."""
    fields = RECORDS[kind]
    missing, unknown = set(fields) - set(values), set(values) - set(fields)
    if missing or unknown:
        raise TypeError(f"{kind} record: missing {sorted(missing)}, unknown {sorted(unknown)}")
    return {**{name: values[name] for name in fields}, "skipped": skipped, "error": error}


def empty_record(kind: str, *, skipped: str | None = None, error: str | None = None) -> dict:
    """A record of ``kind`` with every value null: not measured (``skipped``) or failed (``error``)."""
    return record(kind, skipped=skipped, error=error, **dict.fromkeys(RECORDS[kind]))


def schema() -> dict[tuple[str, ...], str]:
    """Every record of the JSON: its path -> its kind.  The same in every mode and on every device."""
    paths: dict[tuple[str, ...], str] = {}
    for method in SYNC_METHODS:
        for precision in PRECISIONS:
            paths[("host_syncs", method, precision, "fresh")] = "syncs"
            paths[("host_syncs", method, precision, "resumed")] = "syncs_resumed"
    for which in PASSES:
        for precision in PRECISIONS:
            paths[("pass_syncs", which, precision)] = "pass_syncs"
    for role in ROLES:
        for precision in PRECISIONS:
            paths[("speed", role, precision)] = "speed"
    for stage in LOADER_STAGES:
        paths[("loader", stage)] = "loader"
    for method in MEMORY_METHODS:
        for role in ROLES:
            paths[("memory", method, role)] = "memory"
    for method in NCCL_PROGRAMS:
        paths[("nccl", method)] = "nccl"
    return paths


def schema_keys() -> set[tuple[str, ...]]:
    """Every key path of the JSON: the header's and each record's fields."""
    return {(key,) for key in HEADER} | {path + (name,) for path, kind in schema().items()
                                         for name in RECORDS[kind] + COMMON}


def result_keys(result: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The key paths of a result as it is: nested dicts are followed down to the records (a dict with an
    ``error`` key), whose fields are leaves."""
    keys: set[tuple[str, ...]] = set()
    for key, value in result.items():
        path = prefix + (key,)
        if isinstance(value, dict) and "error" in value:
            keys |= {path + (name,) for name in value}
        elif isinstance(value, dict) and value:
            keys |= result_keys(value, path)
        else:
            keys.add(path)
    return keys


# --------------------------------------------------------------------------------------------------------------
# what a run measures: the plan
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    """One measurement: it fills the records ``records`` (suffix of ``path``, None for ``path`` itself -> kind);
    ``skipped`` (known when planning) leaves them empty with that reason."""

    path: tuple[str, ...]
    records: Mapping[str | None, str]
    measure: Callable[["Context"], dict]
    skipped: str | None = None

    @property
    def section(self) -> str:
        return self.path[0]

    def paths(self) -> dict[tuple[str, ...], str]:
        return {self.path + ((suffix,) if suffix else ()): kind for suffix, kind in self.records.items()}


def plan(mode: Mode, *, device: torch.device, gpus: int) -> list[Task]:
    """Every measurement of ``mode`` on ``device`` with ``gpus`` GPUs, in the order they run (the loader
    compares itself with the speed measured before it).  Nothing is created or measured here."""
    cuda = device.type == "cuda"
    tasks = []
    for method in SYNC_METHODS:
        for precision in PRECISIONS:
            tasks.append(Task(("host_syncs", method, precision), {"fresh": "syncs", "resumed": "syncs_resumed"},
                              lambda ctx, m=method, p=precision: measure_host_syncs(ctx, m, p)))
    for which in PASSES:
        for precision in PRECISIONS:
            tasks.append(Task(("pass_syncs", which, precision), {None: "pass_syncs"},
                              lambda ctx, w=which, p=precision: measure_pass_syncs(ctx, w, p)))
    for role in ROLES:
        for precision in PRECISIONS:
            skip = None if precision in mode.speed_precisions else \
                f"skipped: --{mode.name} measures {' and '.join(mode.speed_precisions)}"
            tasks.append(Task(("speed", role, precision), {None: "speed"},
                              lambda ctx, r=role, p=precision: measure_speed(ctx, r, p), skipped=skip))
    for stage in LOADER_STAGES:
        tasks.append(Task(("loader", stage), {None: "loader"}, lambda ctx, s=stage: measure_loader(ctx, s)))
    for method in MEMORY_METHODS:
        for role in ROLES:
            # off CUDA only the tiny mode runs the steps (their code path); the full sizes would take hours
            skip = None if cuda or mode is not FULL else \
                f"skipped: no CUDA device ({device.type}): peak GPU memory is measured on CUDA only"
            tasks.append(Task(("memory", method, role), {None: "memory"},
                              lambda ctx, m=method, r=role: measure_memory(ctx, m, r), skipped=skip))
    for method in NCCL_PROGRAMS:
        skip = None if cuda and gpus >= 2 else f"skipped: {gpus if cuda else 0} GPU{'' if gpus == 1 and cuda else 's'}"
        tasks.append(Task(("nccl", method), {None: "nccl"}, lambda ctx, m=method: measure_nccl(ctx, m),
                          skipped=skip))
    return tasks


# --------------------------------------------------------------------------------------------------------------
# the measurements
# --------------------------------------------------------------------------------------------------------------

class CudaMemory:
    """Peak memory of a CUDA device (``torch.cuda``), in bytes."""

    def __init__(self, device: torch.device):
        self.device = device

    def allocated(self) -> int:
        return torch.cuda.memory_allocated(self.device)

    def reset_peak(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> tuple[int, int]:
        """(max allocated, max reserved) since :meth:`reset_peak`."""
        return torch.cuda.max_memory_allocated(self.device), torch.cuda.max_memory_reserved(self.device)


@dataclass(frozen=True)
class Launched:
    exit_code: int | None   # None: killed after the timeout
    seconds: float
    hung: bool
    output: str             # stdout and stderr together


def launch(cmd: list[str], *, timeout: float) -> Launched:
    """Run ``cmd`` in the repository in a session of its own; after ``timeout`` seconds the whole session
    (torchrun and its ranks) is stopped, SIGTERM then SIGKILL."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
        return Launched(proc.returncode, time.monotonic() - start, False, output)
    except subprocess.TimeoutExpired:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                output, _ = proc.communicate(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                output = ""
        return Launched(None, time.monotonic() - start, True, output or "")


@dataclass
class Context:
    """What the measurements share: the mode, the device, a work folder, the results so far, and the parts that
    differ on CUDA (sync counter, memory probe) or start processes (``launch``)."""

    mode: Mode
    device: torch.device
    gpus: int
    folder: str
    results: dict = field(default_factory=dict)
    memory: CudaMemory | None = None
    launch: Callable[..., Launched] = launch
    counter: Callable[[], SyncCounter] | None = None
    _jpeg_folder: str | None = None

    def __post_init__(self):
        if self.counter is None:
            self.counter = lambda: SyncCounter(self.device)
        if self.memory is None and self.device.type == "cuda":
            self.memory = CudaMemory(self.device)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def work_dir(self, *parts: str) -> str:
        path = os.path.join(self.folder, *parts)
        os.makedirs(path, exist_ok=True)
        return path

    def overrides(self, *, role: str, tag: str, precision: str | None = None) -> dict:
        """The ``--set`` values of a measured run: the role's backbone from scratch at the mode's resolution,
        this device, its own output folder; ``precision`` (None: the config's)."""
        values = {"backbone": self.mode.roles[role], "pretrained": False, "resolution": self.mode.resolution,
                  "device": str(self.device), "output_dir": self.work_dir(tag)}
        if self.mode.batch is not None:
            values["batch_size"] = values["test_batch_size"] = self.mode.batch
        if precision is not None:
            values["precision"] = precision
        return values

    def jpeg_folder(self) -> str:
        """An imagefolder of :attr:`Mode.loader_images` JPEG files (10 classes; crops of scikit-learn's two
        photographs: natural content, as decoding cost depends on it), written once."""
        if self._jpeg_folder is None:
            root = self.work_dir("jpeg")
            classes, (width, height) = 10, self.mode.loader_image_size
            per_class = max(1, self.mode.loader_images // classes)

            def write(c: int) -> None:
                folder = os.path.join(root, "train", f"class_{c:02d}")
                os.makedirs(folder, exist_ok=True)
                for i, image in enumerate(photo_crops(per_class, width=width, height=height, seed=c)):
                    image.save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)

            with ThreadPoolExecutor(max_workers=min(classes, os.cpu_count() or 1)) as pool:  # PIL frees the GIL
                list(pool.map(write, range(classes)))
            self._jpeg_folder = root
        return self._jpeg_folder


def _counted_epoch(ctx: Context, setup, batches: list):
    with ctx.counter() as counter:
        return count_epoch(lambda step: setup.train(batches, step=step), setup.step, counter)


def measure_host_syncs(ctx: Context, method: str, precision: str) -> dict:
    """Syncs per step of ``method`` in ``precision``: a fresh run's epoch; then last.pt written and read back as
    ``--resume`` does (a new set-up, ``Run.load_state``), timed to the end of the first step, and an epoch counted."""
    mode, tag = ctx.mode, f"syncs_{method}_{precision}"
    overrides = ctx.overrides(role="cnn", tag=tag, precision=precision)
    run = method_run(method, overrides=overrides)
    setup = build_setup(method, run, num_samples=mode.num_samples, num_classes=mode.num_classes)
    cfg = run.cfg
    batches = synthetic_batches(steps=mode.sync_steps, batch=cfg.batch_size, resolution=cfg.resolution,
                                views=setup.views, num_samples=mode.num_samples, num_classes=mode.num_classes,
                                pin=ctx.cuda)
    fresh = _counted_epoch(ctx, setup, batches)
    run.save_state({"epoch": setup.epoch, **setup.checkpoint_state()}, fingerprint=FINGERPRINT, parts=setup.parts)
    del setup
    ctx.free()

    resumed_run = method_run(method, overrides=overrides, resume=True)
    resumed = build_setup(method, resumed_run, num_samples=mode.num_samples, num_classes=mode.num_classes)
    ctx.synchronize()
    start = time.perf_counter()
    state = resumed_run.load_state(fingerprint=FINGERPRINT, parts=resumed.parts)
    resumed.resume(state)
    ctx.synchronize()
    load_s = time.perf_counter() - start
    resumed.train(batches[:1])  # ends with the epoch's one read of its loss: the first step has finished
    to_first_step_s = time.perf_counter() - start
    after = _counted_epoch(ctx, resumed, batches)
    del resumed, state
    ctx.free()
    common = dict(backbone=cfg.backbone, batch_size=cfg.batch_size)
    return {"fresh": record("syncs", **common, **asdict(fresh)),
            "resumed": record("syncs_resumed", **common, **asdict(after), load_s=round(load_s, 3),
                              to_first_step_s=round(to_first_step_s, 3))}


def measure_pass_syncs(ctx: Context, which: str, precision: str) -> dict:
    """Syncs per batch of ``which`` (``evaluate``, or ``predict_labels`` with content digests: the per-sample
    report's pass) with the stage-1 model at the config's test_batch_size: the difference between a pass of
    ``pass_batches[1]`` and one of ``pass_batches[0]`` batches, per batch; ``fixed``: the rest of a pass."""
    mode = ctx.mode
    run = method_run("stage1", overrides=ctx.overrides(role="cnn", tag=f"pass_{which}_{precision}",
                                                        precision=precision))
    cfg = run.cfg
    net = create_model(cfg.backbone, num_classes=mode.num_classes, pretrained=False, img_size=cfg.resolution)
    place_model(net, run)
    batch, (few, many) = cfg.test_batch_size, mode.pass_batches
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (many * batch, 3, cfg.resolution, cfg.resolution), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, mode.num_classes, (many * batch,), generator=g)
    index = torch.arange(many * batch)
    # the report's items carry each file's content digest (DigestedImages), copied to the device per batch
    digests = torch.randint(0, 256, (many * batch, DigestedImages.DIGEST_SIZE), dtype=torch.uint8, generator=g)
    normalise = DeviceNormaliser(MEAN, STD)
    kw = dict(precision=run.precision, runtime=run.runtime, channels_last=cfg.channels_last, normalise=normalise)

    def run_pass(batches: int) -> None:
        n = batches * batch
        if which == "evaluate":
            loader = [(images[i:i + batch], labels[i:i + batch], index[i:i + batch]) for i in range(0, n, batch)]
            evaluate(net, loader, **kw)
        else:
            predict_labels(net, TensorDataset(images[:n], labels[:n], index[:n], digests[:n]), batch_size=batch,
                           num_workers=0, digest_size=DigestedImages.DIGEST_SIZE, **kw)

    run_pass(few)  # warm-up: kernels chosen, memory allocated
    with ctx.counter() as counter:
        run_pass(few)
        count_few, sites_few = counter.total, counter.sites
        run_pass(many)
        count_many, sites_many = counter.total - count_few, counter.sites - sites_few
    per_batch = (count_many - count_few) / (many - few)
    sites = {name: round(n / (many - few), 3) for name, n in (sites_many - sites_few).most_common(10)}
    return {None: record("pass_syncs", backbone=cfg.backbone, batch_size=batch, per_batch=per_batch,
                         fixed=count_few - few * per_batch, sites=sites)}


def measure_speed(ctx: Context, role: str, precision: str) -> dict:
    """Images/s of plain cross-entropy, stage 1 and stage 2 (global, class-wise) steps with ``role``'s model at the
    stage-1 paper config's batch size, and the paired ratios (benchmarks/overhead.py)."""
    mode = ctx.mode
    cfg = paper_config("stage1", overrides=ctx.overrides(role=role, tag="speed", precision=precision))
    times = step_benchmark(device=ctx.device, backbone=cfg.backbone, resolution=cfg.resolution, batch=cfg.batch_size,
                           classes=mode.num_classes, steps=mode.speed_steps, rounds=mode.speed_rounds,
                           precision=precision, channels_last=cfg.channels_last)
    ctx.free()

    def rate(name: str) -> float:
        return round(cfg.batch_size / statistics.median(times[name]), 2)

    def ratio(variant: str, baseline: str) -> float:
        return round(paired_ratio(times, variant, baseline), 4)

    return {None: record(
        "speed", backbone=cfg.backbone, resolution=cfg.resolution, batch_size=cfg.batch_size,
        channels_last=cfg.channels_last, plain_images_per_s=rate("plain CE"), stage1_images_per_s=rate("stage 1"),
        two_view_images_per_s=rate("two-view CE"), stage2_global_images_per_s=rate("stage 2 global"),
        stage2_class_images_per_s=rate("stage 2 class"), stage1_over_plain=ratio("stage 1", "plain CE"),
        stage2_global_over_two_view=ratio("stage 2 global", "two-view CE"),
        stage2_class_over_two_view=ratio("stage 2 class", "two-view CE"), steps=mode.speed_steps,
        rounds=mode.speed_rounds, matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
        cudnn_tf32=torch.backends.cudnn.allow_tf32, cudnn_benchmark=torch.backends.cudnn.benchmark)}


def measure_loader(ctx: Context, stage: str) -> dict:
    """One epoch of the own-data training loader (imagefolder config, the config's workers and batch size) over
    the JPEG folder; images/s once every worker has delivered its first batch, and against the step's."""
    mode = ctx.mode
    config = config_path(stage, dataset="imagefolder")
    overrides = {"data_path": ctx.jpeg_folder(), "output_dir": ctx.work_dir(f"loader_{stage}"),
                 "device": str(ctx.device)}
    if mode.loader_resolution is not None:
        overrides["resolution"] = mode.loader_resolution
    if mode.batch is not None:
        overrides["batch_size"] = mode.batch
    run = method_run(stage, overrides=overrides, config=config)
    cfg = run.cfg
    data = build_data(cfg, stage=stage, log=run.log.detail)
    loader, _ = make_loaders(data.train, {}, cfg, run.runtime)
    workers, _ = resolve_num_workers(cfg.num_workers)
    seed_epoch(cfg.seed, 0, run.runtime, (loader,))
    start = time.perf_counter()
    arrivals, sizes = [], []
    for _images, labels, _index in loader:
        arrivals.append(time.perf_counter())
        sizes.append(len(labels))
    if len(arrivals) < 3:
        raise ValueError(f"the loader measurement needs 3 batches or more, got {len(arrivals)}")
    steady = min(max(workers, 1), len(arrivals) - 2)  # by then every worker has delivered its first batch
    rate = sum(sizes[steady + 1:]) / (arrivals[-1] - arrivals[steady])
    speed = ctx.results.get("speed", {}).get("cnn", {})
    key = "stage1_images_per_s" if stage == "stage1" else "stage2_class_images_per_s"
    step = {p: (speed.get(p) or {}).get(key) for p in PRECISIONS}
    return {None: record(
        "loader", config=os.path.relpath(config, REPO), workers=workers, batch_size=cfg.batch_size,
        resolution=data.resolution, images=len(data.train), image_size=list(mode.loader_image_size),
        first_batch_s=round(arrivals[0] - start, 3), images_per_s=round(rate, 1),
        epoch_images_per_s=round(sum(sizes) / (arrivals[-1] - start), 1), step_images_per_s=step,
        loader_over_step={p: None if not v else round(rate / v, 3) for p, v in step.items()})}


def measure_memory(ctx: Context, method: str, role: str) -> dict:
    """Peak memory of ``Mode.memory_steps`` steps of ``method`` at its paper config (batch size, precision,
    channels_last) with ``role``'s model; off CUDA the steps run and the values are null."""
    mode, setup_name = ctx.mode, MEMORY_METHODS[method]
    ctx.free()
    before = ctx.memory.allocated() if ctx.memory else None
    if ctx.memory:
        ctx.memory.reset_peak()
    run = method_run(setup_name, overrides=ctx.overrides(role=role, tag=f"memory_{method}_{role}"))
    cfg = run.cfg
    setup = build_setup(setup_name, run, num_samples=mode.num_samples, num_classes=mode.num_classes)
    setup.train(synthetic_batches(steps=mode.memory_steps, batch=cfg.batch_size, resolution=cfg.resolution,
                                  views=setup.views, num_samples=mode.num_samples, num_classes=mode.num_classes,
                                  pin=ctx.cuda))
    ctx.synchronize()
    peak, reserved = ctx.memory.peak() if ctx.memory else (None, None)
    del setup
    ctx.free()

    def mib(value):
        return None if value is None else round(value / MIB, 1)

    note = None if ctx.memory else (f"null: no CUDA device ({ctx.device.type}); torch.cuda.max_memory_allocated "
                                    "measures CUDA memory only")
    return {None: record(
        "memory", config=os.path.relpath(config_path(setup_name), REPO), backbone=cfg.backbone,
        batch_size=cfg.batch_size, precision=cfg.precision, channels_last=cfg.channels_last,
        resolution=cfg.resolution, num_samples=mode.num_samples, allocated_before_mib=mib(before),
        peak_allocated_mib=mib(peak), peak_reserved_mib=mib(reserved), note=note)}


def nccl_command(method: str, *, output_dir: str) -> list[str]:
    """``torchrun --standalone --nproc_per_node=2`` of ``method``'s entry point on digits, CUDA, tiny epochs."""
    program, extra = NCCL_PROGRAMS[method]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", program,
            "--device", "cuda", "--output_dir", output_dir, "--set", "batch_size=128", *extra]


def measure_nccl(ctx: Context, method: str) -> dict:
    """The 2-process run of ``method``: exit status, seconds, whether it hung (killed after the timeout) and
    whether every rank destroyed its process group (torch warns at exit when one did not)."""
    cmd = nccl_command(method, output_dir=ctx.work_dir("nccl"))
    done = ctx.launch(cmd, timeout=ctx.mode.nccl_timeout_s)
    return {None: record("nccl", command=shlex.join(cmd), exit_code=done.exit_code, seconds=round(done.seconds, 1),
                         hung=done.hung, group_destroyed=done.exit_code == 0 and NOT_DESTROYED not in done.output,
                         output_tail=done.output[-2000:])}


# --------------------------------------------------------------------------------------------------------------
# running the plan
# --------------------------------------------------------------------------------------------------------------

def _place(results: dict, path: tuple[str, ...], value: dict) -> None:
    node = results
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def run_tasks(tasks: list[Task], ctx: Context, *, clock: Callable[[], float] = time.monotonic,
              log: Callable[[str], None] = print) -> dict:
    """Run ``tasks`` in order into ``ctx.results`` (nested by path) and return it.  A task whose section has spent
    its budget (``ctx.mode.budgets``) is skipped; a UsageError (a precision the GPU lacks) skips it with its line;
    any other exception is the task's ``error`` (its traceback printed) and the rest still run."""
    budgets = ctx.mode.budgets or {}
    section_start: dict[str, float] = {}
    for number, task in enumerate(tasks, 1):
        start = clock()
        section_start.setdefault(task.section, start)
        spent = start - section_start[task.section]
        budget = budgets.get(task.section)
        outcome, filled = "measured", None
        if task.skipped:
            outcome = task.skipped
        elif budget is not None and spent > budget:
            outcome = f"skipped: the {task.section} part had spent its budget of {budget:g} s"
        else:
            try:
                filled = task.measure(ctx)
                if set(filled) != set(task.records):
                    raise TypeError(f"{'/'.join(task.path)} filled {sorted(map(str, filled))}, expected "
                                    f"{sorted(map(str, task.records))}")
            except UsageError as err:
                outcome, filled = f"skipped: {user_message(err)}", None
            except Exception as err:  # noqa: BLE001 - one failed measurement must not lose the others
                traceback.print_exc()
                outcome, filled = f"error: {type(err).__name__}: {err}", None
                ctx.free()
        for suffix, kind in task.records.items():
            path = task.path + ((suffix,) if suffix else ())
            if filled is not None:
                value = filled[suffix]
            elif outcome.startswith("error: "):
                value = empty_record(kind, error=outcome[len("error: "):])
            else:
                value = empty_record(kind, skipped=outcome)
            _place(ctx.results, path, value)
        log(f"[gpu_check {number}/{len(tasks)}] {'/'.join(task.path)}: {outcome} ({clock() - start:.1f} s)")
    return ctx.results


def errors(results: Mapping[str, Any]) -> list[str]:
    """``path: error`` of every record that failed."""
    out = []
    for path in schema():
        node: Any = results
        for key in path:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if node.get("error"):
            out.append(f"{'/'.join(path)}: {node['error']}")
    return out


# --------------------------------------------------------------------------------------------------------------
# the report (docs/performance.md with --write-docs)
# --------------------------------------------------------------------------------------------------------------

def _cell(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, spec) if spec and isinstance(value, (int, float)) else str(value)


def _sites(sites: Mapping[str, float] | None, top: int = 3) -> str:
    if not sites:
        return "-"
    return ", ".join(f"`{name}` {_cell(n, 'g')}" for name, n in list(sites.items())[:top])


def _why(rec: Mapping[str, Any]) -> str | None:
    return rec.get("skipped") or (f"error: {rec['error']}" if rec.get("error") else None)


def _skipped_row(labels: Sequence[str], why: str, columns: int) -> str:
    """A table row of ``columns`` cells for a measurement not made: its label cells, the reason, the rest empty."""
    return "| " + " | ".join([*labels, why]) + " |" + " |" * (columns - len(labels) - 1)


def render_section(result: Mapping[str, Any]) -> str:
    """The markdown section of ``result`` for docs/performance.md, between :data:`BEGIN` and :data:`END`."""
    lines = [BEGIN, "## The first day on a GPU node (`benchmarks/gpu_check.py`)", "",
             f"Measured by `{result['command']}` on {result['machine']}, device `{result['device']}` "
             f"({result['gpus']} GPU{'' if result['gpus'] == 1 else 's'}), {result['date']}, mode {result['mode']}, "
             f"{result['elapsed_s']:.0f} s; host syncs counted by {result['counter']}.", "",
             "### Host syncs per training step", "",
             "A step is one iteration of the engine (forward, bookkeeping, backward, optimiser step, the next "
             "batch to the device); the first step includes what the first iteration creates; the epoch total "
             "includes the end of the epoch.", "",
             "| method | precision | fresh: per step | first step | epoch total (steps) | resumed: per step | "
             "where (resumed, per step) |", "|---|---|---|---|---|---|---|"]
    syncs = result["host_syncs"]
    for method in SYNC_METHODS:
        for precision in PRECISIONS:
            fresh, resumed = syncs[method][precision]["fresh"], syncs[method][precision]["resumed"]
            why = _why(fresh) or _why(resumed)
            if why:
                lines.append(_skipped_row([method, precision], why, 7))
                continue
            lines.append(f"| {method} | {precision} | {fresh['per_step']} | {fresh['first_step']} | "
                         f"{fresh['epoch_total']} ({fresh['steps']}) | {resumed['per_step']} | "
                         f"{_sites(resumed['sites'])} |")
    lines += ["", "### Host syncs per batch of the evaluation passes", "",
              "| pass | precision | per batch | per pass (fixed) | where |", "|---|---|---|---|---|"]
    for which in PASSES:
        for precision in PRECISIONS:
            rec = result["pass_syncs"][which][precision]
            lines.append(_skipped_row([which, precision], _why(rec), 5) if _why(rec) else
                         f"| {which} | {precision} | {_cell(rec['per_batch'], 'g')} | {_cell(rec['fixed'], 'g')} | "
                         f"{_sites(rec['sites'])} |")
    lines += ["", "### Training step: images/s against plain cross-entropy (same model, input, precision)", "",
              "| model | precision | batch | plain CE | stage 1 | stage 1 / plain (time) | two-view CE | "
              "stage 2 class | stage 2 class / two-view (time) | TF32 matmul / cuDNN |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for role in ROLES:
        for precision in PRECISIONS:
            rec = result["speed"][role][precision]
            if _why(rec):
                lines.append(_skipped_row([role, precision], _why(rec), 10))
                continue
            lines.append(f"| {rec['backbone']} | {precision} | {rec['batch_size']} | {rec['plain_images_per_s']:.0f} | "
                         f"{rec['stage1_images_per_s']:.0f} | {rec['stage1_over_plain']:.3f} | "
                         f"{rec['two_view_images_per_s']:.0f} | {rec['stage2_class_images_per_s']:.0f} | "
                         f"{rec['stage2_class_over_two_view']:.3f} | {_cell(rec['matmul_tf32'])} / "
                         f"{_cell(rec['cudnn_tf32'])} |")
    lines += ["", "### Input pipeline: JPEG files through the own-data loader", "",
              "| stage | workers | batch | images/s | whole epoch, start included | first batch (s) | "
              "loader / step (fp32, bf16, fp16) |", "|---|---|---|---|---|---|---|"]
    for stage in LOADER_STAGES:
        rec = result["loader"][stage]
        if _why(rec):
            lines.append(_skipped_row([stage], _why(rec), 7))
            continue
        ratios = ", ".join(_cell(rec["loader_over_step"][p], ".2f") for p in PRECISIONS)
        lines.append(f"| {stage} | {rec['workers']} | {rec['batch_size']} | {rec['images_per_s']:.0f} | "
                     f"{rec['epoch_images_per_s']:.0f} | {rec['first_batch_s']:.2f} | {ratios} |")
    lines += ["", "### Peak GPU memory of one step at the paper configs' batch sizes", "",
              "| method | model | batch | precision | peak allocated (MiB) | peak reserved (MiB) |",
              "|---|---|---|---|---|---|"]
    notes = []
    for method in MEMORY_METHODS:
        for role in ROLES:
            rec = result["memory"][method][role]
            if _why(rec):
                lines.append(_skipped_row([method, role], _why(rec), 6))
                continue
            notes += [rec["note"]] if rec["note"] and rec["note"] not in notes else []
            lines.append(f"| {method} | {rec['backbone']} | {rec['batch_size']} | {rec['precision']} | "
                         f"{_cell(rec['peak_allocated_mib'])} | {_cell(rec['peak_reserved_mib'])} |")
    lines += [""] + notes if notes else []
    lines += ["", "### Time to resume (load last.pt, then to the end of the first step)", "",
              "| method | precision | load (s) | to the first step (s) |", "|---|---|---|---|"]
    for method in SYNC_METHODS:
        for precision in PRECISIONS:
            rec = syncs[method][precision]["resumed"]
            lines.append(_skipped_row([method, precision], _why(rec), 4) if _why(rec) else
                         f"| {method} | {precision} | {rec['load_s']:.2f} | {rec['to_first_step_s']:.2f} |")
    lines += ["", "### Two processes under torchrun (NCCL)", "",
              "| method | exit status | seconds | hung | process group destroyed |", "|---|---|---|---|---|"]
    for method in NCCL_PROGRAMS:
        rec = result["nccl"][method]
        lines.append(_skipped_row([method], _why(rec), 5) if _why(rec) else
                     f"| {method} | {_cell(rec['exit_code'])} | {rec['seconds']:.0f} | {_cell(rec['hung'])} | "
                     f"{_cell(rec['group_destroyed'])} |")
    lines += ["", END, ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------------------------

def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda if available, else cpu)")
    parser.add_argument("--tiny", action="store_true", help="small models, few steps: the same keys in seconds")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="FILE", help=f"the JSON (default: {DEFAULT_OUT})")
    parser.add_argument("--write-docs", action="store_true",
                        help=f"also write the report into {DOCS_PAGE}, replacing this benchmark's section there")
    args = parser.parse_args(argv)
    if args.tiny and args.write_docs:
        raise ConfigError(f"--write-docs records a full run in {DOCS_PAGE}; drop --tiny (its JSON goes to --out)")
    mode = TINY if args.tiny else FULL
    device = choose_device(args.device)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    command = " ".join(["python benchmarks/gpu_check.py", shlex.join(sys.argv[1:] if argv is None else argv)]).strip()
    if device.type != "cuda" and mode is FULL:
        print("gpu_check: the full mode on the CPU takes hours; --tiny runs the same code paths in minutes",
              flush=True)
    threads = torch.get_num_threads()
    if mode.torch_threads and device.type == "cpu":
        torch.set_num_threads(mode.torch_threads)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="gpu_check_") as folder:
            ctx = Context(mode, device, gpus, folder)
            tasks = plan(mode, device=device, gpus=gpus)
            print(f"gpu_check: {len(tasks)} measurements ({mode.name} mode) on {device}, {gpus} GPU(s)", flush=True)
            measured = run_tasks(tasks, ctx)
            used_threads, where = torch.get_num_threads(), machine(device)
    finally:
        torch.set_num_threads(threads)
    result = {"mode": mode.name, "device": str(device), "gpus": gpus, "counter": SyncCounter(device).name,
              "machine": where, "torch": torch.__version__, "threads": used_threads,
              "date": time.strftime("%Y-%m-%d"), "command": command,
              "elapsed_s": round(time.monotonic() - started, 1), "errors": 0, **measured}
    failed = errors(result)
    result["errors"] = len(failed)
    save_json(result, args.out)
    section = render_section(result)
    print(section)
    if args.write_docs:
        write_section(section, os.path.join(REPO, DOCS_PAGE), BEGIN, END)
    print(f"gpu_check: {args.out}" + (f"; {len(failed)} measurement(s) failed:\n  " + "\n  ".join(failed)
                                      if failed else ""), flush=True)
    return result


def _main_with_status(argv=None) -> None:
    if errors(main(argv)):
        sys.exit(1)


if __name__ == "__main__":
    run_main(_main_with_status)
