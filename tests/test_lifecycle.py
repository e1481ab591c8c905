"""utils.workflow.lifecycle.run_method with a toy method (a linear model on 32 random samples, in-process): the order
of the hooks, last.pt every ``checkpoint_every`` epochs, an unsaved method, and a stopped run resumed to the
same history and weights as an uninterrupted one."""
import csv
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import utils.workflow.lifecycle
from utils.training.config import STAGE1
from utils.workflow.lifecycle import Method, fmt, run_method
from utils.training.outputs import Stage1Outputs
from utils.training.run import Run, start_run
from utils.core.signals import DataLoader


class Toy(Method):
    name = "toy"

    def __init__(self, run, *, saved: bool = True, checkpoint_every: int = 1):
        super().__init__(run, SimpleNamespace(fingerprint="toy-data", normalise=None))
        self.net = torch.nn.Linear(4, 3)  # start_run seeded the RNGs: the same weights in every run
        self.model = self.net
        self.optimizers = (torch.optim.SGD(self.net.parameters(), lr=0.1, momentum=0.9),)
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)
        # shuffled from a generator that the lifecycle re-seeds every epoch
        self.loader = DataLoader(TensorDataset(x, y, torch.arange(32)), batch_size=8, shuffle=True,
                                 generator=torch.Generator())
        self.parts = {"model": self.net, "optimizer": self.optimizers[0]} if saved else {}
        self.checkpoint_every = checkpoint_every
        self.calls: list[str] = []

    def start(self):
        self.calls.append("start")

    def resume(self, state):
        self.calls.append("resume")
        return super().resume(state)

    def epoch_step(self, epoch):
        self.calls.append(f"step {epoch}")

        def step(model, batch):
            x, y, _ = batch
            return F.cross_entropy(model(x), y)
        return step

    def end_epoch(self, epoch, stats):
        self.calls.append(f"end {epoch}")
        return {"epoch": epoch + 1, "lr": stats["lr"], "loss": stats["loss"]}, f"toy epoch {epoch + 1}"

    def summary(self, history):
        self.calls.append("summary")
        return {"history": history, "weight": self.net.weight.detach().clone()}

    def save_results(self, result):
        self.calls.append("save_results")
        return {"path": "toy.json"}

    def announce(self, result):
        self.calls.append("announce")


def toy_run(out, *extra):
    return start_run(["--device", "cpu", "--epochs", "3", "--output_dir", str(out), "--set", "run_name=toy", *extra],
                     prog="toy", scope=STAGE1, outputs=Stage1Outputs.of)


def metrics_rows(out):
    with open(out / "checkpoint" / "toy" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_hooks_run_in_order_and_last_pt_follows_checkpoint_every(tmp_path, monkeypatch):
    saved = []
    real = Run.save_state
    monkeypatch.setattr(Run, "save_state", lambda self, state, **kw: (saved.append(state["epoch"] + 1),
                                                                     real(self, state, **kw)))
    method = Toy(toy_run(tmp_path), checkpoint_every=2)
    result = run_method(method)
    assert method.calls == ["start", "step 0", "end 0", "step 1", "end 1", "step 2", "end 2", "summary",
                            "save_results", "announce"]
    assert saved == [2, 3]  # every 2nd epoch and the last
    assert result["path"] == "toy.json" and [row["epoch"] for row in result["history"]] == [1, 2, 3]
    assert [row["lr"] for row in result["history"]] == [0.1] * 3
    assert [int(r["epoch"]) for r in metrics_rows(tmp_path)] == [1, 2, 3]


def test_stopped_and_resumed_run_equals_the_uninterrupted_one(tmp_path, monkeypatch):
    full = run_method(Toy(toy_run(tmp_path / "full")))
    real = utils.workflow.lifecycle.train_one_epoch

    def stop_in_third_epoch(**kwargs):
        if kwargs["epoch"] == 2:
            raise KeyboardInterrupt()
        return real(**kwargs)

    monkeypatch.setattr(utils.workflow.lifecycle, "train_one_epoch", stop_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_method(Toy(toy_run(tmp_path / "part")))
    assert len(metrics_rows(tmp_path / "part")) == 2
    monkeypatch.setattr(utils.workflow.lifecycle, "train_one_epoch", real)
    method = Toy(toy_run(tmp_path / "part", "--resume"))
    resumed = run_method(method)
    assert method.calls[:3] == ["resume", "step 2", "end 2"]
    assert resumed["history"] == full["history"]
    assert torch.equal(resumed["weight"], full["weight"])
    assert not torch.equal(full["weight"], Toy(toy_run(tmp_path / "fresh")).net.weight)  # it did train


def test_a_method_without_parts_is_not_saved_and_not_resumed(tmp_path):
    method = Toy(toy_run(tmp_path, "--resume"), saved=False)  # no last.pt to resume from: not asked for
    result = run_method(method)
    assert method.calls[0] == "start" and len(result["history"]) == 3
    run_dir = tmp_path / "checkpoint" / "toy"
    assert not (run_dir / "last.pt").exists() and not (run_dir / "metrics.csv").exists()


def test_fmt_says_n_a_for_unknown_values():
    assert (fmt(None), fmt(0.123456), fmt(0.5, ".3f")) == ("n/a", "0.1235", "0.500")
