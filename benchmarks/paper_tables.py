"""The papers' tables from your own runs: mean ± std over seeds beside IDO's and ACT's own figures.

    sh sh/cifar100.sh --seed 0 --output_dir runs/paper/seed0      # and every other seed, every other grid:
    sh sh/acto.sh --seed 0 --output_dir runs/paper/seed0          # sh/tiny_imagenet.sh, sh/realworld.sh (BACKBONE first)
    python benchmarks/paper_tables.py runs/paper                  # the tables, on stdout
    python benchmarks/paper_tables.py runs/paper --out tables.md  # also into tables.md

Layout: ``RUNS_DIR/seed<S>/`` is the ``--output_dir`` of every run with ``--seed S`` (the sh/ scripts pass
their extra arguments to every run); one folder per seed.  Each cell of a table in
``benchmarks/paper_figures.py`` is one run; its result file is the one the entry point writes for that
command line (``parse_config`` + ``utils/training/outputs.py``), looked up in every seed folder.  The seed a
result was run with (its ``seed``) must be the folder's, so no run is counted under another seed.

Per paper table and metric (IDO: best and last epoch; ACT's Table 1: the mean of the last ten epochs; Tables 2
and 3: best epoch and last-ten mean), one Markdown table in the paper's layout: each cell the mean ± sample std
over the seeds that have it, the paper's figure and the difference; then the cells missing in some seed
folder, each with the result file it lacks.  IDO's rows are the class-wise BMM (``stage_2_class.py``, the
scripts' default); global-BMM rows (``STAGE2=stage_2.py``) appear where such results exist.

The report is printed; ``--out FILE`` writes it there too, ``--write-docs`` into docs/benchmarks.md (its own
section), nothing else is written.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
from dataclasses import dataclass, field
from typing import Mapping, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.docs_output import add_output_options, output_path, write_section  # noqa: E402
from benchmarks.paper_figures import (LAST_10, LAST_K, TABLES, Column, Metric, PaperTable, Row,  # noqa: E402
                                      figure_text, paper_metric_text)
from utils.core.entry import run_main  # noqa: E402
from utils.core.errors import DataError  # noqa: E402
from utils.training.config import ACTO, REPO_ROOT, STAGE2, parse_config  # noqa: E402
from utils.training.outputs import METHOD_OUTPUTS  # noqa: E402

DOCS_PAGE = os.path.join("docs", "benchmarks.md")
BEGIN, END = "<!-- paper_tables.py: begin -->", "<!-- paper_tables.py: end -->"  # its section of the page
SEED_FOLDER = re.compile(r"seed(\d+)")
FULL_K = 10  # ACT's Table 1: the last ten epochs


@dataclass(frozen=True)
class Variant:
    """One program that writes a table's cells: a row of the report per paper row and variant."""

    label: str  # added to the paper's row name ("" where the method has one program)
    prog: str
    scope: str
    forced: Mapping[str, str] | None  # what the program fixes (stage_2_class.py: bmm class)
    always: bool  # shown without any result (else only where a seed folder has one of its results)


VARIANTS: Mapping[str, tuple[Variant, ...]] = {
    "stage2": (Variant("class-wise BMM", "stage_2_class.py", STAGE2, {"bmm": "class"}, True),
               Variant("global BMM", "stage_2.py", STAGE2, None, False)),
    "acto": (Variant("", "acto.py", ACTO, None, True),),
}


@dataclass(frozen=True)
class SeedFolder:
    seed: int
    path: str

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


@dataclass
class Cell:
    """One cell of a paper table: the paper's figure and the results of the seed folders that have it."""

    column: str
    paper: float | None
    result: str  # the result file, relative to a seed folder
    found: dict[int, dict] = field(default_factory=dict)  # seed -> its result JSON
    missing: list[SeedFolder] = field(default_factory=list)

    def values(self, metric: Metric) -> list[float]:
        """The metric of every seed that has the cell, in seed order (%)."""
        return [float(self.found[seed][metric.key]) for seed in sorted(self.found)]


@dataclass
class ReportRow:
    name: str
    row: Row
    cells: list[Cell]


@dataclass
class TableReport:
    table: PaperTable
    rows: list[ReportRow]


