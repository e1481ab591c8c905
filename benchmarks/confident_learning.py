"""Confident learning (cleanlab) with the project's own network, data and noisy labels: a baseline.

    python benchmarks/confident_learning.py [--config config/stage1/digits.yaml] [stage_1.py options]
        [--folds 4] [--retrain_epochs 40]

1. Out-of-sample predicted probabilities by stratified k-fold cross-validation: for every fold a
   fresh model (the config's backbone, optimiser and schedule) is trained with cross-entropy for
   ``epochs`` on the other folds and predicts the held-out fold (test transform, no augmentation).
2. ``cleanlab.filter.find_label_issues(noisy_labels, pred_probs)`` (default ``prune_by_noise_rate``)
   flags the label issues.
3. A fresh model is trained with cross-entropy on the kept samples for ``retrain_epochs`` and tested
   after every epoch.

The command line is stage_1.py's (same config files, keys and validation), so the data set, the
noisy-label file (``noise_dir``) and the network are exactly those of the IDO runs it is compared
with.  Writes ``cleanlab/{tag}.json``: ``last_acc``, ``best_acc``, ``test_acc`` per epoch (own data: the
keys of its evaluation set, ``val_last_acc_given_labels`` ..., or none without one; utils/training/accuracy_keys.py), the
noise-detection AUC of the self-confidence ``p[given label]`` and the size, precision and recall of
the kept (clean) split where the true labels are known.  Needs ``pip install -r requirements-bench.txt``.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Subset

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataloader import build_data  # noqa: E402
from dataloader.base import NoisyLabelDataset  # noqa: E402
from model import create_model, resolve_weights  # noqa: E402
from utils.training.accuracy_keys import acc_key, describe_result  # noqa: E402
from utils.training.config import STAGE1  # noqa: E402
from utils.training.engine import evaluate, make_loaders, predict_probabilities  # noqa: E402
from utils.core.errors import ConfigError  # noqa: E402
from utils.core.entry import run_main  # noqa: E402
from utils.core.io import save_json  # noqa: E402
from utils.workflow.lifecycle import Method, run_method  # noqa: E402
from utils.method.metrics import detection_auc, split_quality  # noqa: E402
from utils.training.optim import build_optimizer, build_scheduler, optim_settings, stage1_schedule_kind  # noqa: E402
from utils.training.outputs import CleanlabOutputs  # noqa: E402
from utils.training.run import Run, place_model, start_run  # noqa: E402
from utils.training.run_summary import log_summary  # noqa: E402


def cross_entropy_step(model, batch):
    images, labels, _ = batch
    _, logits = model(images)
    return F.cross_entropy(logits.float(), labels)


class CrossEntropyTraining(Method):
    """A fresh model (the config's backbone, optimiser and schedule) trained with plain cross-entropy on
    ``train_set`` for ``epochs``, its RNGs seeded from ``seed``; not checkpointed (no ``parts``).  With
    ``test_loader`` (the set ``test_name``) the history holds its accuracy (%) after every epoch, and
    ``log_epochs`` logs it (the progress of a long run: benchmarks/pretrain_mnist.py)."""

    def __init__(self, run: Run, data, train_set, *, epochs: int, seed: int, name: str, test_loader=None,
                 test_name: str | None = None, log_epochs: bool = False):
        super().__init__(run, data)
        cfg = run.cfg
        self.epochs, self.seed, self.name = epochs, seed, name
        self.test_loader, self.test_name, self.log_epochs = test_loader, test_name, log_epochs
        torch.manual_seed(seed)
        self.net = create_model(cfg.backbone, num_classes=data.num_classes, pretrained=cfg.pretrained,
                                pretrained_path=cfg.pretrained_path, img_size=data.resolution)
        self.model = place_model(self.net, run)
        optimizer = build_optimizer(self.net, optim_settings(cfg))
        self.optimizers = (optimizer,)
        self.scheduler = build_scheduler(optimizer, kind=stage1_schedule_kind(cfg), epochs=epochs,
                                         milestones=cfg.step_milestones)
        self.loader, _ = make_loaders(train_set, {}, cfg.replace(seed=seed), run.runtime)

    def epoch_step(self, epoch: int):
        return cross_entropy_step

    def end_epoch(self, epoch: int, stats: dict) -> tuple[dict | None, str | None]:
        self.scheduler.step()
        if self.test_loader is None:
            return None, None
        accuracy = round(evaluate(self.net, self.test_loader, precision=self.run.precision, runtime=self.run.runtime,
                                  channels_last=self.cfg.channels_last, normalise=self.data.normalise), 4)
        message = f"{self.name} epoch {epoch + 1}/{self.epochs}: test accuracy {accuracy:.2f}"
        return {"epoch": epoch + 1, acc_key(self.test_name): accuracy}, message if self.log_epochs else None


def cross_validated_probs(run: Run, data, *, folds: int) -> np.ndarray:
    """Out-of-sample (N, C) predicted probabilities of every training sample by stratified k-fold."""
    from sklearn.model_selection import StratifiedKFold

    cfg = run.cfg
    eval_view = NoisyLabelDataset(data.raw.train_images, data.noisy_labels, data.test.transform)
    probs = np.zeros((len(data.train), data.num_classes), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=cfg.seed)
    for k, (fit_idx, held_idx) in enumerate(splitter.split(np.zeros(len(data.noisy_labels)), data.noisy_labels)):
        fold = CrossEntropyTraining(run, data, Subset(data.train, fit_idx.tolist()), epochs=cfg.epochs,
                                    seed=cfg.seed * 1000 + k, name=f"fold {k + 1}/{folds}")
        run_method(fold)
        probs[held_idx] = predict_probabilities(
            fold.net, Subset(eval_view, held_idx.tolist()), batch_size=cfg.test_batch_size,
            num_workers=cfg.num_workers, precision=run.precision, device=run.runtime.device,
            normalise=data.normalise)
        run.log.info(f"fold {k + 1}/{folds}: {len(fit_idx)} samples fitted, {len(held_idx)} predicted")
    return probs


class ConfidentLearning(CrossEntropyTraining):
    """Step 3: a fresh model trained on the samples not flagged as label issues and tested after every epoch
    on the first evaluation set ("test", or own data's "val_given_labels"; none: not tested); its summary is
    the baseline's result, cleanlab/{tag}.json."""

    def __init__(self, run: Run, data, *, issues: np.ndarray, detection: dict, folds: int, retrain_epochs: int):
        self.issues, self.detection, self.folds = issues, detection, folds
        name = data.test_name
        _, tests = make_loaders(data.train, data.test_sets, run.cfg, run.runtime)
        super().__init__(run, data, Subset(data.train, np.flatnonzero(~issues).tolist()), epochs=retrain_epochs,
                         seed=run.cfg.seed, name="retrain", test_loader=tests[name] if name else None,
                         test_name=name)

    def summary(self, history: list[dict]) -> dict:
        cfg, name = self.cfg, self.test_name
        result = {
            "method": "cleanlab", "tag": cfg.tag, "seed": cfg.seed, "folds": self.folds, "cv_epochs": cfg.epochs,
            "retrain_epochs": self.epochs, "realised_noise_rate": self.data.noise_info.get("realised_noise_rate"),
            "num_flagged": int(self.issues.sum()), **self.detection,
        }
        if name:
            accs = [row[acc_key(name)] for row in history]
            result.update({acc_key(name, "last"): accs[-1], acc_key(name, "best"): max(accs), acc_key(name): accs})
        return result

    def save_results(self, result: dict) -> None:
        path = save_json(result, self.run.outputs.result)
        self.run.log.info(f"{describe_result(result, [self.test_name] if self.test_name else [])}: {path}")


def parse_extra(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--retrain_epochs", type=int, default=None)
    args, rest = parser.parse_known_args(argv)
    if args.folds < 2:
        raise ConfigError(f"--folds must be >= 2, got {args.folds}")
    if args.retrain_epochs is not None and args.retrain_epochs < 1:
        raise ConfigError(f"--retrain_epochs must be >= 1, got {args.retrain_epochs}")
    return args, rest


def main(argv: Sequence[str] | None = None) -> dict:
    from cleanlab.filter import find_label_issues

    extra, argv = parse_extra(sys.argv[1:] if argv is None else argv)
    run = start_run(argv, prog="confident_learning.py", scope=STAGE1, outputs=CleanlabOutputs.of)
    cfg, log = run.cfg, run.log
    retrain_epochs = extra.retrain_epochs or 2 * cfg.epochs
    data = build_data(cfg, stage="stage1", log=log.info)
    weights = resolve_weights(cfg.backbone, pretrained=cfg.pretrained, pretrained_path=cfg.pretrained_path)
    settings = optim_settings(cfg)
    log_summary(run, data, model=weights, lr=settings.lr,
                optimiser=f"{settings.name} lr {settings.lr:g} weight decay {settings.weight_decay:g}, schedule "
                          f"{stage1_schedule_kind(cfg)}",
                method=f"confident learning: {extra.folds}-fold cross-validation x {cfg.epochs} epochs, then "
                       f"{retrain_epochs} epochs on the kept samples",
                outputs=[run.outputs.result])

    probs = cross_validated_probs(run, data, folds=extra.folds)  # 1.
    # 2. n_jobs=1: cleanlab's default process pool forks this process, whose torch threads may hold a lock
    # at the fork; the child then waits on it forever (seen twice: a CI run hung in this call). cleanlab's
    # result does not depend on n_jobs.
    issues = find_label_issues(labels=data.noisy_labels, pred_probs=probs, n_jobs=1)
    self_confidence = probs[np.arange(len(probs)), data.noisy_labels]
    is_noisy = data.is_noisy
    split = split_quality(~issues, None if is_noisy is None else ~is_noisy)
    auc = detection_auc(self_confidence, is_noisy)
    log.info(f"cleanlab flags {int(issues.sum())} of {len(issues)} labels; kept split precision "
             f"{split['precision']} recall {split['recall']}, AUC {auc}")
    detection = {"auc": auc, "clean_size": split["size"], "clean_precision": split["precision"],
                 "clean_recall": split["recall"]}
    # 3.
    return run_method(ConfidentLearning(run, data, issues=issues, detection=detection, folds=extra.folds,
                                        retrain_epochs=retrain_epochs))


if __name__ == "__main__":
    run_main(main)
