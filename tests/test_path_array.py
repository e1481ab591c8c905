"""PathArray / RootedPaths (paths without per-sample Python objects) and the folder-listing file check."""
from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np
import pytest

from dataloader.base import FileImages
from dataloader.files import check_files_exist, existing_files, make_images
from dataloader.path_array import PathArray, RootedPaths
from utils.core.errors import DataError

PATHS = ["train/cat/a.jpg", "", "train/caf\u00e9/\u20ac.png", "x" * 300, "train/dog/b c,d.png"]


@pytest.mark.parametrize("paths", [PATHS, [], [""], ["", ""], ["with\0nul", "b"]])
def test_path_array_reads_back_what_it_was_given(paths):
    array = PathArray(paths)
    assert len(array) == len(paths) and list(array) == paths and array == paths
    assert [array[i] for i in range(-len(paths), len(paths))] == paths + paths
    assert array[1:4] == paths[1:4]
    assert pickle.loads(pickle.dumps(array)) == array
    assert array.data.dtype == np.uint8 and array.offsets.dtype == np.int64 and len(array.offsets) == len(paths) + 1
    with pytest.raises(IndexError):
        array[len(paths)]


def test_take_and_digest_match_the_list_of_str():
    array = PathArray(PATHS)
    order = np.array([4, 0, 0, 2, 1])
    assert list(array.take(order)) == [PATHS[i] for i in order]
    assert list(array.take(np.array([], dtype=np.int64))) == []
    h = hashlib.sha256()
    for key in PATHS:  # FileImages.digest before PathArray: the fingerprint must not change
        h.update(key.encode("utf-8"))
        h.update(b"\n")
    assert array.sha256_lines() == h.hexdigest() == FileImages(PATHS).digest()


def test_rooted_paths_join_like_os_path_join():
    keys = ["a/b.png", "/elsewhere/c.png", "d.png"]
    for root in ("/data", "/data/", ""):
        paths = RootedPaths(root, keys)
        assert list(paths) == [os.path.join(root, k) for k in keys] == [paths[i] for i in range(3)]
        assert list(paths.take(np.array([2, 0]))) == [os.path.join(root, k) for k in ("d.png", "a/b.png")]
    images = make_images("/data", keys)
    assert images.keys == keys and images.keys is images.paths.keys  # the keys are held once
    assert pickle.loads(pickle.dumps(images)).paths == list(images.paths)


def test_existing_files_agrees_with_isfile(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(10):
        (folder / f"{i}.png").write_bytes(b"x")
    (folder / "dir.png").mkdir()
    os.symlink("0.png", folder / "link.png")
    os.symlink("gone.png", folder / "dangling.png")
    names = [f"{i}.png" for i in range(12)] + ["dir.png", "link.png", "dangling.png"]
    paths = [str(folder / n) for n in names] + [str(tmp_path / "nowhere" / "x.png"), str(folder / "0.png")[:-4]]
    expected = [os.path.isfile(p) for p in paths]
    assert expected.count(True) == 11  # 10 files and the link to one
    assert existing_files(paths) == expected  # the folder is listed (>= 8 paths)
    assert existing_files(paths, listed_from=10 ** 9) == expected  # one isfile each


def test_check_files_exist_counts_the_missing_and_names_the_first_in_list_order(tmp_path):
    for i in range(10):
        (tmp_path / "img" / str(i % 2)).mkdir(parents=True, exist_ok=True)
        (tmp_path / "img" / str(i % 2) / f"{i}.jpg").write_bytes(b"x")
    keys = [f"img/{i % 2}/{i}.jpg" for i in range(12)] + ["img/1/../0/4.jpg", "img/7/x.jpg"]
    check_files_exist(str(tmp_path), keys[:10] + keys[12:13], listed_in="list.txt", hint="h")  # all present
    with pytest.raises(DataError) as err:
        check_files_exist(str(tmp_path), keys, listed_in="list.txt", hint="fix it")
    assert str(err.value) == (f"3 of the 14 images listed in list.txt are missing, e.g. {tmp_path}/img/0/10.jpg; "
                              "fix it")


def test_ends_with_matches_str_endswith_ignoring_case():
    """PathArray.ends_with (the multi-page TIFF check's filter) against str.endswith on the lowered path."""
    rng = np.random.default_rng(0)
    pieces = ["a", "é", ".", "tif", "TIF", "f", "F", "tiff", "/", "png", "😀", "\udce9"]
    paths = ["", "tif", ".tif", ".TIFF", "x.tif.png", "dir.tif/x"] + [
        "".join(rng.choice(pieces, size=rng.integers(0, 6))) for _ in range(2000)]
    suffixes = (".tif", ".tiff")
    expected = [p.lower().endswith(suffixes) for p in paths]
    assert 20 < sum(expected) < 1900
    assert PathArray(paths).ends_with(suffixes).tolist() == expected
    assert PathArray(paths).take(np.arange(5, 0, -1)).ends_with(suffixes).tolist() == expected[5:0:-1]
    assert PathArray([]).ends_with(suffixes).tolist() == []
