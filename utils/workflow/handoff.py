"""The stage-1 -> stage-2 hand-off, in one place: what stage 1 saves for stage 2 (the wrong events, what they
belong to, the base model), how stage 2 checks and loads them, and when a finished stage 1 can be reused
(clean_labels.py).  The file names are :class:`utils.training.outputs.Stage1Outputs`.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch

from model import create_model
from utils.core.errors import DataError
from utils.core.io import save_json, save_npy
from utils.core.shell import command as shell_command
from utils.method.metrics import detection_auc
from utils.method.wrong_events import LabelWave
from utils.report.plots import wrong_event_histogram
from utils.training.accuracy_keys import acc_key
from utils.training.run import Run


def save_stage1(run: Run, data, counts: np.ndarray, wave: LabelWave, history: list[dict]) -> dict:
    """Write the wrong events (int32, one per training sample in dataset order), their histogram and, last, the
    JSON that says what they belong to (fingerprint of samples and noisy labels, training settings, label wave):
    the mark of a finished stage 1 (utils/workflow/continuation.py: ``finished_result``).  The base model was saved by stage 1 at its epoch;
    returns both paths."""
    cfg, tag, out = run.cfg, run.cfg.tag, run.outputs
    counts = counts.astype(np.int32)
    npy = save_npy(counts, out.wrong_events)
    meta = {
        "tag": tag, "dataset": cfg.dataset, "num_samples": int(len(counts)), "num_classes": data.num_classes,
        "noise_mode": cfg.noise_mode, "noise_ratio": cfg.noise_ratio, "noise_convention": cfg.noise_convention,
        "realised_noise_rate": data.noise_info["realised_noise_rate"], "epochs": cfg.epochs,
        "backbone": cfg.backbone, "seed": cfg.seed, "base_model_epoch": wave.best_epoch + 1,
        "prediction_change": wave.history, "fingerprint": data.fingerprint,
        "settings": run.training_settings(),  # what a later run compares to reuse these outputs (finished_result)
        # how well the counts alone tell noisy labels from clean ones (fewer events = cleaner); None without truth
        "wrong_event_auc": detection_auc(-counts.astype(np.float64), data.is_noisy),
        **{acc_key(name): [row[acc_key(name)] for row in history] for name in data.test_sets},
    }
    wrong_event_histogram(counts, out.wrong_events_plot, is_noisy=data.is_noisy,
                          title=f"{tag}: wrong events after {cfg.epochs} epochs")
    save_json(meta, out.wrong_events_meta)
    return {"wrong_events_path": npy, "base_model_path": out.base_model}


def stage1_command(cfg) -> str:
    """The stage-1 command of this stage-2 config: every key that names the data and the model, with the
    values this run has (own data: or the one command clean_labels.py, which runs both stages), shell-quoted
    (utils/core/shell.py: a folder name with a space or a quote stays one word)."""
    sets = [f"{key}={cfg[key]}" for key in ("data_path", "train_csv", "test_csv", "pretrained_path", "resolution")
            if cfg.get(key) is not None]
    sets += [f"pretrained={str(cfg.pretrained).lower()}", f"seed={cfg.seed}"]
    command = shell_command(["python", "stage_1.py", "--config", f"config/stage1/{cfg.dataset}.yaml", "--noise_mode",
                             cfg.noise_mode, "--noise_ratio", f"{cfg.noise_ratio:g}", "--backbone", cfg.backbone,
                             "--output_dir", cfg.output_dir, *(word for s in sets for word in ("--set", s))])
    if cfg.dataset in ("imagefolder", "csv"):
        command += "; or both stages in one: " + shell_command(["python", "clean_labels.py", "DATA", "--output_dir",
                                                                cfg.output_dir])
    return command


def load_stage1(run: Run, data) -> tuple[np.ndarray, dict]:
    """Stage 2's input: the stage-1 wrong events (int64) and their JSON, refused unless their fingerprint
    matches this data set and noise (the official Clothing1M bug silently mis-indexed them)."""
    cfg, inputs = run.cfg, run.outputs.input
    path, meta_path = inputs.wrong_events, inputs.wrong_events_meta
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


def load_base_model(run: Run, data) -> torch.nn.Module:
    """Stage 2's starting point: the stage-1 base model (on the CPU), refused with one line where it is
    missing or does not fit the backbone and classes."""
    cfg = run.cfg
    path = run.outputs.input.base_model
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

