"""IDO stage 2: beta mixture on the wrong events, retraining the base model with the dynamic loss.

    python stage_2.py --config config/stage2/cifar100.yaml --noise_mode sym --noise_ratio 0.4

``stage_2.py`` fits one mixture to the whole training set (``bmm: global``); ``stage_2_class.py``
is this program with one mixture per noisy class (``bmm: class``).  Writes
stage2/{tag}_{bmm}.json, stage2/{tag}_{bmm}_bmm.png and checkpoint/stage2_{tag}_{bmm}/.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from dataloader import Data, build_data
from model import create_model
from model.export import export_model
from utils.accuracy_keys import accuracy_summary, describe_result
from utils.bmm import BetaMixture, BmmLookup, pair_histogram
from utils.config import STAGE2
from utils.engine import accuracy_columns, describe_accuracies, evaluate_all, make_loaders
from utils.errors import DataError, run_main
from utils.io import save_json
from utils.lifecycle import Method, fmt, run_method
from utils.losses import loss_weights, weighted_dynamic_loss
from utils.metrics import grouped_detection_auc, split_quality
from utils.optim import build_optimizer, build_scheduler, optim_settings
from utils.plots import bmm_fit_plot
from utils.run import Run, place_model, start_run
from utils.run_summary import log_summary
from utils.wrong_events import WrongEvents


class SampleWeights:
    """The beta mixture over the wrong events and a device-side table of the loss weights per count.

    After each fit the weights of the three loss terms (:func:`utils.losses.loss_weights` of the
    mixture's tau1, tau2, F1, F2) are computed for every (group, count), so a batch costs one gather.

    ``new_events`` is the most a sample's live count can exceed the counts of the last fit: one
    event per view, since :meth:`WrongEvents.record` returns the counts at the start of the epoch plus
    this epoch's events of the sample (a sample seen twice in one epoch, as with a distributed
    sampler's padding, overwrites rather than adds).  The table covers that margin, so the per-batch
    lookup needs no clamp.
    """

    def __init__(self, *, class_wise: bool, noisy_labels: np.ndarray, num_classes: int, device: torch.device,
                 new_events: int, noisy_weight: str = "one_minus_clean"):
        if new_events < 0:
            raise ValueError(f"new_events must be >= 0, got {new_events}")
        self.class_wise = class_wise
        self.new_events = new_events
        self.noisy_weight = noisy_weight
        self.bmm = BetaMixture(num_groups=num_classes if class_wise else 1)
        self.groups_np = noisy_labels if class_wise else None
        self.groups = torch.as_tensor(noisy_labels, device=device) if class_wise else None
        self.device = device
        self.lookup: BmmLookup | None = None

    def fit(self, counts: np.ndarray, *, iterations: int) -> None:
        self.bmm.fit(counts, groups=self.groups_np, max_iter=iterations)
        self._build_lookup(counts)

    def _build_lookup(self, counts: np.ndarray) -> None:
        # rows above the fitted maximum (this epoch's new events) repeat the last one: IDO-B5's clipping
        max_count = int(counts.max(initial=0)) + self.new_events
        tau1, tau2, f1, f2 = torch.as_tensor(self.bmm.lookup_table(max_count)).unbind(-1)  # each (G, K), float32
        weights = loss_weights(clean_posterior=tau1, noisy_posterior=tau2, clean_cdf=f1, noisy_cdf=f2,
                               noisy_weight=self.noisy_weight)  # (3, G, K)
        self.lookup = BmmLookup(weights.permute(1, 2, 0).numpy(), device=self.device, clamp=False)

    def state_dict(self) -> dict:
        return self.bmm.state_dict()

    def load_state_dict(self, state: dict, counts: np.ndarray) -> None:
        """Restore the mixture fitted to ``counts`` (the wrong events it was last fitted on)."""
        self.bmm.load_state_dict(state)
        self._build_lookup(counts)

    def __call__(self, counts: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Loss weights ``(3, B)`` (clean, consistency, noisy term) of the samples ``index`` (B,) whose
        live wrong-event counts are ``counts`` (B,)."""
        return self.lookup(counts, None if self.groups is None else self.groups[index])

    def clean_posterior(self, counts: np.ndarray) -> np.ndarray:
        return self.bmm.evaluate(counts, self.groups_np)["clean_posterior"]

    def detection(self, counts: np.ndarray, is_noisy: np.ndarray | None) -> dict:
        """Noise-detection quality where the truth is known: AUC of the clean posterior, and size,
        precision and recall of the clean split (clean posterior >= 0.5)."""
        # per distinct (group, count) pair, weighted by how many clean / noisy samples have it: O(N) and
        # the same numbers as over the N samples (tests/test_bmm.py)
        group, count, samples, noisy = pair_histogram(counts, self.groups_np, num_groups=self.bmm.num_groups,
                                                      marked=is_noisy)
        clean_posterior = self.bmm.evaluate(count, group if self.class_wise else None)["clean_posterior"]
        if noisy is None:
            auc, split = None, split_quality(clean_posterior >= 0.5, None, weight=samples)
        else:
            auc = grouped_detection_auc(clean_posterior, samples - noisy, noisy)
            # each pair twice: its clean samples, then its noisy ones
            split = split_quality(np.tile(clean_posterior >= 0.5, 2), np.repeat([True, False], len(samples)),
                                  weight=np.concatenate([samples - noisy, noisy]))
        rnd = (lambda v: None if v is None else round(v, 6))
        return {"auc": rnd(auc), "clean_size": split["size"], "clean_precision": rnd(split["precision"]),
                "clean_recall": rnd(split["recall"])}


VIEWS = 2  # weak and strong: each can add one wrong event per sample and epoch
BMM_HISTORY = "bmm_history"  # checkpoint/{run}/bmm_history.jsonl: the mixture after each epoch


def without_bmm(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "bmm"} for row in history]


