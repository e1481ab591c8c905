"""The few console lines that open a run: what is trained on what, how, where, and where the outputs go.

The whole resolved config goes to ``checkpoint/{run}/config.yaml`` and ``train.log`` (and to the
console with ``--print_config``); this summary is what a person starting a job needs to see before
the first epoch line.  Every entry point prints it through :func:`run_summary` (at most 9 lines).
"""
from __future__ import annotations

import os
from typing import Sequence

import torch

from model import timm_name

MAX_LINES = 9


def _fraction(value) -> str:
    return "n/a" if value is None else f"{float(value):.4f}"


def run_summary(run, data, *, model: str, optimiser: str, lr: float, method: str | None = None,
                outputs: Sequence[str] = ()) -> list[str]:
    """The summary lines of ``run`` (:class:`utils.training.run.Run`) on ``data`` (:class:`dataloader.Data`).

    ``model``: where the backbone's weights come from (:func:`model.resolve_weights`); ``optimiser``:
    optimiser and schedule in words; ``lr``: the (first) learning rate, stated again beside the global batch
    under torchrun, where ``batch_size`` is per process; ``method``: the method's own settings in one line
    (optional); ``outputs``: the files and folders the run writes besides its run directory, as paths.
    """
    cfg, runtime = run.cfg, run.runtime
    tests = ", ".join(f"{len(ds)} {name}" for name, ds in data.test_sets.items()) or "no evaluation set"
    backbone = cfg.backbone if timm_name(cfg.backbone) == cfg.backbone else f"{cfg.backbone} ({timm_name(cfg.backbone)})"
    noise = data.noise_info or {}
    lines = [
        f"{run.prog}: run {os.path.basename(run.log.run_dir)} on {runtime.device} (world size {runtime.world_size}), "
        f"{cfg.precision}, {cfg.num_workers} data workers per process, torch {torch.__version__}",
        f"data       {cfg.dataset}: {len(data.train)} training images ({tests}), {data.num_classes} classes, "
        f"{data.resolution} px",
        f"noise      {cfg.noise_mode} {cfg.noise_ratio:g} ({cfg.noise_convention} convention), realised noise rate "
        f"{_fraction(noise.get('realised_noise_rate'))}",
        f"model      {backbone}, {model}",
        f"optimiser  {optimiser}; {cfg.epochs} epoch{'' if cfg.epochs == 1 else 's'}, batch {cfg.batch_size}",
    ]
    if runtime.world_size > 1:  # torchrun: the recipe is the global batch at this learning rate
        world = runtime.world_size
        lines.append(f"scale      global batch {world * cfg.batch_size} = {world} processes x batch_size "
                     f"{cfg.batch_size} (per process), learning rate {lr:g} as configured (not scaled with the "
                     "number of processes)")
    if method:
        lines.append(f"method     {method}")
    out = cfg.output_dir
    shown = [os.path.relpath(p, out) if os.path.abspath(p).startswith(os.path.abspath(out) + os.sep) else p
             for p in outputs]
    if shown:
        lines.append(f"outputs    in {os.path.abspath(out)}: {', '.join(shown)}")
    lines.append(f"run dir    {os.path.abspath(run.log.run_dir)}: train.log, metrics.csv, last.pt, config.yaml "
                 "(the full config; --print_config shows it here)")
    return lines


def log_summary(run, data, **kwargs) -> None:
    """Print :func:`run_summary`'s lines (and append them to train.log)."""
    for line in run_summary(run, data, **kwargs):
        run.log.info(line)
