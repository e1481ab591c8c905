"""One hostile folder (issue 31 items 2, 3, 6, 7 and 8): names that are not UTF-8, class names that look like
numbers or carry spaces, the outputs inside the images, images in no class folder, a test/ beside val/, a
multi-page TIFF, a one-class set and CSVs whose labels or paths are easy to misread; the exact outcome of each
(exit status, message, samples, class names), peeled one refusal at a time as a user would fix them."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from dataloader import build_data
from dataloader.names import is_utf8, shown
from fixtures_data import make_cfg, write_text
from test_own_data import cli, run_cli, write_tree
from utils.core.errors import DataError
from utils.training.config import REPO_ROOT

# the class folders of issue 31 item 3: names that look like numbers, and one with a leading space
CLASSES = [" lead", "01", "1", "10", "2"]  # sorted, code-point order (the space first)
NOT_UTF8 = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes, as another system wrote them
RENAME = ("rename them to UTF-8 (e.g. convmv -f latin1 -t utf-8 -r --notest FOLDER, with the encoding they were "
          "written in): the report, the review page and corrected_labels.csv must name every file exactly")


def hostile(root) -> None:
    """The hostile tree below ``root``."""
    write_tree(root, {f"train/{c}": [f"{n}{i}.png" for i in range(2)] for n, c in enumerate(CLASSES)}
               | {"train": ["loose.png"], "val/1": ["v.png"], "val": ["stray.png"], "test/2": ["t.png"]})
    pages = [Image.new("RGB", (12, 12), (40 * i, 0, 0)) for i in range(3)]
    pages[0].save(root / "train" / "2" / "stack.tif", save_all=True, append_images=pages[1:])
    shutil.copy(root / "train" / "1" / "20.png", os.path.join(os.fsencode(root / "train" / "1"), b"caf\xe9.png"))
    os.makedirs(os.path.join(os.fsencode(root / "train"), b"\xff\xfe"))  # a class folder whose name is not UTF-8


def listing(root, **values):
    lines = []
    data = build_data(make_cfg(dataset="imagefolder", data_path=str(root), noise_mode="real", **values),
                      stage="stage1", log=lines.append)
    return data, lines


def test_the_hostile_tree_step_by_step(tmp_path, capsys):
    root = tmp_path / "data"
    hostile(root)

    # 1. the outputs inside train/: refused before anything is listed or written (item 6)
    inside = root / "train" / "out"
    code, err = run_cli(cli("imagefolder", root, inside), capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.endswith(f"error: config key 'output_dir' {inside} is inside {root}/train, whose images imagefolder "
                        "reads: the run's own images (plots, the suspects' grid) would become samples; write the "
                        f"outputs outside {root}/train, val/ and test/ (beside them is fine, e.g. {root}/runs)")
    assert not inside.exists()
    out = root / "runs"  # beside train/: accepted

    # 2. names that are not UTF-8, the file's and the class folder's, in one line before training (item 2)
    code, err = run_cli(cli("imagefolder", root, out), capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.endswith(f"error: imagefolder: 2 file or folder names in {root} are not valid UTF-8: "
                        f"train/1/caf\\xe9.png, train/\\xff\\xfe/; {RENAME}")
    assert not (out / "stage1").exists() and not (out / "checkpoint").exists()
    os.remove(os.path.join(os.fsencode(root / "train" / "1"), b"caf\xe9.png"))
    os.rmdir(os.path.join(os.fsencode(root / "train"), b"\xff\xfe"))

    # 3. accepted, with one line for each thing left out or read partly (item 7); classes stay their names (item 3)
    data, lines = listing(root)
    assert data.raw.extra["classes"] == CLASSES
    assert list(data.train.images.keys) == [f"train/{c}/{n}{i}.png" for n, c in enumerate(CLASSES) for i in range(2)
                                            ][:8] + ["train/2/40.png", "train/2/41.png", "train/2/stack.tif"]
    assert data.noisy_labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 4]
    assert list(data.test.images.keys) == ["val/1/v.png"] and data.test.labels.tolist() == [2]
    warnings = [line for line in lines if "warning" in line]
    assert warnings == [
        f"imagefolder: warning: 1 images directly in {root}/train are in no class folder and are not read: "
        "train/loose.png; move them into train/<class>/ to use them",
        f"imagefolder: warning: 1 images directly in {root}/val are in no class folder and are not read: "
        "val/stray.png; move them into val/<class>/ to use them",
        f"imagefolder: warning: {root}/test is not read: the test images are those of {root}/val (val/ comes first "
        "when both exist); merge test/ into val/ to evaluate on both, or move it out of the data folder",
        "imagefolder: warning: 1 TIFF files hold more than one page; only the first page of each is read: "
        "train/2/stack.tif; save the pages as separate files to use them"]
    assert np.asarray(data.train.images.load(10))[0, 0].tolist() == [0, 0, 0]  # page 1 (pages 2, 3 are red)

    # 4. a one-class set cannot be cleaned: said before training
    for c in CLASSES[1:]:
        shutil.rmtree(root / "train" / c)
    code, err = run_cli(cli("imagefolder", root, out), capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.endswith("error: imagefolder: the training images are all of one class (' lead', 2 images); finding "
                        "wrong labels needs at least two classes, since a label can only look wrong against another "
                        f"one: add the folders of the other classes to {root}/train")
    assert not (out / "stage1").exists()


def csv_cli(path, out):
    argv = cli("csv", os.path.dirname(path), out, "--set", f"train_csv={path}")
    return [os.path.join(REPO_ROOT, a) if a.startswith("config/") else a for a in argv]  # from any directory


def test_hostile_csvs(tmp_path, capsys, monkeypatch):
    root = tmp_path / "data"
    write_tree(root, {"img": [f"{i}.png" for i in range(6)]})
    out = tmp_path / "out"
    names = str(root / "names.csv")
    rows = list(zip([f"img/{i}.png" for i in range(6)], ["1", "01", "10", "2", " lead", "2"]))

    # header path,class_name: every label is a name exactly as written, whatever it looks like (item 3)
    write_text(names, ["path,class_name"] + [f"{p},{c}" for p, c in rows])
    data = build_data(make_cfg(dataset="csv", data_path=str(root), train_csv=names, noise_mode="real"),
                      stage="stage1", log=lambda m: None)
    assert data.raw.extra["classes"] == [" lead", "01", "1", "10", "2"]
    assert [data.raw.extra["classes"][c] for c in data.noisy_labels] == [c for _, c in rows]

    # header path,label: numbers written otherwise than as indices are refused, not merged (01 and 1) or renamed
    numbers = str(root / "numbers.csv")
    write_text(numbers, ["path,label"] + [f"{p},{c}" for p, c in rows if c.strip() != "lead"])
    code, err = run_cli(csv_cli(numbers, out), capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.endswith(f"error: csv: the labels of {numbers} are whole numbers, read as class indices, but '01' are "
                        "not written as indices (0, 1, 2, ... without leading zeros or a sign) and would merge with "
                        "or become other classes; if the labels are class names, head the column class_name (header "
                        "path,class_name, as the review page exports them), if they are indices, write them plainly")
    # plain indices keep working (with gaps refused, test_own_data_messy.py)
    write_text(numbers, ["path,label", "img/0.png,1", "img/1.png,0", "img/2.png,1"])
    data = build_data(make_cfg(dataset="csv", data_path=str(root), train_csv=numbers, noise_mode="real"),
                      stage="stage1", log=lambda m: None)
    assert data.raw.extra["classes"] == ["0", "1"] and data.noisy_labels.tolist() == [1, 0, 1]

    # a one-class CSV
    one = str(root / "one.csv")
    write_text(one, ["path,label", "img/0.png,cat", "img/1.png,cat"])
    code, err = run_cli(csv_cli(one, out), capsys)
    assert code == 2 and err.endswith(
        "error: csv: the training images are all of one class ('cat', 2 images); finding wrong labels needs at least "
        f"two classes, since a label can only look wrong against another one: add the rows of the other classes to "
        f"{one}")

    # paths written relative to the current directory, read relative to the CSV's folder (item 7)
    lists = tmp_path / "lists"
    from_here = str(lists / "labels.csv")
    write_text(from_here, ["path,label", "data/img/0.png,a", "data/img/1.png,b", "elsewhere/2.png,b"])
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(csv_cli(from_here, out), capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.endswith(
        f"error: csv: 3 bad rows: labels.csv line 2: missing file {lists}/data/img/0.png; labels.csv line 3: missing "
        f"file {lists}/data/img/1.png; labels.csv line 4: missing file {lists}/elsewhere/2.png; fix or remove them; "
        f"relative paths are read from the CSV's folder {lists}, and 2 of the 3 missing files exist relative to the "
        f"current directory {tmp_path}: write the paths relative to the CSV's folder, or absolute")
    # no hint where the files exist nowhere else; a name with a line break stays on the one line
    monkeypatch.chdir(root)
    with open(from_here, "a", encoding="utf-8") as f:
        f.write('"two\nlines.png",b\n')
    code, err = run_cli(csv_cli(from_here, out), capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.endswith(f"missing file {lists}/elsewhere/2.png; labels.csv line 5: missing file "
                        f"{lists}/two\\x0alines.png; fix or remove them")


def test_names_are_shown_with_their_bytes_escaped():
    assert is_utf8("café/ü 😀.png") and not is_utf8(NOT_UTF8) and is_utf8("plain.png")
    assert shown(NOT_UTF8) == "caf\\xe9.png" and shown("café") == "café"
    assert shown("a\nb\tc\x7f.png") == "a\\x0ab\\x09c\\x7f.png" and shown(" lead/ü 😀") == " lead/ü 😀"
    with pytest.raises(DataError) as err:
        from dataloader.names import refuse_non_utf8
        refuse_non_utf8([f"{i}{NOT_UTF8}" for i in range(12)], where="/d", prefix="x: ")
    assert str(err.value) == ("x: 12 file or folder names in /d are not valid UTF-8: 0caf\\xe9.png, 10caf\\xe9.png, "
                              "11caf\\xe9.png, 1caf\\xe9.png, 2caf\\xe9.png, 3caf\\xe9.png, 4caf\\xe9.png, "
                              "5caf\\xe9.png, 6caf\\xe9.png, 7caf\\xe9.png (and 2 more); " + RENAME)


def test_a_data_folder_or_csv_folder_whose_path_is_not_utf8(tmp_path):
    """The review page exports absolute paths: the folders above the images must be UTF-8 too."""
    bad = os.fsdecode(os.fsencode(tmp_path) + b"/d\xe9p\xf4t")
    write_tree(bad, {"train/a": ["0.png"], "train/b": ["1.png"]})
    with pytest.raises(DataError) as err:
        listing(bad)
    assert str(err.value) == (f"imagefolder: data_path {tmp_path}/d\\xe9p\\xf4t is not valid UTF-8 (the review page "
                              "exports absolute paths, as UTF-8 text); rename the folder, or reach it through a link "
                              "whose path is UTF-8")
    os.symlink(bad, tmp_path / "depot")  # the way out the line names
    assert listing(tmp_path / "depot")[0].raw.extra["classes"] == ["a", "b"]
    labels = write_text(os.path.join(bad, "labels.csv"), ["path,label", "train/a/0.png,a", "train/b/1.png,b"])
    with pytest.raises(DataError) as err:
        build_data(make_cfg(dataset="csv", data_path=str(tmp_path), train_csv=labels, noise_mode="real"),
                   stage="stage1", log=lambda m: None)
    assert str(err.value).startswith(f"csv: the folder of train_csv {tmp_path}/d\\xe9p\\xf4t is not valid UTF-8")
