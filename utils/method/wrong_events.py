"""Wrong events and the label wave (docs/fidelity.md#ido-13-stage-1-and-the-base-model): per-sample state kept on the training device.

Both trackers record the current epoch with index *assignment* (not addition) into an epoch buffer
and fold it into the totals at :meth:`end_epoch`.  A sample is seen once per epoch by one process,
so this equals counting in place; under DistributedDataParallel the sampler repeats a few samples
to pad the last batch, and assignment plus a max-reduce across ranks counts each sample once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Reduce = Callable[[torch.Tensor], torch.Tensor]  # element-wise max across processes


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


class WrongEvents:
    """Per-sample count of forward passes whose argmax disagreed with the given label.

    ``counts`` (N,) int32 holds the totals up to the last finished epoch; :meth:`record` returns
    the live counts of a batch (totals plus this epoch's events), which stage 2 feeds to the BMM.
    """

    def __init__(self, num_samples: int, *, device: torch.device | str = "cpu",
                 initial: torch.Tensor | None = None):
        self.counts = torch.zeros(num_samples, dtype=torch.int32, device=device)
        if initial is not None:
            if initial.shape != (num_samples,):
                raise ValueError(f"initial wrong events have shape {tuple(initial.shape)}, expected ({num_samples},)")
            self.counts.copy_(torch.as_tensor(initial, dtype=torch.int32))
        self.epoch_events = torch.zeros_like(self.counts)

    def record(self, index: torch.Tensor, *predictions_per_view: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Count one event per view whose prediction != label; return the live counts of ``index``.

        Args:
            index: (B,) dataset indices.  predictions_per_view: one (B,) argmax tensor per view.
            labels: (B,) given labels.
        Returns:
            (B,) int32 live counts (totals + events of this epoch).
        """
        events = torch.zeros_like(index, dtype=torch.int32)
        for predictions in predictions_per_view:
            events += (predictions != labels).int()
        self.epoch_events[index] = events
        return self.counts[index] + events

    def end_epoch(self, reduce: Reduce = _identity) -> None:
        self.counts += reduce(self.epoch_events)
        self.epoch_events.zero_()

    def state_dict(self) -> dict:
        """A snapshot on the CPU (a copy: ``.cpu()`` alone returns the live tensor on a CPU run)."""
        return {"counts": self.counts.detach().clone().cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.counts.copy_(state["counts"])
        self.epoch_events.zero_()


class EpochPredictions:
    """Argmax prediction of every sample in the current epoch, from the training forward pass."""

    def __init__(self, num_samples: int, *, device: torch.device | str = "cpu"):
        self.current = torch.full((num_samples,), -1, dtype=torch.int64, device=device)

    def record(self, index: torch.Tensor, predictions: torch.Tensor) -> None:
        """Store the (B,) argmax predictions of the samples ``index``."""
        self.current[index] = predictions

    def end_epoch(self, reduce: Reduce = _identity) -> torch.Tensor:
        """Return the (N,) predictions of the finished epoch and reset."""
        predictions = reduce(self.current)
        self.current = torch.full_like(self.current, -1)
        return predictions


@dataclass
class WaveStep:
    """What the label wave says after an epoch."""

    prediction_change: int   # PC_e (N at the first epoch: "infinitely large")
    is_new_minimum: bool     # PC decreased: this epoch's model is the base-model candidate
    settled: bool            # the first local minimum has been passed: the base model is final


class LabelWave:
    """Prediction-change curve and the base-model rule of IDO (no moving average).

    PC_1 = N; for e >= 2, PC_e = #{i : P_e[i] != P_ref[i]} with P_ref the predictions of the last
    epoch at which PC decreased.  While PC keeps decreasing, each epoch is the new candidate; at the
    first epoch with PC_e >= PC_{e-1} the previous candidate (the first local minimum) is final.
    """

    def __init__(self, *, device: torch.device | str | None = None):
        """``device``: where the reference predictions live (the training device, where each epoch's predictions
        are); a resumed run's reference comes back there (None: where the state holds it)."""
        self.device = device
        self.reference: torch.Tensor | None = None
        self.last_change: int | None = None
        self.settled = False
        self.best_epoch: int | None = None
        self.history: list[int] = []

    def observe(self, epoch: int, predictions: torch.Tensor) -> WaveStep:
        if self.reference is None:
            change = int(predictions.numel())
            decreased = True
        else:
            change = int((predictions != self.reference.to(predictions.device)).sum())
            decreased = change < self.last_change
        self.history.append(change)
        new_minimum = decreased and not self.settled
        if new_minimum:
            self.reference = predictions.detach().clone()
            self.best_epoch = epoch
        elif not self.settled:
            self.settled = True
        self.last_change = change
        return WaveStep(change, new_minimum, self.settled)

    def state_dict(self) -> dict:
        return {"reference": None if self.reference is None else self.reference.detach().clone().cpu(),
                "last_change": self.last_change, "settled": self.settled, "best_epoch": self.best_epoch,
                "history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        reference = state["reference"]
        self.reference = reference if reference is None or self.device is None else reference.to(self.device)
        self.last_change = state["last_change"]
        self.settled = state["settled"]
        self.best_epoch = state["best_epoch"]
        self.history = list(state["history"])
