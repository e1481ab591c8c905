"""pretrained_path: every backbone tensor loads from the file, bit-exactly, or the run stops with one line."""
from __future__ import annotations

import os

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

import stage_1
from model import BACKBONE_ALIASES, Classifier, create_model, timm_name
from model.weights import match_state, strip_prefixes, unwrap_state_dict
from utils.core.errors import DataError
from utils.core.entry import run_main
from utils.core.io import save_torch

FAST = ["--epochs", "1", "--set", "batch_size=256"]
TINY = "test_resnet"  # 75 backbone tensors besides BatchNorm's step counters


def _trained_classifier(num_classes: int = 10, seed: int = 3) -> Classifier:
    """A Classifier whose weights differ from any fresh initialisation (seeded, then perturbed)."""
    torch.manual_seed(seed)
    model = create_model(TINY, num_classes=num_classes, img_size=32)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.01)
    return model


def _assert_backbone_equal(loaded: Classifier, source: Classifier) -> None:
    a, b = loaded.backbone.state_dict(), source.backbone.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _load(path, *, log=None, backbone=TINY, num_classes=7) -> Classifier:
    return create_model(backbone, num_classes=num_classes, pretrained_path=str(path), img_size=32, log=log)


def _exported(model: Classifier) -> dict:
    """The exported-model file of the #14 contract (COMMON.md, contract 2)."""
    return {"format": "ido-model/1", "model": model.state_dict(), "backbone": TINY, "timm_name": TINY,
            "num_classes": 10, "class_names": None, "resolution": 32, "mean": [0.5] * 3, "std": [0.25] * 3,
            "test_transform": {"family": "small", "resolution": 32}, "dataset": "digits"}


@pytest.mark.parametrize("kind", ["base_model", "exported", "module_prefix", "state_dict_wrapper", "model_wrapper",
                                  "module_wrapper", "safetensors", "timm_plain", "acto_last"])
def test_accepted_files_load_bit_exactly(kind, tmp_path):
    source = _trained_classifier()
    sd = source.state_dict()
    backbone_only = source.backbone.state_dict()
    path = tmp_path / ("w.safetensors" if kind == "safetensors" else "w.pth")
    if kind == "base_model":
        save_torch({k: v.clone() for k, v in sd.items()}, str(path))  # stage 1's base_model/{tag}.pt
    elif kind == "exported":
        torch.save(_exported(source), path)
    elif kind == "module_prefix":  # DDP-wrapped model saved as is
        torch.save({f"module.{k}": v for k, v in sd.items()}, path)
    elif kind == "state_dict_wrapper":
        torch.save({"state_dict": backbone_only, "epoch": 90, "arch": "x"}, path)
    elif kind == "model_wrapper":
        torch.save({"model": {f"module.{k}": v for k, v in backbone_only.items()}, "optimizer": {}}, path)
    elif kind == "module_wrapper":
        torch.save({"module": backbone_only}, path)
    elif kind == "safetensors":
        save_file({k: v.contiguous() for k, v in backbone_only.items()}, str(path))
    elif kind == "timm_plain":  # a timm checkpoint with its 1000-class head
        full = timm.create_model(TINY, num_classes=1000)
        full.load_state_dict(backbone_only, strict=False)
        torch.save(full.state_dict(), path)
    elif kind == "acto_last":  # ACTO's last.pt: the robust model (rtm) is taken
        other = _trained_classifier(seed=9)
        torch.save({"epoch": 1, "rtm": sd, "ntm": other.state_dict(), "opt_rtm": {"state": {}}}, path)
    lines = []
    loaded = _load(path, log=lines.append)
    _assert_backbone_equal(loaded, source)
    assert lines == [f"backbone {TINY}: 75/75 tensors from {path}"]


