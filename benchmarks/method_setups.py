"""Each method's training set-up from a paper config, built as its entry point builds it, for measurements
(benchmarks/gpu_check.py): the run (``start_run``: device, precision, run folder), the real models placed on the
device (``place_model``), the optimisers, the per-sample state, the real step (utils/method/steps.py) and the
parts that last.pt holds, saved and restored by the real ``Run.save_state`` / ``Run.load_state``.

The entry points cannot be imported here (tests/test_layers.py), so what their ``Method`` constructors do is
repeated: which objects exist and which are checkpointed.  No data set is read: the batches are synthetic uint8
images, as the DataLoader workers deliver them, normalised on the device by the data's normaliser.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from dataloader.device_normalise import DeviceNormaliser
from model import create_model
from model.pair import ModelPair, build_models
from utils.method.acto import ActoHParams, ActoMemory
from utils.method.sample_weights import SampleWeights
from utils.method.steps import VIEWS, acto_step, stage1_step, stage2_step
from utils.method.wrong_events import EpochPredictions, LabelWave, WrongEvents
from utils.training.config import ACTO, STAGE1, STAGE2, Config, parse_config
from utils.training.engine import train_one_epoch
from utils.training.optim import (build_acto_optimizer, build_optimizer, build_scheduler, optim_settings,
                                  stage1_schedule_kind)
from utils.training.outputs import ActoOutputs, Stage1Outputs, Stage2Outputs
from utils.training.run import Run, place_model, start_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINGERPRINT = "gpu_check synthetic batches"  # what last.pt records as the data (no data set is read)
MEAN, STD = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)  # CIFAR-100's, as the paper configs' data

# the measured methods: (config scope, its outputs, the stage-2 mixture / the ACTO phase)
METHODS: Mapping[str, tuple[str, Callable]] = {
    "stage1": (STAGE1, Stage1Outputs.of),
    "stage2": (STAGE2, Stage2Outputs.of),   # class-wise mixture: stage_2_class.py, what clean_labels.py runs
    "acto_warmup": (ACTO, ActoOutputs.of),
    "acto_robust": (ACTO, ActoOutputs.of),
}


def config_path(method: str, dataset: str = "cifar100") -> str:
    """The paper config of ``method`` (a key of :data:`METHODS`) for ``dataset``."""
    return os.path.join(REPO, "config", METHODS[method][0], f"{dataset}.yaml")


def command_line(method: str, *, overrides: Mapping[str, Any], config: str | None = None) -> list[str]:
    """The entry point's command line of ``method`` with ``--set key=value`` per override."""
    argv = ["--config", config or config_path(method)]
    for key, value in overrides.items():
        argv += ["--set", f"{key}={'null' if value is None else value}"]
    if method == "stage2":
        argv += ["--set", "bmm=class"]
    return argv


def paper_config(method: str, *, overrides: Mapping[str, Any]) -> Config:
    """The validated config of ``method`` from its paper config and ``overrides`` (nothing is created)."""
    return parse_config(command_line(method, overrides=overrides), prog=f"gpu_check {method}",
                        scope=METHODS[method][0])


def method_run(method: str, *, overrides: Mapping[str, Any], resume: bool = False, config: str | None = None) -> Run:
    """``start_run`` as the entry point calls it: device, precision, run folder under ``output_dir``; ``config``:
    another config file of the method's scope than its paper config."""
    scope, outputs = METHODS[method]
    argv = command_line(method, overrides=overrides, config=config) + (["--resume"] if resume else [])
    return start_run(argv, prog=f"gpu_check {method}", scope=scope, outputs=outputs)


@dataclass
class Setup:
    """What ``train_one_epoch`` needs of one method, and what its last.pt holds."""

    run: Run
    model: torch.nn.Module                     # the placed model (ACTO: the pair of placed models)
    optimizers: tuple
    parts: dict                                # name -> object with state_dict / load_state_dict
    step: Callable                             # step(model, batch) of the measured epoch
    views: int                                 # images per sample (stage 2 and ACTO: weak and strong)
    epoch: int                                 # the epoch the step belongs to (ACTO: warm-up 0, robust W)
    checkpoint_state: Callable[[], dict] = dict  # what last.pt holds besides the parts (the entry's Method)
    resume: Callable[[dict], None] = lambda state: None
    normalise: DeviceNormaliser = field(default_factory=lambda: DeviceNormaliser(MEAN, STD))

    def train(self, batches: list, *, step: Callable | None = None) -> dict:
        """One epoch of the engine over ``batches`` with the set-up's step (or ``step``)."""
        cfg = self.run.cfg
        return train_one_epoch(model=self.model, loader=batches, optimizer=self.optimizers, step=step or self.step,
                               precision=self.run.precision, runtime=self.run.runtime, epoch=self.epoch,
                               channels_last=cfg.channels_last, desc="gpu_check", normalise=self.normalise)


