"""fetch_weights.py: the hub weights that configs need go into the cache the jobs read; tested against a
local stand-in of the hub (an HTTP server on 127.0.0.1 speaking the part of the hub's protocol that the
hub client uses to download a file), never the network."""
from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading

import pytest
import timm
import torch
from huggingface_hub import constants
from safetensors.torch import load_file, save

import fetch_weights
from fixtures_data import SUBPROCESS_ENV
from model import create_model
from test_hub_weights import PROXY_VARIABLES
from utils.training.config import REPO_ROOT
from utils.core.errors import ConfigError, DataError

REVISION = "89abcdef0123456789abcdef0123456789abcdef"


class StandInHub(http.server.ThreadingHTTPServer):
    """Serves ``files`` ({"org/repo/filename": bytes}) at ``/{org}/{repo}/resolve/{revision}/{filename}``
    as the hub does: HEAD gives commit, ETag and size; GET the bytes; a missing file is a 404 with the
    hub's ``X-Error-Code: EntryNotFound``.  ``requests`` records every (method, path)."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self, body: bool) -> None:
        self.server.requests.append((self.command, self.path))
        if self.path.count("/") < 5:
            self.send_response(404)
            self.end_headers()
            return
        org, repo, _resolve, _revision, filename = self.path.lstrip("/").split("/", 4)
        data = self.server.files.get(f"{org}/{repo}/{filename}")
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", REVISION)
        self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self):  # noqa: N802 - http.server API
        self._answer(body=False)

    def do_GET(self):  # noqa: N802
        self._answer(body=True)

    def log_message(self, *args):  # quiet
        pass


def _tiny_weights(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return {k: v.contiguous() for k, v in timm.create_model("test_resnet").state_dict().items()}


@pytest.fixture
def hub(monkeypatch, tmp_path):
    state = _tiny_weights()
    server = StandInHub({"timm/test_resnet.r160_in1k/model.safetensors": save(state)})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    for key in PROXY_VARIABLES:  # straight to the stand-in
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "default_cache"))
    yield server, state
    server.shutdown()
    server.server_close()


def test_fetched_weights_are_where_an_offline_job_loads_them(hub, tmp_path, capsys, monkeypatch):
    server, state = hub
    cache = tmp_path / "shared" / "hub"
    config = tmp_path / "stage1" / "tiny.yaml"
    config.parent.mkdir()
    config.write_text("dataset: digits\nbackbone: test_resnet\npretrained: true\nresolution: 32\n")
    stored = fetch_weights.main(["--config", str(config), "--cache_dir", str(cache)])
    path = cache / "models--timm--test_resnet.r160_in1k" / "snapshots" / REVISION / "model.safetensors"
    assert stored == [str(path)]
    size = os.path.getsize(path)
    assert capsys.readouterr().out.splitlines() == [
        f"test_resnet: stored {path} ({size / 1e6:.1f} MB)",
        f"training jobs read {cache} with HF_HUB_CACHE={cache} set"]
    assert ("GET", "/timm/test_resnet.r160_in1k/resolve/main/model.safetensors") in server.requests
    loaded = load_file(str(path))
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)

    # the job on a node without network: HF_HUB_CACHE points at the fetched cache, the hub is gone
    server.shutdown()
    server.server_close()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    lines = []
    model = create_model("test_resnet", num_classes=3, pretrained=True, img_size=32, log=lines.append)
    assert lines == [f"backbone test_resnet.r160_in1k: 75/75 tensors from timm's hub cache {path}"]
    assert torch.equal(model.backbone.conv1[0].weight, state["conv1.0.weight"])


def test_needed_backbones_follow_the_configs_and_the_backbone_override():
    configs = [os.path.join(REPO_ROOT, "config", scope, "cifar100.yaml") for scope in ("stage1", "stage2", "acto")]
    assert fetch_weights.needed_backbones(configs, []) == ["resnet50.a1_in1k"]  # stage 2: from the base model
    assert fetch_weights.needed_backbones(configs[:1], ["ViT-B", "convnext-B"]) == [
        "vit_base_patch16_224.augreg2_in21k_ft_in1k", "convnext_base.fb_in22k_ft_in1k"]
    assert fetch_weights.needed_backbones([os.path.join(REPO_ROOT, "config", "stage1", "digits.yaml")], []) == []
    assert fetch_weights.needed_backbones([], ["resnet50", "resnet50.a1_in1k"]) == ["resnet50.a1_in1k"]


def test_a_repo_without_the_weights_is_one_line(hub, tmp_path):
    server, _ = hub
    server.files.clear()
    with pytest.raises(DataError) as err:
        fetch_weights.main(["--backbone", "test_resnet", "--cache_dir", str(tmp_path / "c")])
    assert str(err.value) == ("test_resnet: the hub repo timm/test_resnet.r160_in1k has none of model.safetensors, "
                              "pytorch_model.bin")


@pytest.mark.slow
def test_command_line_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="^fetch_weights.py needs --config CONFIG and/or --backbone NAME$"):
        fetch_weights.main([])
    env = dict(SUBPROCESS_ENV, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "fetch_weights.py", "--backbone", "resnet50"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("fetch_weights.py: error: the hub client's offline mode is on (HF_HUB_OFFLINE or "
                           "TRANSFORMERS_OFFLINE); unset it to fetch weights\n")
