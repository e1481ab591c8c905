"""benchmarks/paper_tables.py: the papers' tables from run folders made by the sh/ scripts' own command lines.

The slow tests run the scripts with a stub python (tests/test_scripts.py) to get their exact command lines for
``--seed S --output_dir RUNS/seedS``, run a few of those cells for real (tiny fake CIFAR-100, 32 px, 1-3
epochs) in this process, then collect the tables from that folder.
"""
from __future__ import annotations

import importlib
import json
import os
import pickle
import re
import shutil
import statistics
import sys

import numpy as np
import pytest
import torch

from fixtures_data import write_cifar
from utils.core.errors import DataError
from utils.training.config import ACTO, REPO_ROOT, STAGE2, parse_config
from utils.training.outputs import METHOD_OUTPUTS

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

import paper_tables as pt  # noqa: E402
from paper_figures import TABLES, figures_markdown  # noqa: E402

IDO_C100, ACT_T1 = (next(t for t in TABLES if t.key == key) for key in ("ido-cifar100", "act-table-1"))
ENTRY_POINTS = {"stage_1.py": "stage_1", "stage_2.py": "stage_2", "stage_2_class.py": "stage_2_class", "acto.py": "acto"}
# what the scripts' result-writing programs are, as the collector must see them
PROGRAMS = {"stage_2.py": (STAGE2, None), "stage_2_class.py": (STAGE2, {"bmm": "class"}), "acto.py": (ACTO, None)}


def script_calls(tmp, script: str, *args: str, env: dict | None = None) -> list[list[str]]:
    """The command lines ``sh sh/<script> ARGS`` runs (a stub python records them), configs made absolute."""
    from test_scripts import run_script

    tmp.mkdir(parents=True, exist_ok=True)
    proc, calls, _ = run_script(tmp, script, *args, env=env)
    assert proc.returncode == 0, proc.stderr
    for argv in calls:
        argv[argv.index("--config") + 1] = os.path.join(REPO_ROOT, argv[argv.index("--config") + 1])
    return calls


def run_call(argv: list[str]) -> dict | None:
    """One recorded command line, run in this process; the result JSON it wrote (stage 1: None)."""
    importlib.import_module(ENTRY_POINTS[argv[0]]).main(argv[1:])
    if argv[0] == "stage_1.py":
        return None
    with open(written_result(argv), encoding="utf-8") as f:
        return json.load(f)


def written_result(argv: list[str]) -> str:
    """Where the entry point of a recorded command line writes its result file."""
    scope, forced = PROGRAMS[argv[0]]
    cfg = parse_config(argv[1:], prog=argv[0], scope=scope, forced=forced)
    return os.path.normpath(METHOD_OUTPUTS["acto" if scope == ACTO else "stage2"](cfg).result)


# ------------------------------------------------------------------ the cells are the scripts' runs

@pytest.mark.slow
def test_every_cell_is_a_run_of_the_scripts_and_every_run_a_cell(tmp_path):
    """With --seed S --output_dir RUNS/seedS, the result files the four scripts' runs write are exactly the cells
    of the paper tables (IDO: class-wise with the default STAGE2, global with STAGE2=stage_2.py)."""
    seed_dir = str(tmp_path / "runs" / "seed3")
    extra = ("--seed", "3", "--output_dir", seed_dir)
    for stage2, variant in (("stage_2_class.py", pt.VARIANTS["stage2"][0]), ("stage_2.py", pt.VARIANTS["stage2"][1])):
        calls = script_calls(tmp_path / stage2 / "c100", "cifar100.sh", *extra, env={"STAGE2": stage2})
        for backbone in ("resnet50", "ViT-B"):
            for script in ("tiny_imagenet.sh", "realworld.sh"):
                calls += script_calls(tmp_path / stage2 / f"{script}_{backbone}", script, backbone, *extra,
                                      env={"STAGE2": stage2})
        written = {written_result(argv) for argv in calls if argv[0] != "stage_1.py"}
        assert len(written) == len(calls) // 2  # one result per cell, none shared
        cells = {os.path.join(seed_dir, pt.result_file(table, row, column, variant))
                 for table in TABLES if table.method == "stage2" for row in table.rows for column in table.columns}
        assert written == cells
    acto_calls = script_calls(tmp_path / "acto", "acto.sh", *extra)
    assert {written_result(argv) for argv in acto_calls} == {
        os.path.join(seed_dir, pt.result_file(table, row, column, pt.VARIANTS["acto"][0]))
        for table in TABLES if table.method == "acto" for row in table.rows for column in table.columns}