def test_torchvision_state_dict_loads_into_timm_resnet(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(num_classes=1000)
    torch.save(tv.state_dict(), tmp_path / "resnet18-tv.pth")
    loaded = _load(tmp_path / "resnet18-tv.pth", backbone="resnet18")
    tv_sd = tv.state_dict()
    for k, v in loaded.backbone.state_dict().items():
        assert torch.equal(v, tv_sd[k]), k


def _foreign(kind: str) -> dict:
    own = _trained_classifier().backbone.state_dict()
    if kind == "other_architecture":
        return timm.create_model("resnet18", num_classes=0).state_dict()
    if kind == "renamed":
        return {f"encoder.{k}": v for k, v in own.items()}
    if kind == "wrong_shape":
        out, *rest = own["conv1.0.weight"].shape
        own["conv1.0.weight"] = torch.zeros(out + 1, *rest)  # one filter too many in the stem
        return own
    return {}


# (kind, matched of 75, words that must be in the line)
MISFITS = [
    ("other_architecture", None, ["unexpected", "missing", "size mismatch for"]),
    ("renamed", 0, ["missing conv1.0.weight, conv1.1.weight, conv1.1.bias (+72 more)",
                    "unexpected encoder.conv1.0.weight"]),
    ("wrong_shape", 74, ["size mismatch for conv1.0.weight: [{}, {}, 3, 3] in the file, [{}, {}, 3, 3] in the "
                         "backbone"]),
    ("empty", 0, ["missing conv1.0.weight"]),
]


@pytest.mark.parametrize("kind,matched,words", MISFITS, ids=[m[0] for m in MISFITS])
def test_misfitting_file_stops_the_run_with_one_line(kind, matched, words, tmp_path, capsys):
    path = tmp_path / f"{kind}.pth"
    torch.save(_foreign(kind), path)
    if kind == "wrong_shape":
        out, cin = _trained_classifier().backbone.state_dict()["conv1.0.weight"].shape[:2]
        words = [w.format(out + 1, cin, out, cin) for w in words]
    with pytest.raises(SystemExit) as exc:
        run_main(stage_1.main, [*FAST, "--output_dir", str(tmp_path / "out"), "--set", f"pretrained_path={path}"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2
    assert len(err.splitlines()) == 1, err
    assert f"pretrained_path {path} does not fit backbone {TINY}" in err
    counted = f"matched {matched} of 75 backbone tensors" if matched is not None else "of 75 backbone tensors"
    assert counted in err, err
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "out" / "checkpoint" / f"stage1_{TINY}_pretrained_digits_sym_0.4" / "last.pt").exists()


def test_pickled_code_is_never_run(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": _trained_classifier().state_dict(), "extra": DataError("x")}, path)
    with pytest.raises(DataError, match=r"cannot read it as a state dict .*pickled code is never run"):
        _load(path)


@pytest.mark.slow
def test_last_pt_of_a_run_here_starts_another_run(tmp_path):
    """stage 1's last.pt (and base model) as pretrained_path of a new run: the log names the count."""
    first = tmp_path / "first"
    stage_1.main([*FAST, "--output_dir", str(first)])
    last = first / "checkpoint" / f"stage1_{TINY}_scratch_digits_sym_0.4" / "last.pt"
    trained = torch.load(last, weights_only=True)["model"]
    second = tmp_path / "second"
    stage_1.main([*FAST, "--output_dir", str(second), "--set", f"pretrained_path={last}", "--set", "epochs=1",
                  "--set", "lr=1e-12"])  # a negligible step: the weights stay (nearly) those of the file
    log = (second / "checkpoint" / f"stage1_{TINY}_pretrained_digits_sym_0.4" / "train.log").read_text()
    assert f"backbone {TINY}: 75/75 tensors from {last}" in log
    model = create_model(TINY, num_classes=10, pretrained_path=str(last), img_size=32)
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, trained[f"backbone.{k}"]), k


def test_pure_helpers():
    t = torch.zeros(2)
    assert unwrap_state_dict({"model": {"module": {"a": t}}}) == {"a": t}
    assert unwrap_state_dict([1, 2]) == {}
    assert strip_prefixes({"module.backbone.a": t, "module.head.w": t}) == {"a": t}
    assert strip_prefixes({"_orig_mod.a": t}) == {"a": t}
    match = match_state({"a": t, "x": t}, {"a": t, "b": t, "bn.num_batches_tracked": t})
    assert (match.required, match.matched, match.missing, match.unexpected) == (2, 1, ["b"], ["x"])


def test_pinned_tags_resolve_in_installed_timm():
    """The timm 0.9.7 defaults of the official code, pinned for the aliases."""
    assert BACKBONE_ALIASES == {"resnet50": "resnet50.a1_in1k",
                                "ViT-B": "vit_base_patch16_224.augreg2_in21k_ft_in1k",
                                "convnext-B": "convnext_base.fb_in22k_ft_in1k"}
    for alias, tagged in BACKBONE_ALIASES.items():
        arch, tag = tagged.split(".", 1)
        cfg = timm.models.get_pretrained_cfg(tagged)
        assert cfg is not None and cfg.architecture == arch and cfg.tag == tag, tagged
        assert tagged in timm.list_pretrained(f"{arch}.*")
        assert timm_name(alias) == tagged
    assert timm_name("resnet50.a2_in1k") == "resnet50.a2_in1k"  # an explicit tag is used as given
    model = create_model("resnet18.a1_in1k", num_classes=3, img_size=32)
    assert model.backbone.pretrained_cfg["tag"] == "a1_in1k"



def test_hub_weights_are_logged_with_their_tag(monkeypatch, tmp_path):
    """pretrained: true (timm's hub, offline here: timm's loader is replaced by one that loads a fake hub file,
    strictly, as timm's does, and the hub is said to be reachable) logs the tag, the number of tensors the file
    gave and the cache the download goes to; the model holds the file's weights."""
    import timm.models._builder as builder
    from model import hub_weights

    hub_file = {}

    def load_fake_hub_file(model, *args, **kwargs):
        # the file as timm's hub ships one: every weight and running statistic, no num_batches_tracked
        generator = torch.Generator().manual_seed(0)
        hub_file.update({k: torch.randn(v.shape, generator=generator) for k, v in model.state_dict().items()
                         if not k.endswith("num_batches_tracked")})
        model.load_state_dict(hub_file, strict=True)

    monkeypatch.setattr(builder, "load_pretrained", load_fake_hub_file)
    monkeypatch.setattr(hub_weights, "reachable", lambda endpoint, **k: True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    lines = []
    model = create_model("resnet18.a1_in1k", num_classes=3, pretrained=True, img_size=32, log=lines.append)
    assert len(hub_file) == 100  # the headless backbone: 60 weights and biases, 2 x 20 BatchNorm running statistics
    assert lines == [f"backbone resnet18.a1_in1k: {len(hub_file)}/{len(hub_file)} tensors from timm's hub "
                     f"(timm/resnet18.a1_in1k), downloaded into {tmp_path}"]
    backbone = model.backbone.state_dict()
    assert all(torch.equal(backbone[k], v) for k, v in hub_file.items())


def test_vit_position_embedding_is_resized_by_timms_filter(tmp_path):
    """A 224-px ViT file into a 32-px model: timm's own checkpoint filter resizes pos_embed (197 -> 5 tokens)."""
    torch.manual_seed(0)
    source = timm.create_model("vit_tiny_patch16_224", num_classes=1000)
    torch.save({"model": source.state_dict()}, tmp_path / "vit.pth")
    lines = []
    loaded = create_model("vit_tiny_patch16_224", num_classes=3, pretrained_path=str(tmp_path / "vit.pth"),
                          img_size=32, log=lines.append)
    assert lines == [f"backbone vit_tiny_patch16_224: 150/150 tensors from {tmp_path / 'vit.pth'}"]
    assert loaded.backbone.pos_embed.shape == (1, 5, 192)
    assert torch.equal(loaded.backbone.pos_embed[:, 0], source.pos_embed[:, 0])  # the class token's is kept
    assert torch.equal(loaded.backbone.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