def stage2_step(wrong_events: WrongEvents, weights: SampleWeights, cfg):
    """Two forward passes (weak, strong), +1 wrong event per view, then the dynamic loss."""
    def step(model, batch):
        (weak, strong), labels, index = batch
        _, logits_weak = model(weak)
        _, logits_strong = model(strong)
        counts = wrong_events.record(index, logits_weak.detach().argmax(1), logits_strong.detach().argmax(1),
                                     labels=labels)
        loss, _ = weighted_dynamic_loss(logits_weak, logits_strong, labels, weights=weights(counts, index),
                                        entropy_weight=cfg.entropy_weight)
        return loss
    return step


def stage1_command(cfg) -> str:
    """The stage-1 command of this stage-2 config: every key that names the data and the model, with the
    values this run has (own data: or the one command clean_labels.py, which runs both stages)."""
    sets = [f"{key}={cfg[key]}" for key in ("data_path", "train_csv", "test_csv", "pretrained_path", "resolution")
            if cfg.get(key) is not None]
    sets += [f"pretrained={str(cfg.pretrained).lower()}", f"seed={cfg.seed}"]
    command = (f"python stage_1.py --config config/stage1/{cfg.dataset}.yaml --noise_mode {cfg.noise_mode} "
               f"--noise_ratio {cfg.noise_ratio:g} --backbone {cfg.backbone} --output_dir {cfg.output_dir} "
               + " ".join(f"--set {s}" for s in sets))
    if cfg.dataset in ("imagefolder", "csv"):
        command += "; or both stages in one: python clean_labels.py DATA --output_dir " + cfg.output_dir
    return command


def load_stage1(run: Run, data: Data) -> tuple[np.ndarray, dict]:
    """The stage-1 wrong events, refused unless their fingerprint matches this data set and noise."""
    cfg = run.cfg
    path = cfg.wrong_events or run.path("stage1", f"{cfg.tag}_wrongevent.npy")
    meta_path = os.path.splitext(path)[0] + ".json"
    hint = f"run stage 1 first with the same data, noise and backbone ({stage1_command(cfg)})"
    if not os.path.isfile(path) or not os.path.isfile(meta_path):
        raise DataError(f"wrong-event file {path} (and its .json) not found; {hint}")
    try:
        counts = np.load(path, allow_pickle=False)
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read the wrong events {path}: {err}") from None
    if meta.get("fingerprint") != data.fingerprint or counts.shape != (len(data.train),):
        raise DataError(f"wrong-event file {path} was made for other samples or noisy labels (fingerprint "
                        f"mismatch: stage 1 {meta.get('dataset')}, {meta.get('num_samples')} samples); {hint}")
    if counts.dtype.kind not in "iu" or counts.min(initial=0) < 0:
        raise DataError(f"wrong-event file {path} must hold non-negative integers, got {counts.dtype}")
    return counts.astype(np.int64), meta


def base_model_path(run: Run) -> str:
    return run.cfg.base_model or run.path("base_model", f"{run.cfg.tag}.pt")


def load_base_model(run: Run, data: Data) -> torch.nn.Module:
    cfg = run.cfg
    path = base_model_path(run)
    if not os.path.isfile(path):
        raise DataError(f"base model {path} not found; run stage_1.py with the same settings first "
                        f"(the stage-2 backbone must be the stage-1 backbone, here {cfg.backbone})")
    model = create_model(cfg.backbone, num_classes=data.num_classes, pretrained=False, img_size=data.resolution)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, KeyError) as err:
        first = str(err).strip().splitlines()[0]
        raise DataError(f"base model {path} does not fit backbone {cfg.backbone} with {data.num_classes} classes "
                        f"({first})") from None
    return model