# ------------------------------------------------------------------ tables from real runs

FAST = ("--set", "num_workers=0", "--batch_size", "8", "--set", "test_batch_size=50")
COLOURS = np.array([[220, 40, 40], [40, 220, 40], [40, 40, 220], [128, 128, 128]], dtype=float)


def write_coloured_cifar100(root: str, *, n_train: int, n_test: int) -> None:
    """CIFAR-100's files with 4 classes whose images are one colour each plus noise: learnable in a few steps, so
    the tiny runs reach accuracies that differ between seeds (on random pixels every seed predicts one class)."""
    write_cifar(root, "cifar100", train_labels=[i % 4 for i in range(n_train)],
                test_labels=[i % 4 for i in range(n_test)])
    for seed, name in enumerate(("train", "test")):
        path = os.path.join(root, name)
        with open(path, "rb") as f:
            batch = pickle.load(f)
        labels = np.asarray(batch["fine_labels"])
        pixels = np.repeat(COLOURS[labels], 1024, axis=1) + np.random.default_rng(seed).normal(0, 40, (len(labels), 3072))
        batch["data"] = np.clip(pixels, 0, 255).astype(np.uint8)
        with open(path, "wb") as f:
            pickle.dump(batch, f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """RUNS/seed0 and RUNS/seed1 as the scripts lay them out: IDO CIFAR-100 ResNet50 sym 0.2 (stage 1 + class-wise
    stage 2) and ACT's CIFAR-100N sym 0.2 in both seeds; ACT's asym 0.4 and IDO's global stage 2 in seed 0 only.
    ResNet-50 starts from a random weights file (``pretrained_path``, the offline route of docs/usage.md), so
    the names are those of the paper's runs; the other extra arguments only make the runs small (16 px for
    ResNet-50, 3 epochs and a larger learning rate for ACT's CNN)."""
    tmp = tmp_path_factory.mktemp("paper")
    data = str(tmp / "cifar-100")
    write_coloured_cifar100(data, n_train=16, n_test=40)
    weights = str(tmp / "resnet50_random.pt")
    import timm
    torch.manual_seed(0)
    torch.save(timm.create_model("resnet50", num_classes=0).state_dict(), weights)
    ido_args = ("--set", f"pretrained_path={weights}", "--epochs", "2", "--set", "resolution=16", *FAST)
    act_args = ("--epochs", "3", "--set", "warmup_epochs=1", "--set", "lr=0.05", "--set", "warmup_lr=0.05", *FAST)
    root = tmp / "runs"
    results: dict[tuple[str, int], dict] = {}
    for seed in (0, 1):
        out = ("--seed", str(seed), "--output_dir", str(root / f"seed{seed}"))
        ido = script_calls(tmp / f"c100_{seed}", "cifar100.sh", *out, *ido_args,
                           env={"BACKBONES": "resnet50", "SETTINGS": "sym:0.2", "CIFAR100_PATH": data})
        act = script_calls(tmp / f"acto_{seed}", "acto.sh", *out, *act_args, env={"SETS": "cifar100", "CIFAR100_PATH": data})
        assert [argv[0] for argv in ido] == ["stage_1.py", "stage_2_class.py"] and len(act) == 3
        run_call(ido[0])
        results["ido", seed] = run_call(ido[1])
        results["act sym", seed] = run_call(act[0])  # sym 0.2
        if seed == 0:
            results["act asym", seed] = run_call(act[2])  # asym 0.4
            global_calls = script_calls(tmp / "c100_global", "cifar100.sh", *out, *ido_args,
                                        env={"BACKBONES": "resnet50", "SETTINGS": "sym:0.2", "CIFAR100_PATH": data,
                                             "STAGE2": "stage_2.py"})
            results["ido global", seed] = run_call(global_calls[1])
    yield str(root), results
    shutil.rmtree(tmp, ignore_errors=True)  # ResNet-50's files: about 0.7 GB per seed


def expected(values: list[float]) -> tuple[float, float | None, int]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None), len(values)


