"""Hub weights on offline nodes: the cache loads with no network, a missing file stops at once with one line.

No test here touches the network: the hub endpoint is a local port that refuses connections, and
every outgoing connection of the in-process tests is recorded and refused.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import pytest
import timm
import torch
from huggingface_hub import constants
from safetensors.torch import save_file

from fixtures_data import SUBPROCESS_ENV
from model import create_model, resolve_weights
from model import hub_weights
from model.hub_weights import HubFiles, cached_weights, hub_files, reachable, resolve_pretrained
from utils.training.config import REPO_ROOT
from utils.core.errors import ConfigError

TINY = "test_resnet"                 # timm's tiny test model; its pretrained tag: test_resnet.r160_in1k
TINY_REPO = "timm/test_resnet.r160_in1k"
REVISION = "0123456789abcdef0123456789abcdef01234567"
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def write_hub_cache(cache_dir, *, name: str = TINY, seed: int = 0, filename: str = "model.safetensors") -> dict:
    """A Hugging Face hub cache holding ``name``'s pretrained weights as the hub client stores them
    (``models--{org}--{repo}/snapshots/{revision}/`` and ``refs/main``): random weights of the full
    model, classifier included, like timm's hub files.  Returns the state dict written."""
    files = hub_files(name)
    torch.manual_seed(seed)
    state = {k: v.contiguous() for k, v in timm.create_model(name).state_dict().items()}
    repo_dir = cache_dir / ("models--" + files.repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    if filename.endswith(".safetensors"):
        save_file(state, str(snapshot / filename))
    else:
        torch.save(state, snapshot / filename)
    (snapshot / "config.json").write_text(json.dumps({"architecture": name, "num_classes": 1000}))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(REVISION)
    return state


@pytest.fixture
def closed_port():
    """A local port bound by no listener: a connection to it is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def no_network(monkeypatch, tmp_path, closed_port):
    """The hub at a refused local port, an empty cache under tmp_path, offline switches off (restored
    afterwards), and every outgoing connection recorded and refused."""
    endpoint = f"http://127.0.0.1:{closed_port}"
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for key in PROXY_VARIABLES:  # the probe goes to the refused port itself
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    connections = []

    def refuse(sock, address):
        connections.append(address)
        raise ConnectionRefusedError(f"test: no network ({address})")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return {"cache": cache, "endpoint": endpoint, "connections": connections}


def _expected_line(cache, why: str, name: str = TINY) -> str:
    return (f"config key 'pretrained_path' is null, so backbone {name} needs timm's pretrained weights "
            f"({TINY_REPO}: model.safetensors or pytorch_model.bin), which are not in the cache {cache} and {why}; "
            f"where the network is, run `python fetch_weights.py --backbone {name}` into the cache this job reads "
            "(another folder: --cache_dir DIR, then HF_HUB_CACHE=DIR for the job), or set pretrained_path to a "
            "local weights file, or pretrained: false")


@pytest.mark.parametrize("filename", ["model.safetensors", "pytorch_model.bin"])
def test_cached_weights_load_bit_exactly_offline_without_a_request(no_network, filename):
    state = write_hub_cache(no_network["cache"], filename=filename)
    lines = []
    model = create_model(TINY, num_classes=5, pretrained=True, img_size=32, log=lines.append)
    cached = no_network["cache"] / "models--timm--test_resnet.r160_in1k" / "snapshots" / REVISION / filename
    assert lines == [f"backbone test_resnet.r160_in1k: 75/75 tensors from timm's hub cache {cached}"]
    loaded = model.backbone.state_dict()
    assert set(loaded) == {k for k in state if not k.startswith("fc.")}
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key
    assert no_network["connections"] == []          # not even the probe: the cache was enough
    assert os.environ["HF_HUB_OFFLINE"] == "1" and constants.HF_HUB_OFFLINE  # set by the project


def test_cached_weights_need_no_probe(no_network, monkeypatch):
    write_hub_cache(no_network["cache"])
    monkeypatch.setattr(hub_weights, "reachable", lambda *a, **k: pytest.fail("probed with the file cached"))
    source = resolve_weights(TINY, pretrained=True, pretrained_path=None)
    assert source == ("pretrained, from timm's hub cache "
                      f"{no_network['cache']}/models--timm--test_resnet.r160_in1k/snapshots/{REVISION}/model.safetensors")


def test_offline_switch_set_by_the_user_stops_without_a_probe(no_network, monkeypatch):
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setattr(hub_weights, "reachable", lambda *a, **k: pytest.fail("probed in offline mode"))
    with pytest.raises(ConfigError) as err:
        create_model(TINY, num_classes=5, pretrained=True, img_size=32)
    assert str(err.value) == _expected_line(no_network["cache"],
                                            "offline mode is on (HF_HUB_OFFLINE)")
    assert no_network["connections"] == []


def test_unreachable_hub_stops_at_once_and_switches_offline(no_network, monkeypatch):
    probed = []
    monkeypatch.setattr(hub_weights, "reachable", lambda endpoint, **k: probed.append(endpoint) or False)
    with pytest.raises(ConfigError) as err:
        resolve_weights(TINY, pretrained=True, pretrained_path=None)
    assert probed == [no_network["endpoint"]]  # one probe
    assert no_network["connections"] == []  # and not one request of the hub client (its retries took 53 s)
    assert str(err.value) == _expected_line(no_network["cache"],
                                            f"the hub {no_network['endpoint']} cannot be reached")
    assert os.environ["HF_HUB_OFFLINE"] == "1" and constants.HF_HUB_OFFLINE


def test_other_sources_need_no_hub(no_network, tmp_path):
    assert resolve_weights("resnet50", pretrained=False, pretrained_path=None) == "random init (pretrained: false)"
    assert resolve_weights("act_cnn", pretrained=True, pretrained_path=None) == "random init (pretrained: false)"
    assert resolve_weights("resnet50", pretrained=True,
                           pretrained_path="/w.pth") == "weights from pretrained_path /w.pth"
    assert no_network["connections"] == []


def test_reachable_probe_against_local_ports(closed_port, monkeypatch):
    """One connection attempt per probe, with the probe's timeout: a refused port answers False at once."""
    for key in PROXY_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    attempts = []
    create_connection = socket.create_connection

    def recorded(address, timeout=None, *args, **kwargs):
        attempts.append((address, timeout))
        return create_connection(address, timeout, *args, **kwargs)
    monkeypatch.setattr(socket, "create_connection", recorded)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        assert reachable(f"http://127.0.0.1:{port}", timeout=2.0)
    finally:
        listener.close()
    assert not reachable(f"http://127.0.0.1:{closed_port}", timeout=2.0)
    assert not reachable("not a url")
    assert attempts == [(("127.0.0.1", port), 2.0), (("127.0.0.1", closed_port), 2.0)]


def test_a_probe_that_gets_no_answer_gives_up_after_its_timeout(monkeypatch):
    """A hub (or DNS server) that never answers: the probe returns False while the attempt still waits in its
    daemon thread, instead of holding the run until the attempt ends."""
    release, returned = threading.Event(), []

    def never_answers(address, timeout=None, *args, **kwargs):
        release.wait()  # until the test lets it go: far beyond the probe's timeout
        returned.append(address)
        raise OSError("no answer")
    monkeypatch.setattr(socket, "create_connection", never_answers)
    try:
        assert not reachable("https://hub.invalid", timeout=0.01)
        assert returned == []  # the timeout path: the attempt had not ended when the probe answered
    finally:
        release.set()


def test_behind_a_proxy_the_probe_goes_to_the_proxy(closed_port, monkeypatch):
    """A login node that reaches the hub through HTTPS_PROXY: the proxy is probed, not the hub."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    monkeypatch.setenv("NO_PROXY", "localhost")
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{listener.getsockname()[1]}")
        monkeypatch.delenv("https_proxy", raising=False)
        assert hub_weights.first_hop("https://huggingface.co") == f"http://127.0.0.1:{listener.getsockname()[1]}"
        assert reachable("https://huggingface.co", timeout=2.0)
        monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{closed_port}")
        assert not reachable("https://huggingface.co", timeout=2.0)
        monkeypatch.setenv("NO_PROXY", "huggingface.co")  # exempt: the hub itself would be probed
        assert hub_weights.first_hop("https://huggingface.co") == "https://huggingface.co"
    finally:
        listener.close()


def test_hub_files_mirror_timms_choice():
    assert hub_files("resnet50.a1_in1k") == HubFiles("resnet50.a1_in1k", "timm/resnet50.a1_in1k", None,
                                                    ("model.safetensors", "pytorch_model.bin"))
    assert hub_files("convnext_base.fb_in22k_ft_in1k").repo_id == "timm/convnext_base.fb_in22k_ft_in1k"
    assert hub_files("hf-hub:someone/model@v2") == HubFiles("hf-hub:someone/model@v2", "someone/model", "v2",
                                                           ("model.safetensors", "pytorch_model.bin"),
                                                           ("config.json",))
    assert hub_files("no_such_model") is None
    # the repo's tag resolution is timm's own: the default tag of test_resnet
    assert timm.models.get_pretrained_cfg(TINY).hf_hub_id == TINY_REPO


def test_a_repo_without_its_config_is_not_cached(tmp_path):
    """hf-hub: names need config.json as well as the weights."""
    write_hub_cache(tmp_path)
    files = HubFiles("hf-hub:" + TINY_REPO, TINY_REPO, None, ("model.safetensors",), ("config.json", "extra.json"))
    assert cached_weights(files, str(tmp_path)) is None
    files = HubFiles("hf-hub:" + TINY_REPO, TINY_REPO, None, ("model.safetensors",), ("config.json",))
    assert cached_weights(files, str(tmp_path)).endswith("model.safetensors")


@pytest.mark.slow
def test_a_run_without_network_or_cached_weights_stops_after_one_probe_with_one_line(tmp_path, closed_port):
    """stage_1.py with pretrained: true, an empty cache and a hub that refuses connections: one line on
    stderr, exit 2, after one connection attempt (the probe), not the hub client's retries (53 s before);
    the console before it has only the data's noise line."""
    cache, connections = tmp_path / "hub", tmp_path / "connections.json"
    cache.mkdir()
    env = {k: v for k, v in SUBPROCESS_ENV.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *PROXY_VARIABLES)}
    env.update(HF_HUB_CACHE=str(cache), HF_ENDPOINT=f"http://127.0.0.1:{closed_port}")
    # every network connection the program attempts (the probe's and the hub client's alike), written at exit
    program = ("import atexit, json, socket, sys\n"
               "import stage_1\n"
               "from utils.core.entry import run_main\n"
               "attempts, connect = [], socket.socket.connect\n"
               "def recorded(sock, address):\n"
               "    if sock.family in (socket.AF_INET, socket.AF_INET6):\n"
               "        attempts.append(list(address[:2]))\n"
               "    return connect(sock, address)\n"
               "socket.socket.connect = recorded\n"
               "atexit.register(lambda: open(sys.argv[1], 'w').write(json.dumps(attempts)))\n"
               "sys.argv[0] = 'stage_1.py'\n"
               "run_main(stage_1.main, sys.argv[2:])\n")
    proc = subprocess.run([sys.executable, "-c", program, str(connections), "--output_dir", str(tmp_path / "out"),
                           "--set", "pretrained=true"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stdout.startswith("noisy labels digits sym ratio=0.4") and proc.stdout.count("\n") == 1
    assert proc.stderr == "stage_1.py: error: " + _expected_line(cache,
                                         f"the hub http://127.0.0.1:{closed_port} cannot be reached") + "\n"
    assert json.loads(connections.read_text()) == [["127.0.0.1", closed_port]]


def test_an_unknown_backbone_is_named_before_any_request(no_network):
    with pytest.raises(ConfigError, match=r"^config key 'backbone': 'no_such_net' is not a timm model \(see "
                                          r"timm.list_models\(\)\)$"):
        resolve_weights("no_such_net", pretrained=True, pretrained_path=None)
    assert no_network["connections"] == []
