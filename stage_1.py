"""IDO stage 1: fine-tune on the noisy labels, count wrong events, keep the label-wave base model.

    python stage_1.py --config config/stage1/cifar100.yaml --noise_mode sym --noise_ratio 0.4

Writes stage1/{tag}_wrongevent.{npy,json,png}, base_model/{tag}.pt and checkpoint/stage1_{tag}/.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dataloader import build_data
from model import create_model, weights_source
from model.export import state_for_saving
from utils.accuracy_keys import acc_key
from utils.config import STAGE1
from utils.engine import accuracy_columns, describe_accuracies, evaluate_all, make_loaders, seed_epoch, \
    train_one_epoch
from utils.epoch_clock import EpochClock
from utils.errors import run_main
from utils.io import save_json, save_npy, save_torch
from utils.metrics import detection_auc
from utils.optim import build_optimizer, build_scheduler, optim_settings, stage1_schedule_kind
from utils.plots import wrong_event_histogram
from utils.run import place_model, start_run
from utils.run_summary import log_summary
from utils.sample_report import export_sample_report, stage1_label_score
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


def main(argv: Sequence[str] | None = None) -> dict:
    run = start_run(argv, prog="stage_1.py", scope=STAGE1, run_name="stage1_{tag}", claims_outputs=True)
    cfg, runtime, log = run.cfg, run.runtime, run.log
    tag = cfg.tag
    data = build_data(cfg, stage="stage1", log=log.info)
    run.claim_outputs(run.path("stage1", f"{tag}_wrongevent.json"), fingerprint=data.fingerprint)
    run.check_images(data)
    n = len(data.train)
    weights = weights_source(cfg.backbone, pretrained=cfg.pretrained, pretrained_path=cfg.pretrained_path)

    model = create_model(cfg.backbone, num_classes=data.num_classes, pretrained=cfg.pretrained,
                         pretrained_path=cfg.pretrained_path, img_size=data.resolution, frozen=cfg.frozen,
                         log=log.detail)
    train_model = place_model(model, run)
    settings = optim_settings(cfg)
    optimizer = build_optimizer(model, settings)
    schedule = stage1_schedule_kind(cfg)
    scheduler = build_scheduler(optimizer, kind=schedule, epochs=cfg.epochs, milestones=cfg.step_milestones)
    base_path = run.path("base_model", f"{tag}.pt")
    log_summary(run, data, model=weights + (" (backbone frozen)" if cfg.frozen else ""),
                optimiser=f"{settings.name} lr {settings.lr:g} weight decay {settings.weight_decay:g}, "
                          f"schedule {schedule}",
                outputs=[run.path("stage1", f"{tag}_*"), base_path])

    wrong_events = WrongEvents(n, device=runtime.device)
    predictions = EpochPredictions(n, device=runtime.device)
    wave = LabelWave()
    history: list[dict] = []
    start_epoch = 0
    resumable = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": run.precision.scaler,
                 "wrong_events": wrong_events, "label_wave": wave}
    if cfg.resume:
        state = run.load_state(fingerprint=data.fingerprint, parts=resumable)
        history = list(state["history"])
        start_epoch = state["epoch"] + 1

    train_loader, test_loaders = make_loaders(data.train, data.test_sets, cfg, runtime)
    step = stage1_step(wrong_events, predictions)
    clock = EpochClock(cfg.epochs)
    for epoch in range(start_epoch, cfg.epochs):
        seed_epoch(cfg.seed, epoch, runtime, (train_loader,))
        lr = optimizer.param_groups[0]["lr"]
        stats = train_one_epoch(model=train_model, loader=train_loader, optimizer=optimizer, step=step,
                                precision=run.precision, runtime=runtime, epoch=epoch,
                                channels_last=cfg.channels_last, desc="stage 1", normalise=data.normalise)
        wrong_events.end_epoch(runtime.reduce_max)
        epoch_predictions = predictions.end_epoch(runtime.reduce_max)
        wave_step = wave.observe(epoch, epoch_predictions)
        if wave_step.is_new_minimum and runtime.is_main:
            save_torch(state_for_saving(model), base_path)
        accuracies = evaluate_all(model, test_loaders, precision=run.precision, runtime=runtime,
                                  channels_last=cfg.channels_last, normalise=data.normalise)
        scheduler.step()
        train_acc = 100.0 * float((epoch_predictions == torch.as_tensor(data.noisy_labels, device=runtime.device))
                                  .float().mean())
        history.append({"epoch": epoch + 1, "lr": lr, "train_loss": round(stats["loss"], 6),
                        "train_acc_noisy": round(train_acc, 4), **accuracy_columns(accuracies),
                        "prediction_change": wave_step.prediction_change,
                        "base_model_epoch": wave.best_epoch + 1})
        log.info(f"epoch {epoch + 1}/{cfg.epochs} loss {stats['loss']:.4f} train acc (noisy labels) "
                 f"{train_acc:.2f} {describe_accuracies(accuracies)} prediction change {wave_step.prediction_change}"
                 + (" -> base model" if wave_step.is_new_minimum else "") + f" | {clock.lap(epoch)}")
        run.save_state({"epoch": epoch, "history": history}, fingerprint=data.fingerprint, parts=resumable)
        log.write_metrics(history)

    result = {"tag": tag, "base_model_epoch": wave.best_epoch + 1, "history": history}
    counts = wrong_events.counts.cpu().numpy()  # merged: the same on every process
    if runtime.is_main:
        result.update(save_stage1_outputs(run, data, counts, wave, history))
    # every process takes its shard of the evaluation pass; the main one writes the report
    export_sample_report(run, data, model, stem=run.path("stage1", tag), wrong_events=counts,
                         label_score=stage1_label_score(counts))
    if runtime.is_main:
        log.info(f"base model (epoch {wave.best_epoch + 1}, first prediction-change minimum): {base_path}")
        log.info(f"wrong events: {result['wrong_events_path']}")
    return result


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