def seed_folders(runs_dir: str) -> list[SeedFolder]:
    """The ``seed<S>`` folders of ``runs_dir``, by seed; a DataError where there is none or a seed twice."""
    if not os.path.isdir(runs_dir):
        raise DataError(f"{runs_dir} is not a folder; give the folder that holds one seed<S> folder per seed "
                        "(the --output_dir of the runs with --seed S)")
    folders: dict[int, SeedFolder] = {}
    for name in sorted(os.listdir(runs_dir)):
        match = SEED_FOLDER.fullmatch(name)
        path = os.path.join(runs_dir, name)
        if match is None or not os.path.isdir(path):
            continue
        seed = int(match.group(1))
        if seed in folders:
            raise DataError(f"{folders[seed].path} and {path} are both seed {seed}; keep one folder per seed")
        folders[seed] = SeedFolder(seed, path)
    if not folders:
        raise DataError(f"{runs_dir} holds no seed<S> folder; run each seed with --seed S --output_dir "
                        f"{os.path.join(runs_dir, 'seedS')} (docs/benchmarks.md#the-papers-tables-from-your-own-runs)")
    return [folders[seed] for seed in sorted(folders)]


def result_file(table: PaperTable, row: Row, column: Column, variant: Variant) -> str:
    """The result file that ``variant.prog`` writes for the cell (``row``, ``column``), relative to its
    ``--output_dir``: the cell's command line parsed as the entry point parses it, the path from the outputs
    definitions.  (The seed folder itself is joined afterwards, so no ``~`` or ``$`` in its path is expanded.)"""
    config = os.path.join(REPO_ROOT, column.config or table.config)
    argv = ["--config", config, *row.args, *column.args, "--output_dir", "."]
    cfg = parse_config(argv, prog=variant.prog, scope=variant.scope, forced=variant.forced)
    return os.path.normpath(METHOD_OUTPUTS[table.method](cfg).result)


def read_result(path: str, folder: SeedFolder, metrics: Sequence[Metric]) -> dict:
    """The result JSON at ``path``, checked: run with the folder's seed, every metric a finite number."""
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read it as a result file ({type(err).__name__}); run the cell again "
                        "or remove the file") from None
    if not isinstance(result, dict):
        raise DataError(f"{path}: not a result file (no JSON object); run the cell again or remove the file")
    if result.get("seed") != folder.seed:
        raise DataError(f"{path}: its run used seed {result.get('seed')!r}, but it lies in {folder.name}; "
                        f"run each seed S with --seed S --output_dir .../seedS")
    for metric in metrics:
        value = result.get(metric.key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DataError(f"{path}: no number under '{metric.key}' ({metric.name}); run the cell again with "
                            "this version")
    return result


def collect(runs_dir: str, tables: Sequence[PaperTable] = TABLES) -> tuple[list[SeedFolder], list[TableReport]]:
    """Every cell of ``tables`` looked up in every seed folder of ``runs_dir``."""
    folders = seed_folders(runs_dir)
    reports = []
    for table in tables:
        rows = []
        for row in table.rows:
            for variant in VARIANTS[table.method]:
                cells = []
                for column, paper in zip(table.columns, row.figures):
                    cell = Cell(column.name, paper, result_file(table, row, column, variant))
                    for folder in folders:
                        path = os.path.join(folder.path, cell.result)
                        if os.path.isfile(path):
                            cell.found[folder.seed] = read_result(path, folder, table.metrics)
                        else:
                            cell.missing.append(folder)
                    cells.append(cell)
                if variant.always or any(cell.found for cell in cells):
                    name = f"{row.name}, {variant.label}" if variant.label else row.name
                    rows.append(ReportRow(name, row, cells))
        reports.append(TableReport(table, rows))
    return folders, reports


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value) of ``values`` (non-empty)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def md_text(text: str) -> str:
    """``text`` shown literally in Markdown (a folder name: any character), on one line."""
    text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return re.sub(r"([\\`*_{}\[\]<>()#+\-.!|~&$])", r"\\\1", text)


def _signed(value: float) -> str:
    return f"{value:+.2f}"


def _beside_paper(table: PaperTable, value: float | None, paper: float | None) -> str:
    """`` · paper 84.9 · -0.80`` (the difference only where both exist)."""
    if paper is None:
        return ""
    text = f" · paper {figure_text(table, paper)}"
    return text + (f" · {_signed(value - paper)}" if value is not None else "")


