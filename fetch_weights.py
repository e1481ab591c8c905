"""Fetch the pretrained backbone weights that configs need into the cache the training jobs read.

Run it where the network is (a cluster's login node); compute nodes without network then load the
weights from that cache with no request at all (model/hub_weights.py):

    python fetch_weights.py --config config/stage1/cifar100.yaml --config config/acto/cifar100.yaml
    python fetch_weights.py --config config/stage1/cifar100.yaml --backbone ViT-B --cache_dir /shared/hf/hub
    python fetch_weights.py --backbone convnext-B

``--backbone`` replaces the configs' backbone as on the training command line (repeatable), or names
the backbones to fetch when no config is given.  The cache is the hub client's (``HF_HUB_CACHE``,
else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``); with ``--cache_dir DIR`` the jobs need
``HF_HUB_CACHE=DIR``.  Prints every file it stored, with its size.  Stage-2 configs need no hub
weights (stage 2 starts from the stage-1 base model).
"""
from __future__ import annotations

import os
import sys
from typing import Callable, Sequence

from model import timm_name
from model.hub_weights import HubFiles, hub_cache_dir, hub_endpoint, hub_files, offline_mode, reachable, \
    torch_hub_file
from utils.training.config import ALL_SCOPES, STAGE1, STAGE2, _Parser, parse_config
from utils.core.errors import ConfigError, DataError
from utils.core.entry import run_main


def needed_backbones(configs: Sequence[str], backbones: Sequence[str]) -> list[str]:
    """The timm names (with tag) whose hub weights the runs of ``configs`` load, in first-seen order;
    ``backbones`` replace each config's backbone, or are the list itself without configs."""
    if not configs:
        return list(dict.fromkeys(timm_name(b) for b in backbones))
    names = []
    for path in configs:
        scope = os.path.basename(os.path.dirname(os.path.abspath(path)))
        scope = scope if scope in ALL_SCOPES else STAGE1
        if scope == STAGE2:
            continue  # stage 2 loads the stage-1 base model, never hub weights
        for backbone in backbones or [None]:
            cfg = parse_config(["--config", path] + (["--backbone", backbone] if backbone else []),
                               prog="fetch_weights.py", scope=scope)
            if cfg.pretrained and cfg.pretrained_path is None and cfg.backbone != "act_cnn":
                names.append(timm_name(cfg.backbone))
    return list(dict.fromkeys(names))


def hub_download(repo_id: str, filename: str, *, revision: str | None, cache_dir: str, endpoint: str) -> str | None:
    """The hub client's download from ``endpoint`` into ``cache_dir``; None if the repo has no such file."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, endpoint=endpoint)
    except EntryNotFoundError:
        return None


def fetch(files: HubFiles, *, cache_dir: str, download: Callable = hub_download) -> list[str]:
    """Download what timm reads for ``files`` (config files, then the first weights file the repo has)
    into ``cache_dir``; returns the stored paths.  Raises DataError (one line) if the repo has none."""
    if files.repo_id is None:  # weights without a hub repo: torch hub's cache, where timm looks for them
        import torch
        path = torch_hub_file(files.url)
        if not os.path.isfile(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            torch.hub.download_url_to_file(files.url, path, progress=False)
        return [path]
    stored = []
    where = dict(revision=files.revision, cache_dir=cache_dir, endpoint=hub_endpoint(files))
    for filename in files.config:
        path = download(files.repo_id, filename, **where)
        if path is None:
            raise DataError(f"{files.name}: the hub repo {files.repo_id} has no {filename}")
        stored.append(path)
    for filename in files.weights:
        path = download(files.repo_id, filename, **where)
        if path is not None:
            return stored + [path]
    raise DataError(f"{files.name}: the hub repo {files.repo_id} has none of {', '.join(files.weights)}")


def main(argv: Sequence[str] | None = None) -> list[str]:
    parser = _Parser(prog="fetch_weights.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", default=[], help="a training config (repeatable)")
    parser.add_argument("--backbone", action="append", default=[],
                        help="replaces the configs' backbone, or the backbone to fetch without --config (repeatable)")
    parser.add_argument("--cache_dir", default=None,
                        help="hub cache to fill (default: HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub); "
                             "jobs then need HF_HUB_CACHE=DIR")
    args = parser.parse_args(argv)
    if not args.config and not args.backbone:
        raise ConfigError("fetch_weights.py needs --config CONFIG and/or --backbone NAME")
    names = needed_backbones(args.config, args.backbone)
    if not names:
        print("no hub weights needed: every run is from scratch, reads pretrained_path or is a stage-2 run")
        return []
    cache_dir = os.path.abspath(os.path.expanduser(args.cache_dir)) if args.cache_dir else hub_cache_dir()
    if offline_mode():
        raise ConfigError("the hub client's offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE); unset it "
                          "to fetch weights")
    stored = []
    for name in names:
        files = hub_files(name)
        if files is None:
            raise ConfigError(f"config key 'backbone': timm has no pretrained weights for {name!r}")
        endpoint = hub_endpoint(files)
        if not reachable(endpoint):
            raise DataError(f"{name}: the hub {endpoint} cannot be reached from here; run fetch_weights.py where "
                            "the network is (a login node) and point the jobs at its cache")
        for path in fetch(files, cache_dir=cache_dir):
            print(f"{name}: stored {path} ({os.path.getsize(path) / 1e6:.1f} MB)")
            stored.append(path)
    default = os.path.abspath(cache_dir) == os.path.abspath(hub_cache_dir())
    print(f"training jobs read {cache_dir}" + ("" if default else f" with HF_HUB_CACHE={cache_dir} set"))
    return stored


if __name__ == "__main__":
    run_main(main)
