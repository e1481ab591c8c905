"""timm's pretrained weights on a cluster: the local cache first, the hub only when it can be reached.

Compute nodes often have no network.  Left alone, timm asks the Hugging Face hub for every load
(the hub client retries for about a minute before giving up, even when the file is in the cache).
Here a ``pretrained: true`` backbone is resolved in this order:

1. the file is in the local cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``;
   torch hub's ``checkpoints/`` folder for the few timm weights without a hub repo): the process
   switches the hub client to offline mode (``HF_HUB_OFFLINE=1``) and timm loads that file with no
   network at all;
2. not cached, and offline mode already on (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``), or the hub
   endpoint (``HF_ENDPOINT``) does not accept a connection within :data:`PROBE_TIMEOUT_S`: offline
   mode is switched on and the run stops with one line (:class:`~utils.core.errors.ConfigError`) naming the
   cache searched and how to fetch the weights (``fetch_weights.py``);
3. otherwise timm downloads the file into that cache, as usual.

:func:`hub_files` mirrors timm's own choice of file (timm 1.0: ``pretrained_cfg.hf_hub_id`` and
``hf_hub_filename``, ``model.safetensors`` before ``pytorch_model.bin``), so the file found here is the
one timm then reads.
"""
from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlparse

from utils.core.errors import ConfigError

PROBE_TIMEOUT_S = 2.0  # a reachable hub answers a TCP connect in well under a second
DEFAULT_ENDPOINT = "https://huggingface.co"
HF_WEIGHTS_NAME = "pytorch_model.bin"  # timm's default hub file name; its safetensors twin is preferred
HUB_PREFIXES = ("hf-hub:", "hf_hub:")
OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@dataclass(frozen=True)
class HubFiles:
    """What timm reads for one pretrained backbone.

    Either a hub repo (``repo_id`` at ``revision``; ``config`` files all needed, then the first of
    ``weights`` present) or, for weights without a hub repo, a plain ``url`` (torch hub's cache).
    """

    name: str
    repo_id: str | None = None
    revision: str | None = None
    weights: tuple[str, ...] = ()
    config: tuple[str, ...] = ()
    url: str | None = None

    @property
    def where(self) -> str:
        return self.repo_id or self.url or self.name


def _safe_first(filename: str) -> tuple[str, ...]:
    """timm's order: its safetensors alternatives of ``filename`` (``pytorch_model.bin`` ->
    ``model.safetensors``), then the file itself."""
    from timm.models._hub import _get_safe_alternatives  # timm's own rule, so the file found is the one it reads
    return (*_get_safe_alternatives(filename), filename)


def _split_revision(repo: str) -> tuple[str, str | None]:
    repo_id, _, revision = repo.partition("@")
    return repo_id, revision or None


def hub_files(name: str) -> HubFiles | None:
    """The files timm loads for ``create_model(name, pretrained=True)``; None if timm knows no
    pretrained weights for ``name`` (timm's own error then names the problem)."""
    for prefix in HUB_PREFIXES:
        if name.startswith(prefix):  # a hub repo with its own config.json
            repo_id, revision = _split_revision(name[len(prefix):])
            return HubFiles(name, repo_id, revision, _safe_first(HF_WEIGHTS_NAME), ("config.json",))
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except (RuntimeError, ValueError):
        return None
    if cfg is None:
        return None
    # timm prefers a file in torch hub's cache over the hub repo only with TIMM_USE_OLD_CACHE set
    from timm.models import _builder
    old_cache = getattr(_builder, "_USE_OLD_CACHE", False) and bool(cfg.url) and os.path.isfile(torch_hub_file(cfg.url))
    if cfg.hf_hub_id and not old_cache:
        repo_id, revision = _split_revision(cfg.hf_hub_id)
        return HubFiles(name, repo_id, revision, _safe_first(cfg.hf_hub_filename or HF_WEIGHTS_NAME))
    if cfg.url:
        return HubFiles(name, url=cfg.url)
    return None