def cell_text(table: PaperTable, cell: Cell, metric: Metric, n_folders: int) -> str:
    """``83.41 ± 0.52 · paper 84.9 · -1.49``; fewer seeds than folders: ``(2 of 3 seeds)`` after the value."""
    values = cell.values(metric)
    if not values:
        return "missing" + _beside_paper(table, None, cell.paper)
    mean, std = mean_std(values)
    text = f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")
    if len(values) < n_folders:
        text += f" ({len(values)} of {n_folders} seeds)"
    return text + _beside_paper(table, mean, cell.paper)


def average_text(table: PaperTable, row: ReportRow, metric: Metric) -> str:
    """The paper's average column: the mean of the row's cell means, once every cell has one."""
    if any(not cell.found for cell in row.cells):
        return "missing" + _beside_paper(table, None, row.row.average)
    mean = statistics.fmean(mean_std(cell.values(metric))[0] for cell in row.cells)
    return f"{mean:.2f}" + _beside_paper(table, mean, row.row.average)


def table_markdown(report: TableReport, n_folders: int) -> list[str]:
    """The lines of one paper table: its source, one Markdown table per metric, notes, the missing cells."""
    table = report.table
    lines = [f"### {table.title}", "",
             f"The paper's figures: {table.source}; {paper_metric_text(table)}. One seed's runs: "
             f"`{table.runs}`" + (f", {table.runs_note}" if table.runs_note else "") + ".", ""]
    headings = [c.name for c in table.columns] + ([table.average] if table.average else [])
    for metric in table.metrics:
        lines += [f"#### {metric.name} (`{metric.key}`)", "",
                  "| | " + " | ".join(headings) + " |", "|---" * (len(headings) + 1) + "|"]
        for row in report.rows:
            texts = [cell_text(table, cell, metric, n_folders) for cell in row.cells]
            if table.average:
                texts.append(average_text(table, row, metric))
            lines.append(f"| {row.name} | " + " | ".join(texts) + " |")
        lines.append("")
    if LAST_10 in table.metrics:
        short = sorted({int(result.get(LAST_K, FULL_K)) for row in report.rows for cell in row.cells
                        for result in cell.found.values()} - {FULL_K})
        if short:
            lines += [f"Some runs had fewer than {FULL_K} epochs: their `{LAST_10.key}` is the mean of their last "
                      f"{', '.join(map(str, short))} epochs.", ""]
    missing = [(row, cell) for row in report.rows for cell in row.cells if cell.missing]
    if missing:
        lines += ["Missing cells (the result file each seed folder lacks):", ""]
        lines += [f"- {row.name}, {cell.column}: `{cell.result}` in {', '.join(f.name for f in cell.missing)}"
                  for row, cell in missing]
        lines.append("")
    return lines


def render(runs_dir: str, folders: Sequence[SeedFolder], reports: Sequence[TableReport]) -> str:
    """The whole report (Markdown, between the section markers of docs/benchmarks.md)."""
    seeds = ", ".join(f"{md_text(f.name)} (seed {f.seed})" for f in folders)
    lines = [BEGIN, f"## The papers' tables from the runs in {md_text(runs_dir)}", "",
             f"Seed folders: {seeds}. Each cell: the mean ± sample standard deviation over the seeds that have "
             "the cell (how many where not all), the paper's figure and the difference (mean − paper), "
             "test accuracy in %.", ""]
    for report in reports:
        lines += table_markdown(report, len(folders))
    lines.append(END)
    return "\n".join(lines) + "\n"


def summary(reports: Sequence[TableReport]) -> dict:
    """``{table key: {(row name, column): {metric key: (mean, std, n)}}}`` of the cells with results."""
    return {report.table.key: {(row.name, cell.column): {metric.key: (*mean_std(cell.values(metric)),
                                                                      len(cell.found))
                                                         for metric in report.table.metrics}
                               for row in report.rows for cell in row.cells if cell.found}
            for report in reports}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs_dir", metavar="RUNS_DIR", help="the folder of the seed<S> folders (each the "
                        "--output_dir of the runs with --seed S)")
    add_output_options(parser, DOCS_PAGE)
    args = parser.parse_args(argv)
    folders, reports = collect(args.runs_dir)
    text = render(args.runs_dir, folders, reports)
    sys.stdout.write(text)
    out = output_path(args, DOCS_PAGE)
    if out:
        write_section(text, out, BEGIN, END)
    return {"seeds": [f.seed for f in folders], "cells": summary(reports), "text": text, "out": out}


if __name__ == "__main__":
    run_main(main)
