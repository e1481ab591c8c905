"""IDO stage 1: fine-tune on the noisy labels, count wrong events, keep the label-wave base model.

    python stage_1.py --config config/stage1/cifar100.yaml --noise_mode sym --noise_ratio 0.4

Writes stage1/{tag}_wrongevent.{npy,json,png}, base_model/{tag}.pt, the per-sample report stage1/{tag}_* and
checkpoint/stage1_{tag}/ (utils/training/outputs.py: Stage1Outputs; ``--outputs`` prints them).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

from dataloader import Data, build_data
from model import create_model, resolve_weights
from model.export import state_for_saving
from utils.core.entry import run_main
from utils.core.io import save_torch
from utils.method.steps import stage1_step
from utils.method.wrong_events import EpochPredictions, LabelWave, WrongEvents
from utils.report.evidence import WrongEventTrials
from utils.report.sample_report import stage1_label_score
from utils.training.accuracy_keys import accuracy_columns, describe_accuracies
from utils.training.config import STAGE1
from utils.training.engine import evaluate_all, make_loaders
from utils.training.optim import build_optimizer, build_scheduler, optim_settings, stage1_schedule_kind
from utils.training.outputs import Stage1Outputs
from utils.training.run import Run, place_model, start_run
from utils.training.run_summary import log_summary
from utils.workflow.handoff import save_stage1
from utils.workflow.lifecycle import Method, run_method


class Stage1(Method):
    """Cross-entropy on the noisy labels; every epoch's predictions count wrong events (per sample, the
    epochs it was predicted as another class than its label) and feed the label wave, whose first
    prediction-change minimum is saved as the base model of stage 2."""

    name = "stage 1"

    def __init__(self, run: Run, data: Data):
        super().__init__(run, data)
        cfg, runtime, log = run.cfg, run.runtime, run.log
        weights = resolve_weights(cfg.backbone, pretrained=cfg.pretrained, pretrained_path=cfg.pretrained_path)
        self.net = create_model(cfg.backbone, num_classes=data.num_classes, pretrained=cfg.pretrained,
                                pretrained_path=cfg.pretrained_path, img_size=data.resolution, frozen=cfg.frozen,
                                log=log.detail)
        self.model = place_model(self.net, run)
        settings = optim_settings(cfg)
        self.optimizer = build_optimizer(self.net, settings)
        self.optimizers = (self.optimizer,)
        schedule = stage1_schedule_kind(cfg)
        self.scheduler = build_scheduler(self.optimizer, kind=schedule, epochs=cfg.epochs,
                                         milestones=cfg.step_milestones)
        self.outputs = run.outputs
        log_summary(run, data, model=weights + (" (backbone frozen)" if cfg.frozen else ""), lr=settings.lr,
                    optimiser=f"{settings.name} lr {settings.lr:g} weight decay {settings.weight_decay:g}, "
                              f"schedule {schedule}",
                    outputs=[os.path.join(os.path.dirname(self.outputs.wrong_events), f"{cfg.tag}_*"),
                             self.outputs.base_model])
        n = len(data.train)
        self.wrong_events = WrongEvents(n, device=runtime.device)
        self.predictions = EpochPredictions(n, device=runtime.device)
        self.wave = LabelWave(device=runtime.device)
        self.noisy_labels = torch.as_tensor(data.noisy_labels, device=runtime.device)
        self.parts = {"model": self.net, "optimizer": self.optimizer, "scheduler": self.scheduler,
                      "scaler": run.precision.scaler, "wrong_events": self.wrong_events, "label_wave": self.wave}
        self.loader, self.test_loaders = make_loaders(data.train, data.test_sets, cfg, runtime)
        self.step = stage1_step(self.wrong_events, self.predictions)

    def epoch_step(self, epoch: int):
        return self.step

    def end_epoch(self, epoch: int, stats: dict) -> tuple[dict, str]:
        run, runtime = self.run, self.run.runtime
        self.wrong_events.end_epoch(runtime.reduce_max)
        epoch_predictions = self.predictions.end_epoch(runtime.reduce_max)
        wave_step = self.wave.observe(epoch, epoch_predictions)
        if wave_step.is_new_minimum and runtime.is_main:
            save_torch(state_for_saving(self.net), self.outputs.base_model)
        accuracies = evaluate_all(self.net, self.test_loaders, precision=run.precision, runtime=runtime,
                                  channels_last=self.cfg.channels_last, normalise=self.data.normalise)
        self.scheduler.step()
        train_acc = 100.0 * float((epoch_predictions == self.noisy_labels).float().mean())
        row = {"epoch": epoch + 1, "lr": stats["lr"], "train_loss": round(stats["loss"], 6),
               "train_acc_noisy": round(train_acc, 4), **accuracy_columns(accuracies),
               "prediction_change": wave_step.prediction_change, "base_model_epoch": self.wave.best_epoch + 1}
        message = (f"epoch {epoch + 1}/{self.epochs} loss {stats['loss']:.4f} train acc (noisy labels) "
                   f"{train_acc:.2f} {describe_accuracies(accuracies)} prediction change "
                   f"{wave_step.prediction_change}" + (" -> base model" if wave_step.is_new_minimum else ""))
        return row, message

    def counts(self) -> np.ndarray:
        return self.wrong_events.counts.cpu().numpy()  # merged: the same on every process

    def summary(self, history: list[dict]) -> dict:
        return {"tag": self.cfg.tag, "base_model_epoch": self.wave.best_epoch + 1, "history": history}

    def save_results(self, result: dict) -> dict:
        return save_stage1(self.run, self.data, self.counts(), self.wave, result["history"])

    def sample_report(self) -> dict:
        counts = self.counts()
        return dict(model=self.net, files=self.outputs.report, wrong_events=counts,
                    label_score=stage1_label_score(counts), trials=WrongEventTrials(stage1_epochs=self.cfg.epochs))

    def announce(self, result: dict) -> None:
        self.run.log.info(f"base model (epoch {self.wave.best_epoch + 1}, first prediction-change minimum): "
                          f"{self.outputs.base_model}")
        self.run.log.info(f"wrong events: {result['wrong_events_path']}")


def main(argv: Sequence[str] | None = None) -> dict:
    run = start_run(argv, prog="stage_1.py", scope=STAGE1, outputs=Stage1Outputs.of, claims_outputs=True)
    data = build_data(run.cfg, stage="stage1", log=run.log.info)
    run.claim_outputs(fingerprint=data.fingerprint)
    run.check_images(data)
    return run_method(Stage1(run, data))


if __name__ == "__main__":
    run_main(main)
