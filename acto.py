"""ACTO (asymmetric co-training, docs/fidelity.md#act-1-method) on the IDO data pipeline: RTM + NTM from one backbone.

    python acto.py --config config/acto/cifar100.yaml --noise_mode sym --noise_ratio 0.2

The same data, noise cache, models and run infrastructure as stage_1.py / stage_2.py, so both
methods train on identical noisy labels.  Writes acto/{tag}.json, acto/{tag}_model.pt (the RTM), the
per-sample report acto/{tag}_* and checkpoint/acto_{tag}/ (utils/training/outputs.py: ActoOutputs).  The method
math is utils/method/acto.py, the step utils/method/steps.py.
"""
from __future__ import annotations

import statistics
from typing import Sequence

import numpy as np
import torch

from dataloader import Data, build_data
from model import resolve_weights
from model.export import export_model
from model.pair import ModelPair, build_models
from utils.core.entry import run_main
from utils.core.errors import ConfigError
from utils.core.io import save_json
from utils.method.acto import ActoHParams, ActoMemory, parse_lr_plan, reads_strong_view, selection_quality
from utils.method.steps import ACTO_TERMS, acto_step
from utils.training.accuracy_keys import accuracy_columns, accuracy_summary, describe_accuracies, describe_result
from utils.training.config import ACTO
from utils.training.engine import evaluate_all, make_loaders
from utils.training.optim import acto_lr_plans, build_acto_optimizer, optim_settings, set_lr
from utils.training.outputs import ActoOutputs
from utils.training.run import Run, place_model, start_run
from utils.training.run_summary import log_summary
from utils.workflow.lifecycle import Method, fmt, run_method

LAST_K = 10  # ACT's Table 1 metric: mean RTM accuracy over the last min(10, E) epochs


def validate(cfg) -> None:
    """Checks across keys, before any data is loaded (one line, exit status 2)."""
    if cfg.warmup_epochs >= cfg.epochs:
        raise ConfigError(f"config key 'warmup_epochs' ({cfg.warmup_epochs}) must be smaller than 'epochs' "
                          f"({cfg.epochs}): ACTO needs at least one robust epoch")
    for key in ("lr_plan", "ntm_lr_plan"):
        if cfg[key] is not None:
            parse_lr_plan(cfg[key], key=key)


def epoch_row(epoch: int, phase: str, lrs: tuple[float, float], stats: dict, rtm_accs: dict, ntm_accs: dict,
              merged: dict, clean: torch.Tensor | None, n: int) -> dict:
    s = {k: float(v) for k, v in merged["stats"].items()}  # one host read per epoch
    row = {"epoch": epoch + 1, "phase": phase, "lr_rtm": lrs[0], "lr_ntm": lrs[1],
           "train_loss": round(stats["loss"], 6),
           **{term: round(stats[term], 6) if term in stats else None for term in ACTO_TERMS},
           **accuracy_columns(rtm_accs),
           **accuracy_columns(ntm_accs, prefix="ntm_"),
           "train_acc_rtm": round(100.0 * s["correct_rtm"] / max(s["samples"], 1.0), 4),
           "train_acc_ntm": round(100.0 * s["correct_ntm"] / max(s["samples"], 1.0), 4)}
    if phase == "warmup":
        row.update(selected_size=None, selected_frac=None, selected_precision=None, selected_recall=None,
                   mined_size=None, mined_share=None, mining_active_frac=None, mean_metric=None)
        return row
    q = selection_quality(merged["selected"], clean)
    mined = int(merged["mined"].sum())
    rnd = (lambda v: None if v is None else round(v, 6))
    row.update(selected_size=q["size"], selected_frac=round(q["size"] / n, 6),
               selected_precision=rnd(q["precision"]), selected_recall=rnd(q["recall"]),
               mined_size=mined, mined_share=round(mined / n, 6),
               mining_active_frac=round(s["mining_batches"] / max(s["batches"], 1.0), 6),
               mean_metric=rnd(s["metric_sum"] / s["metric_batches"]) if s["metric_batches"] else None)
    return row


