"""benchmarks/gpu_check.py: the full mode's plan fills every record of the one schema, the tiny mode runs on the
CPU into exactly those keys, and the CUDA-only parts (sync counter, memory probe, torchrun) are exercised with
fakes, so the first GPU run does not die on a typo."""
from __future__ import annotations

import dataclasses
import json
import warnings

import pytest
import torch

from benchmarks import gpu_check as gc
from benchmarks.host_syncs import CUDA_COUNTER, HOST_READS_COUNTER, SYNC_WARNING, SyncCounter, count_epoch
from utils.core.errors import ConfigError
from utils.training.config import ACTO, STAGE1, STAGE2, parse_config

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


@pytest.fixture
def one_thread():
    """Tiny models on one torch thread, as --tiny runs them (two threads on a loaded machine spin)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _planned(tasks) -> dict:
    paths = {}
    for task in tasks:
        for path, kind in task.paths().items():
            assert path not in paths, f"{path} planned twice"
            paths[path] = kind
    return paths


def test_the_full_plan_on_two_gpus_measures_every_record_of_the_schema():
    tasks = gc.plan(gc.FULL, device=CUDA, gpus=2)  # planning creates nothing: no GPU needed
    assert _planned(tasks) == gc.schema()
    assert [t for t in tasks if t.skipped] == []
    assert all(callable(t.measure) for t in tasks)
    sections = [t.section for t in tasks]
    assert sections.index("loader") > max(i for i, s in enumerate(sections) if s == "speed")  # compares with it
    assert gc.FULL.roles == {"cnn": "resnet50", "vit": "ViT-B"} and gc.FULL.resolution == 224
    assert gc.FULL.batch is None and gc.FULL.speed_precisions == gc.PRECISIONS == ("fp32", "bf16", "fp16")


def test_the_full_plan_on_one_gpu_skips_only_the_two_process_runs():
    tasks = gc.plan(gc.FULL, device=CUDA, gpus=1)
    assert _planned(tasks) == gc.schema()
    assert {t.path: t.skipped for t in tasks if t.skipped} == {
        ("nccl", "stage1"): "skipped: 1 GPU", ("nccl", "stage2"): "skipped: 1 GPU", ("nccl", "acto"): "skipped: 1 GPU"}


def test_the_full_plan_on_the_cpu_reports_memory_null_with_the_reason():
    skipped = {t.path: t.skipped for t in gc.plan(gc.FULL, device=CPU, gpus=0) if t.skipped}
    assert skipped[("memory", "acto", "vit")] == ("skipped: no CUDA device (cpu): peak GPU memory is measured on "
                                                  "CUDA only")
    assert skipped[("nccl", "stage1")] == "skipped: 0 GPUs"
    assert {path[0] for path in skipped} == {"memory", "nccl"}


def test_the_tiny_plan_has_the_same_records_and_runs_the_memory_steps_on_the_cpu():
    tasks = gc.plan(gc.TINY, device=CPU, gpus=0)
    assert _planned(tasks) == gc.schema()
    assert {t.path: t.skipped for t in tasks if t.skipped} == {
        ("speed", "cnn", "fp16"): "skipped: --tiny measures fp32 and bf16",
        ("speed", "vit", "fp16"): "skipped: --tiny measures fp32 and bf16",
        **{("nccl", m): "skipped: 0 GPUs" for m in gc.NCCL_PROGRAMS}}


def test_a_record_takes_every_field_and_no_other():
    fields = dict.fromkeys(gc.RECORDS["nccl"], 1)
    assert list(gc.record("nccl", **fields)) == list(gc.RECORDS["nccl"]) + ["skipped", "error"]
    with pytest.raises(TypeError, match=r"nccl record: missing \['hung'\], unknown \[\]"):
        gc.record("nccl", **{k: v for k, v in fields.items() if k != "hung"})
    with pytest.raises(TypeError, match=r"missing \[\], unknown \['hang'\]"):
        gc.record("nccl", **fields, hang=True)
    empty = gc.empty_record("memory", skipped="skipped: x")
    assert empty["skipped"] == "skipped: x" and empty["error"] is None
    assert all(empty[k] is None for k in gc.RECORDS["memory"])


def test_result_keys_follow_nested_dicts_down_to_the_records():
    rec = gc.empty_record("loader")
    result = {"mode": "tiny", "loader": {"stage1": rec}, "x": {}}
    assert gc.result_keys(result) == {("mode",), ("x",)} | {("loader", "stage1", k) for k in rec}
    assert ("loader", "stage1", "loader_over_step") in gc.schema_keys()


def _task(path, measure, **kw):
    return gc.Task(path, {None: "nccl"}, measure, **kw)


def _filled(ctx):
    return {None: gc.record("nccl", **dict.fromkeys(gc.RECORDS["nccl"], 0))}


def test_run_tasks_records_skips_budgets_usage_errors_and_failures(tmp_path, capsys):
    now = [0.0]

    def slow(ctx):
        now[0] += 50.0  # the task takes 50 s on the fake clock
        return _filled(ctx)

    def refused(ctx):
        raise ConfigError("config key 'precision': bf16 is not supported by Tesla V100 (compute capability below 8.0)")

    def broken(ctx):
        raise KeyError("typo")

    mode = dataclasses.replace(gc.TINY, budgets={"a": 40.0})
    ctx = gc.Context(mode, CPU, 0, str(tmp_path))
    lines = []
    tasks = [_task(("a", "1"), slow), _task(("a", "2"), slow), _task(("b", "1"), refused),
             _task(("b", "2"), broken), _task(("b", "3"), _filled, skipped="skipped: 1 GPU"),
             gc.Task(("c",), {"x": "nccl", "y": "nccl"}, _filled)]
    results = gc.run_tasks(tasks, ctx, clock=lambda: now[0], log=lines.append)
    assert results["a"]["1"]["exit_code"] == 0 and results["a"]["1"]["skipped"] is None
    assert results["a"]["2"]["skipped"] == "skipped: the a part had spent its budget of 40 s"
    assert results["b"]["1"]["skipped"] == ("skipped: config key 'precision': bf16 is not supported by Tesla V100 "
                                            "(compute capability below 8.0)")
    assert results["b"]["2"]["error"] == "KeyError: 'typo'" and results["b"]["2"]["exit_code"] is None
    assert results["b"]["3"]["skipped"] == "skipped: 1 GPU"
    # a task that fills other records than it declares is an error, every declared record empty
    assert results["c"]["x"]["error"] == results["c"]["y"]["error"] == ("TypeError: c filled ['None'], expected "
                                                                        "['x', 'y']")
    assert lines[0] == "[gpu_check 1/6] a/1: measured (50.0 s)" and lines[3].startswith("[gpu_check 4/6] b/2: error:")
    assert "KeyError: 'typo'" in capsys.readouterr().err  # the traceback of the failure


def test_errors_lists_the_failed_records_of_a_result():
    result = {}
    for path, kind in gc.schema().items():
        gc._place(result, path, gc.empty_record(kind))
    assert gc.errors(result) == []
    result["speed"]["vit"]["bf16"]["error"] = "OutOfMemoryError: CUDA out of memory"
    assert gc.errors(result) == ["speed/vit/bf16: OutOfMemoryError: CUDA out of memory"]


def test_the_report_shows_why_a_record_is_empty():
    """A GPU run may skip or fail any measurement: the report still renders, naming why."""
    result = {"command": "python benchmarks/gpu_check.py", "machine": "NVIDIA H100 with x", "device": "cuda:0",
              "gpus": 1, "date": "2026-12-07", "mode": "full", "elapsed_s": 1.0, "counter": CUDA_COUNTER}
    for path, kind in gc.schema().items():
        failed = path[0] == "speed" and path[2] == "bf16"
        gc._place(result, path, gc.empty_record(kind, error="OutOfMemoryError: CUDA out of memory") if failed
                  else gc.empty_record(kind, skipped=f"skipped: {'/'.join(path)}"))
    text = gc.render_section(result)
    assert text.startswith(gc.BEGIN + "\n") and text.rstrip().endswith(gc.END)
    assert "| vit | bf16 | error: OutOfMemoryError: CUDA out of memory |" in text
    for path in gc.schema():
        if not (path[0] == "speed" and path[2] == "bf16"):
            assert f"skipped: {'/'.join(path)}" in text, path


def test_the_cuda_counter_counts_the_sync_warnings_and_where_they_came_from():
    modes = []
    with SyncCounter(CUDA, set_mode=modes.append) as counter:
        assert counter.name == CUDA_COUNTER and modes == ["warn"]
        for _ in range(3):  # one line, three syncs: Python's default filter would show the first only
            warnings.warn(f"{SYNC_WARNING} (Triggered internally at CUDAFunctions.cpp:160.)"); line = _line()
        warnings.warn("an unrelated warning")
        assert counter.total == 3
        warnings.warn(SYNC_WARNING)
        assert counter.total == 4
    assert modes == ["warn", "default"]
    assert counter.sites == {f"tests/test_gpu_check.py:{line}": 3, f"tests/test_gpu_check.py:{line + 3}": 1}
    assert SyncCounter(CUDA)._set_mode is torch.cuda.set_sync_debug_mode


def _line() -> int:
    import inspect
    return inspect.currentframe().f_back.f_lineno


def test_count_epoch_splits_an_epoch_into_its_steps():
    """Reads: 2 before the loop, the steps 5, 3 (a skipped optimiser step), 5, 5 (each split by the step call),
    4 at the end of the epoch."""
    def read(n):
        for _ in range(n):
            torch.ones(1).item()

    def step(model, batch):
        read(batch)
        return None

    def run_epoch(counted_step):
        read(2)
        for reads in (5, 3, 5, 5):
            counted_step(None, reads)
        read(4)

    with SyncCounter(CPU) as counter:
        assert counter.name == HOST_READS_COUNTER
        counts = count_epoch(run_epoch, step, counter)
    assert counts.first_step == 2 + 5 and counts.per_step_counts == [3, 5] and counts.per_step == 5
    assert counts.epoch_total == 2 + 18 + 4 and counts.steps == 4
    assert list(counts.sites.values()) == [4.0] and next(iter(counts.sites)).startswith("tests/test_gpu_check.py:")
    with SyncCounter(CPU) as counter, pytest.raises(ValueError, match="at least 3 steps, got 2"):
        count_epoch(lambda s: [s(None, 1) for _ in range(2)], step, counter)


class FakeMemory:
    def __init__(self):
        self.calls = []

    def allocated(self):
        self.calls.append("allocated")
        return 3 * gc.MIB

    def reset_peak(self):
        self.calls.append("reset_peak")

    def peak(self):
        self.calls.append("peak")
        return 1536 * gc.MIB, 2048 * gc.MIB


def test_memory_on_cuda_reports_the_peak_of_the_steps_in_mib(tmp_path, one_thread):
    memory = FakeMemory()
    ctx = gc.Context(gc.TINY, CPU, 0, str(tmp_path), memory=memory)
    rec = gc.measure_memory(ctx, "stage1", "cnn")[None]
    assert memory.calls == ["allocated", "reset_peak", "peak"]
    assert rec["peak_allocated_mib"] == 1536.0 and rec["peak_reserved_mib"] == 2048.0
    assert rec["allocated_before_mib"] == 3.0 and rec["note"] is None
    # the paper config's precision and layout (config/stage1/cifar100.yaml: the defaults), the tiny sizes
    assert (rec["config"], rec["precision"], rec["channels_last"]) == ("config/stage1/cifar100.yaml", "fp32", False)
    assert (rec["backbone"], rec["batch_size"], rec["resolution"]) == ("test_resnet", 8, 16)


def test_the_cuda_only_calls_name_real_torch_functions(monkeypatch, tmp_path):
    """A misspelt torch.cuda function would fail only on a GPU: each is replaced here (raising if it does not
    exist) and reached through the code that calls it."""
    calls = []
    for name, value in (("memory_allocated", 1), ("reset_peak_memory_stats", None), ("max_memory_allocated", 2),
                        ("max_memory_reserved", 3), ("synchronize", None), ("empty_cache", None)):
        monkeypatch.setattr(torch.cuda, name, lambda *a, _n=name, _v=value: calls.append(_n) or _v)
    ctx = gc.Context(gc.FULL, CUDA, 1, str(tmp_path))
    ctx.synchronize()
    ctx.free()
    assert isinstance(ctx.memory, gc.CudaMemory)
    assert (ctx.memory.allocated(), ctx.memory.reset_peak(), ctx.memory.peak()) == (1, None, (2, 3))
    assert calls == ["synchronize", "empty_cache", "memory_allocated", "reset_peak_memory_stats",
                     "max_memory_allocated", "max_memory_reserved"]


@pytest.mark.parametrize("launched, destroyed", [
    (gc.Launched(0, 31.5, False, "epoch 2/2 ...\n"), True),
    (gc.Launched(0, 31.5, False, f"[rank1]: WARNING: {gc.NOT_DESTROYED} before program exit, which can leak"), False),
    (gc.Launched(None, 240.0, True, "epoch 1/2 ...\n"), False),
    (gc.Launched(1, 12.0, False, "Traceback ...\n"), False),
])
def test_a_two_process_run_is_clean_only_with_exit_0_and_every_group_destroyed(tmp_path, launched, destroyed):
    seen = []

    def fake_launch(cmd, *, timeout):
        seen.append((cmd, timeout))
        return launched

    ctx = gc.Context(gc.FULL, CUDA, 2, str(tmp_path), launch=fake_launch, memory=FakeMemory())
    rec = gc.measure_nccl(ctx, "stage2")[None]
    assert rec["group_destroyed"] is destroyed and rec["hung"] is launched.hung
    assert rec["exit_code"] == launched.exit_code and rec["output_tail"] == launched.output
    cmd, timeout = seen[0]
    assert timeout == gc.FULL.nccl_timeout_s and cmd[1:6] == ["-m", "torch.distributed.run", "--standalone",
                                                               "--nproc_per_node=2", "stage_2_class.py"]
    assert rec["command"].endswith("--output_dir " + str(tmp_path / "nccl") + " --set batch_size=128 --epochs 1")


@pytest.mark.parametrize("method, scope", [("stage1", STAGE1), ("stage2", STAGE2), ("acto", ACTO)])
def test_the_torchrun_command_lines_are_valid_for_their_entry_points(method, scope):
    cmd = gc.nccl_command(method, output_dir="/tmp/out")
    program = cmd.index(gc.NCCL_PROGRAMS[method][0])
    cfg = parse_config(cmd[program + 1:], prog=cmd[program], scope=scope)
    assert (cfg.dataset, cfg.device, cfg.batch_size, cfg.output_dir) == ("digits", "cuda", 128, "/tmp/out")


def test_tiny_refuses_to_write_the_docs(tmp_path):
    out = tmp_path / "g.json"
    with pytest.raises(ConfigError) as err:
        gc.main(["--tiny", "--write-docs"])
    assert str(err.value) == ("--write-docs records a full run in docs/performance.md; drop --tiny (its JSON goes "
                              "to --out)")
    assert not out.exists()


@pytest.mark.slow
def test_tiny_on_the_cpu_fills_exactly_the_full_schema(tmp_path):
    out = tmp_path / "runs" / "g.json"
    threads = torch.get_num_threads()
    result = gc.main(["--tiny", "--device", "cpu", "--out", str(out)])
    assert torch.get_num_threads() == threads  # one thread while it ran, given back after
    assert json.loads(out.read_text()) == result
    assert gc.result_keys(result) == gc.schema_keys()
    assert result["errors"] == 0 and gc.errors(result) == []
    assert (result["mode"], result["device"], result["gpus"], result["threads"]) == ("tiny", "cpu", 0, 1)
    assert result["counter"] == HOST_READS_COUNTER
    for method in gc.SYNC_METHODS:
        for precision in gc.PRECISIONS:
            for rec in result["host_syncs"][method][precision].values():
                counts = [rec["first_step"], rec["per_step"], rec["epoch_total"], *rec["per_step_counts"]]
                assert all(isinstance(n, int) and n >= 0 for n in counts), (method, precision, rec)
                assert rec["per_step"] == max(rec["per_step_counts"]) and rec["steps"] == gc.TINY.sync_steps
            resumed = result["host_syncs"][method][precision]["resumed"]
            assert resumed["load_s"] > 0 and resumed["to_first_step_s"] >= resumed["load_s"]
            # the gradient scaler reads found_inf on the host once per optimiser and step, in fp16 only
            scaler = sum(n for site, n in resumed["sites"].items() if "grad_scaler" in site)
            assert scaler == (0 if precision != "fp16" else 2 if method.startswith("acto") else 1)
    for which in gc.PASSES:
        for rec in result["pass_syncs"][which].values():
            assert rec["per_batch"] >= 0 and rec["fixed"] >= 0
    for role in gc.ROLES:
        for precision in gc.PRECISIONS:
            rec = result["speed"][role][precision]
            if precision == "fp16":
                assert rec["skipped"] == "skipped: --tiny measures fp32 and bf16"
                continue
            assert rec["backbone"] == gc.TINY.roles[role]
            assert all(rec[k] > 0 for k in gc.RECORDS["speed"] if k.endswith(("_images_per_s", "_over_plain",
                                                                                "_over_two_view")))
    for stage in gc.LOADER_STAGES:
        rec = result["loader"][stage]
        assert rec["images"] == gc.TINY.loader_images // 10 * 10 and rec["images_per_s"] > 0 and rec["workers"] >= 0
        assert rec["loader_over_step"]["fp32"] > 0 and rec["loader_over_step"]["fp16"] is None
    for method in gc.MEMORY_METHODS:
        for rec in result["memory"][method].values():
            assert rec["peak_allocated_mib"] is None and rec["peak_reserved_mib"] is None
            assert rec["note"] == ("null: no CUDA device (cpu); torch.cuda.max_memory_allocated measures CUDA "
                                   "memory only")
    assert {m: rec["skipped"] for m, rec in result["nccl"].items()} == dict.fromkeys(gc.NCCL_PROGRAMS,
                                                                                      "skipped: 0 GPUs")
    # the section --write-docs puts into docs/performance.md replaces only its own part of the page
    page = tmp_path / "performance.md"
    page.write_text("# Performance\n\nkept\n\n" + gc.BEGIN + "\nold\n" + gc.END + "\n\nalso kept\n")
    gc.write_section(gc.render_section(result), str(page), gc.BEGIN, gc.END)
    text = page.read_text()
    assert text.startswith("# Performance\n\nkept\n\n" + gc.BEGIN) and text.endswith(gc.END + "\n\nalso kept\n")
    assert "\nold\n" not in text
    assert f"`python benchmarks/gpu_check.py --tiny --device cpu --out {out}`" in text
    assert "| stage1 | skipped: 0 GPUs | | | |" in text