@pytest.mark.slow
def test_cells_are_mean_and_std_of_the_runs_results(runs, capsys):
    root, results = runs
    # the seeds give different accuracies, so a cell that read one seed twice would show
    assert results["ido", 0]["best_acc"] != results["ido", 1]["best_acc"]
    assert results["act sym", 0]["last_k_mean"] != results["act sym", 1]["last_k_mean"]
    report = pt.main([root])
    text = capsys.readouterr().out
    assert report["seeds"] == [0, 1] and report["text"] == text
    ido = report["cells"]["ido-cifar100"]
    for key in ("best_acc", "last_acc"):
        values = [results["ido", seed][key] for seed in (0, 1)]
        assert ido["ResNet50, class-wise BMM", "Sym.20%"][key] == expected(values)
    assert ido["ResNet50, global BMM", "Sym.20%"]["best_acc"] == expected([results["ido global", 0]["best_acc"]])
    act = report["cells"]["act-table-1"]
    assert act["ACT (Ours)", "100N Sym-20"]["last_k_mean"] == expected(
        [results["act sym", seed]["last_k_mean"] for seed in (0, 1)])
    assert act["ACT (Ours)", "100N Asym-40"]["last_k_mean"] == expected([results["act asym", 0]["last_k_mean"]])
    # only the cells that were run have values
    assert set(ido) == {("ResNet50, class-wise BMM", "Sym.20%"), ("ResNet50, global BMM", "Sym.20%")}
    assert set(act) == {("ACT (Ours)", "100N Sym-20"), ("ACT (Ours)", "100N Asym-40")}
    # the printed cell: mean ± std, the paper's figure, the difference
    mean, std, _ = expected([results["ido", seed]["best_acc"] for seed in (0, 1)])
    best_table = text.split("#### best epoch (`best_acc`)", 1)[1].split("####", 1)[0]
    assert f"| ResNet50, class-wise BMM | {mean:.2f} ± {std:.2f} · paper 84.9 · {mean - 84.9:+.2f} | missing · paper " \
           "83.4 |" in best_table
    asym = results["act asym", 0]["last_k_mean"]
    assert f"{asym:.2f} (1 of 2 seeds) · paper 63.48 · {asym - 63.48:+.2f}" in text
    g = results["ido global", 0]["best_acc"]
    assert f"| ResNet50, global BMM | {g:.2f} (1 of 2 seeds) · paper 84.9 · {g - 84.9:+.2f} |" in best_table
    assert "| ViT-B/16, global BMM |" not in text  # a global row only where such a result exists
    assert "their `last_k_mean` is the mean of their last 3 epochs" in text  # the runs had 3 epochs, not 10


@pytest.mark.slow
def test_missing_cells_are_named_with_the_file_they_lack(runs, capsys):
    root, _ = runs
    text = pt.main([root])["text"]
    lines = set(text.splitlines())
    assert "- ACT (Ours), 100N Asym-40: `acto/act_cnn_scratch_cifar100_asym_0.4.json` in seed1" in lines
    assert "- ACT (Ours), 100N Sym-80: `acto/act_cnn_scratch_cifar100_sym_0.8.json` in seed0, seed1" in lines
    assert "- ResNet50, class-wise BMM, Sym.40%: `stage2/resnet50_pretrained_cifar100_sym_0.4_class.json` in seed0, " \
           "seed1" in lines
    assert "- ResNet50, global BMM, Sym.20%: `stage2/resnet50_pretrained_cifar100_sym_0.2_global.json` in seed1" in lines
    assert "- ViT-B/16, class-wise BMM, Inst.40%: `stage2/ViT-B_pretrained_cifar100_idn_0.4_class.json` in seed0, " \
           "seed1" in lines
    assert "- ACT (Ours), Acc: `acto/resnet50.tv_in1k_pretrained_food101n_real_0.2.json` in seed0, seed1" in lines
    named = [line for line in lines if line.startswith("- ")]
    cells = sum(len(t.rows) * len(t.columns) for t in TABLES) + len(IDO_C100.columns)  # + the one global row
    assert len(named) == cells - 2  # all but the two cells both seeds have
    assert "ResNet50, class-wise BMM, Sym.20%" not in text.split("Missing cells")[1]


@pytest.mark.slow
def test_a_result_in_another_seeds_folder_is_refused(runs, tmp_path):
    root, _ = runs
    name = "acto/act_cnn_scratch_cifar100_sym_0.2.json"
    os.makedirs(tmp_path / "seed5" / "acto")
    shutil.copy(os.path.join(root, "seed0", name), tmp_path / "seed5" / name)
    with pytest.raises(DataError) as err:
        pt.main([str(tmp_path)])
    assert str(err.value) == (f"{tmp_path / 'seed5' / name}: its run used seed 0, but it lies in seed5; run each "
                              "seed S with --seed S --output_dir .../seedS")


# ------------------------------------------------------------------ in process, no run

