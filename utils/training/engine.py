"""One epoch of every method: seeding, loaders, mixed precision, train and evaluate (the run around the
epochs, from resume to the artefacts, is :func:`utils.workflow.lifecycle.run_method`).

A training step is a function ``step(model, batch) -> loss`` that also does its own bookkeeping
(wrong events, predictions) on the device; :func:`train_one_epoch` owns zero_grad / backward /
optimizer step, the progress bar and the non-finite-loss guard.  :func:`train_one_epoch`,
:func:`evaluate` and :func:`predict_labels` copy no tensor to the host inside the batch loop: sums and
labels stay on the device until the loop ends.  :func:`predict_probabilities` does copy each batch's
probabilities to the host (``.cpu()``): it serves confident learning's small cross-validation folds,
where N x C probabilities on the host are the result.
"""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from utils.training.batching import KeepAllBatchSampler
from utils.core.distributed import EpochShuffleSampler, Runtime, ShardSampler
from utils.core.errors import ConfigError, UsageError
from utils.core.gpu import has_bf16_units, resolve_precision
from utils.method.steps import loss_and_terms
from utils.core.progress import progress
from utils.core.signals import DataLoader, check_stop
from utils.core.workers import resolve_num_workers

AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLoss(UsageError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + rank * 104_729) % (2 ** 31)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_epoch(seed: int, epoch: int, runtime: Runtime, loaders: tuple[DataLoader, ...] = ()) -> None:
    """Seed every RNG an epoch uses from (seed, epoch, rank) alone.

    Augmentations, worker seeds and the sample order of epoch e then depend only on the seed and
    e, so a run resumed at epoch e reproduces the uninterrupted run exactly (with
    persistent_workers off) without storing RNG states.
    """
    s = epoch_seed(seed, epoch, runtime.rank)
    seed_everything(s)
    for loader in loaders:
        if loader.generator is not None:
            loader.generator.manual_seed(s)
        for sampler in (loader.sampler, loader.batch_sampler):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)


def make_loaders(train_set, test_sets: Mapping[str, Any], cfg,
                 runtime: Runtime) -> tuple[DataLoader, dict[str, DataLoader]]:
    """The shuffled training loader and one sharded evaluation loader per test set (same names).

    The training loader keeps its workers between epochs only with ``persistent_workers: true``: its workers
    draw the augmentations, and a resumed run repeats an uninterrupted one exactly only when every epoch
    starts them afresh from ``(seed, epoch)`` (:func:`seed_epoch`).  The evaluation loaders always keep
    theirs (started once, not at every evaluation: with 16 workers per GPU and two test sets, two restarts
    per epoch), since they draw no random number: their transforms are deterministic, and each has a
    generator of its own, so not even the worker seeds are drawn from the global RNG that seeds the next
    epoch."""
    workers, _ = resolve_num_workers(cfg.num_workers)  # start_run has logged and replaced "auto" already
    pin = runtime.device.type == "cuda"
    sampler = EpochShuffleSampler(len(train_set), seed=cfg.seed, rank=runtime.rank, world_size=runtime.world_size)
    # A last batch of one sample breaks BatchNorm in training mode: the last two batches share it instead
    train = DataLoader(train_set, batch_sampler=KeepAllBatchSampler(sampler, cfg.batch_size),
                       generator=torch.Generator(), num_workers=workers, pin_memory=pin,
                       persistent_workers=workers > 0 and cfg.persistent_workers)
    tests = {name: DataLoader(test_set, batch_size=cfg.test_batch_size,
                              sampler=ShardSampler(len(test_set), rank=runtime.rank, world_size=runtime.world_size),
                              generator=torch.Generator(), num_workers=workers, pin_memory=pin,
                              persistent_workers=workers > 0)
             for name, test_set in test_sets.items()}
    return train, tests


@dataclass
class Precision:
    """Autocast and gradient scaling for ``precision: fp32|bf16|fp16``."""

    device_type: str
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler

    @classmethod
    def create(cls, name: str, device: torch.device) -> "Precision":
        """Raises ConfigError for bf16 on a GPU without bf16 units (before Ampere: V100, T4), where torch
        would emulate it slowly or fail mid-run."""
        dtype = AMP_DTYPES[resolve_precision(name, device)]
        if dtype is torch.bfloat16 and device.type == "cuda" and not has_bf16_units(device):
            raise ConfigError(f"config key 'precision': bf16 is not supported by {torch.cuda.get_device_name(device)} "
                              "(compute capability below 8.0); use precision=fp16")
        scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
        return cls(device.type, dtype, scaler)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def to_device(obj: Any, device: torch.device, channels_last: bool = False) -> Any:
    if isinstance(obj, torch.Tensor):
        if channels_last and obj.dim() == 4:
            return obj.to(device, non_blocking=True, memory_format=torch.channels_last)
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(o, device, channels_last) for o in obj)
    return obj


Step = Callable[[torch.nn.Module, Any], torch.Tensor]


