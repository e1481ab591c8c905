"""Where every tensor lives after ``--resume``, and that the resumed state equals the uninterrupted run's.

last.pt is read onto the CPU and each part's ``load_state_dict`` places its tensors (utils/training/runlog.py).
Read onto the training device instead, a non-fused optimiser kept its scalar ``step`` counts there, and foreach
AdamW then read each one back to the host in every step (~160 host syncs per step for a ResNet-50).  The
``meta`` device stands in for a GPU: tensors there have a device but no data, and AdamW steps on it as on one.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from utils.core.distributed import Runtime
from utils.method.acto import ActoMemory
from utils.method.wrong_events import LabelWave, WrongEvents
from utils.training import runlog
from utils.training.config import parse_config
from utils.training.engine import Precision
from utils.training.run import Run
from utils.training.runlog import RunLog

N, C, D = 12, 3, 5
GPU = torch.device("meta")  # a device other than the CPU


class Parts:
    """Every kind of part a method saves: two models with AdamW (ACTO; stage 1 and 2 have one), a scheduler,
    the gradient scaler, wrong events, the label wave and ACTO's memory (its bank in a file of its own)."""

    def __init__(self, device: torch.device):
        torch.manual_seed(0)
        self.device = device
        self.models = [nn.Linear(D, C).to(device), nn.Linear(D, C).to(device)]
        self.opts = [torch.optim.AdamW(m.parameters(), lr=1e-2) for m in self.models]
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.opts[0], T_max=5)
        # fp16's scaler: a state of its own (on the CPU; on the data-less fake GPU it could not read its check)
        self.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, enabled=device.type == "cpu")
        self.events = WrongEvents(N, device=device)
        self.wave = LabelWave(device=device)
        self.memory = ActoMemory(torch.arange(N) % C, C, device=device)

    def parts(self) -> dict:
        return {"rtm": self.models[0], "ntm": self.models[1], "opt_rtm": self.opts[0], "opt_ntm": self.opts[1],
                "scheduler": self.scheduler, "scaler": self.scaler, "wrong_events": self.events,
                "label_wave": self.wave, "memory": self.memory}

    def train(self, steps: int, *, first: int = 0) -> None:
        """``steps`` steps with data drawn from the step number alone (a resumed run sees the same)."""
        for k in range(first, first + steps):
            g = torch.Generator().manual_seed(k)
            x, y = torch.randn(4, D, generator=g).to(self.device), torch.randint(0, C, (4,), generator=g)
            index = torch.randperm(N, generator=g)[:4].to(self.device)
            y = y.to(self.device)
            loss = sum(nn.functional.cross_entropy(m(x), y) for m in self.models)
            for opt in self.opts:
                opt.zero_grad()
            self.scaler.scale(loss).backward()
            for opt in self.opts:
                self.scaler.step(opt)
            self.scaler.update()
            logits = self.models[0](x).detach()
            self.events.record(index, logits.argmax(1), labels=y)
            self.memory.select(index, torch.ones_like(y, dtype=torch.bool))
            self.memory.update_soft_labels(index, logits, 0.8)
        self.scheduler.step()
        self.events.end_epoch()
        if self.device.type != "meta":  # these read values (the label wave's change, the bank merge's decision)
            self.memory.end_epoch()
            self.wave.observe(first + steps, self.models[0](torch.ones(N, D, device=self.device)).argmax(1))


def make_run(tmp_path, device: torch.device) -> Run:
    cfg = parse_config([], prog="acto.py", scope="acto")
    return Run(cfg, Runtime(device=device), RunLog(str(tmp_path / "run")), Precision.create("fp32", torch.device("cpu")),
               None)


def live_tensors(p: Parts) -> dict[str, torch.Tensor]:
    """Every tensor the parts hold for training (not their state_dict copies): optimiser state, weights, the
    per-sample statistics."""
    out = {}
    for o, opt in enumerate(p.opts):
        for i, param in enumerate(q for group in opt.param_groups for q in group["params"]):
            out.update({f"opt{o}.{i}.{key}": value for key, value in opt.state[param].items()})
    for m, model in enumerate(p.models):
        out.update({f"model{m}.{k}": v for k, v in model.state_dict().items()})
    out.update({"events": p.events.counts, "counter": p.memory.counter, "bank": p.memory.bank})
    if p.wave.reference is not None:
        out["wave"] = p.wave.reference
    return out