class Stage2(Method):
    """The base model retrained with the dynamic loss: every epoch adds the two views' wrong events to the
    stage-1 counts, and the beta mixture refitted to them weighs each sample's three loss terms."""

    name = "stage 2"

    def __init__(self, run: Run, data: Data, stage1_counts: np.ndarray, stage1_meta: dict):
        super().__init__(run, data)
        cfg, runtime = run.cfg, run.runtime
        self.stage1_counts = stage1_counts
        self.net = load_base_model(run, data)
        self.model = place_model(self.net, run)
        settings = optim_settings(cfg)
        self.optimizer = build_optimizer(self.net, settings)
        self.optimizers = (self.optimizer,)
        self.scheduler = build_scheduler(self.optimizer, kind="cosine", epochs=cfg.epochs, eta_min=cfg.eta_min)
        self.refit_iters = cfg.bmm_refit_iters if cfg.bmm_refit_iters is not None else (2 if cfg.bmm == "class"
                                                                                         else 1)
        self.stem = run.path("stage2", f"{cfg.tag}_{cfg.bmm}")
        log_summary(run, data, model=f"from the stage-1 base model {base_model_path(run)}",
                    optimiser=f"{settings.name} lr {settings.lr:g} weight decay {settings.weight_decay:g}, cosine "
                              f"to {cfg.eta_min:g}",
                    method=f"{cfg.bmm} BMM ({cfg.bmm_init_iters} EM iterations, then {self.refit_iters} per epoch) "
                           f"on the wrong events of {stage1_meta.get('epochs')} stage-1 epochs; entropy term "
                           f"{cfg.entropy_weight}, noisy weight {cfg.noisy_weight}",
                    outputs=[self.stem + ".json", self.stem + "_*"])
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
        self.step = stage2_step(self.wrong_events, self.weights, cfg)
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
               **accuracy_columns(accuracies), **detection}
        self.bmm_history.append(self.weights.bmm.describe())
        # one line per epoch in its own file; last.pt keeps the rest of the history
        self.run.log.append_record(BMM_HISTORY, self.bmm_history[-1], first=epoch == 0)
        message = (f"epoch {epoch + 1}/{self.epochs} loss {stats['loss']:.4f} {describe_accuracies(accuracies)} "
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
        }

    def save_results(self, result: dict) -> None:
        save_json(result, self.stem + ".json")
        bmm_fit_plot(self.counts(), self.weights.bmm, self.stem + "_bmm.png", groups=self.weights.groups_np,
                     is_noisy=self.data.is_noisy,
                     title=f"{self.cfg.tag}: {self.cfg.bmm} BMM after {self.cfg.epochs} stage-2 epochs")

    def sample_report(self) -> dict:
        counts = self.counts()
        return dict(model=self.net, stem=self.stem, wrong_events=counts,
                    label_score=self.weights.clean_posterior(counts), class_wise=self.weights.class_wise)

    def export(self, result: dict) -> None:
        log = self.run.log
        model_path = export_model(self.net, cfg=self.cfg, data=self.data, path=self.stem + "_model.pt")
        log.info(f"model for predict.py: {model_path}")
        log.info(f"{describe_result(result, self.data.test_sets, base=True)}: {self.stem}.json")


def main(argv: Sequence[str] | None = None, *, prog: str = "stage_2.py",
         forced: Mapping[str, Any] | None = None) -> dict:
    run = start_run(argv, prog=prog, scope=STAGE2, run_name="stage2_{tag}_{bmm}", forced=forced,
                    claims_outputs=True)
    data = build_data(run.cfg, stage="stage2", log=run.log.info)
    stage1_counts, stage1_meta = load_stage1(run, data)
    run.claim_outputs(run.path("stage2", f"{run.cfg.tag}_{run.cfg.bmm}.json"), fingerprint=data.fingerprint)
    run.check_images(data)
    return run_method(Stage2(run, data, stage1_counts, stage1_meta))


def fmt_bmm(bmm: BetaMixture) -> str:
    if bmm.num_groups > 1:
        return f"{bmm.num_groups} classes, mean clean weight pi1={bmm.pi[:, 0].mean():.3f}"
    (p1, _), (a1, a2), (b1, b2) = bmm.pi[0], bmm.alpha[0], bmm.beta[0]
    return f"pi1={p1:.3f} alpha=({a1:.3f}, {a2:.3f}) beta=({b1:.3f}, {b2:.3f})"


if __name__ == "__main__":
    run_main(main)