def build_setup(method: str, run: Run, *, num_samples: int, num_classes: int, seed: int = 0) -> Setup:
    """The set-up of ``method`` on ``run`` with per-sample state for ``num_samples`` samples of ``num_classes``
    classes (random noisy labels; stage 2's wrong events random counts 0-5 with the mixture fitted to them)."""
    cfg, device = run.cfg, run.runtime.device
    rng = np.random.default_rng(seed)
    noisy_labels = rng.integers(0, num_classes, num_samples)
    if method == "stage1":
        net = create_model(cfg.backbone, num_classes=num_classes, pretrained=False, img_size=cfg.resolution)
        model = place_model(net, run)
        optimizer = build_optimizer(net, optim_settings(cfg))
        scheduler = build_scheduler(optimizer, kind=stage1_schedule_kind(cfg), epochs=cfg.epochs,
                                    milestones=cfg.step_milestones)
        events, predictions = WrongEvents(num_samples, device=device), EpochPredictions(num_samples, device=device)
        parts = {"model": net, "optimizer": optimizer, "scheduler": scheduler, "scaler": run.precision.scaler,
                 "wrong_events": events, "label_wave": LabelWave()}
        return Setup(run, model, (optimizer,), parts, stage1_step(events, predictions), views=1, epoch=0,
                     checkpoint_state=lambda: {"history": []})
    if method == "stage2":
        net = create_model(cfg.backbone, num_classes=num_classes, pretrained=False, img_size=cfg.resolution)
        model = place_model(net, run)
        optimizer = build_optimizer(net, optim_settings(cfg))
        scheduler = build_scheduler(optimizer, kind="cosine", epochs=cfg.epochs, eta_min=cfg.eta_min)
        counts = rng.integers(0, 6, num_samples)
        events = WrongEvents(num_samples, device=device, initial=torch.as_tensor(counts))
        weights = SampleWeights(class_wise=cfg.bmm == "class", noisy_labels=noisy_labels, num_classes=num_classes,
                                device=device, new_events=VIEWS, noisy_weight=cfg.noisy_weight)
        weights.fit(counts, iterations=cfg.bmm_init_iters)
        parts = {"model": net, "optimizer": optimizer, "scheduler": scheduler, "scaler": run.precision.scaler,
                 "wrong_events": events}

        def resume(state: dict) -> None:  # stage_2.py's Stage2.resume: the mixture from last.pt
            weights.load_state_dict(state["bmm"], events.counts.cpu().numpy())

        return Setup(run, model, (optimizer,), parts,
                     stage2_step(events, weights, entropy_weight=cfg.entropy_weight), views=VIEWS, epoch=0,
                     checkpoint_state=lambda: {"bmm": weights.state_dict(), "history": []}, resume=resume)
    if method in ("acto_warmup", "acto_robust"):
        hp = ActoHParams.from_config(cfg)
        rtm, ntm = build_models(cfg, num_classes, cfg.resolution)
        model = ModelPair(place_model(rtm, run), place_model(ntm, run))
        settings = optim_settings(cfg)
        opt_rtm, opt_ntm = (build_acto_optimizer(m, settings, cfg.nesterov) for m in (rtm, ntm))
        memory = ActoMemory(torch.as_tensor(noisy_labels), num_classes, device=device)
        parts = {"rtm": rtm, "ntm": ntm, "opt_rtm": opt_rtm, "opt_ntm": opt_ntm, "scaler": run.precision.scaler,
                 "memory": memory}
        epoch = 0 if method == "acto_warmup" else hp.warmup_epochs
        return Setup(run, model, (opt_rtm, opt_ntm), parts, acto_step(memory, hp, epoch), views=VIEWS, epoch=epoch,
                     checkpoint_state=lambda: {"history": []})
    raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")


def synthetic_batches(*, steps: int, batch: int, resolution: int, views: int, num_samples: int, num_classes: int,
                      pin: bool, seed: int = 0) -> list:
    """``steps`` batches as the training DataLoader yields them: ``(images, labels, index)`` with uint8 images
    ``(batch, 3, resolution, resolution)`` (a ``(weak, strong)`` pair where ``views`` is 2), int64 labels and
    distinct dataset indices < ``num_samples``; in pinned memory where ``pin`` (a CUDA run's loader pins)."""
    if steps * batch > num_samples:
        raise ValueError(f"{steps} batches of {batch} need {steps * batch} samples, got {num_samples}")
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(num_samples, generator=g)[:steps * batch].view(steps, batch)

    def images() -> torch.Tensor:
        x = torch.randint(0, 256, (batch, 3, resolution, resolution), dtype=torch.uint8, generator=g)
        return x.pin_memory() if pin else x

    out = []
    for i in range(steps):
        x = images() if views == 1 else tuple(images() for _ in range(views))
        labels, batch_index = torch.randint(0, num_classes, (batch,), generator=g), index[i].clone()
        out.append((x, *((t.pin_memory() for t in (labels, batch_index)) if pin else (labels, batch_index))))
    return out
