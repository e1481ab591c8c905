"""What every entry point does first: parse the config, pick the device, open the run directory."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from dataloader.image_check import check_images
from utils.training.config import OPTION_BY_NAME, Config, parse_command_line
from utils.core.distributed import Runtime, choose_device, data_parallel, setup_runtime
from utils.core.gpu import resolve_channels_last, resolve_precision, set_backends
from utils.training.engine import Precision, seed_everything
from utils.core.entry import remember_checkpoint
from utils.core.errors import ConfigError, DataError
from utils.core.io import unwritable
from utils.training.outputs import Outputs, print_outputs
from utils.training.runlog import RunLog
from utils.core.workers import resolve_num_workers


def device_settings(cfg: Config, device: torch.device) -> tuple[Config, list[str]]:
    """``cfg`` with ``precision: auto`` and ``channels_last: auto`` decided for ``device``
    (:mod:`utils.core.gpu`), and a log line for each key decided.  The decided values are what a run
    records in its settings, so a ``--resume`` or a reuse of stage 1 on another kind of device is refused
    naming the key instead of silently training on in another precision."""
    changes, notes = {}, []
    if cfg.precision == "auto":
        changes["precision"] = resolve_precision(cfg.precision, device)
    if cfg.channels_last == "auto":
        changes["channels_last"] = resolve_channels_last(cfg.channels_last, device)
    for key, value in changes.items():
        notes.append(f"{key} auto: {value} on {device}"
                     + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    return (cfg.replace(**changes) if changes else cfg), notes


def settings_device(cfg: Config) -> torch.device:
    """The device whose kind decides ``cfg``'s ``auto`` settings outside a run (clean_labels.py's check whether
    a finished stage 1 can be reused): the device the run would take (:func:`choose_device`), without
    joining a process group or selecting it."""
    return choose_device(cfg.device)


def training_settings(cfg) -> dict:
    """The keys of ``cfg`` that decide what is trained: all but those marked ``resume_free`` (where the files
    are and how the machine runs them), which may differ between a run and its ``--resume``.  Every other key
    must match the checkpoint (the data and noisy labels are compared through the fingerprint as well)."""
    return {k: v for k, v in cfg.items() if not OPTION_BY_NAME[k].resume_free}


def settings_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The keys of ``current`` (:func:`training_settings`) whose value differs in ``saved`` (the settings a
    checkpoint or result JSON recorded), as ``"key: saved there, current here"``.  A key added to the project
    after ``saved`` was written trained at its default then, so it counts as that default."""
    saved = {k: OPTION_BY_NAME[k].default for k in current if k not in saved and k in OPTION_BY_NAME} | dict(saved)
    return [f"{k}: {saved.get(k, '<missing>')!r} there, {current[k]!r} here" for k in current
            if saved.get(k, "<missing>") != current[k]]


def outputs_conflict(meta: dict, *, fingerprint: str, seed: int) -> str | None:
    """What makes the run recorded in ``meta`` (a result JSON) another run than one on data ``fingerprint``
    with ``seed``: None when it is the same, else a few words for the refusal."""
    if meta.get("fingerprint", fingerprint) != fingerprint:
        return "other data or noisy labels"
    if meta.get("seed", seed) != seed:
        return f"seed {meta.get('seed')}, this run seed {seed}"
    return None