def train_one_epoch(*, model: torch.nn.Module, loader: DataLoader,
                    optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
                    step: Step, precision: Precision, runtime: Runtime, epoch: int, channels_last: bool = False,
                    desc: str = "train", normalise: Callable[[Any], Any] | None = None,
                    views: Sequence[bool] | None = None) -> dict:
    """One pass over ``loader``; returns ``{"loss": mean loss, **terms}`` (host reads at the end only).

    ``step`` returns the loss or ``(loss, terms)`` (:mod:`utils.method.steps`): ``terms`` are batch means
    (0-d tensors, the same names in every batch of the epoch), summed weighted by batch size on the device
    and returned as epoch means beside the loss.
    ``normalise`` (``Data.normalise``) turns the batch's uint8 images into model inputs on the device.
    ``views``: for batches of several views (``((weak, strong), labels, index)``), which of them the step
    reads; a view marked False reaches the step as None, neither copied to the device nor normalised (ACTO's
    strong view in warm-up).  None: every view.
    ``optimizer`` may be a sequence (ACTO's two models): each is zeroed and stepped, the loss is
    back-propagated once and the gradient scaler updated once per step.

    A NaN/inf loss raises :class:`NonFiniteLoss` naming the epoch and the first bad step (checked once at the
    end of the epoch, so the loop itself never waits for the GPU).  Under fp16 such a step is one the gradient
    scaler skips (its gradients are not finite: the weights stay as they were, the scale is lowered), the
    normal path of fp16 training: it is left out of the epoch's means and counted in ``"nonfinite_steps"``
    (present only then); the run stops only when the scaler skipped every step of the epoch.
    """
    optimizers = tuple(optimizer) if isinstance(optimizer, Sequence) else (optimizer,)
    skipping = precision.scaler.is_enabled()  # fp16: the scaler skips the steps whose gradients overflowed
    model.train()
    device = runtime.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen = torch.zeros((), dtype=torch.int64, device=device)
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    bad_steps = torch.zeros((), dtype=torch.int64, device=device)
    term_names: tuple[str, ...] | None = None
    term_sum = None
    steps = 0
    # Only rank 0 draws a bar; elsewhere tqdm's own default applies, so TQDM_DISABLE=1 silences it.
    quiet = {} if runtime.is_main else {"disable": True}
    bar = progress(loader, desc=f"{desc} {epoch + 1}", leave=False, dynamic_ncols=True, **quiet)
    for i, batch in enumerate(bar):
        check_stop()
        if views is not None:
            batch = (type(batch[0])(view if views[k] else None for k, view in enumerate(batch[0])), *batch[1:])
        batch = to_device(batch, device, channels_last)
        if normalise is not None:
            batch = (normalise(batch[0]), *batch[1:])
        with precision.autocast():
            loss, terms = loss_and_terms(step(model, batch))
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        precision.scaler.scale(loss).backward()
        for opt in optimizers:
            precision.scaler.step(opt)
        precision.scaler.update()
        batch_size = batch[1].shape[0]
        steps += 1
        loss = loss.detach()
        finite = torch.isfinite(loss)
        first_bad = torch.where((first_bad < 0) & ~finite, i, first_bad)
        bad_steps += ~finite
        # a non-finite step adds nothing (under fp32/bf16 it stops the run below; these sums are then unused)
        loss_sum += torch.where(finite, loss.double(), 0.0) * batch_size
        seen += finite * batch_size
        if term_names is None:
            term_names = tuple(terms)
            term_sum = torch.zeros(len(term_names), dtype=torch.float64, device=device)
        if term_names:
            values = torch.stack([terms[name].detach().double() for name in term_names])
            term_sum += torch.where(finite, values, 0.0) * batch_size
    bar.close()
    first_bad, bad_steps = runtime.reduce_max(first_bad), runtime.reduce_sum(bad_steps)
    first_bad, bad_steps = torch.stack([first_bad, bad_steps]).tolist()  # one host read
    if first_bad >= 0 and not skipping:
        raise NonFiniteLoss(f"the {desc} loss became non-finite at epoch {epoch + 1}, step {first_bad + 1}; the "
                            "checkpoint of the last finished epoch is kept (lower the learning rate, or use "
                            "precision fp32)")
    if skipping and bad_steps == steps * runtime.world_size and steps:
        raise NonFiniteLoss(f"the {desc} loss was non-finite in every step of epoch {epoch + 1} under fp16 (the "
                            "gradient scaler skipped them all); the checkpoint of the last finished epoch is kept "
                            "(lower the learning rate, or use precision bf16 or fp32)")
    loss_sum, seen = runtime.reduce_sum(loss_sum), runtime.reduce_sum(seen)
    stats = {"loss": float(loss_sum / seen.clamp(min=1))}
    if term_names:
        means = (runtime.reduce_sum(term_sum) / seen.clamp(min=1)).tolist()  # one host read for every term
        stats.update(zip(term_names, means))
    if bad_steps:
        stats["nonfinite_steps"] = bad_steps
    return stats


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, *, precision: Precision, runtime: Runtime,
             channels_last: bool = False, normalise: Callable[[Any], Any] | None = None) -> float:
    """Top-1 accuracy (%) of argmax logits over the whole (sharded) loader (``normalise``: as in training).
    Every shard is evaluated with rank 0's buffers (batch-norm statistics), the model that is saved."""
    runtime.broadcast_buffers(model)  # why: utils.core.distributed.data_parallel
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=runtime.device)
    total = torch.zeros((), dtype=torch.int64, device=runtime.device)
    for images, labels, _ in loader:
        images, labels = to_device((images, labels), runtime.device, channels_last)
        if normalise is not None:
            images = normalise(images)
        with precision.autocast():
            _, logits = model(images)
        correct += (logits.argmax(dim=1) == labels).sum()
        total += labels.numel()
    correct, total = runtime.reduce_sum(correct), runtime.reduce_sum(total)
    return 100.0 * float(correct) / max(int(total), 1)


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, dataset, *, batch_size: int, num_workers: int,
                          precision: Precision, device: torch.device, normalise: Callable[[Any], Any],
                          channels_last: bool = False) -> np.ndarray:
    """Softmax ``(len(dataset), C)`` float32 of ``model`` (eval mode) over ``dataset`` in its order, on this
    process alone (no sharding), kept on the host: confident learning's held-out folds (small N; the report
    uses :func:`predict_labels`, which reduces each batch on the device)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    model.eval()
    out = []
    for images, _, _ in loader:
        with precision.autocast():
            _, logits = model(normalise(to_device(images, device, channels_last)))
        out.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(out).numpy()


@dataclass(frozen=True)
class LabelPredictions:
    """What the per-sample report needs of one evaluation pass, per sample in dataset order (numpy, (N,)):
    ``predicted`` int64 (argmax), ``predicted_prob`` float32 (its softmax probability) and ``given_prob``
    float32 (the softmax probability of the given label); ``digests`` (N, 16) uint8 where the dataset's items
    carry a fourth field, the content digest of the image (identical files), else None."""

    predicted: np.ndarray
    predicted_prob: np.ndarray
    given_prob: np.ndarray
    digests: np.ndarray | None = None


def reduce_probabilities(probs: torch.Tensor, given: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(argmax, max, probability of the given label)`` of softmax rows ``probs`` (B, C) and labels (B,)."""
    predicted_prob, predicted = probs.max(dim=1)
    # torch's max returns the first maximal index, as numpy's argmax did on the host copy
    return predicted, predicted_prob, probs.gather(1, given[:, None].long())[:, 0]