class Acto(Method):
    """Asymmetric co-training: in warm-up both models learn every label; then the NTM's agreement with the
    noisy labels and the RTM's soft-label memory select the samples the RTM learns (utils/method/acto.py)."""

    def __init__(self, run: Run, data: Data, hp: ActoHParams):
        super().__init__(run, data)
        cfg, runtime, log = run.cfg, run.runtime, run.log
        self.hp = hp
        weights = resolve_weights(cfg.backbone, pretrained=cfg.pretrained, pretrained_path=cfg.pretrained_path)
        settings = optim_settings(cfg)
        self.rtm_lrs, self.ntm_lrs, self.rtm_plan, self.ntm_plan = acto_lr_plans(cfg, settings, log.info)
        self.rtm, self.ntm = build_models(cfg, data.num_classes, data.resolution, log=log.detail)
        self.model = ModelPair(place_model(self.rtm, run), place_model(self.ntm, run))
        self.opt_rtm = build_acto_optimizer(self.rtm, settings, cfg.nesterov)
        self.opt_ntm = build_acto_optimizer(self.ntm, settings, cfg.nesterov)
        self.optimizers = (self.opt_rtm, self.opt_ntm)
        log_summary(run, data, model=f"RTM and NTM, {weights}", lr=settings.lr,
                    optimiser=f"{settings.name}{' nesterov' if cfg.nesterov and settings.name == 'sgd' else ''} "
                              f"weight decay {settings.weight_decay:g}; RTM lr plan {self.rtm_plan} from "
                              f"{settings.lr:g}; NTM lr plan {self.ntm_plan} from {cfg.ntm_lr or settings.lr:g}; "
                              f"warm-up lr {cfg.warmup_lr or settings.lr:g}",
                    method=f"warm-up {cfg.warmup_epochs} of {cfg.epochs} epochs; selection {hp.selection_rule}, "
                           f"tau {hp.tau:g}, EMA {hp.ema_alpha:g}, weights {hp.selection_weight:g}/"
                           f"{1 - hp.selection_weight:g}, label smoothing {hp.label_smoothing:g}",
                    outputs=[run.outputs.result, run.outputs.result.removesuffix(".json") + "_*"])
        self.memory = ActoMemory(torch.as_tensor(data.noisy_labels), data.num_classes, device=runtime.device)
        self.clean = None if data.is_noisy is None else torch.as_tensor(~data.is_noisy, device=runtime.device)
        self.loader, self.test_loaders = make_loaders(data.train, data.test_sets, cfg, runtime)
        self.evaluate_kw = dict(precision=run.precision, runtime=runtime, channels_last=cfg.channels_last,
                                normalise=data.normalise)
        self.parts = {"rtm": self.rtm, "ntm": self.ntm, "opt_rtm": self.opt_rtm, "opt_ntm": self.opt_ntm,
                      "scaler": run.precision.scaler, "memory": self.memory}
        # every checkpoint writes the N x C bank to a file beside last.pt (4 N C bytes: 5 GB at 1.28M x 1,000)
        self.checkpoint_every = cfg.checkpoint_every

    def phase(self, epoch: int) -> str:
        return "warmup" if epoch < self.hp.warmup_epochs else "robust"

    def epoch_name(self, epoch: int) -> str:
        return f"acto {self.phase(epoch)}"

    def views(self, epoch: int) -> tuple[bool, bool]:
        """The weak view always; the strong one only where the step reads it (robust epochs with ``use_cr``).
        The workers still build it (skipping that would change the weak view's random numbers: docs/acto.md);
        only its copy to the device and its normalisation are saved."""
        return True, reads_strong_view(self.hp, epoch)

    def epoch_step(self, epoch: int):
        set_lr(self.opt_rtm, self.rtm_lrs[epoch])
        set_lr(self.opt_ntm, self.ntm_lrs[epoch])
        return acto_step(self.memory, self.hp, epoch)

    def end_epoch(self, epoch: int, stats: dict) -> tuple[dict, str]:
        runtime, phase = self.run.runtime, self.phase(epoch)
        merged = self.memory.end_epoch(runtime.reduce_max, runtime.reduce_sum)
        rtm_accs = evaluate_all(self.rtm, self.test_loaders, **self.evaluate_kw)
        ntm_accs = evaluate_all(self.ntm, dict(list(self.test_loaders.items())[:1]), **self.evaluate_kw)  # first set
        row = epoch_row(epoch, phase, (self.rtm_lrs[epoch], self.ntm_lrs[epoch]), stats, rtm_accs, ntm_accs,
                        merged, self.clean, len(self.data.train))
        message = (f"epoch {epoch + 1}/{self.epochs} {phase} loss {stats['loss']:.4f} RTM "
                   f"{describe_accuracies(rtm_accs)} NTM {describe_accuracies(ntm_accs)} train acc (noisy labels) "
                   f"RTM {row['train_acc_rtm']:.2f} NTM {row['train_acc_ntm']:.2f}")
        if phase == "robust":
            message += (f" | selected {row['selected_size']} ({100 * row['selected_frac']:.1f}%) precision "
                        f"{fmt(row['selected_precision'], '.3f')} recall {fmt(row['selected_recall'], '.3f')} mined "
                        f"{row['mined_size']} mining on {100 * row['mining_active_frac']:.0f}% of batches, mean M "
                        f"{fmt(row['mean_metric'])}")
        return row, message

    def summary(self, history: list[dict]) -> dict:
        return {**summarize(self.cfg, history, self.data, self.rtm_plan, self.ntm_plan),
                "fingerprint": self.data.fingerprint, "settings": self.run.training_settings()}

    def save_results(self, result: dict) -> None:
        export_model(self.rtm, cfg=self.cfg, data=self.data, path=self.run.outputs.model)
        save_json(result, self.run.outputs.result)  # last: the mark of a finished run

    def sample_report(self) -> dict:
        return dict(model=self.rtm, files=self.run.outputs.report)

    def announce(self, result: dict) -> None:
        log = self.run.log
        log.info(f"model for predict.py (the RTM): {self.run.outputs.model}")
        last = result["history"][-1]
        accuracy = (f"last acc {result['last_acc']:.2f} (best {result['best_acc']:.2f}, mean of last "
                    f"{result['last_k']} {result['last_k_mean']:.2f} +- {result['last_k_std']:.2f} population std, "
                    "ACT's Table 1 metric)" if "last_k" in result
                    else describe_result(result, self.data.test_sets))
        log.info(f"RTM {accuracy}; last selection precision {fmt(last['selected_precision'], '.3f')} recall "
                 f"{fmt(last['selected_recall'], '.3f')}: {self.run.outputs.result}")


