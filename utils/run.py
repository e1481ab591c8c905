"""What every entry point does first: parse the config, pick the device, open the run directory."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from utils.config import Config, parse_config
from utils.distributed import Runtime, setup_runtime
from utils.engine import Precision, seed_everything
from utils.runlog import RunLog


@dataclass
class Run:
    cfg: Config
    runtime: Runtime
    log: RunLog
    precision: Precision

    def path(self, *parts: str) -> str:
        """A path under output_dir."""
        return os.path.join(self.cfg.output_dir, *parts)


def start_run(argv: Sequence[str] | None, *, prog: str, scope: str, run_name: str,
              forced: Mapping[str, Any] | None = None) -> Run:
    """Parse and validate the command line, set up devices/processes, and write config.yaml.

    ``run_name`` is the default name of ``checkpoint/{run}``, a format string over ``tag`` and the
    config keys (the config's own run_name wins).
    """
    cfg = parse_config(argv, prog=prog, scope=scope, forced=forced)
    runtime = setup_runtime(cfg.device)
    name = cfg.run_name or run_name.format(tag=cfg.tag, **cfg)
    log = RunLog(os.path.join(cfg.output_dir, "checkpoint", name), enabled=runtime.is_main)
    if runtime.is_main and not cfg.resume:
        stale = os.path.join(log.run_dir, "train.log")
        if os.path.exists(stale):  # a fresh run starts a fresh log
            os.remove(stale)
    log.write_config(cfg)
    log.info(f"{prog} on {runtime.device} (world size {runtime.world_size}), torch {torch.__version__}")
    log.info("config:\n" + cfg.to_yaml().rstrip())
    seed_everything(cfg.seed)
    return Run(cfg, runtime, log, Precision.create(cfg.precision, runtime.device))


def place_model(model: torch.nn.Module, run: Run) -> torch.nn.Module:
    """Move ``model`` to the run's device and return the module to train with.

    The returned module may be a DistributedDataParallel and/or compiled wrapper; save and evaluate
    the original ``model`` (its parameters are shared with the wrapper).
    """
    model.to(run.runtime.device)
    if run.cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    train_model: torch.nn.Module = model
    if run.runtime.distributed:
        device_ids = [run.runtime.device.index] if run.runtime.device.type == "cuda" else None
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if run.cfg.compile:
        train_model = torch.compile(train_model)
    return train_model