@dataclass
class Run:
    cfg: Config
    runtime: Runtime
    log: RunLog
    precision: Precision
    outputs: Outputs
    prog: str = ""
    config_as_given: Config | None = None  # written to config.yaml (num_workers not yet resolved)

    def path(self, *parts: str) -> str:
        """A path under output_dir."""
        return os.path.join(self.cfg.output_dir, *parts)

    def training_settings(self) -> dict:
        return training_settings(self.cfg)

    def claim_outputs(self, *, fingerprint: str) -> None:
        """Refuse, before training, to overwrite the outputs of a run on other data, noisy labels or seed.

        The run's result JSON (``outputs.result``: stage1/{tag}_wrongevent.json, stage2/{tag}_{bmm}.json,
        acto/{tag}.json) is written at its end and records both.  The tag names the setting, not the data or seed, so a
        second folder or seed in the same output_dir would silently replace the first run's files (and
        orphan its stage 2); re-running or resuming the same run is allowed, and ``overwrite: true``
        replaces on purpose.
        """
        conflict, meta_path = None, self.outputs.result
        if not self.cfg.overwrite and os.path.isfile(meta_path):
            try:
                with open(meta_path, encoding="utf-8") as f:
                    meta = json.load(f)
            except (OSError, ValueError):
                meta = {"fingerprint": "<unreadable>"}
            conflict = outputs_conflict(meta if isinstance(meta, dict) else {}, fingerprint=fingerprint,
                                        seed=self.cfg.seed)
        if conflict:
            raise DataError(f"{meta_path} holds the outputs of another run ({conflict}), which this run would "
                            f"overwrite; use another --output_dir (e.g. {self.cfg.output_dir.rstrip('/')}_seed"
                            f"{self.cfg.seed}), or --set overwrite=true to replace them")
        self.log.open(self.config_as_given, fresh=not self.cfg.resume)

    def save_state(self, state: dict, *, fingerprint: str, parts: Mapping[str, Any] = {}) -> None:
        """Write checkpoint/{run}/last.pt: ``state``, the ``state_dict()`` of every object in ``parts``
        (model, optimiser, scheduler, scaler, per-sample statistics, ...) under its name, and what
        identifies the run (fingerprint and settings)."""
        snapshot = {name: part.state_dict() for name, part in parts.items()}
        self.log.save_state({**state, **snapshot, "fingerprint": fingerprint, "settings": self.training_settings(),
                             WORLD_SIZE_KEY: self.runtime.world_size},
                            arrays=_checkpoint_arrays(parts))

    def check_images(self, data) -> None:
        """``check_images: true``: decode every training and test image file once, now; all unreadable
        files are listed in one error and in checkpoint/{run}/bad_images.txt."""
        if self.cfg.check_images:
            check_images({"train": data.train, **data.test_sets}, workers=self.cfg.num_workers,
                         report_path=self.outputs.run.bad_images, log=self.log.info,
                         rank=self.runtime.rank, world_size=self.runtime.world_size)

    def load_state(self, *, fingerprint: str, parts: Mapping[str, Any] = {}) -> dict:
        """The state of ``last.pt`` for ``--resume``, refused unless it belongs to this very run;
        every object in ``parts`` is restored from its entry (``load_state_dict``).

        A checkpoint of other data/noisy labels or of other settings (another lr, number of epochs,
        ...) raises :class:`DataError` naming the difference, instead of silently continuing a stale run;
        so does one written by another number of processes (batch_size is per process: the global batch and
        the sample order would change).

        last.pt is read onto the CPU and each part's ``load_state_dict`` places its tensors where the part
        keeps them, as a fresh run has them (:meth:`utils.training.runlog.RunLog.load_state`).
        """
        state = self.log.load_state()
        path = self.log.last_path
        if state.get("fingerprint") != fingerprint:
            raise DataError(f"--resume: {path} was written for other data or noisy labels; start without --resume "
                            "or set another run_name")
        differ = settings_differences(state.get("settings") or {}, self.training_settings())
        if differ:
            shown = ", ".join(differ[:3])
            raise DataError(f"--resume: {path} belongs to a run with other settings ({shown}); resume with the "
                            "settings of that run, or start without --resume to begin a new one")
        check_world_size(state.get(WORLD_SIZE_KEY), self.runtime.world_size, batch_size=self.cfg.batch_size,
                         path=path)
        for name, part in parts.items():
            part.load_state_dict(state[name])
        arrays = _checkpoint_arrays(parts, held_by=state)
        if arrays:
            self.log.load_arrays(state, arrays)
        self.log.info(f"resumed from {path} after epoch {state['epoch'] + 1}")
        if self.runtime.is_main:  # a stop from here on names it: it holds this run's finished epochs
            remember_checkpoint(path)
        return state


WORLD_SIZE_KEY = "world_size"  # last.pt: the number of processes that trained it


def _processes(n: int, batch_size: int) -> str:
    return f"{n} process{'es' if n > 1 else ''} (global batch {n * batch_size})"