def main(argv: Sequence[str] | None = None) -> dict:
    run = start_run(argv, prog="acto.py", scope=ACTO, outputs=ActoOutputs.of, claims_outputs=True)
    validate(run.cfg)
    hp = ActoHParams.from_config(run.cfg)  # refuses a bad key before any data is loaded
    data = build_data(run.cfg, stage="stage2", log=run.log.info)
    run.claim_outputs(fingerprint=data.fingerprint)
    run.check_images(data)
    return run_method(Acto(run, data, hp))


def summarize(cfg, history: list[dict], data, rtm_plan: str, ntm_plan: str) -> dict:
    robust = [row for row in history if row["phase"] == "robust"]

    def series(key):
        return [row[key] for row in history]

    # per evaluation set (possibly none) the RTM's accuracies, and the NTM's on the first set
    extra = accuracy_summary(history, data.test_sets) | accuracy_summary(history, list(data.test_sets)[:1],
                                                                           prefix="ntm_")
    if "test" in data.test_sets:  # ACT's Table 1 metric: a clean test set's mean over the last epochs
        test_acc = series("test_acc")
        k = min(LAST_K, len(test_acc))
        tail = test_acc[-k:]
        extra.update({"best_epoch": int(np.argmax(test_acc)) + 1, "last_k": k,
                      "last_k_mean": round(statistics.fmean(tail), 4), "last_k_std": round(statistics.pstdev(tail), 4)})
    return {
        **extra,
        "method": "acto", "tag": cfg.tag, "seed": cfg.seed, "dataset": cfg.dataset, "backbone": cfg.backbone,
        "noise_mode": cfg.noise_mode, "noise_ratio": cfg.noise_ratio, "noise_convention": cfg.noise_convention,
        "realised_noise_rate": data.noise_info.get("realised_noise_rate"),
        "epochs": cfg.epochs, "warmup_epochs": cfg.warmup_epochs, "selection_rule": cfg.selection_rule,
        "lr_plan": rtm_plan, "ntm_lr_plan": ntm_plan,
        "selected_size": series("selected_size"), "selected_frac": series("selected_frac"),
        "selected_precision": series("selected_precision"), "selected_recall": series("selected_recall"),
        "mined_size": series("mined_size"), "mined_share": series("mined_share"),
        "mining_active_frac": series("mining_active_frac"), "mean_metric": series("mean_metric"),
        "train_loss": series("train_loss"), "phase": series("phase"),
        "robust_epochs": len(robust),
        "history": history,
    }


if __name__ == "__main__":
    run_main(main)
