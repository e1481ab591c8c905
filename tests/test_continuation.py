"""What a re-run of the same clean_labels.py command does with a stage (utils/workflow/continuation.py): a
finished stage is recognised by its files (the result JSON written last, none newer, same data and
settings), a stopped one by its last.pt; anything else starts anew.  Files made here, no training."""
from __future__ import annotations

import json
import os

import pytest
import torch

from fixtures_data import make_cfg
from utils.training.outputs import Stage1Outputs, Stage2Outputs
from utils.training.run import training_settings
from utils.workflow.continuation import Stopped, finished_result, next_step, stopped_run
from reference import stage1_complete

T0 = 1_700_000_000_000_000_000  # ns


def at(path, t_ns: int) -> None:
    os.utime(path, ns=(t_ns, t_ns))


def write_finished(outputs, cfg, *, fingerprint: str = "fp") -> None:
    """Every file of a finished run, the result JSON one second after the others."""
    for path in outputs.finished_files(export_samples=cfg.export_samples):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write("x")
        at(path, T0)
    with open(outputs.result, "w", encoding="utf-8") as f:
        json.dump({"fingerprint": fingerprint, "settings": training_settings(cfg)}, f)
    at(outputs.result, T0 + 10**9)


def never(*args):
    pytest.fail("the data were listed although the files or settings already differ")


def test_a_finished_run_is_recognised_and_fingerprinted_last(tmp_path):
    cfg = make_cfg("stage2", output_dir=str(tmp_path))
    out = Stage2Outputs.of(cfg)
    write_finished(out, cfg)
    assert finished_result(out, cfg, "fp") == out.result
    assert finished_result(out, cfg, lambda: "fp") == out.result
    assert finished_result(out, cfg, "other data") is None
    assert finished_result(out, make_cfg("stage2", output_dir=str(tmp_path), lr=0.5), never) is None
    assert set(out.finished_files(export_samples=True)) == {out.result, out.bmm_plot, out.model, out.report.samples,
                                                           out.report.summary, out.report.suspects, out.report.review}


@pytest.mark.parametrize("case", ["missing_model", "model_newer", "report_newer", "stage1_newer", "no_settings",
                                  "unreadable"])
def test_what_a_stop_or_a_later_run_leaves_is_not_finished(tmp_path, case):
    """A stop before the result JSON (a missing output), a later run of other settings stopped after it wrote an
    output (newer than the JSON), a stage 1 run after this stage 2 (``after``), a result of the code before
    the settings were recorded, a damaged JSON."""
    cfg = make_cfg("stage2", output_dir=str(tmp_path))
    out = Stage2Outputs.of(cfg)
    write_finished(out, cfg)
    after = None
    if case == "missing_model":
        os.remove(out.model)
    elif case in ("model_newer", "report_newer"):
        at(out.model if case == "model_newer" else out.report.samples, T0 + 2 * 10**9)
    elif case == "stage1_newer":
        after = out.input.wrong_events_meta
        os.makedirs(os.path.dirname(after), exist_ok=True)
        open(after, "w").close()
        at(after, T0 + 2 * 10**9)
        assert finished_result(out, cfg, "fp", after=after) is None
        at(after, T0)
    else:
        with open(out.result, "w", encoding="utf-8") as f:
            f.write('{"fingerprint": "fp"}' if case == "no_settings" else '{"fingerpr')
    assert finished_result(out, cfg, never if case != "stage1_newer" else "fp", after=after) is (
        out.result if case == "stage1_newer" else None)


def test_without_export_samples_no_report_is_needed(tmp_path):
    cfg = make_cfg("stage2", output_dir=str(tmp_path), export_samples=False)
    out = Stage2Outputs.of(cfg)
    write_finished(out, cfg)
    assert not os.path.exists(out.report.samples) and finished_result(out, cfg, "fp") == out.result


def test_stage1_complete_needs_every_output_no_newer_than_its_json(tmp_path):
    """A stage 1 of other settings stopped after it wrote its first base model leaves the JSON of the earlier
    run: not complete (before, its JSON alone decided)."""
    cfg = make_cfg("stage1", output_dir=str(tmp_path))
    out = Stage1Outputs.of(cfg)
    write_finished(out, cfg)
    assert stage1_complete(cfg, "fp") == out.wrong_events_meta
    at(out.base_model, T0 + 2 * 10**9)
    assert stage1_complete(cfg, never) is None


def save_last(out, cfg, **entries) -> str:
    os.makedirs(out.run.folder, exist_ok=True)
    state = {"epoch": 2, "settings": training_settings(cfg), "fingerprint": "fp", "model": {"w": torch.ones(3)}}
    torch.save({**state, **entries}, out.run.last)
    return out.run.last


def test_a_stopped_run_is_continued_only_from_a_last_pt_of_this_very_run(tmp_path):
    cfg = make_cfg("stage2", output_dir=str(tmp_path), epochs=5)
    out = Stage2Outputs.of(cfg)
    assert stopped_run(out, cfg, never) is None  # none there
    last = save_last(out, cfg)
    assert stopped_run(out, cfg, "fp") == Stopped(last, 3, 5)
    assert stopped_run(out, cfg, "other data") is None
    assert stopped_run(out, make_cfg("stage2", output_dir=str(tmp_path), epochs=6), never) is None
    at(last, T0)
    after = tmp_path / "stage1.json"
    after.write_text("{}")
    assert stopped_run(out, cfg, never, after=str(after)) is None  # a stage 1 ran after it: another base model
    at(after, T0 - 10**9)
    assert stopped_run(out, cfg, "fp", after=str(after)) == Stopped(last, 3, 5)
    with open(last, "r+b") as f:  # damaged: started anew
        f.truncate(100)
    assert stopped_run(out, cfg, never) is None


def test_next_step_says_in_one_line_what_it_keeps_or_continues(tmp_path):
    cfg = make_cfg("stage2", output_dir=str(tmp_path), epochs=5)
    out = Stage2Outputs.of(cfg)
    calls = []

    def fingerprint():
        calls.append(1)
        return "fp"

    assert next_step("stage 2", cfg, out, never) == ("start", None)
    last = save_last(out, cfg)
    assert next_step("stage 2", cfg, out, fingerprint) == (
        "resume", f"stage 2 was stopped after epoch 3 of 5; continuing it from {last}")
    save_last(out, cfg, epoch=4)  # every epoch done, stopped in the report: --resume writes the outputs
    assert next_step("stage 2", cfg, out, "fp") == (
        "resume", f"stage 2 was stopped after its last epoch (5), before its outputs were written; writing them "
                  f"from {last}")
    write_finished(out, cfg)
    calls.clear()
    assert next_step("stage 2", cfg, out, fingerprint) == (
        "finished", f"stage 2 of this data and these settings is complete ({out.result}); kept")
    assert calls == [1]  # the data listed once
