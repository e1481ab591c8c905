"""Run directory ``checkpoint/{run}/``: config.yaml, train.log, metrics.csv, last.pt and per-epoch
records too large to pickle whole into every last.pt (``{name}.jsonl``, one line per epoch).

Only the main process writes; every method is a no-op elsewhere.
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
from typing import Mapping

import torch
from tqdm import tqdm

from utils.training.checkpoint_arrays import read_npy_into, remove_unreferenced, save_arrays
from utils.core.errors import DataError
from utils.core.entry import remember_checkpoint
from utils.core.io import append_text, save_text, save_torch
from utils.core.signals import deferred_interrupt
from utils.training.outputs import RunFiles

ARRAYS_KEY = "arrays"  # last.pt: {name: {"file", "shape", "dtype"}} of the tensors kept in files of their own


class RunLog:
    """``held``: lines are printed and kept in memory, not written, until :meth:`open` (a run that may still
    refuse to start leaves the files of the run before it as they were)."""

    def __init__(self, files: RunFiles | str, *, enabled: bool = True, held: bool = False):
        self.files = files if isinstance(files, RunFiles) else RunFiles.at(files)  # a str: the run folder
        self.run_dir = run_dir = self.files.folder
        self.enabled = enabled
        self.last_path = self.files.last
        self._held: list[str] | None = [] if held else None
        if enabled:
            if not held:  # a held run makes its folder when it starts writing (a refused run leaves none)
                os.makedirs(run_dir, exist_ok=True)
            # a stop names last.pt once this run has saved one (or resumed from it: Run.load_state), not an
            # older run's file at the same place, nor the last.pt of the stage before (clean_labels.py)
            remember_checkpoint(None)

    def info(self, message: str) -> None:
        """Print a line and append it, time-stamped, to train.log."""
        if not self.enabled:
            return
        tqdm.write(message)
        self.detail(message)

    def detail(self, message: str) -> None:
        """Append a line, time-stamped, to train.log only (the console shows the run's summary instead)."""
        if not self.enabled:
            return
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n"
        if self._held is not None:
            self._held.append(line)
            return
        append_text(line, self.files.log)

    def open(self, cfg, *, fresh: bool) -> None:
        """Start writing: a ``fresh`` run replaces train.log; config.yaml is written; held lines follow."""
        if not self.enabled:
            return
        os.makedirs(self.run_dir, exist_ok=True)
        if fresh and os.path.exists(self.files.log):  # a fresh run starts a fresh log
            os.remove(self.files.log)
        self.write_config(cfg)
        held, self._held = self._held or [], None
        if held:
            append_text("".join(held), self.files.log)

    def write_config(self, cfg) -> None:
        if self.enabled:
            save_text(cfg.to_yaml(), self.files.config)

    def write_metrics(self, history: list[dict]) -> None:
        """Rewrite metrics.csv from the whole epoch history (one row per finished epoch)."""
        if not self.enabled or not history:
            return
        fields: list[str] = []
        for row in history:
            fields += [k for k in row if k not in fields]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(history)
        save_text(buf.getvalue(), self.files.metrics)

    def save_state(self, state: dict, arrays: Mapping[str, torch.Tensor] = {}) -> None:
        """Write last.pt atomically (a crash keeps the previous epoch's file; Ctrl-C waits for the save).

        ``arrays`` (large tensors, e.g. ACTO's N x C bank) go to ``.npy`` files of their own first, streamed
        in blocks; last.pt names them under ``"arrays"`` and the files of the previous last.pt are removed
        after it is replaced (utils/training/checkpoint_arrays.py: what each crash window leaves)."""
        if self.enabled:
            with deferred_interrupt():
                entries = save_arrays(self.run_dir, arrays)
                save_torch({**state, ARRAYS_KEY: entries}, self.last_path)
                remember_checkpoint(self.last_path)
                remove_unreferenced(self.run_dir, entries)

    def append_record(self, name: str, record, *, first: bool = False) -> None:
        """Append one epoch's ``record`` (JSON) as a line of ``{name}.jsonl`` (``first``: start the file
        anew): O(1) per epoch, where a growing list inside last.pt would be pickled whole every epoch."""
        if self.enabled:
            (save_text if first else append_text)(json.dumps(record) + "\n", self.files.record(name))

    def read_records(self, name: str, epochs: int) -> list:
        """The records of the first ``epochs`` epochs (for ``--resume``); lines after them, from an epoch
        whose last.pt was never written, are dropped from the file."""
        path = self.files.record(name)
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().split("\n")
            records = [json.loads(line) for line in lines[:epochs]]
        except (OSError, ValueError) as err:
            raise DataError(f"--resume: cannot read {epochs} epochs from {path} ({err}); start without --resume") \
                from None
        if len(records) < epochs:
            raise DataError(f"--resume: {path} holds {len(records)} epochs, {self.last_path} {epochs}; start "
                            "without --resume")
        if self.enabled and len(lines) > epochs + 1:
            save_text("".join(json.dumps(r) + "\n" for r in records), path)
        return records

    def load_state(self) -> dict:
        """last.pt, every tensor on the CPU.

        Why not onto the training device: each part's ``load_state_dict`` places its tensors itself, as a fresh
        run has them.  A torch optimiser moves its state to its parameters' device, except the scalar ``step``
        counts of a non-fused optimiser, which stay where they were loaded: loaded onto a GPU they made foreach
        AdamW read each one back to the host in every step (about 160 host syncs per step for a ResNet-50),
        where a fresh run keeps them on the CPU."""
        if not os.path.isfile(self.last_path):
            raise DataError(f"--resume: no checkpoint at {self.last_path} (run without --resume to start, or set "
                            "run_name/output_dir to the run to continue)")
        try:
            return torch.load(self.last_path, map_location="cpu", weights_only=True)
        except Exception as err:  # a foreign or damaged file: say which and why
            raise DataError(f"--resume: cannot read {self.last_path}: {err}") from None

    def load_arrays(self, state: dict, arrays: Mapping[str, torch.Tensor]) -> None:
        """Fill every tensor of ``arrays`` in place from the file that last.pt (``state``) names for it."""
        entries = state.get(ARRAYS_KEY) or {}
        for name, tensor in arrays.items():
            if name not in entries:
                raise DataError(f"--resume: {self.last_path} names no file for {name}; start without --resume")
            path = os.path.join(self.run_dir, entries[name]["file"])
            try:
                read_npy_into(tensor, path)
            except (OSError, ValueError) as err:
                raise DataError(f"--resume: cannot read {name} of {self.last_path}: {err}; start without "
                                "--resume") from None
