"""IDO stage 1: fine-tune on the noisy labels, count wrong events, keep the label-wave base model.

    python stage_1.py --config config/stage1/cifar100.yaml --noise_mode sym --noise_ratio 0.4

Writes stage1/{tag}_wrongevent.{npy,json,png}, base_model/{tag}.pt and checkpoint/stage1_{tag}/.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dataloader import Data, build_data
from model import create_model, weights_source
from model.export import state_for_saving
from utils.accuracy_keys import acc_key
from utils.config import STAGE1
from utils.engine import accuracy_columns, describe_accuracies, evaluate_all, make_loaders
from utils.errors import run_main
from utils.io import save_json, save_npy, save_torch
from utils.lifecycle import Method, run_method
from utils.metrics import detection_auc
from utils.optim import build_optimizer, build_scheduler, optim_settings, stage1_schedule_kind
from utils.plots import wrong_event_histogram
from utils.run import Run, place_model, start_run
from utils.run_summary import log_summary
from utils.sample_report import stage1_label_score
from utils.wrong_events import EpochPredictions, LabelWave, WrongEvents


def stage1_step(wrong_events: WrongEvents, predictions: EpochPredictions):
    """Plain cross-entropy; the same forward pass counts wrong events and records predictions."""
    def step(model, batch):
        images, labels, index = batch
        _, logits = model(images)
        predicted = logits.detach().argmax(dim=1)
        wrong_events.record(index, predicted, labels=labels)
        predictions.record(index, predicted)
        return F.cross_entropy(logits.float(), labels)
    return step


class Stage1(Method):
    """Cross-entropy on the noisy labels; every epoch's predictions count wrong events (per sample, the
    epochs it was predicted as another class than its label) and feed the label wave, whose first
    prediction-change minimum is saved as the base model of stage 2."""

    name = "stage 1"

    def __init__(self, run: Run, data: Data):
        super().__init__(run, data)
        cfg, runtime, log = run.cfg, run.runtime, run.log
        weights = weights_source(cfg.backbone, pretrained=cfg.pretrained, pretrained_path=cfg.pretrained_path)
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
        self.base_path = run.path("base_model", f"{cfg.tag}.pt")
        log_summary(run, data, model=weights + (" (backbone frozen)" if cfg.frozen else ""),
                    optimiser=f"{settings.name} lr {settings.lr:g} weight decay {settings.weight_decay:g}, "
                              f"schedule {schedule}",
                    outputs=[run.path("stage1", f"{cfg.tag}_*"), self.base_path])
        n = len(data.train)
        self.wrong_events = WrongEvents(n, device=runtime.device)
        self.predictions = EpochPredictions(n, device=runtime.device)
        self.wave = LabelWave()
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
            save_torch(state_for_saving(self.net), self.base_path)
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
        return save_stage1_outputs(self.run, self.data, self.counts(), self.wave, result["history"])

    def sample_report(self) -> dict:
        counts = self.counts()
        return dict(model=self.net, stem=self.run.path("stage1", self.cfg.tag), wrong_events=counts,
                    label_score=stage1_label_score(counts))

    def export(self, result: dict) -> None:
        self.run.log.info(f"base model (epoch {self.wave.best_epoch + 1}, first prediction-change minimum): "
                          f"{self.base_path}")
        self.run.log.info(f"wrong events: {result['wrong_events_path']}")


def main(argv: Sequence[str] | None = None) -> dict:
    run = start_run(argv, prog="stage_1.py", scope=STAGE1, run_name="stage1_{tag}", claims_outputs=True)
    data = build_data(run.cfg, stage="stage1", log=run.log.info)
    run.claim_outputs(run.path("stage1", f"{run.cfg.tag}_wrongevent.json"), fingerprint=data.fingerprint)
    run.check_images(data)
    return run_method(Stage1(run, data))


def save_stage1_outputs(run, data, counts: np.ndarray, wave: LabelWave, history: list[dict]) -> dict:
    """stage1/{tag}_wrongevent.npy (int32, dataset order), .json (what they belong to) and .png."""
    cfg, tag = run.cfg, run.cfg.tag
    counts = counts.astype(np.int32)
    npy = save_npy(counts, run.path("stage1", f"{tag}_wrongevent.npy"))
    meta = {
        "tag": tag, "dataset": cfg.dataset, "num_samples": int(len(counts)), "num_classes": data.num_classes,
        "noise_mode": cfg.noise_mode, "noise_ratio": cfg.noise_ratio, "noise_convention": cfg.noise_convention,
        "realised_noise_rate": data.noise_info["realised_noise_rate"], "epochs": cfg.epochs,
        "backbone": cfg.backbone, "seed": cfg.seed, "base_model_epoch": wave.best_epoch + 1,
        "prediction_change": wave.history, "fingerprint": data.fingerprint,
        "settings": run.training_settings(),  # what a later run compares to reuse these outputs (clean_labels.py)
        # how well the counts alone tell noisy labels from clean ones (fewer events = cleaner); None without truth
        "wrong_event_auc": detection_auc(-counts.astype(np.float64), data.is_noisy),
        **{acc_key(name): [row[acc_key(name)] for row in history] for name in data.test_sets},
    }
    save_json(meta, run.path("stage1", f"{tag}_wrongevent.json"))
    wrong_event_histogram(counts, run.path("stage1", f"{tag}_wrongevent.png"), is_noisy=data.is_noisy,
                          title=f"{tag}: wrong events after {cfg.epochs} epochs")
    return {"wrong_events_path": npy, "base_model_path": run.path("base_model", f"{tag}.pt")}


if __name__ == "__main__":
    run_main(main)
