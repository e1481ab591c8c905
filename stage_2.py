"""IDO stage 2: beta mixture on the wrong events, retraining the base model with the dynamic loss.

    python stage_2.py --config config/stage2/cifar100.yaml --noise_mode sym --noise_ratio 0.4

``stage_2.py`` fits one mixture to the whole training set (``bmm: global``); ``stage_2_class.py``
is this program with one mixture per noisy class (``bmm: class``).  Reads stage 1's wrong events and base
model (utils/workflow/handoff.py); writes stage2/{tag}_{bmm}.json, _bmm.png, _model.pt, the per-sample report
stage2/{tag}_{bmm}_* and checkpoint/stage2_{tag}_{bmm}/ (utils/training/outputs.py: Stage2Outputs).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from dataloader import Data, build_data
from model.export import export_model
from utils.core.entry import run_main
from utils.core.io import save_json
from utils.method.bmm import BetaMixture
from utils.method.sample_weights import SampleWeights
from utils.method.steps import STAGE2_TERMS, VIEWS, stage2_step
from utils.method.wrong_events import WrongEvents
from utils.report.evidence import WrongEventTrials
from utils.report.plots import bmm_fit_plot
from utils.training.accuracy_keys import accuracy_columns, accuracy_summary, describe_accuracies, describe_result
from utils.training.config import STAGE2
from utils.training.engine import evaluate_all, make_loaders
from utils.training.optim import build_optimizer, build_scheduler, optim_settings
from utils.training.outputs import BMM_HISTORY, Stage2Outputs
from utils.training.run import Run, place_model, start_run
from utils.training.run_summary import log_summary
from utils.workflow.handoff import load_base_model, load_stage1
from utils.workflow.lifecycle import Method, fmt, run_method


def without_bmm(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "bmm"} for row in history]


class Stage2(Method):
    """The base model retrained with the dynamic loss: every epoch adds the two views' wrong events to the
    stage-1 counts, and the beta mixture refitted to them weighs each sample's three loss terms."""

    name = "stage 2"

    def __init__(self, run: Run, data: Data, stage1_counts: np.ndarray, stage1_meta: dict):
        super().__init__(run, data)
        cfg, runtime = run.cfg, run.runtime
        self.stage1_counts = stage1_counts
        self.stage1_epochs = stage1_meta.get("epochs")  # what stage 1's counts are out of (the report's cards)
        self.outputs = run.outputs
        self.net = load_base_model(run, data)
        self.model = place_model(self.net, run)
        settings = optim_settings(cfg)
        self.optimizer = build_optimizer(self.net, settings)
        self.optimizers = (self.optimizer,)
        self.scheduler = build_scheduler(self.optimizer, kind="cosine", epochs=cfg.epochs, eta_min=cfg.eta_min)
        self.refit_iters = cfg.bmm_refit_iters if cfg.bmm_refit_iters is not None else (2 if cfg.bmm == "class"
                                                                                         else 1)
        log_summary(run, data, model=f"from the stage-1 base model {self.outputs.input.base_model}", lr=settings.lr,
                    optimiser=f"{settings.name} lr {settings.lr:g} weight decay {settings.weight_decay:g}, cosine "
                              f"to {cfg.eta_min:g}",
                    method=f"{cfg.bmm} BMM ({cfg.bmm_init_iters} EM iterations, then {self.refit_iters} per epoch) "
                           f"on the wrong events of {stage1_meta.get('epochs')} stage-1 epochs; entropy term "
                           f"{cfg.entropy_weight}, noisy weight {cfg.noisy_weight}",
                    outputs=[self.outputs.result, self.outputs.result.removesuffix(".json") + "_*"])
        self.wrong_events = WrongEvents(len(data.train), device=runtime.device,
                                        initial=torch.as_tensor(stage1_counts))
        self.weights = SampleWeights(class_wise=cfg.bmm == "class", noisy_labels=data.noisy_labels,
                                     num_classes=data.num_classes, device=runtime.device, new_events=VIEWS,
                                     noisy_weight=cfg.noisy_weight)
        self.loader, self.test_loaders = make_loaders(data.train, data.test_sets, cfg, runtime)
        self.evaluate_kw = dict(precision=run.precision, runtime=runtime, channels_last=cfg.channels_last,
                                normalise=data.normalise)
        self.parts = {"model": self.net, "optimizer": self.optimizer, "scheduler": self.scheduler,
                      "scaler": run.precision.scaler, "wrong_events": self.wrong_events}
        self.step = stage2_step(self.wrong_events, self.weights, entropy_weight=cfg.entropy_weight)
        # the mixture after each epoch: in checkpoint/{run}/bmm_history.jsonl and the result, not in metrics.csv
        self.bmm_history: list[dict] = []

    def start(self) -> None:
        self.weights.fit(self.stage1_counts, iterations=self.cfg.bmm_init_iters)
        self.base_accs = evaluate_all(self.net, self.test_loaders, **self.evaluate_kw)
        self.initial = {"bmm": self.weights.bmm.describe(), **self.weights.detection(self.stage1_counts,
                                                                                      self.data.is_noisy)}
        self.run.log.info(f"base model {describe_accuracies(self.base_accs)}; initial BMM "
                          f"{fmt_bmm(self.weights.bmm)}; noise-detection AUC {fmt(self.initial['auc'])}")

    def resume(self, state: dict) -> list[dict]:
        self.weights.load_state_dict(state["bmm"], self.wrong_events.counts.cpu().numpy())
        self.base_accs, self.initial = state["base_accs"], state["initial"]
        history = list(state["history"])
        if history and "bmm" in history[0]:  # checkpoints from before bmm_history.jsonl carry them inline
            self.bmm_history = [row["bmm"] for row in history]
            return without_bmm(history)
        self.bmm_history = self.run.log.read_records(BMM_HISTORY, len(history)) if history else []
        return history

    def epoch_step(self, epoch: int):
        return self.step

    def end_epoch(self, epoch: int, stats: dict) -> tuple[dict, str]:
        self.wrong_events.end_epoch(self.run.runtime.reduce_max)
        counts = self.wrong_events.counts.cpu().numpy()
        self.weights.fit(counts, iterations=self.refit_iters)  # identical on every rank: same counts, same EM
        accuracies = evaluate_all(self.net, self.test_loaders, **self.evaluate_kw)
        self.scheduler.step()
        detection = self.weights.detection(counts, self.data.is_noisy)
        row = {"epoch": epoch + 1, "lr": stats["lr"], "train_loss": round(stats["loss"], 6),
               **{term: round(stats[term], 6) for term in STAGE2_TERMS}, **accuracy_columns(accuracies),
               **detection}
        self.bmm_history.append(self.weights.bmm.describe())
        # one line per epoch in its own file; last.pt keeps the rest of the history
        self.run.log.append_record(BMM_HISTORY, self.bmm_history[-1], first=epoch == 0)
        message = (f"epoch {epoch + 1}/{self.epochs} loss {stats['loss']:.4f} (clean {stats['loss_clean']:.4f} hard "
                   f"{stats['loss_hard']:.4f} noisy {stats['loss_noisy']:.4f}) {describe_accuracies(accuracies)} "
                   f"AUC {fmt(detection['auc'])} BMM {fmt_bmm(self.weights.bmm)}")
        return row, message

    def checkpoint_state(self, history: list[dict]) -> dict:
        return {"bmm": self.weights.state_dict(), "history": history, "base_accs": self.base_accs,
                "initial": self.initial}

    def counts(self) -> np.ndarray:
        return self.wrong_events.counts.cpu().numpy()  # merged: the same on every process

    def summary(self, history: list[dict]) -> dict:
        cfg, data = self.cfg, self.data
        return {
            "tag": cfg.tag, "bmm": cfg.bmm, "entropy_weight": cfg.entropy_weight, "seed": cfg.seed,
            **accuracy_summary(history, data.test_sets, base=self.base_accs), "initial": self.initial,
            **{key: [row[key] for row in history] for key in ("auc", "clean_size", "clean_precision",
                                                              "clean_recall")},
            "bmm_params": self.bmm_history, "train_loss": [row["train_loss"] for row in history],
            "realised_noise_rate": data.noise_info.get("realised_noise_rate"), "fingerprint": data.fingerprint,
            "settings": self.run.training_settings(),  # with the fingerprint: what a re-run compares to reuse it
        }

    def save_results(self, result: dict) -> None:
        bmm_fit_plot(self.counts(), self.weights.bmm, self.outputs.bmm_plot, groups=self.weights.groups_np,
                     is_noisy=self.data.is_noisy,
                     title=f"{self.cfg.tag}: {self.cfg.bmm} BMM after {self.cfg.epochs} stage-2 epochs")
        export_model(self.net, cfg=self.cfg, data=self.data, path=self.outputs.model)
        save_json(result, self.outputs.result)  # last: the mark of a finished run

    def sample_report(self) -> dict:
        counts = self.counts()
        return dict(model=self.net, files=self.outputs.report, wrong_events=counts,
                    label_score=self.weights.clean_posterior(counts), class_wise=self.weights.class_wise,
                    trials=None if self.stage1_epochs is None else WrongEventTrials(
                        stage1_epochs=int(self.stage1_epochs), stage2_epochs=self.cfg.epochs, views=VIEWS))

    def announce(self, result: dict) -> None:
        log = self.run.log
        log.info(f"model for predict.py: {self.outputs.model}")
        log.info(f"{describe_result(result, self.data.test_sets, base=True)}: {self.outputs.result}")


def main(argv: Sequence[str] | None = None, *, prog: str = "stage_2.py",
         forced: Mapping[str, Any] | None = None) -> dict:
    run = start_run(argv, prog=prog, scope=STAGE2, outputs=Stage2Outputs.of, forced=forced, claims_outputs=True)
    data = build_data(run.cfg, stage="stage2", log=run.log.info)
    stage1_counts, stage1_meta = load_stage1(run, data)
    run.claim_outputs(fingerprint=data.fingerprint)
    run.check_images(data)
    return run_method(Stage2(run, data, stage1_counts, stage1_meta))


def fmt_bmm(bmm: BetaMixture) -> str:
    if bmm.num_groups > 1:
        return f"{bmm.num_groups} classes, mean clean weight pi1={bmm.pi[:, 0].mean():.3f}"
    (p1, _), (a1, a2), (b1, b2) = bmm.pi[0], bmm.alpha[0], bmm.beta[0]
    return f"pi1={p1:.3f} alpha=({a1:.3f}, {a2:.3f}) beta=({b1:.3f}, {b2:.3f})"


if __name__ == "__main__":
    run_main(main)
