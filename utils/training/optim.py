"""Optimiser and learning-rate schedule per backbone (docs/fidelity.md#ido-12-backbones-and-optimisers), through timm and torch factories."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.optim import create_optimizer_v2

from model import timm_name
from utils.core.errors import ConfigError
from utils.method.acto import DEFAULT_ETA_END, build_lr_plan, parse_lr_plan


@dataclass(frozen=True)
class OptimSettings:
    name: str
    lr: float
    weight_decay: float
    momentum: float


# the official per-backbone settings; any other timm model gets the ResNet-50 ones
_OFFICIAL = {
    "vit": ("sgd", 1e-2, 1e-5),        # plain SGD, no momentum
    "convnext": ("adamw", 1e-4, 1e-4),
    "default": ("adamw", 1e-3, 1e-5),
}
_DEFAULT_LR = {"adamw": 1e-3, "sgd": 1e-2}


def optim_settings(cfg) -> OptimSettings:
    """Resolve ``optimizer``/``lr``/``weight_decay`` (null = the official value for the backbone)."""
    name = timm_name(cfg.backbone)
    family = "vit" if "vit" in name else "convnext" if "convnext" in name else "default"
    opt, lr, wd = _OFFICIAL[family]
    if cfg.optimizer is not None and cfg.optimizer != opt:
        opt, lr = cfg.optimizer, _DEFAULT_LR[cfg.optimizer]
    return OptimSettings(opt, cfg.lr if cfg.lr is not None else lr,
                         cfg.weight_decay if cfg.weight_decay is not None else wd, cfg.momentum)


def build_optimizer(model: torch.nn.Module, settings: OptimSettings) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    # timm's "sgd" is Nesterov SGD; "momentum" is torch.optim.SGD without Nesterov (plain at momentum 0).
    opt, extra = ("momentum", {"momentum": settings.momentum}) if settings.name == "sgd" else (settings.name, {})
    # weight decay on every parameter, as the official code (no bias/norm exclusion)
    return create_optimizer_v2(params, opt=opt, lr=settings.lr, weight_decay=settings.weight_decay,
                               filter_bias_and_bn=False, **extra)


def build_scheduler(optimizer: torch.optim.Optimizer, *, kind: str, epochs: int, eta_min: float = 0.0,
                    milestones: list | None = None) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: ``constant``, ``cosine`` (to ``eta_min`` over ``epochs``) or ``step`` (x0.1)."""
    if kind == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=eta_min)
    if kind == "step":
        points = []
        for m in milestones or []:
            if isinstance(m, bool) or not isinstance(m, (int, float)) or m <= 0:
                raise ConfigError(f"config key 'step_milestones' must hold positive epochs or fractions, got {m!r}")
            points.append(int(m) if isinstance(m, int) and m >= 1 else max(1, round(m * epochs)))
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=sorted(set(points)), gamma=0.1)
    raise ValueError(f"unknown schedule {kind!r}")


def stage1_schedule_kind(cfg) -> str:
    """Constant learning rate when fine-tuning pretrained weights (official); cosine from scratch (IDO-B11)."""
    if cfg.scheduler is not None:
        return cfg.scheduler
    return "constant" if (cfg.pretrained or cfg.pretrained_path) else "cosine"


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def build_acto_optimizer(model: torch.nn.Module, settings: OptimSettings, nesterov: bool) -> torch.optim.Optimizer:
    """ACTO's optimiser of one model: :func:`build_optimizer`, or Nesterov SGD (``nesterov``, ACT's own)."""
    if settings.name == "sgd" and nesterov:
        if settings.momentum <= 0:
            raise ConfigError("config key 'nesterov' needs momentum > 0 (ACT uses momentum 0.9)")
        return create_optimizer_v2([p for p in model.parameters() if p.requires_grad], opt="sgd", lr=settings.lr,
                                   weight_decay=settings.weight_decay, momentum=settings.momentum,
                                   filter_bias_and_bn=False)
    return build_optimizer(model, settings)


def acto_lr_plans(cfg, settings: OptimSettings, log) -> tuple[list[float], list[float], str, str]:
    """Per-epoch learning rates of ACTO's RTM and NTM and their plans (docs/fidelity.md#act-18-learning-rate-plan,
    ACT-B10)."""
    rtm_plan = cfg.lr_plan or f"cosine:{cfg.warmup_epochs},{DEFAULT_ETA_END:g},{cfg.epochs}"
    ntm_plan = cfg.ntm_lr_plan or rtm_plan
    parse_lr_plan(rtm_plan, key="lr_plan")
    parse_lr_plan(ntm_plan, key="ntm_lr_plan")
    ntm_lr = cfg.ntm_lr if cfg.ntm_lr is not None else settings.lr
    rtm = build_lr_plan(settings.lr, cfg.epochs, cfg.warmup_epochs, cfg.warmup_lr, rtm_plan)
    ntm = build_lr_plan(ntm_lr, cfg.epochs, cfg.warmup_epochs, cfg.warmup_lr, ntm_plan)
    for name, plan in (("lr_plan", rtm_plan), ("ntm_lr_plan", ntm_plan)):
        kind, args = parse_lr_plan(plan, key=name)
        if kind == "cosine_at" and args[0] < cfg.warmup_epochs:
            log(f"note: {name} {plan} starts its cosine at epoch {args[0]} < warmup_epochs {cfg.warmup_epochs}; "
                "the warm-up epochs keep warmup_lr and the cosine continues from epoch W (not shifted late)")
    return rtm, ntm, rtm_plan, ntm_plan
