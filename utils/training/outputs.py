"""Every file a method writes, named once: one ``*Outputs`` per method, built from the run's config.

The entry points, clean_labels.py, predict.py, the benchmarks and the sh scripts take their paths from here
(the scripts through ``--outputs NAME``, which prints a path and exits), so renaming an output is one edit and
nothing that reuses a finished run (clean_labels.py reusing a stage 1, stage 2 reading stage 1) can drift.

``tag = {backbone}_{pretrained|scratch}_{dataset}_{noise_mode}_{noise_ratio}`` (``Config.tag``)::

    stage1/{tag}_wrongevent.npy .json .png      stage 1's wrong events, what they belong to, their histogram
    base_model/{tag}.pt                         stage 1's base model (stage 2 starts from it)
    stage2/{tag}_{bmm}.json  _bmm.png  _model.pt    stage 2's result, fitted mixture, model for predict.py
    acto/{tag}.json  _model.pt                  ACTO's result and model (the RTM)
    cleanlab/{tag}.json                         the confident-learning baseline (benchmarks/)
    {stage stem}_samples.csv _summary.json _suspects.png _review.html   the per-sample report of each method
    checkpoint/{run}/config.yaml train.log metrics.csv last.pt (+ last.{part}.{token}.npy, {record}.jsonl,
                     bad_images.txt)            one run's folder; run = {method}_{tag}[_{bmm}] or run_name
    {noise_dir or noise_file}/                  the data layer's caches (noisy labels, Clothing1M's subset)
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, Mapping

from dataloader.noise import cache_dir
from utils.core.errors import ConfigError
from utils.training.checkpoint_arrays import is_array_file

# the report files of a stem (utils/report/sample_report.py, utils/report/review_page.py)
REPORT_SUFFIXES = {"samples": "_samples.csv", "summary": "_summary.json", "suspects": "_suspects.png",
                   "review": "_review.html"}
BMM_HISTORY = "bmm_history"  # stage 2's mixture after each epoch
RECORDS = (BMM_HISTORY,)  # checkpoint/{run}/{record}.jsonl: per-epoch records too large for every last.pt


@dataclass(frozen=True)
class ReportFiles:
    """The per-sample report of one method: every training sample ranked, its summary, the suspects' grid
    and the review page."""

    samples: str
    summary: str
    suspects: str
    review: str

    @classmethod
    def at(cls, stem: str) -> "ReportFiles":
        return cls(**{name: stem + suffix for name, suffix in REPORT_SUFFIXES.items()})


@dataclass(frozen=True)
class RunFiles:
    """``checkpoint/{run}/``: what the run log writes (utils/training/runlog.py)."""

    folder: str
    config: str
    log: str
    metrics: str
    last: str
    bad_images: str

    @classmethod
    def at(cls, folder: str) -> "RunFiles":
        join = (lambda name: os.path.join(folder, name))
        return cls(folder, join("config.yaml"), join("train.log"), join("metrics.csv"), join("last.pt"),
                   join("bad_images.txt"))

    def record(self, name: str) -> str:
        """``{name}.jsonl``: one line per epoch (:data:`RECORDS`)."""
        if name not in RECORDS:
            raise ValueError(f"unknown run record {name!r}; add it to RECORDS")
        return os.path.join(self.folder, f"{name}.jsonl")

    def owns(self, path: str) -> bool:
        if os.path.dirname(path) != self.folder:
            return False
        name = os.path.basename(path)
        return path in _flat(self).values() or is_array_file(name) or \
            name in {os.path.basename(self.record(r)) for r in RECORDS}


def _flat(obj, prefix: str = "") -> dict[str, str]:
    """``{"name": path}`` of an outputs object, nested objects as ``"run.last"`` (a report's files at the top)."""
    out = {}
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if isinstance(value, ReportFiles):
            out.update(_flat(value, prefix))
        elif dataclasses.is_dataclass(value):
            out.update(_flat(value, f"{prefix}{field.name}."))
        elif isinstance(value, str):
            out[prefix + field.name] = value
    return out


class Outputs:
    """What every method's outputs share: their run folder, the data cache, and lookup by name."""

    run: RunFiles
    data_cache: str
    result: str  # the result JSON, written last; what a later run checks before overwriting (Run.claim_outputs)

    def files(self) -> dict[str, str]:
        """``{name: path}`` of every output (the names ``--outputs`` prints)."""
        return _flat(self)

    def finished_files(self, *, export_samples: bool) -> list[str]:
        """The files a finished run has written, the result JSON among them (written last:
        :func:`utils.workflow.lifecycle.run_method`): every output but the run folder's, the data cache and the
        files read of another method (``input.*``); the per-sample report only with ``export_samples``."""
        return [path for name, path in self.files().items()
                if not (name.startswith(("run.", "input.")) or name == "data_cache"
                        or (not export_samples and name in REPORT_SUFFIXES))]

    def folders(self) -> list[str]:
        """The folders the method writes its files into, in order, once each: checked for write permission
        before a run starts (:func:`utils.training.run.start_run`).  Not the data cache, which the data layer
        writes only when its file is missing (a shared read-only ``noise_dir`` that holds it is fine), nor
        the files of another method that this one reads (``input.*``)."""
        folders: list[str] = []
        for name, path in self.files().items():
            if name.startswith("input.") or name == "data_cache":
                continue
            folder = path if name == "run.folder" else os.path.dirname(path)
            if folder not in folders:
                folders.append(folder)
        return folders

    def owns(self, path: str) -> bool:
        """Whether ``path`` is one of these outputs (or a file of the run folder or the data cache)."""
        path = os.path.normpath(path)
        named = {os.path.normpath(p) for name, p in self.files().items() if not name.startswith("input.")}
        return path in named or self.run.owns(path) or os.path.dirname(path) == os.path.normpath(self.data_cache)


def _run_folder(cfg, default: str) -> RunFiles:
    return RunFiles.at(os.path.join(cfg.output_dir, "checkpoint", cfg.run_name or default))


@dataclass(frozen=True)
class Stage1Outputs(Outputs):
    wrong_events: str
    wrong_events_meta: str  # the result: what the counts belong to (fingerprint, settings), read by stage 2
    wrong_events_plot: str
    base_model: str
    report: ReportFiles
    run: RunFiles
    data_cache: str

    @property
    def result(self) -> str:
        return self.wrong_events_meta

    @classmethod
    def of(cls, cfg) -> "Stage1Outputs":
        stem = os.path.join(cfg.output_dir, "stage1", f"{cfg.tag}_wrongevent")
        return cls(wrong_events=stem + ".npy", wrong_events_meta=stem + ".json", wrong_events_plot=stem + ".png",
                   base_model=os.path.join(cfg.output_dir, "base_model", f"{cfg.tag}.pt"),
                   report=ReportFiles.at(os.path.join(cfg.output_dir, "stage1", cfg.tag)),
                   run=_run_folder(cfg, f"stage1_{cfg.tag}"), data_cache=cache_dir(cfg))


@dataclass(frozen=True)
class Stage1Inputs:
    """What stage 2 reads of stage 1 (``wrong_events`` / ``base_model`` keys, else stage 1's outputs)."""

    wrong_events: str
    wrong_events_meta: str
    base_model: str


@dataclass(frozen=True)
class Stage2Outputs(Outputs):
    result: str
    bmm_plot: str
    model: str
    report: ReportFiles
    run: RunFiles
    data_cache: str
    input: Stage1Inputs

    @classmethod
    def of(cls, cfg) -> "Stage2Outputs":
        stem = os.path.join(cfg.output_dir, "stage2", f"{cfg.tag}_{cfg.bmm}")
        stage1 = Stage1Outputs.of(cfg)
        wrong_events = cfg.wrong_events or stage1.wrong_events
        return cls(result=stem + ".json", bmm_plot=stem + "_bmm.png", model=stem + "_model.pt",
                   report=ReportFiles.at(stem), run=_run_folder(cfg, f"stage2_{cfg.tag}_{cfg.bmm}"),
                   data_cache=cache_dir(cfg),
                   input=Stage1Inputs(wrong_events, os.path.splitext(wrong_events)[0] + ".json",
                                      cfg.base_model or stage1.base_model))


@dataclass(frozen=True)
class ActoOutputs(Outputs):
    result: str
    model: str  # the RTM
    report: ReportFiles
    run: RunFiles
    data_cache: str

    @classmethod
    def of(cls, cfg) -> "ActoOutputs":
        stem = os.path.join(cfg.output_dir, "acto", cfg.tag)
        return cls(result=stem + ".json", model=stem + "_model.pt", report=ReportFiles.at(stem),
                   run=_run_folder(cfg, f"acto_{cfg.tag}"), data_cache=cache_dir(cfg))


@dataclass(frozen=True)
class CleanlabOutputs(Outputs):
    """benchmarks/confident_learning.py: the baseline's result (no model, no report)."""

    result: str
    run: RunFiles
    data_cache: str

    @classmethod
    def of(cls, cfg) -> "CleanlabOutputs":
        return cls(result=os.path.join(cfg.output_dir, "cleanlab", f"{cfg.tag}.json"),
                   run=_run_folder(cfg, f"cleanlab_{cfg.tag}"), data_cache=cache_dir(cfg))


# every method's outputs, by the name its runs are known by
METHOD_OUTPUTS: Mapping[str, Callable[..., Outputs]] = {
    "stage1": Stage1Outputs.of, "stage2": Stage2Outputs.of, "acto": ActoOutputs.of, "cleanlab": CleanlabOutputs.of,
}


def model_file_patterns() -> list[str]:
    """Where the methods put the model file of predict.py, relative to ``output_dir`` (``stage2/{tag}_{bmm}_model.pt``,
    ``acto/{tag}_model.pt``): the definitions above, applied to a config of placeholders."""
    placeholder = SimpleNamespace(output_dir="", tag="{tag}", bmm="{bmm}", run_name=None, wrong_events=None,
                                  base_model=None, noise_dir=None)
    return [Stage2Outputs.of(placeholder).model, ActoOutputs.of(placeholder).model]


def add_outputs_option(parser, *, example: str) -> None:
    """``--outputs [NAME]`` of a command line (:func:`print_outputs` answers it); ``example``: a name or two."""
    parser.add_argument("--outputs", nargs="?", const="all", default=None, metavar="NAME",
                        help=f"print the path of the output NAME of this command ({example}; without NAME every "
                             "output, as 'name<TAB>path' lines) and exit")


def print_outputs(outputs: Mapping[str, Outputs], which: str) -> None:
    """``--outputs``: ``which`` = ``all`` prints ``name<TAB>path`` per output (names prefixed ``{method}.``
    where several methods' outputs are given); a name prints its path alone, for a shell ``$(...)``."""
    named = {}
    for method, out in outputs.items():
        prefix = f"{method}." if len(outputs) > 1 else ""
        named.update({prefix + name: path for name, path in out.files().items()})
    if which == "all":
        sys.stdout.write("".join(f"{name}\t{path}\n" for name, path in named.items()))
        return
    if which not in named:
        raise ConfigError(f"--outputs {which}: no such output; one of all, {', '.join(named)}")
    sys.stdout.write(named[which] + "\n")
