"""The papers' own figures, each with where it comes from, and the runs of sh/ that reproduce each cell.

Read by ``benchmarks/paper_tables.py``, which sets the mean over seeds of a user's runs beside them; the same
figures are on docs/benchmarks.md#the-papers-figures (rendered by :func:`figures_markdown`, which a test
compares with the page).

A cell is one run of an entry point: ``--config`` (the column's, else the table's) followed by the row's and
the column's arguments, exactly what the sh/ script passes.  Its result file is not written down here: the
collector parses those arguments into a config and asks ``utils/training/outputs.py`` for the path.

Sources (the repository cites them; the documents themselves are not part of it):

* IDO: the official README of ``iTheresaApocalypse/IDO``, section Results, tables "CIFAR100",
  "Tiny-ImageNet" and "Real-world Dataset", given to one decimal in %.  The official stage 2 saved the
  maximum test accuracy over its epochs (docs/fidelity.md#ido-22-bugs-of-the-official-code, IDO-B16), so
  these are best-epoch figures.
* ACT: Sheng et al., ACM MM 2024, Tables 1-3, row "ACT (Ours)" (docs/acto.md#acts-table-1-and-table-3-cell-by-cell).
  Table 1's caption: the test accuracy averaged over the last ten epochs (docs/fidelity.md#act-111-evaluation);
  Tables 2 and 3 say only "test accuracy", so both the best epoch and the last-ten mean are set beside them.
"""
from __future__ import annotations

from dataclasses import dataclass

from utils.training.accuracy_keys import acc_key


@dataclass(frozen=True)
class Metric:
    """One accuracy of a result JSON (%, on the clean test set)."""

    key: str  # the result JSON's key
    name: str  # how the report names it


BEST = Metric(acc_key("test", "best"), "best epoch")
LAST = Metric(acc_key("test", "last"), "last epoch")
# acto.py's summarize: the RTM's mean test accuracy over the last min(10, E) epochs, ACT's Table 1 metric
LAST_10 = Metric("last_k_mean", "mean of the last 10 epochs")
LAST_K = "last_k"  # acto.py: over how many epochs last_k_mean was taken (10 unless the run had fewer)


@dataclass(frozen=True)
class Column:
    """A column heading of the paper's table and what the script gives that cell."""

    name: str
    args: tuple[str, ...] = ()
    config: str | None = None  # relative to the repository; None: the table's


@dataclass(frozen=True)
class Row:
    """A row heading of the paper's table, what the script gives its cells, and the paper's figure per column
    (%, None where the paper has none)."""

    name: str
    args: tuple[str, ...]
    figures: tuple[float | None, ...]
    average: float | None = None  # the paper's figure in the table's average column (ACT's Table 2 "Avg")


@dataclass(frozen=True)
class PaperTable:
    key: str
    title: str
    source: str  # where the figures come from
    method: str  # "stage2" or "acto": which entry point's result file (utils/training/outputs.py METHOD_OUTPUTS)
    config: str  # the cells' config, relative to the repository, unless the column names its own
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    metrics: tuple[Metric, ...]  # the accuracies shown, one Markdown table each
    paper_metric: Metric | None  # which of them the paper's figures are; None: not known
    runs: str  # the command that makes one seed's runs of this table (RUNS_DIR and S as placeholders)
    decimals: int  # the paper's precision (IDO's README: 84.9 %, ACT: 65.51 %)
    runs_note: str = ""  # what else the command needs
    average: str | None = None  # the heading of the paper's average column over this table's columns


def _noise(mode: str, ratio: str) -> tuple[str, ...]:
    return ("--noise_mode", mode, "--noise_ratio", ratio)


def _backbone(name: str) -> tuple[str, ...]:
    return ("--backbone", name)


BOTH_BACKBONES = "once with BACKBONE resnet50, once with ViT-B"
IDO_README = "IDO's official README (iTheresaApocalypse/IDO), section Results"
ACT_PAPER = "ACT (Sheng et al., ACM MM 2024)"