def check_world_size(saved: int | None, current: int, *, batch_size: int, path: str) -> None:
    """Refuse, with one line, to resume a checkpoint of ``saved`` processes with ``current`` ones: batch_size is
    per process, so the global batch (the recipe, at the same learning rate) and every epoch's sample order
    would change.  ``saved`` None: a last.pt written before the world size was recorded (not checked)."""
    if saved is None or int(saved) == current:
        return
    saved = int(saved)
    relaunch = (f"{saved} processes (torchrun, nodes x nproc_per_node = {saved})" if saved > 1
                else "one process (without torchrun)")
    raise DataError(f"--resume: {path} was trained by {_processes(saved, batch_size)}, this run has "
                    f"{_processes(current, batch_size)}; resume with {relaunch}, or start without --resume")


def _checkpoint_arrays(parts: Mapping[str, Any], *, held_by: Mapping[str, Any] | None = None) -> dict:
    """``{"part.key": tensor}`` of the parts' ``checkpoint_arrays()``: large tensors that last.pt does not hold
    (saved to files of their own, restored in place; utils/training/checkpoint_arrays.py).  ``held_by``: a last.pt's
    state; a tensor that a part's entry there holds itself (a last.pt written before the files) is left out."""
    return {f"{name}.{key}": tensor for name, part in parts.items()
            for key, tensor in (part.checkpoint_arrays() if hasattr(part, "checkpoint_arrays") else {}).items()
            if held_by is None or key not in held_by[name]}


def check_writable(files: Outputs, cfg: Config) -> None:
    """Refuse, before anything is read or trained, an output folder no file can be created in (read-only,
    not the user's, below a file): one line naming the folder and the cause, exit status 2.  Every process
    probes (utils/core/io.unwritable), so all ranks of a distributed run stop alike."""
    for folder in files.folders():
        problem = unwritable(folder)
        if problem is not None:
            probed, cause = problem
            raise ConfigError(f"output_dir {cfg.output_dir}: cannot write in {probed} ({cause}); choose a "
                              "writable --output_dir")


def start_run(argv: Sequence[str] | None, *, prog: str, scope: str, outputs: Callable[[Config], Outputs],
              forced: Mapping[str, Any] | None = None, claims_outputs: bool = False) -> Run:
    """Parse and validate the command line, set up devices/processes, and write config.yaml.

    ``outputs`` names the method's files from the config (utils/training/outputs.py), its run folder
    ``checkpoint/{run}`` included; ``--outputs NAME`` prints them and ends here.  ``claims_outputs``: the entry
    point calls :meth:`Run.claim_outputs` once its data are known; until then config.yaml and train.log of an
    earlier run in ``checkpoint/{run}`` are left as they are (the log lines are held).
    """
    cfg, wanted = parse_command_line(argv, prog=prog, scope=scope, forced=forced)
    files = outputs(cfg)
    if wanted is not None:
        print_outputs({scope: files}, wanted)
        raise SystemExit(0)
    check_writable(files, cfg)
    runtime = setup_runtime(cfg.device)
    log = RunLog(files.run, enabled=runtime.is_main, held=claims_outputs)
    if not claims_outputs:
        log.open(cfg, fresh=not cfg.resume)
    log.detail(f"{prog} on {runtime.device} (world size {runtime.world_size}), torch {torch.__version__}")
    # the whole config: always in config.yaml and train.log, on the console with --print_config
    (log.info if cfg.print_config else log.detail)("config:\n" + cfg.to_yaml().rstrip())
    given = cfg  # config.yaml keeps num_workers, precision and channels_last "auto"
    workers, note = resolve_num_workers(cfg.num_workers)
    if note:  # config.yaml keeps "auto"; the loaders get the number (the summary shows it)
        cfg = cfg.replace(num_workers=workers)
        log.detail(note)
    cfg, notes = device_settings(cfg, runtime.device)
    for line in notes:
        log.detail(line)
    set_backends(tf32=cfg.tf32, cudnn_benchmark=cfg.cudnn_benchmark)
    seed_everything(cfg.seed)
    return Run(cfg, runtime, log, Precision.create(cfg.precision, runtime.device), files, prog, config_as_given=given)


def place_model(model: torch.nn.Module, run: Run) -> torch.nn.Module:
    """Move ``model`` to the run's device and return the module to train with.

    The returned module may be a DistributedDataParallel and/or compiled wrapper; save and evaluate
    the original ``model`` (its parameters are shared with the wrapper).
    """
    model.to(run.runtime.device)
    if run.cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    train_model: torch.nn.Module = model
    if run.runtime.distributed:
        train_model = data_parallel(model, run.runtime)
    if run.cfg.compile:
        train_model = torch.compile(train_model)
    return train_model