@torch.no_grad()
def predict_labels(model: torch.nn.Module, dataset, *, batch_size: int, num_workers: int, precision: Precision,
                   runtime: Runtime, normalise: Callable[[Any], Any], channels_last: bool = False,
                   digest_size: int = 0) -> LabelPredictions:
    """:class:`LabelPredictions` of ``model`` (eval mode) over ``dataset`` (items ``(image, given label, index)``,
    followed, where ``digest_size`` > 0, by a (digest_size,) uint8 content digest that is passed through).

    Each batch is reduced on the device to three numbers per sample, so nothing of size N x C exists
    anywhere.  The pass is sharded like the test sets (rank r takes r, r + w, ...): every process must
    call this; each writes its shard into zero tensors of length N, summed across processes (adding
    exact zeros, so the values are bit-identical to one process's pass).  Every process gets the result.
    """
    device, n = runtime.device, len(dataset)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda",
                        sampler=ShardSampler(n, rank=runtime.rank, world_size=runtime.world_size))
    runtime.broadcast_buffers(model)  # every shard evaluated by rank 0's model, the saved one (data_parallel)
    model.eval()
    predicted = torch.zeros(n, dtype=torch.int64, device=device)
    predicted_prob = torch.zeros(n, dtype=torch.float32, device=device)
    given_prob = torch.zeros(n, dtype=torch.float32, device=device)
    # int32, not uint8: every backend can sum it across processes
    digests = torch.zeros((n, digest_size), dtype=torch.int32, device=device) if digest_size else None
    for batch in loader:
        images, given, index = to_device(tuple(batch[:3]), device, channels_last)
        with precision.autocast():
            _, logits = model(normalise(images))
        p, pp, gp = reduce_probabilities(torch.softmax(logits.float(), dim=1), given)
        predicted[index], predicted_prob[index], given_prob[index] = p, pp, gp
        if digests is not None:  # copied as it comes (uint8, pinned, without waiting), widened on the device
            digests[index] = batch[3].to(device, non_blocking=True).to(torch.int32)
    merged = [runtime.reduce_sum(t).cpu().numpy() for t in (predicted, predicted_prob, given_prob)]
    return LabelPredictions(*merged, digests=None if digests is None else
                            runtime.reduce_sum(digests).cpu().numpy().astype(np.uint8))


def evaluate_all(model: torch.nn.Module, loaders: Mapping[str, DataLoader], **kwargs) -> dict[str, float]:
    """:func:`evaluate` on every test loader: ``{name: accuracy %}``."""
    return {name: evaluate(model, loader, **kwargs) for name, loader in loaders.items()}
