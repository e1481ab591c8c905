"""Own data sets (``dataset: imagefolder`` and ``csv``): layout, labels, order, fingerprint, and every bad input
as one line with exit status 2."""
from __future__ import annotations

import os

import numpy as np
import pytest

import stage_1
from dataloader import build_data
from dataloader.own import OWN_SPEC
from fixtures_data import make_cfg, write_image, write_text
from utils.core.errors import ConfigError, DataError
from utils.core.entry import run_main


def write_tree(root, layout: dict[str, list[str]]) -> None:
    """``{"train/cat": ["a.png", "sub/b.jpg"], ...}`` -> image files (random pixels)."""
    for n, (folder, names) in enumerate(sorted(layout.items())):
        for k, name in enumerate(names):
            write_image(os.path.join(root, folder, name), size=12, seed=100 * n + k)


TREE = {"train/cat": ["b.png", "a.jpg", "deep/er/c.png"], "train/dog": ["x.png", "y.jpeg"],
        "val/cat": ["t1.png"], "val/dog": ["t2.png", "t3.png"]}


def load(scope="stage1", **values):
    cfg = make_cfg(scope, **values)
    return build_data(cfg, stage=scope, log=lambda m: None)


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        run_main(stage_1.main, argv)
    return exc.value.code, capsys.readouterr().err.strip()


def cli(dataset, data_path, out, *extra):
    return ["--config", f"config/stage1/{dataset}.yaml", "--set", f"data_path={data_path}", "--backbone",
            "test_resnet", "--set", "pretrained=false", "--set", "resolution=16", "--set", "num_workers=0",
            "--epochs", "1", "--device", "cpu", "--output_dir", str(out), *extra]


# ------------------------------------------------------------------------------------------- imagefolder

def test_imagefolder_order_labels_and_test_split(tmp_path):
    write_tree(tmp_path, {**TREE, "train/.hidden": ["h.png"], "train/cat/.h.png": [], "test/cat": ["ignored.png"]})
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    data = load(dataset="imagefolder", data_path=str(tmp_path), noise_mode="real")
    assert data.train.images.keys == ["train/cat/a.jpg", "train/cat/b.png", "train/cat/deep/er/c.png",
                                      "train/dog/x.png", "train/dog/y.jpeg"]
    assert data.noisy_labels.tolist() == [0, 0, 0, 1, 1]
    assert data.raw.extra["classes"] == ["cat", "dog"] and data.num_classes == 2
    # val/ wins over test/; real noise: the truth of the given labels is unknown
    assert data.test.images.keys == ["val/cat/t1.png", "val/dog/t2.png", "val/dog/t3.png"]
    assert data.test.labels.tolist() == [0, 1, 1]
    assert data.clean_labels is None and data.noise_info["realised_noise_rate"] is None
    assert data.raw.family == "large" and data.raw.extra["large"] == OWN_SPEC
    assert data.raw.mean == (0.485, 0.456, 0.406) and data.train[0][0].shape == (3, 32, 32)


def test_imagefolder_sym_noise_corrupts_the_given_labels(tmp_path):
    write_tree(tmp_path, {f"train/{c}": [f"{i}.png" for i in range(10)] for c in "abc"} | {"val/a": ["v.png"]})
    data = load(dataset="imagefolder", data_path=str(tmp_path), noise_mode="sym", noise_ratio=0.5,
                noise_dir=str(tmp_path / "noise"))
    assert data.clean_labels.tolist() == [0] * 10 + [1] * 10 + [2] * 10  # the given labels count as the truth
    assert 0 < data.noise_info["realised_noise_rate"] <= 0.5


def test_imagefolder_idn_noise_needs_images_of_one_size(tmp_path):
    """docs/own_data.md: idn reads every training image; one of another size stops the run, naming both."""
    write_tree(tmp_path, {f"train/{c}": [f"{i}.png" for i in range(10)] for c in "ab"} | {"val/a": ["v.png"]})
    kw = dict(dataset="imagefolder", data_path=str(tmp_path), noise_mode="idn", noise_ratio=0.4)
    data = load(noise_dir=str(tmp_path / "noise"), **kw)
    assert data.clean_labels.tolist() == [0] * 10 + [1] * 10 and data.noise_info["realised_noise_rate"] > 0
    odd = write_image(str(tmp_path / "train" / "b" / "9.png"), size=14, seed=1)
    with pytest.raises(DataError) as err:
        load(noise_dir=str(tmp_path / "noise2"), **kw)
    assert str(err.value) == (f"idn noise needs images of one size: {odd} is 14x14, "
                              f"{tmp_path / 'train' / 'a' / '0.png'} is 12x12")


def test_fingerprint_covers_the_folder_version(tmp_path):
    write_tree(tmp_path, TREE)
    before = load(dataset="imagefolder", data_path=str(tmp_path), noise_mode="real").fingerprint
    os.rename(tmp_path / "train" / "cat" / "b.png", tmp_path / "train" / "dog" / "b.png")  # relabelled file
    assert load(dataset="imagefolder", data_path=str(tmp_path), noise_mode="real").fingerprint != before


# ------------------------------------------------------------------------------------------------- csv

