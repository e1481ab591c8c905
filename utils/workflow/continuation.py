"""What a re-run of the same command does with each stage it runs (clean_labels.py): a finished stage is kept,
a stopped one continues from its ``last.pt``, any other starts anew.

*Finished*: every file the method writes at its end is there (utils/training/outputs.py: ``finished_files``), none
newer than the result JSON, which a run writes last (utils/workflow/lifecycle.py), and that JSON records this
very data (fingerprint of samples and noisy labels) and these training settings.  A stop or a failure before the
result JSON, or a later run of other settings stopped part-way, leaves an output newer than it: not finished.
*Stopped*: ``checkpoint/{run}/last.pt`` belongs to this very run (the fingerprint and settings that
``--resume`` requires, utils/training/run.py: ``Run.load_state``); its epochs may all be done (a stop during
the report), then ``--resume`` writes the outputs.  ``after``: the result JSON of the stage this one starts
from (stage 2: stage 1's); outputs or a ``last.pt`` older than it belong to an earlier stage 1.

The modification times order the files of one output folder; a copy that does not keep them (``cp`` without
``-p``) makes a finished stage look unfinished, which costs a re-run of its end (or of the stage), never a
stale result.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable, Union

import torch

from utils.training.outputs import Outputs
from utils.training.run import settings_differences, training_settings

Fingerprint = Union[str, Callable[[], str]]  # the data's fingerprint, or a function that computes it (lists the data)


NEXT_STEPS = ("finished", "resume", "start")  # keep the stage, continue it with --resume, start it


@dataclass(frozen=True)
class Stopped:
    """A stopped run that ``--resume`` continues: its ``last.pt`` and the epochs it holds."""

    last: str
    epochs_done: int
    epochs: int


def _mtime(path: str) -> int:
    return os.stat(path).st_mtime_ns


def _fingerprint(value: Fingerprint) -> str:
    return value() if callable(value) else value


def finished_result(outputs: Outputs, cfg, fingerprint: Fingerprint, *, after: str | None = None) -> str | None:
    """The result JSON of ``outputs`` when they hold a finished run of ``cfg`` on the data of ``fingerprint``
    (computed only once the files and settings match), else None."""
    files = outputs.finished_files(export_samples=cfg.export_samples)
    if not all(os.path.isfile(path) for path in files):
        return None
    written = _mtime(outputs.result)
    if any(_mtime(path) > written for path in files):
        return None
    if after is not None and (not os.path.isfile(after) or _mtime(after) > written):
        return None
    try:
        with open(outputs.result, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    settings = meta.get("settings") if isinstance(meta, dict) else None
    if not isinstance(settings, dict) or settings_differences(settings, json.loads(json.dumps(training_settings(cfg)))):
        return None
    return outputs.result if meta.get("fingerprint") == _fingerprint(fingerprint) else None


def stopped_run(outputs: Outputs, cfg, fingerprint: Fingerprint, *, after: str | None = None) -> Stopped | None:
    """The ``last.pt`` of ``outputs``' run folder when ``--resume`` continues it for ``cfg`` on the data of
    ``fingerprint``, else None (none there, unreadable, other data or settings, older than ``after``)."""
    path = outputs.run.last
    if not os.path.isfile(path) or (after is not None and os.path.isfile(after) and _mtime(path) < _mtime(after)):
        return None
    try:  # mapped, not read: only a few small entries are looked at
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a damaged or foreign file: the run starts anew and replaces it
        return None
    settings = state.get("settings") if isinstance(state, dict) else None
    if not isinstance(settings, dict) or settings_differences(settings, training_settings(cfg)) \
            or not isinstance(state.get("epoch"), int):
        return None
    if state.get("fingerprint") != _fingerprint(fingerprint):
        return None
    return Stopped(path, state["epoch"] + 1, cfg.epochs)


def next_step(name: str, cfg, outputs: Outputs, fingerprint: Fingerprint, *, after: str | None = None
              ) -> tuple[str, str | None]:
    """What a re-run does with the stage ``name`` (``"stage 2"``) of ``cfg``: one of :data:`NEXT_STEPS` and the
    line that says so (None for a start).  ``fingerprint`` is computed at most once."""
    cached: list[str] = []

    def once() -> str:
        if not cached:
            cached.append(_fingerprint(fingerprint))
        return cached[0]

    done = finished_result(outputs, cfg, once, after=after)
    if done:
        return "finished", f"{name} of this data and these settings is complete ({done}); kept"
    stopped = stopped_run(outputs, cfg, once, after=after)
    if stopped is None:
        return "start", None
    if stopped.epochs_done >= stopped.epochs:
        return "resume", (f"{name} was stopped after its last epoch ({stopped.epochs}), before its outputs were "
                          f"written; writing them from {stopped.last}")
    return "resume", f"{name} was stopped after epoch {stopped.epochs_done} of {stopped.epochs}; continuing it from " \
                     f"{stopped.last}"