def test_no_seed_folder_is_one_line_naming_the_layout(tmp_path):
    (tmp_path / "logs").mkdir()
    with pytest.raises(DataError) as err:
        pt.main([str(tmp_path)])
    assert str(err.value) == (f"{tmp_path} holds no seed<S> folder; run each seed with --seed S --output_dir "
                              f"{tmp_path / 'seedS'} (docs/benchmarks.md#the-papers-tables-from-your-own-runs)")
    with pytest.raises(DataError, match=r"is not a folder; give the folder that holds one seed<S> folder per seed"):
        pt.main([str(tmp_path / "nowhere")])


def test_one_folder_per_seed(tmp_path):
    (tmp_path / "seed1").mkdir()
    (tmp_path / "seed01").mkdir()
    with pytest.raises(DataError) as err:
        pt.main([str(tmp_path)])
    assert str(err.value) == f"{tmp_path / 'seed01'} and {tmp_path / 'seed1'} are both seed 1; keep one folder per seed"


def test_empty_seed_folders_name_every_cell_missing_with_the_papers_figures(tmp_path, capsys):
    odd = tmp_path / "runs|$HOME`x\nline"  # a folder name is printed, never expanded
    (odd / "seed0").mkdir(parents=True)
    (odd / "seed2").mkdir()
    report = pt.main([str(odd)])
    text = capsys.readouterr().out
    assert report["cells"] == {table.key: {} for table in TABLES} and report["out"] is None
    heading = next(line for line in text.splitlines() if line.startswith("## "))
    assert heading == "## The papers' tables from the runs in " + pt.md_text(str(odd))
    assert "runs\\|\\$HOME\\`x\\\\nline" in heading
    named = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(named) == sum(len(t.rows) * len(t.columns) for t in TABLES) and all(
        line.endswith(" in seed0, seed2") for line in named)
    for table in TABLES:  # every paper figure beside its cell
        for row in table.rows:
            for figure in row.figures:
                assert f"missing · paper {figure:.{table.decimals}f}" in text
    assert "| ACT (Ours) | missing · paper 86.56 | missing · paper 81.43 | missing · paper 88.75 | missing · paper " \
           "85.58 |" in text
    assert os.listdir(odd / "seed0") == []  # nothing written into the runs


def test_report_goes_to_docs_only_with_write_docs(tmp_path, monkeypatch, capsys):
    import benchmarks.docs_output as docs_output
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    page = repo / "docs" / "benchmarks.md"
    page.write_text("# the measured figures\n")
    monkeypatch.setattr(docs_output, "REPO", str(repo))
    (tmp_path / "runs" / "seed0").mkdir(parents=True)
    runs = str(tmp_path / "runs")
    pt.main([runs])
    pt.main([runs, "--out", str(tmp_path / "tables.md")])
    assert page.read_text() == "# the measured figures\n"
    assert (tmp_path / "tables.md").read_text() == capsys.readouterr().out.split(pt.END)[0] + pt.END + "\n"
    pt.main([runs, "--write-docs"])
    pt.main([runs, "--write-docs"])  # replaces its own section
    text = page.read_text()
    assert text.startswith("# the measured figures\n\n" + pt.BEGIN) and text.count(pt.BEGIN) == 1


def test_mean_and_sample_std():
    assert pt.mean_std([80.0]) == (80.0, None)
    assert pt.mean_std([80.0, 82.0, 84.0]) == (82.0, 2.0)


# ------------------------------------------------------------------ the figures in the docs

def test_docs_list_the_papers_figures():
    with open(os.path.join(REPO_ROOT, "docs", "benchmarks.md"), encoding="utf-8") as f:
        assert figures_markdown() in f.read()


def test_act_figures_are_docs_acto_tables():
    """ACT's figures here are the ones docs/acto.md's cell-by-cell table gives."""
    with open(os.path.join(REPO_ROOT, "docs", "acto.md"), encoding="utf-8") as f:
        section = f.read().split("### ACT's Table 1 and Table 3, cell by cell", 1)[1].split("\n## ", 1)[0]
    last_column = re.findall(r"\| ([\d. /]+) \|$", section, re.M)  # "65.51", or "86.56 / 81.43 / 88.75"
    figures = [float(number) for cell in last_column for number in cell.split(" / ")]
    ours = [f for table in TABLES if table.method == "acto" for row in table.rows for f in row.figures]
    assert figures == ours[:6] + [ours[9]] + ours[6:9]  # acto.md lists Food-101N before the web sets