def test_last_pt_is_read_onto_the_cpu(tmp_path, monkeypatch):
    seen = []
    real_load = torch.load
    monkeypatch.setattr(runlog.torch, "load", lambda *a, **k: seen.append(k["map_location"]) or real_load(*a, **k))
    log = RunLog(str(tmp_path))
    log.save_state({"epoch": 0, "w": torch.ones(2)})
    assert log.load_state()["w"].device == torch.device("cpu") and seen == ["cpu"]


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")  # meta holds no values: expected
def test_resumed_tensors_are_where_a_fresh_run_has_them(tmp_path):
    """On the fake GPU: a fresh run's AdamW keeps ``step`` on the CPU and its moments on the device; after a
    resume from a checkpoint every live tensor has the device, dtype and shape of the fresh run's."""
    fresh = Parts(GPU)
    fresh.train(2)
    written = Parts(torch.device("cpu"))  # the checkpoint's values (meta tensors hold none to save)
    written.train(2)
    make_run(tmp_path, torch.device("cpu")).save_state({"epoch": 0}, fingerprint="f", parts=written.parts())

    resumed = Parts(GPU)
    make_run(tmp_path, GPU).load_state(fingerprint="f", parts=resumed.parts())

    want, got = live_tensors(fresh), live_tensors(resumed)
    # the label wave's reference: the predictions of an epoch, on the device (the fresh run on meta cannot
    # compute it: it counts the changed predictions)
    assert got.pop("wave").device == GPU
    assert got.keys() == want.keys() and any(".step" in k for k in got)
    placement = {k: (v.device, v.dtype, tuple(v.shape)) for k, v in got.items()}
    assert placement == {k: (v.device, v.dtype, tuple(v.shape)) for k, v in want.items()}
    assert {got[k].device for k in got if k.endswith(".step")} == {torch.device("cpu")}  # as torch keeps them
    assert got["opt0.0.exp_avg"].device == GPU and got["bank"].device == GPU


def test_resumed_state_equals_the_uninterrupted_run_tensor_by_tensor(tmp_path):
    """On the CPU, with values: 2 steps, a checkpoint, 3 more steps; against the same 5 steps without a stop."""
    whole = Parts(torch.device("cpu"))
    whole.train(2)
    make_run(tmp_path, torch.device("cpu")).save_state({"epoch": 0}, fingerprint="f", parts=whole.parts())
    whole.train(3, first=2)

    resumed = Parts(torch.device("cpu"))
    make_run(tmp_path, torch.device("cpu")).load_state(fingerprint="f", parts=resumed.parts())
    resumed.train(3, first=2)

    want, got = live_tensors(whole), live_tensors(resumed)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key].device == want[key].device and got[key].dtype == want[key].dtype, key
        assert torch.equal(got[key], want[key]), key
    assert resumed.scaler.state_dict() == whole.scaler.state_dict()
    assert resumed.scheduler.state_dict() == whole.scheduler.state_dict()
    assert copy.deepcopy(resumed.wave.history) == whole.wave.history


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_a_fresh_optimiser_keeps_its_step_counts_on_the_cpu(kind):
    """The premise, pinned on the fake GPU: a fresh non-fused optimiser's scalar state is on the CPU (SGD has
    none), and loading a state that holds it on the device keeps it there (what reading last.pt onto the GPU did)."""
    model = nn.Linear(D, C).to(GPU)
    opt = (torch.optim.AdamW(model.parameters()) if kind == "adamw"
           else torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    model(torch.ones(2, D, device=GPU)).sum().backward()
    opt.step()
    steps = [v for s in opt.state.values() for k, v in s.items() if k == "step"]
    assert all(v.device == torch.device("cpu") for v in steps) and (steps != []) == (kind == "adamw")
    if kind == "adamw":
        on_device = {"state": {i: {**s, "step": s["step"].to(GPU)} for i, s in opt.state_dict()["state"].items()},
                     "param_groups": opt.state_dict()["param_groups"]}
        opt.load_state_dict(on_device)
        assert all(s["step"].device == GPU for s in opt.state.values())
