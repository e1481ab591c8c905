"""The run lifecycle every training method shares: resume, per-epoch seeding, one training epoch, the method's
end-of-epoch work, the history row and log line, the checkpoint and metrics.csv, then the summary and artefacts
(the result JSON last).

A method (IDO stage 1, IDO stage 2, ACTO, the benchmark's confident-learning baseline) is a :class:`Method`
that states only what is its own: its parts (models, optimisers, per-sample statistics), the training step of
an epoch, its end-of-epoch work (reductions, evaluation, scheduler), its summary and its artefacts.
:func:`run_method` runs any of them the same way, so resume, DDP, stop signals and checkpointing behave alike
everywhere.  Adding a method is one new module with one :class:`Method` subclass; see
``benchmarks/confident_learning.py`` for a small one.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from utils.training.engine import Step, seed_epoch, train_one_epoch
from utils.training.epoch_clock import EpochClock
from utils.report.sample_report import export_sample_report


def fmt(value: float | None, spec: str = ".4f") -> str:
    """``value`` formatted with ``spec`` for a log line, ``"n/a"`` where it is unknown (no true labels)."""
    return "n/a" if value is None else format(value, spec)


class Method:
    """What one training method states of its own; :func:`run_method` runs it.

    A subclass sets, in its constructor (which runs before the lifecycle, so every random draw of model
    creation happens in the order the method states):

    * ``model``: the module ``train_one_epoch`` trains (a DDP / compiled wrapper or a pair of models);
    * ``optimizers``: a tuple; the first one's first learning rate is the ``lr`` of the epoch's stats;
    * ``loader``: the training DataLoader, re-seeded every epoch (:func:`utils.training.engine.seed_epoch`);
    * ``parts``: ``{name: object with state_dict/load_state_dict}`` saved in last.pt and restored by
      ``--resume``; empty (the default) means an unsaved run: no last.pt, no metrics.csv, no resume
      (confident learning's fold models);
    * ``epochs``, ``seed`` (default: the config's), ``name`` (progress bar) and ``checkpoint_every``;

    and implements :meth:`epoch_step` and :meth:`end_epoch`; the other hooks have defaults.
    """

    name = "train"
    parts: Mapping[str, Any] = {}
    checkpoint_every = 1  # last.pt after every k-th epoch (and always after the last)
    optimizers: tuple[torch.optim.Optimizer, ...]

    def __init__(self, run, data):
        self.run, self.data = run, data
        self.cfg = run.cfg
        self.epochs, self.seed = run.cfg.epochs, run.cfg.seed

    # before the first epoch -------------------------------------------------------------------------------
    def start(self) -> None:
        """A fresh run (no ``--resume``): work before epoch 1 (stage 2's first mixture fit)."""

    def resume(self, state: dict) -> list[dict]:
        """``--resume``: the ``parts`` are restored already; restore the rest from ``state`` (last.pt, as
        :meth:`checkpoint_state` wrote it) and return the history rows of the epochs done."""
        return list(state["history"])

    # every epoch ------------------------------------------------------------------------------------------
    def epoch_name(self, epoch: int) -> str:
        """Progress-bar label of ``epoch`` (0-based)."""
        return self.name

    def views(self, epoch: int) -> tuple[bool, ...] | None:
        """For a data set of several views per sample: which of them the step of ``epoch`` reads (the others
        reach it as None, never copied to the device nor normalised); None, the default: every view."""
        return None

    def epoch_step(self, epoch: int) -> Step:
        """The training step ``step(model, batch) -> loss`` of ``epoch`` (0-based); set per-epoch learning
        rates here (read for the epoch's ``lr`` right after)."""
        raise NotImplementedError

    def end_epoch(self, epoch: int, stats: dict) -> tuple[dict | None, str | None]:
        """After the training pass of ``epoch``: reduce the epoch's statistics across processes, evaluate,
        step the scheduler.  ``stats``: ``{"loss": mean training loss, "lr": the first optimiser's learning
        rate during the epoch}``.  Returns the history row (None: no row) and the log line without its
        time (None: no line)."""
        raise NotImplementedError

    def checkpoint_state(self, history: list[dict]) -> dict:
        """What last.pt holds besides the epoch and the ``parts``."""
        return {"history": history}

    # after the last epoch ---------------------------------------------------------------------------------
    def summary(self, history: list[dict]) -> dict:
        """The result of the run (every process)."""
        return {"history": history}

    def sample_report(self) -> dict | None:
        """Keyword arguments of :func:`utils.report.sample_report.export_sample_report` (``model``, ``stem``, ...), or
        None for no per-sample report.  Every process takes its shard of that evaluation pass."""

    def save_results(self, result: dict) -> dict | None:
        """Main process only, after the sample report: write the result files (the model for predict.py
        included), the result JSON (``outputs.result``) last, so that a result JSON no other output is newer
        than marks a finished run (utils/workflow/continuation.py); returns entries to add to the result."""

    def announce(self, result: dict) -> None:
        """Main process only, last: the closing log lines (what was written where)."""


def run_method(method: Method) -> dict:
    """Run ``method`` from its first unfinished epoch to its summary and artefacts; returns its result.

    Per epoch: seed every RNG from (seed, epoch, rank) (a resumed run repeats the uninterrupted one bit for
    bit), the method's step over one pass of its loader, its end-of-epoch work, one log line, last.pt every
    ``checkpoint_every`` epochs and metrics.csv.  A stop signal or a non-finite loss leaves the last.pt of
    the last saved epoch.  On every process of a distributed run; only the main one writes files.
    """
    run, data = method.run, method.data
    cfg, runtime, log = run.cfg, run.runtime, run.log
    saved = bool(method.parts)
    history: list[dict] = []
    start_epoch = 0
    if saved and cfg.resume:
        state = run.load_state(fingerprint=data.fingerprint, parts=method.parts)
        history = method.resume(state)
        start_epoch = state["epoch"] + 1
    else:
        method.start()

    clock = EpochClock(method.epochs)
    for epoch in range(start_epoch, method.epochs):
        seed_epoch(method.seed, epoch, runtime, (method.loader,))
        step = method.epoch_step(epoch)
        lr = method.optimizers[0].param_groups[0]["lr"]  # the scheduler steps at the end of the epoch
        stats = train_one_epoch(model=method.model, loader=method.loader, optimizer=method.optimizers, step=step,
                                precision=run.precision, runtime=runtime, epoch=epoch,
                                channels_last=cfg.channels_last, desc=method.epoch_name(epoch),
                                normalise=data.normalise, views=method.views(epoch))
        skipped = stats.pop("nonfinite_steps", 0)
        if skipped:
            log.info(f"epoch {epoch + 1}: {skipped} step(s) with a non-finite fp16 loss skipped by the gradient "
                     "scaler (left out of the epoch's loss)")
        row, message = method.end_epoch(epoch, {"lr": lr, **stats})
        if row is not None:
            history.append(row)
        if message is not None:
            log.info(f"{message} | {clock.lap(epoch)}")
        if not saved:
            continue
        # a checkpoint may be costly (ACTO's bank, 4 N C bytes in a file beside last.pt: 5 GB at 1.28M x 1,000):
        # checkpoint_every trades the epochs a preemption may cost for that write; the last epoch is always saved
        if (epoch + 1) % method.checkpoint_every == 0 or epoch + 1 == method.epochs:
            run.save_state({"epoch": epoch, **method.checkpoint_state(history)}, fingerprint=data.fingerprint,
                           parts=method.parts)
        log.write_metrics(history)

    result = method.summary(history)
    report = method.sample_report()
    if report is not None:  # every process takes its shard of the evaluation pass; the main one writes
        export_sample_report(run, data, **report)
    if runtime.is_main:  # the result JSON last: a stop before it leaves no finished-looking run
        result.update(method.save_results(result) or {})
        method.announce(result)
    return result
