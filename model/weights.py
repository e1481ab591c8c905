"""Loading a local weights file into a timm backbone: every backbone tensor from the file, or one clear error.

timm's own ``pretrained_cfg_overlay={"file": ...}`` route accepts a file whose keys do not fit (it
warns "Unexpected keys ... This may be expected" and leaves the backbone random), which on an offline
cluster silently turns fine-tuning into training from scratch.  Here the file is read without running
pickled code, unwrapped and renamed to the backbone's key names by pure functions, and loaded only if
every backbone tensor (the classifier head excepted) is found with its shape.

Accepted: timm and torchvision state dicts (``.pth``/``.pt``/``.bin`` via ``torch.load(weights_only=True)``,
``.safetensors``), wrapped as ``{"state_dict"|"model"|"module": ...}`` and/or with DDP's ``module.``
prefix, and this project's files: a stage-1 base model and an exported model (keys ``backbone.*`` and
``head.*``), stage 1/2's ``last.pt`` (its ``model``) and ACTO's ``last.pt`` (its robust model, ``rtm``).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

from utils.core.errors import ConfigError, DataError

# Keys under which checkpoints nest the state dict: common wrappers, then this project's last.pt of ACTO.
WRAPPER_KEYS = ("state_dict", "model", "module", "rtm")
# Prefixes added around a backbone's own names: DDP / DataParallel, torch.compile.
STRIPPED_PREFIXES = ("module.", "_orig_mod.")
# This project's Classifier (and mmpretrain-style models) keep the backbone under "backbone."
BACKBONE_PREFIX = "backbone."
# Classifier-head names besides the timm model's own pretrained_cfg["classifier"] (torchvision: fc).
HEAD_NAMES = ("fc", "head", "classifier", "head_dist")
# Buffers a file may lack without harm (BatchNorm's step counter, unused at inference and fine-tuning).
OPTIONAL_SUFFIXES = ("num_batches_tracked",)


def read_weights_file(path: str) -> Any:
    """The object stored in ``path``: ``.safetensors`` via safetensors, anything else via
    ``torch.load(weights_only=True)`` (never runs pickled code).  Raises DataError naming the file."""
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file
            return load_file(path, device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable or unsafe file: one line naming it
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"pretrained_path {path}: cannot read it as a state dict ({reason[:200]}); give a torch.save "
                        "state dict (.pth/.pt/.bin) or a .safetensors file (pickled code is never run)") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in obj.items())


def unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The tensor mapping inside ``obj``: ``obj`` itself, or found under :data:`WRAPPER_KEYS` (nested
    wrappers too).  An object holding no state dict gives an empty dict (reported as 0 matched)."""
    for _ in range(4):  # wrappers seen in practice nest at most twice ({"model": {"module": ...}})
        if _is_state_dict(obj):
            return dict(obj)
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if isinstance(obj, Mapping):  # a mapping with some non-tensor entries: keep its tensors
        return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    return {}


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove DDP/compile prefixes; if keys live under ``backbone.``, keep only those, without it
    (this project's ``head.*`` and any other non-backbone part are dropped)."""
    out = dict(state)
    changed = True
    while changed and out:
        changed = False
        for prefix in STRIPPED_PREFIXES:
            if all(k.startswith(prefix) for k in out):
                out = {k[len(prefix):]: v for k, v in out.items()}
                changed = True
    if any(k.startswith(BACKBONE_PREFIX) for k in out):
        out = {k[len(BACKBONE_PREFIX):]: v for k, v in out.items() if k.startswith(BACKBONE_PREFIX)}
    return out


def head_names(backbone: nn.Module) -> tuple[str, ...]:
    """Names of classifier heads a weights file may carry for ``backbone`` (timm's own first)."""
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    own = cfg.get("classifier") or ()
    own = (own,) if isinstance(own, str) else tuple(own)
    return own + tuple(n for n in HEAD_NAMES if n not in own)


def drop_head(state: Mapping[str, torch.Tensor], *, expected: set[str], heads: tuple[str, ...]
              ) -> dict[str, torch.Tensor]:
    """Drop the file's classifier-head tensors: keys under a head name that the backbone (built
    without a classifier) does not have.  ConvNeXt's ``head.norm`` is part of the backbone and stays."""
    def is_head(key: str) -> bool:
        return key not in expected and any(key == h or key.startswith(h + ".") for h in heads)
    return {k: v for k, v in state.items() if not is_head(k)}


def timm_filter(state: dict[str, torch.Tensor], backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The timm model's own checkpoint filter where its module has one (ViT: resizes the position
    embedding to the input size; ConvNeXt: renames Facebook's original keys).  A filter that fails on
    a foreign file leaves the dict as it was (the key check then reports the mismatch)."""
    module = sys.modules.get(type(backbone).__module__)
    fn: Callable | None = getattr(module, "checkpoint_filter_fn", None)
    if fn is None:
        return state
    try:
        return dict(fn(state, backbone))
    except Exception:  # a file of another architecture: the key comparison names the problem
        return state


@dataclass(frozen=True)
class Match:
    """How a renamed file fits a backbone: counts and key names for the report."""

    required: int                 # backbone tensors that must come from the file
    matched: int                  # of them, found with the right shape
    missing: list[str]            # backbone keys absent from the file (state-dict order)
    unexpected: list[str]         # file keys the backbone does not have
    mismatched: list[tuple[str, tuple, tuple]]  # (key, file shape, backbone shape)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def required_keys(expected: Mapping[str, torch.Tensor]) -> list[str]:
    """The keys of a backbone's ``state_dict()`` that a weights file must provide."""
    return [k for k in expected if not k.endswith(OPTIONAL_SUFFIXES)]


def match_state(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> Match:
    """Compare a renamed file ``state`` with a backbone's ``state_dict()`` ``expected``."""
    required = required_keys(expected)
    missing = [k for k in required if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [(k, tuple(state[k].shape), tuple(expected[k].shape)) for k in expected
                  if k in state and state[k].shape != expected[k].shape]
    bad_shape = {k for k, _, _ in mismatched}
    matched = sum(1 for k in required if k in state and k not in bad_shape)
    return Match(len(required), matched, missing, unexpected, mismatched)


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:3])
    return shown + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")


def describe_mismatch(match: Match, *, path: str, name: str) -> str:
    """The one-line error: file, counts, up to three missing/unexpected keys, the first bad shape."""
    parts = [f"pretrained_path {path} does not fit backbone {name}: matched {match.matched} of {match.required} "
             "backbone tensors"]
    if match.mismatched:
        key, got, want = match.mismatched[0]
        parts.append(f"size mismatch for {key}: {list(got)} in the file, {list(want)} in the backbone")
    if match.missing:
        parts.append(f"missing {_names(match.missing)}")
    if match.unexpected:
        parts.append(f"unexpected {_names(match.unexpected)}")
    return "; ".join(parts) + ("; use weights of this very backbone (timm/torchvision state dict, or a model "
                               "trained here with the same backbone) or set pretrained_path: null")


def load_backbone_weights(backbone: nn.Module, path: str, *, name: str) -> str:
    """Load the weights file ``path`` into ``backbone`` (built with ``num_classes=0``) or raise
    DataError (exit 2) naming what does not fit.  Returns the log line
    ``"backbone {name}: {matched}/{required} tensors from {path}"``."""
    if not os.path.isfile(path):
        raise ConfigError(f"config key 'pretrained_path': weights file {path} does not exist")
    expected = backbone.state_dict()
    state = strip_prefixes(unwrap_state_dict(read_weights_file(path)))
    state = timm_filter(state, backbone)
    state = drop_head(state, expected=set(expected), heads=head_names(backbone))
    match = match_state(state, expected)
    if not match.ok:
        raise DataError(describe_mismatch(match, path=path, name=name))
    backbone.load_state_dict(state, strict=False)  # only OPTIONAL_SUFFIXES buffers can be absent
    return f"backbone {name}: {match.matched}/{match.required} tensors from {os.path.abspath(path)}"