TABLES: tuple[PaperTable, ...] = (
    PaperTable(
        key="ido-cifar100", title="IDO, CIFAR-100", source=f"{IDO_README}, table \"CIFAR100\"", method="stage2",
        config="config/stage2/cifar100.yaml",
        columns=(Column("Sym.20%", _noise("sym", "0.2")), Column("Sym.40%", _noise("sym", "0.4")),
                 Column("Sym.60%", _noise("sym", "0.6")), Column("Asym.40%", _noise("asym", "0.4")),
                 Column("Inst.40%", _noise("idn", "0.4"))),
        rows=(Row("ResNet50", _backbone("resnet50"), (84.9, 83.4, 81.0, 77.8, 83.6)),
              Row("ViT-B/16", _backbone("ViT-B"), (92.5, 92.2, 91.3, 89.4, 91.9))),
        metrics=(BEST, LAST), paper_metric=BEST,
        runs="sh sh/cifar100.sh --seed S --output_dir RUNS_DIR/seedS", decimals=1),
    PaperTable(
        key="ido-tiny-imagenet", title="IDO, Tiny-ImageNet", source=f"{IDO_README}, table \"Tiny-ImageNet\"",
        method="stage2", config="config/stage2/tiny_imagenet.yaml",
        columns=(Column("Sym.20%", _noise("sym", "0.2")), Column("Sym.50%", _noise("sym", "0.5")),
                 Column("Inst.40%", _noise("idn", "0.4"))),
        rows=(Row("ResNet50", _backbone("resnet50"), (78.3, 75.3, 77.4)),
              Row("ViT-B/16", _backbone("ViT-B"), (91.0, 90.2, 90.2))),
        metrics=(BEST, LAST), paper_metric=BEST,
        runs="sh sh/tiny_imagenet.sh BACKBONE --seed S --output_dir RUNS_DIR/seedS", runs_note=BOTH_BACKBONES,
        decimals=1),
    PaperTable(
        key="ido-real-world", title="IDO, real-world noisy sets", source=f"{IDO_README}, table \"Real-world Dataset\"",
        method="stage2", config="config/stage2/cifar100n.yaml",
        columns=(Column("CIFAR100N", config="config/stage2/cifar100n.yaml"),
                 Column("Clothing1M", config="config/stage2/clothing1m.yaml"),
                 Column("Webvision", config="config/stage2/webvision.yaml")),
        rows=(Row("ResNet50", _backbone("resnet50"), (73.6, 72.6, 82.6)),
              Row("ViT-B/16", _backbone("ViT-B"), (81.4, 73.0, 86.0))),
        metrics=(BEST, LAST), paper_metric=BEST,
        runs="sh sh/realworld.sh BACKBONE --seed S --output_dir RUNS_DIR/seedS", runs_note=BOTH_BACKBONES,
        decimals=1),
    PaperTable(
        key="act-table-1", title="ACT's Table 1, CIFAR100N and CIFAR80N",
        source=f"{ACT_PAPER}, Table 1, row \"ACT (Ours)\"", method="acto", config="config/acto/cifar100_act.yaml",
        columns=tuple(Column(f"{name} {mode.capitalize()}-{round(float(ratio) * 100)}", _noise(mode, ratio),
                             config=f"config/acto/{data}_act.yaml")
                      for name, data in (("100N", "cifar100"), ("80N", "cifar80"))
                      for mode, ratio in (("sym", "0.2"), ("sym", "0.8"), ("asym", "0.4"))),
        rows=(Row("ACT (Ours)", (), (65.51, 40.74, 63.48, 67.09, 38.58, 64.40)),),
        metrics=(LAST_10,), paper_metric=LAST_10,
        runs="sh sh/acto.sh --seed S --output_dir RUNS_DIR/seedS", decimals=2),
    PaperTable(
        key="act-table-2", title="ACT's Table 2, Web-Aircraft / Web-Bird / Web-Car",
        source=f"{ACT_PAPER}, Table 2, row \"ACT (Ours)\"", method="acto", config="config/acto/web-aircraft_act.yaml",
        columns=tuple(Column(name, config=f"config/acto/web-{name.lower()}_act.yaml")
                      for name in ("Aircraft", "Bird", "Car")),
        rows=(Row("ACT (Ours)", (), (86.56, 81.43, 88.75), average=85.58),),
        metrics=(BEST, LAST_10), paper_metric=None, average="Avg",
        runs="sh sh/acto.sh --seed S --output_dir RUNS_DIR/seedS", decimals=2),
    PaperTable(
        key="act-table-3", title="ACT's Table 3, Food101N", source=f"{ACT_PAPER}, Table 3, row \"ACT (Ours)\"",
        method="acto", config="config/acto/food101n_act.yaml",
        columns=(Column("Acc"),),
        rows=(Row("ACT (Ours)", (), (86.81,)),),
        metrics=(BEST, LAST_10), paper_metric=None,
        runs="sh sh/acto.sh --seed S --output_dir RUNS_DIR/seedS", decimals=2),
)


def paper_metric_text(table: PaperTable) -> str:
    """What the paper's figures of ``table`` are, in words."""
    if table.paper_metric is None:
        return "\"test accuracy\", without saying whether of the best epoch or the mean of the last ten"
    if table.paper_metric is BEST:
        return "the best epoch's test accuracy (the official stage 2 kept the maximum over its epochs)"
    return "the test accuracy averaged over the last ten epochs"


def figure_text(table: PaperTable, figure: float | None) -> str:
    """A paper's figure as the paper prints it (its number of decimals); "–" where it has none."""
    return "–" if figure is None else f"{figure:.{table.decimals}f}"


def figures_markdown() -> str:
    """Every table's figures as Markdown (the list on docs/benchmarks.md), with its source."""
    lines = []
    for table in TABLES:
        headings = [c.name for c in table.columns] + ([table.average] if table.average else [])
        lines += [f"**{table.title}**: {table.source}; {paper_metric_text(table)}, in %.", "",
                  "| | " + " | ".join(headings) + " |", "|---" * (len(headings) + 1) + "|"]
        for row in table.rows:
            figures = list(row.figures) + ([row.average] if table.average else [])
            lines.append(f"| {row.name} | " + " | ".join(figure_text(table, f) for f in figures) + " |")
        lines.append("")
    return "\n".join(lines)
