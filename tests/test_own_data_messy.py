"""One messy folder and one messy CSV, as people's own data come (issue 23 items 2, 3 and 8, structure):
exact samples, classes, pixels, messages and exit statuses (each decoding rule in detail: test_decode.py)."""
from __future__ import annotations

import hashlib
import os
import shutil
import unicodedata

import numpy as np
import pytest

from dataloader import build_data
from dataloader.files import SkippedFiles, list_images
from fixtures_data import make_cfg, write_text
from test_own_data import TREE, cli, load, run_cli, write_tree
from utils.core.errors import ConfigError, DataError

CAFE_NFC = unicodedata.normalize("NFC", "caf\u00e9")
CAFE_NFD = unicodedata.normalize("NFD", "caf\u00e9")
assert CAFE_NFC != CAFE_NFD


def _touch(path, data=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


@pytest.fixture
def messy(tmp_path, monkeypatch):
    """``~/data`` (HOME = tmp_path/home) with every structural case of issue 23; returns the data root."""
    home = tmp_path / "home"
    root = home / "data"
    monkeypatch.setenv("HOME", str(home))
    train = root / "train"
    write_tree(root, {"train/3": ["a.png", "b.png"], "train/7": ["c.png", "sub/d.png"],
                      f"train/{CAFE_NFC}": ["e.png"], "train/Dog": ["f.png"], "train/dog": ["g.png"],
                      f"train/{CAFE_NFD}": ["h.png"],
                      "val/3": ["v3.png"], f"val/{CAFE_NFD}": ["v.png"]})
    os.symlink("..", train / "3" / "up")  # the loop of issue 23: train/3/up -> train
    os.symlink("gone.png", train / "3" / "lost.png")  # dangling
    os.symlink(os.path.join("..", "c.png"), train / "7" / "sub" / "again.png")  # a file link: kept
    _touch(str(train / "7" / ".hidden.png"))
    _touch(str(train / "7" / "notes.txt"))
    _touch(str(train / "gifs" / "x.gif"))
    _touch(str(train / "gifs" / "y.heic"))
    _touch(str(train / "gifs" / "z.gif"))
    (train / "empty").mkdir()
    _write_pixel_cases(train)
    return root


def _write_pixel_cases(train):
    """Files of the tree whose pixels a bare convert("RGB") gets wrong (issue 23 item 1), in the same tree."""
    from PIL import Image
    rgba = np.zeros((2, 4, 4), np.uint8)            # transparent, with one opaque dark stroke pixel
    rgba[0, 0] = (10, 20, 30, 255)
    Image.fromarray(rgba).save(train / "3" / "a.png")
    grey16 = np.array([[0, 32768, 65535, 257]], np.uint16)
    Image.fromarray(grey16).save(train / "7" / "sub" / "d.png")
    stored = np.zeros((4, 8, 3), np.uint8)           # 8 wide, 4 high; shown 4 wide, 8 high
    exif = Image.Exif()
    exif[0x0112] = 6                                  # "rotate 90 degrees clockwise"
    Image.fromarray(stored).save(train / "Dog" / "f.png", format="JPEG", exif=exif)  # a JPEG named .png


def test_messy_folder_step_by_step(messy, tmp_path, capsys):
    train = messy / "train"
    # 1. look-alike class names: one line, exit 2, nothing written (the whole road, in process)
    code, err = run_cli(cli("imagefolder", "~/data", tmp_path / "out"), capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.endswith(f"error: imagefolder: 2 groups of class names in {train} differ only by case, surrounding "
                        f"space or Unicode form: 'Dog' / 'dog'; {CAFE_NFD!r} / {CAFE_NFC!r}; give each class one "
                        "spelling")
    assert not (tmp_path / "out" / "stage1").exists()

    # 2. the dangling link, reported when listed (not mid-epoch)
    shutil.rmtree(train / "dog")
    shutil.rmtree(train / CAFE_NFD)
    with pytest.raises(DataError) as err:
        load(dataset="imagefolder", data_path="~/data", noise_mode="real")
    assert str(err.value) == (f"imagefolder: 1 symbolic links in {messy} point to nothing: train/3/lost.png; "
                              "remove them or restore their targets")

    # 3. classes without a usable training image
    os.remove(train / "3" / "lost.png")
    with pytest.raises(DataError) as err:
        load(dataset="imagefolder", data_path="~/data", noise_mode="real")
    assert str(err.value) == ("imagefolder: 2 classes have no usable training image: 'empty' (empty folder), "
                              "'gifs' (only skipped files: .gif 2, .heic 1); add images to those folders in "
                              f"{train} or remove them, or list every class in class_names to keep them")

    # 4. the classes named explicitly: the run goes on, and says what it passed over
    classes = ["3", "7", "Dog", CAFE_NFC, "empty", "gifs"]
    lines = []
    data = build(class_names=classes, log=lines.append)
    assert data.raw.extra["classes"] == classes
    # the loop adds nothing (200 images stay 200); the file link is a sample of its own
    assert list(data.train.images.keys) == ["train/3/a.png", "train/3/b.png", "train/7/c.png",
                                            "train/7/sub/again.png", "train/7/sub/d.png", "train/Dog/f.png",
                                            f"train/{CAFE_NFC}/e.png"]
    assert data.noisy_labels.tolist() == [0, 0, 1, 1, 1, 2, 3]
    assert data.train.images.paths[0] == os.path.join(str(messy), "train/3/a.png")  # ~ expanded
    # val/café is written NFD on disk and is the training class café (NFC)
    assert list(data.test.images.keys) == ["val/3/v3.png", f"val/{CAFE_NFD}/v.png"]
    assert data.test.labels.tolist() == [0, 3]
    assert lines[:3] == [
        f"imagefolder: skipped 5 files: .gif 2 (train/gifs/x.gif, train/gifs/z.gif), .heic 1 (train/gifs/y.heic), "
        f".txt 1 (train/7/notes.txt), hidden 1 (train/7/.hidden.png) in {messy} (hidden or not an image: "
        ".jpg, .jpeg, .png, .ppm, .bmp, .pgm, .tif, .tiff, .webp)",
        f"imagefolder: warning: 1 symbolic links in {messy} lead to folders already listed, not entered again "
        "(a loop or a second route): train/3/up -> train",
        "imagefolder: warning: 2 of the classes named in class_names have no training image: 'empty' (empty "
        "folder), 'gifs' (only skipped files: .gif 2, .heic 1)"]

    # pixels as a viewer shows them: transparency onto white, 16 bit scaled (not clipped), EXIF turned
    images = data.train.images
    assert np.asarray(images.load(0)).tolist() == [[[10, 20, 30]] + [[255, 255, 255]] * 3, [[255, 255, 255]] * 4]
    assert np.asarray(images.load(4))[0, :, 0].tolist() == [0, 128, 255, 1]  # round(v * 255 / 65535)
    assert images.load(5).size == (4, 8)

    # a training folder missing from an explicit class list is refused
    with pytest.raises(DataError, match=r"imagefolder: class 'gifs' \(.*/train/gifs\) is not named in class_names"):
        build(class_names=classes[:-1])


def build(*, log=None, **values):
    cfg = make_cfg(dataset="imagefolder", data_path="~/data", noise_mode="real", **values)
    return build_data(cfg, stage="stage1", log=log or (lambda m: None))


def test_a_link_to_a_class_folder_is_not_a_second_copy(tmp_path):
    write_tree(tmp_path, {"train/a": ["1.png"], "train/b": ["2.png"]})
    os.symlink(os.path.join("..", "b"), tmp_path / "train" / "a" / "b_again")  # a second route to class b
    os.symlink("a", tmp_path / "train" / "c")  # a class folder that is another class folder
    with pytest.raises(DataError, match=r"'c' \(empty folder\)"):
        load(dataset="imagefolder", data_path=str(tmp_path), noise_mode="real")
    lines = []
    data = build_data(make_cfg(dataset="imagefolder", data_path=str(tmp_path), noise_mode="real",
                               class_names=["a", "b", "c"]), stage="stage1", log=lines.append)
    assert list(data.train.images.keys) == ["train/a/1.png", "train/b/2.png"]
    assert data.noisy_labels.tolist() == [0, 1]
    assert (f"imagefolder: warning: 2 symbolic links in {tmp_path} lead to folders already listed, not entered again "
            "(a loop or a second route): train/a/b_again -> train/b, train/c -> train/a") in lines


def test_unset_variable_in_a_path_key_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_DATA_DIR", raising=False)
    monkeypatch.setenv("MY_DATA", str(tmp_path))
    write_tree(tmp_path, TREE)
    data = load(dataset="imagefolder", data_path="$MY_DATA", noise_mode="real")
    assert data.train.images.paths[0] == os.path.join(str(tmp_path), "train/cat/a.jpg")
    with pytest.raises(ConfigError) as err:
        load(dataset="imagefolder", data_path="${NO_SUCH_DATA_DIR}/x", noise_mode="real")
    assert str(err.value) == ("config key 'data_path' (from test) uses the environment variable NO_SUCH_DATA_DIR, "
                              "which is not set; set it or write the path out ('${NO_SUCH_DATA_DIR}/x')")


def test_skipped_summary_format():
    skipped = SkippedFiles()
    for path in ["c/d.heic", "a/b.gif", "q/r.gif", "a/a.gif", "z/y.gif"]:
        skipped.add(os.path.splitext(path)[1], path)
    assert skipped.summary() == "skipped 5 files: .gif 4 (a/a.gif, a/b.gif, q/r.gif), .heic 1 (c/d.heic)"
    assert SkippedFiles().summary() == ""


def test_predict_listing_keeps_dangling_links_for_its_error_rows(tmp_path):
    write_tree(tmp_path, {"in": ["a.png"]})
    os.symlink("gone.png", tmp_path / "in" / "b.png")
    assert list_images(str(tmp_path / "in"), recursive=True, dangling="list") == (["a.png", "b.png"], 0)
    with pytest.raises(DataError, match="1 symbolic links in .* point to nothing: b.png"):
        list_images(str(tmp_path / "in"), recursive=True)


# ------------------------------------------------------------------------------------------------- csv

def write_messy_csv(root) -> str:
    """BOM, CRLF, a quoted comma in a path, Windows backslashes, an NFD label, spaces around a label."""
    write_tree(root, {"img": ["1.png", "a,b.png"], "img/sub": ["2.png", "3.png"]})
    rows = ["path,label", "img/1.png,cat", '"img/a,b.png",dog', "img\\sub\\2.png,caf\u00e9",
            f"img/sub/3.png,{CAFE_NFD}", "./img//1.png,cat"]
    path = os.path.join(root, "train.csv")
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        f.write("\r\n".join(rows) + "\r\n")
    return path


def test_messy_csv(tmp_path, capsys):
    path = write_messy_csv(tmp_path)
    # the last row is the first one again, written another way: a duplicate
    with pytest.raises(DataError) as err:
        load(dataset="csv", data_path=str(tmp_path), noise_mode="real")
    assert str(err.value) == ("csv: 1 bad rows: train.csv line 6: duplicate path ./img//1.png (also line 2); "
                              "fix or remove them")
    with open(path, encoding="utf-8-sig", newline="") as f:
        text = f.read().replace("./img//1.png,cat\r\n", "")
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        f.write(text)
    data = load(dataset="csv", data_path=str(tmp_path), noise_mode="real")
    assert data.raw.extra["classes"] == [CAFE_NFC, "cat", "dog"]  # NFD and NFC label: one class
    assert list(data.train.images.keys) == ["img/1.png", "img/a,b.png", "img/sub/2.png", "img/sub/3.png"]
    assert data.noisy_labels.tolist() == [1, 2, 0, 0]

    # labels differing only by case or surrounding space: refused, one line, exit 2
    write_text(path, ["path,label", "img/1.png,Three", '"img/a,b.png",x', "img/sub/2.png,three",
                      "img/sub/3.png, x"])
    code, err = run_cli(cli("csv", tmp_path, tmp_path / "out"), capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.endswith("error: csv: 2 groups of class names in the label column of the training CSV differ only by "
                        "case, surrounding space or Unicode form: ' x' / 'x'; 'Three' / 'three'; give each class "
                        "one spelling")


def test_csv_integer_labels_with_gaps(tmp_path):
    write_tree(tmp_path, {"img": ["1.png", "2.png", "3.png"]})
    write_text(str(tmp_path / "train.csv"), ["path,label", "img/1.png,0", "img/2.png,5", "img/3.png,9"])
    with pytest.raises(DataError) as err:
        load(dataset="csv", data_path=str(tmp_path), noise_mode="real")
    assert str(err.value) == ("csv: 7 classes have no usable training image: '1' (no training row), '2' (no training "
                              "row), '3' (no training row), '4' (no training row), '6' (no training row), '7' (no "
                              "training row), '8' (no training row); the integer labels run 0..9 with gaps: number "
                              "the classes 0..2, or list every class in class_names to keep them")
    data = load(dataset="csv", data_path=str(tmp_path), noise_mode="real", class_names=[str(i) for i in range(10)])
    assert data.num_classes == 10 and data.noisy_labels.tolist() == [0, 5, 9]


# -------------------------------------------------------------------------- the fingerprint is unchanged

def _old_digest(keys) -> str:
    """FileImages.digest as it was (a Python loop over a list of str)."""
    h = hashlib.sha256()
    for key in keys:
        h.update(key.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def test_fingerprint_of_a_normal_tree_is_unchanged(tmp_path):
    """The listing rewrite keeps keys, order, labels and the fingerprint (stage 2 compares it with stage 1's)."""
    write_tree(tmp_path, TREE)
    data = load(dataset="imagefolder", data_path=str(tmp_path), noise_mode="real")
    keys = ["train/cat/a.jpg", "train/cat/b.png", "train/cat/deep/er/c.png", "train/dog/x.png", "train/dog/y.jpeg"]
    assert data.raw.train_images.digest() == _old_digest(keys)
    # pinned from the main branch before the rewrite (same tree, same keys and labels)
    assert data.fingerprint == FINGERPRINT_ON_MAIN
    csv = load(dataset="csv", data_path=str(tmp_path), noise_mode="real",
               train_csv=write_text(str(tmp_path / "t.csv"), ["path,label"] + [f"{k},{k.split('/')[1]}"
                                                                                for k in keys]))
    assert csv.raw.train_images.digest() == _old_digest(keys)
    assert np.array_equal(csv.noisy_labels, data.noisy_labels)


FINGERPRINT_ON_MAIN = "b624ff2b0cfd310e0cc28e6eb0bc272f600659040ff834a3f8104b301f6236a1"  # main at ca0a234