def test_csv_names_relative_and_absolute_paths(tmp_path):
    write_tree(tmp_path, {"img": ["1.png", "2.png", "3.png"], "other": ["4.png"]})
    absolute = str(tmp_path / "other" / "4.png")
    write_text(str(tmp_path / "train.csv"), ["path,label", "img/2.png,zebra", "img/1.png,ant", f"{absolute},zebra"])
    write_text(str(tmp_path / "lists" / "test.csv"), ["path,label", "../img/3.png,ant"])
    data = load(dataset="csv", data_path=str(tmp_path), noise_mode="real", test_csv=str(tmp_path / "lists/test.csv"))
    assert data.raw.extra["classes"] == ["ant", "zebra"]  # sorted names
    assert data.train.images.keys == ["img/2.png", "img/1.png", "other/4.png"]  # CSV order, relative to data_path
    assert data.noisy_labels.tolist() == [1, 0, 1] and data.test.labels.tolist() == [0]
    assert data.test.images.paths == [str(tmp_path / "img" / "3.png")]


def test_csv_integer_labels_with_class_names(tmp_path):
    write_tree(tmp_path, {"img": ["1.png", "2.png", "3.png"]})
    write_text(str(tmp_path / "t.csv"), ["path,label", "img/1.png,2", "img/2.png,0"])
    write_text(str(tmp_path / "v.csv"), ["path,label", "img/3.png,1"])
    data = load(dataset="csv", data_path=str(tmp_path), noise_mode="real", train_csv=str(tmp_path / "t.csv"),
                test_csv=str(tmp_path / "v.csv"), class_names=["x", "y", "z"])
    assert data.num_classes == 3 and data.raw.extra["classes"] == ["x", "y", "z"]
    assert data.noisy_labels.tolist() == [2, 0] and data.test.labels.tolist() == [1]


def test_csv_bad_rows_reported_together(tmp_path, capsys):
    write_tree(tmp_path, {"img": ["1.png", "2.png"]})
    rows = ["path,label", "img/1.png,cat", "img/2.png,", "img/1.png,dog"] + [f"gone/{i}.png,cat" for i in range(10)]
    write_text(str(tmp_path / "train.csv"), rows)
    write_text(str(tmp_path / "test.csv"), ["path,label", "img/2.png,bird"])
    code, err = run_cli(cli("csv", tmp_path, tmp_path / "out", "--set", f"test_csv={tmp_path}/test.csv"), capsys)
    assert code == 2 and len(err.splitlines()) == 1
    missing = os.path.join(str(tmp_path), "gone")
    assert err == (f"{err.split(': ', 1)[0]}: error: csv: 13 bad rows: train.csv line 3: empty label; "
                   "train.csv line 4: duplicate path img/1.png (also line 2); "
                   + "; ".join(f"train.csv line {5 + i}: missing file {missing}/{i}.png" for i in range(8))
                   + " (and 3 more); fix or remove them")
    assert "unknown test class" not in err  # the 13th problem is only counted
    assert not (tmp_path / "out" / "stage1").exists()


def test_csv_unknown_test_class(tmp_path, capsys):
    write_tree(tmp_path, {"img": ["1.png", "2.png"]})
    write_text(str(tmp_path / "train.csv"), ["path,label", "img/1.png,cat"])
    write_text(str(tmp_path / "test.csv"), ["path,label", "img/2.png,bird"])
    code, err = run_cli(cli("csv", tmp_path, tmp_path / "out", "--set", f"test_csv={tmp_path}/test.csv"), capsys)
    assert code == 2
    assert err.endswith("error: csv: 1 bad rows: test.csv line 2: unknown test class 'bird'; fix or remove them")


# ------------------------------------------------------------------------------------- one line, exit 2

@pytest.mark.parametrize("case, expected", [
    ("no_train", "error: imagefolder: {root}/train does not exist; expected {root}/train/<class>/<image> (and "
                 "val/<class>/ or test/<class>/ for the test set)"),
    ("no_images", "error: imagefolder: {root}/train holds no images (extensions: jpg, jpeg, png, ppm, bmp, pgm, "
                  "tif, tiff, webp)"),
    ("unknown_test_class", "error: imagefolder: test class 'bird' ({root}/val/bird) is not a training class; rename "
                           "it to one of the folders in {root}/train or remove it"),
    ("asym", "error: config key 'noise_mode': asym needs a class map that imagefolder data do not have; use real "
             "(your labels as given), sym or idn"),
    ("no_header", "error: csv: {root}/train.csv must start with the header path,label (or path,class_name: labels "
                  "that are class names whatever they look like), got 'file,class'"),
    ("no_csv", "error: csv: {root}/train.csv does not exist; write a CSV with the header path,label (or set "
               "train_csv)"),
])
def test_bad_input_one_line_exit_2(case, expected, tmp_path, capsys):
    root = tmp_path / "data"
    dataset, extra = "imagefolder", []
    if case == "no_images":
        (root / "train" / "cat").mkdir(parents=True)
    elif case in ("unknown_test_class", "asym"):
        write_tree(root, {"train/cat": ["a.png", "b.png"], "train/dog": ["d.png"], "val/bird": ["c.png"]}
                   if case != "asym" else TREE)
        extra = ["--noise_mode", "asym"] if case == "asym" else []
    elif case == "no_header":
        dataset = "csv"
        write_text(str(root / "train.csv"), ["file,class", "a.png,cat"])
    elif case == "no_csv":
        dataset = "csv"
        root.mkdir()
    code, err = run_cli(cli(dataset, root, tmp_path / "out", *extra), capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err == f"{err.split(': ', 1)[0]}: {expected.format(root=root)}"  # "<prog>: error: ..."
    assert not (tmp_path / "out" / "stage1").exists()
