"""The exported model file (``stage2/{tag}_{bmm}_model.pt``, ``acto/{tag}_model.pt``): weights + what inference needs.

A plain dict saved with ``torch.save``, loadable with ``torch.load(weights_only=True)``::

    {"format": "ido-model/1", "model": <Classifier state dict, keys "backbone.*" and "head.*">,
     "backbone": <config backbone name>, "timm_name": str, "num_classes": int,
     "class_names": [str] | None, "resolution": int, "mean": [3 floats], "std": [3 floats],
     "test_transform": {"family", "resolution", LargeSpec fields for the large family}, "dataset": str,
     "decoding": {"name": "official" | "viewer", "background": "white" | "black" | "#RRGGBB"}}

``decoding`` (how training decoded image files, :mod:`dataloader.decode`) is absent from files exported
before it was recorded; ``predict.py`` then decodes as the paper data sets do (official) and says so.

``predict.py`` reads it with :func:`load_exported`; ``pretrained_path`` accepts it as well.
"""
from __future__ import annotations

import dataclasses
import os
import pickle

import torch

from dataloader.decode import Decoding
from dataloader.transforms import LargeSpec
from model.classifier import Classifier, create_model, timm_name
from utils.core.errors import DataError
from utils.core.io import save_torch

FORMAT = "ido-model/1"
KEYS = ("format", "model", "backbone", "timm_name", "num_classes", "class_names", "resolution", "mean", "std",
        "test_transform", "dataset")


def state_for_saving(model: torch.nn.Module) -> dict:
    """A deep copy of the weights on the CPU (not a live reference to them: bug IDO-B1)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def transform_spec(*, family: str, resolution: int, large: LargeSpec | None) -> dict:
    """The evaluation transform as plain values (``family``, ``resolution`` and, for ``large``, the
    :class:`LargeSpec` fields)."""
    spec = {"family": family, "resolution": int(resolution)}
    if family == "large":
        spec.update(dataclasses.asdict(large or LargeSpec()))
    return spec


def export_model(model: torch.nn.Module, *, cfg, data, path: str) -> str:
    """Write ``model`` (a :class:`~model.classifier.Classifier`) trained on ``data`` as an exported model file."""
    raw = data.raw
    classes = raw.extra.get("classes")
    payload = {
        "format": FORMAT,
        "model": state_for_saving(model),
        "backbone": cfg.backbone, "timm_name": timm_name(cfg.backbone), "num_classes": int(data.num_classes),
        "class_names": None if classes is None else [str(c) for c in classes],
        "resolution": int(data.resolution), "mean": [float(v) for v in data.mean], "std": [float(v) for v in data.std],
        "test_transform": transform_spec(family=raw.family, resolution=data.resolution, large=raw.extra.get("large")),
        "dataset": cfg.dataset,
        "decoding": getattr(raw.train_images, "decoding", Decoding()).record(),
    }
    return save_torch(payload, path)


def _unloadable(path: str, err: Exception) -> str:
    """Why ``torch.load`` failed on ``path``, in words (torch's own message is long and, for a file that
    is not a torch file at all, advises weights_only=False)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # a zip archive (torch.save) or a legacy pickle
        return "not a file written by torch.save"
    if isinstance(err, pickle.UnpicklingError):
        return "it holds Python objects that loading without running code refuses"
    return f"truncated or corrupt: {type(err).__name__}"


def read_exported(path: str) -> dict:
    """The exported dict of ``path``; a missing, unreadable or foreign file raises :class:`DataError` (one line)."""
    if not os.path.exists(path):
        raise DataError(f"model file {path} does not exist (stage 2 writes stage2/<tag>_<bmm>_model.pt, ACTO "
                        "acto/<tag>_model.pt)")
    if not os.path.isfile(path):
        raise DataError(f"model file {path} is not a file; name the _model.pt file that stage 2 or ACTO wrote")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a foreign pickle, a truncated zip, not a torch file at all
        raise DataError(f"model file {path} is not an exported model ({_unloadable(path, err)}); use the _model.pt "
                        "file that stage 2 or ACTO wrote") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or any(k not in payload for k in KEYS):
        raise DataError(f"model file {path} is not an exported model (no format {FORMAT!r}); use the _model.pt file "
                        "that stage 2 or ACTO wrote (base_model/*.pt and last.pt are not exported models)")
    return payload


def load_exported(path: str) -> tuple[Classifier, dict]:
    """(model with the exported weights, in eval mode on the CPU, the exported dict)."""
    payload = read_exported(path)
    model = create_model(payload["backbone"], num_classes=payload["num_classes"], pretrained=False,
                         img_size=payload["resolution"])
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as err:
        raise DataError(f"model file {path}: the weights do not fit backbone {payload['backbone']} "
                        f"({str(err).strip().splitlines()[0]})") from None
    return model.eval(), payload