def hub_cache_dir() -> str:
    """The hub client's cache folder, read from the environment now (``HF_HUB_CACHE``, ``HF_HOME``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    from huggingface_hub import constants
    return constants.HF_HUB_CACHE


def torch_hub_file(url: str) -> str:
    import torch
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))


def cached_weights(files: HubFiles, cache_dir: str) -> str | None:
    """The cached weights file timm will read for ``files`` (every config file cached too), or None."""
    if files.repo_id is None:
        path = torch_hub_file(files.url)
        return path if os.path.isfile(path) else None
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> str | None:
        path = try_to_load_from_cache(files.repo_id, filename, cache_dir=cache_dir, revision=files.revision)
        return path if isinstance(path, str) and os.path.isfile(path) else None

    if not all(cached(f) for f in files.config):
        return None
    return next((path for path in map(cached, files.weights) if path), None)


def hub_endpoint(files: HubFiles) -> str:
    """The server the download would go to: ``HF_ENDPOINT`` (or huggingface.co), or the plain url's host."""
    if files.repo_id is None:
        parsed = urlparse(files.url)
        return f"{parsed.scheme}://{parsed.netloc}"
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def first_hop(endpoint: str) -> str:
    """The server a request to ``endpoint`` connects to: the proxy the environment names for it
    (``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``, unless ``NO_PROXY`` exempts the host), else ``endpoint``."""
    import urllib.request

    parsed = urlparse(endpoint)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parsed.scheme) or proxies.get("all")
    if proxy and parsed.hostname and not urllib.request.proxy_bypass(parsed.hostname):
        return proxy if "://" in proxy else f"http://{proxy}"
    return endpoint


def reachable(endpoint: str, *, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether ``endpoint`` (``scheme://host[:port]``), or the proxy in front of it, accepts a TCP
    connection within ``timeout`` seconds.

    The name lookup runs in a daemon thread, so an unreachable DNS server cannot hold the caller
    longer than ``timeout`` either."""
    parsed = urlparse(first_hop(endpoint))
    host = parsed.hostname
    if not host:
        return False
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    result: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(timeout)
    return bool(result and result[0])


def offline_mode() -> bool:
    """The hub client's offline switch is on (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE) or any(
        os.environ.get(k, "").upper() in ("1", "ON", "YES", "TRUE") for k in OFFLINE_SWITCHES)


def set_offline_mode() -> None:
    """Switch the hub client to offline mode for this process and the processes it starts: no
    request is sent, cached files are used as they are."""
    from huggingface_hub import constants
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True  # read by the client at every call; the variable only at import


def fetch_command(backbone: str) -> str:
    return f"python fetch_weights.py --backbone {backbone}"


@dataclass(frozen=True)
class Resolved:
    """Where a pretrained backbone's weights will come from."""

    files: HubFiles | None
    cache_dir: str
    cached_path: str | None  # set: load from this cached file, offline

    def describe(self) -> str:
        if self.cached_path:
            return f"timm's hub cache {self.cached_path}"
        return f"timm's hub ({self.files.where if self.files else '?'}), downloaded into {self.cache_dir}"


def resolve_pretrained(name: str, *, probe: Callable[[str], bool] | None = None) -> Resolved:
    """Find ``create_model(name, pretrained=True)``'s weights without waiting on the network.

    Returns the cached file (offline mode is then switched on) or, with the hub reachable, where
    timm will download it.  Raises ConfigError (one line) when the file is not cached and the hub
    cannot be reached (or offline mode is on); offline mode is left on.  ``probe(endpoint) -> bool``
    defaults to :func:`reachable`.
    """
    probe = probe or reachable
    files = hub_files(name)
    cache_dir = hub_cache_dir() if files is None or files.repo_id else os.path.dirname(torch_hub_file(files.url))
    if files is None:
        return Resolved(None, cache_dir, None)
    path = cached_weights(files, cache_dir)
    if path is not None:
        set_offline_mode()
        return Resolved(files, cache_dir, path)
    endpoint = hub_endpoint(files)
    if offline_mode():
        why = "offline mode is on (HF_HUB_OFFLINE)"
    elif not probe(endpoint):
        set_offline_mode()
        why = f"the hub {endpoint} cannot be reached"
    else:
        return Resolved(files, cache_dir, None)
    wanted = " or ".join(files.weights) if files.repo_id else os.path.basename(urlparse(files.url).path)
    raise ConfigError(
        f"config key 'pretrained_path' is null, so backbone {name} needs timm's pretrained weights ({files.where}: "
        f"{wanted}), which are not in the cache {cache_dir} and {why}; where the network is, run "
        f"`{fetch_command(name)}` into the cache this job reads (another folder: --cache_dir DIR, then "
        "HF_HUB_CACHE=DIR for the job), or set pretrained_path to a local weights file, or pretrained: false")
