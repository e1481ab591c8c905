"""predict.py: images decoded exactly as training decoded them (recorded in the model file), --out and --model
checked before anything is predicted, missing and too-large inputs as error rows (the rest predicted)."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import predict
from dataloader import build_data
from dataloader.decode import OFFICIAL, Decoding, decode_file
from dataloader.inference import input_decoding, input_transform, load_input
from fixtures_data import SUBPROCESS_ENV, make_cfg, write_image
from model.classifier import create_model
from model.export import export_model
from utils.training.config import REPO_ROOT
from utils.core.entry import run_main
from utils.core.io import save_torch

@pytest.fixture(autouse=True)
def pillow_limit():
    """Decoding sets Pillow's process-wide pixel limit; the tests after these find it as it was."""
    saved = Image.MAX_IMAGE_PIXELS
    yield
    Image.MAX_IMAGE_PIXELS = saved


CLASSES = ("ant", "bee", "cat")


def strokes(path) -> str:
    """Dark strokes on a transparent background (all black under the official decoding)."""
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)
    rgba[5:8, :] = (30, 30, 30, 255)
    rgba[12, :] = (30, 30, 30, 100)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rgba, mode="RGBA").save(path)
    return str(path)


def exported(tmp_path, **cfg_values):
    """A test_resnet exported (untrained) from an imagefolder of three classes, one image an RGBA PNG."""
    root = tmp_path / "data"
    for c in CLASSES:
        for i in range(2):
            write_image(str(root / "train" / c / f"{i}.png"), size=12, seed=i)
            write_image(str(root / "val" / c / f"{i}.png"), size=12, seed=10 + i)
    strokes(root / "val" / "bee" / "2.png")
    cfg = make_cfg(dataset="imagefolder", data_path=str(root), noise_mode="real", output_dir=str(tmp_path),
                   **cfg_values)
    data = build_data(cfg, stage="stage1", log=lambda m: None)
    torch.manual_seed(0)
    model = create_model("test_resnet", num_classes=3, img_size=32)
    path = export_model(model, cfg=cfg, data=data, path=str(tmp_path / "model.pt"))
    return path, data


@pytest.mark.parametrize("background", ["white", "#102030"])
def test_predict_decodes_as_training_did(tmp_path, background):
    path, data = exported(tmp_path, decode_background=background)
    payload = torch.load(path, weights_only=True)
    assert payload["decoding"] == {"name": "viewer", "background": background}
    decoding, note = input_decoding(payload, max_pixels=None)
    assert note is None and decoding == Decoding("viewer", background=background, max_pixels=None)
    index = data.test.images.keys.index("val/bee/2.png")
    trained, _, _ = data.test[index]  # what training evaluated on: decode, then the test transform
    shown = load_input(data.test.images.paths[index], input_transform(payload), decoding)
    assert torch.equal(shown, trained)
    assert shown.dtype == torch.uint8 and tuple(shown[:, 0, 0].tolist()) == \
        ((255, 255, 255) if background == "white" else (0x10, 0x20, 0x30))


def test_paper_sets_record_the_official_decoding(tmp_path):
    from fixtures_data import write_tiny_imagenet

    root = tmp_path / "tiny"
    write_tiny_imagenet(str(root))
    cfg = make_cfg(dataset="tiny_imagenet", data_path=str(root), output_dir=str(tmp_path))
    data = build_data(cfg, stage="stage1", log=lambda m: None)
    assert data.train.images.decoding.name == OFFICIAL and data.test.images.decoding.name == OFFICIAL
    model = create_model("test_resnet", num_classes=data.num_classes, img_size=32)
    path = export_model(model, cfg=cfg, data=data, path=str(tmp_path / "model.pt"))
    assert torch.load(path, weights_only=True)["decoding"] == {"name": "official", "background": "white"}


def test_an_older_model_without_the_field_decodes_officially_and_says_so_once(tmp_path, capsys):
    path, _ = exported(tmp_path)
    payload = torch.load(path, weights_only=True)
    del payload["decoding"]
    old = save_torch(payload, str(tmp_path / "old.pt"))
    image = strokes(tmp_path / "in" / "a.png")
    strokes(tmp_path / "in" / "b.png")
    out = tmp_path / "p.csv"
    assert predict.main(["--model", old, str(tmp_path / "in"), "--out", str(out)]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("predict.py")]  # not tqdm's
    assert err[0] == (f"predict.py: note: {old}: the model file records no image decoding (exported by an older "
                      "version); decoding as the paper data sets do (a plain RGB conversion: no EXIF rotation, "
                      "transparency not composited, 16 bit clipped)")
    assert sum("note:" in line for line in err) == 1 and len(err) == 2
    decoding, _ = input_decoding(payload, max_pixels=None)
    assert decoding.name == OFFICIAL and np.asarray(decode_file(image, decoding))[0, 0].tolist() == [0, 0, 0]


def read_csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_missing_and_too_large_inputs_are_error_rows_the_rest_predicted(tmp_path, capsys):
    path, _ = exported(tmp_path)
    good = write_image(str(tmp_path / "in" / "a.png"), size=12)
    big = write_image(str(tmp_path / "in" / "b.png"), size=40)
    missing = str(tmp_path / "nowhere.png")
    out = tmp_path / "p.csv"
    code = predict.main(["--model", path, str(tmp_path / "in"), missing, "--out", str(out), "--max_image_pixels",
                         "1000"])
    rows = read_csv(out)
    assert code == 1 and [r["path"] for r in rows] == [good, big, missing]
    assert rows[0]["error"] == "" and rows[0]["predicted_label"] in CLASSES
    assert rows[1]["predicted_label"] == "" and rows[1]["error"] == (
        "too large: 40x40 pixels, above the limit of 1,000 (--max_image_pixels raises it, 0: no limit)")
    assert rows[2]["predicted_label"] == "" and rows[2]["error"] == "no such file or folder"
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("predict.py")]
    assert err == [f"predict.py: cannot read {big} ({rows[1]['error']})",
                   f"predict.py: cannot read {missing} (no such file or folder)",
                   f"predict.py: 1 of 3 images predicted: {out}"]
    assert predict.main(["--model", path, big, "--out", str(out), "--max_image_pixels", "0"]) == 0
    assert read_csv(out)[0]["error"] == ""


def run_predict(argv, capsys) -> tuple[int, list[str]]:
    """``python predict.py ARGV`` in this process: (exit status, non-empty stderr lines)."""
    with pytest.MonkeyPatch.context() as patch, pytest.raises(SystemExit) as exc:
        patch.setattr(sys, "argv", ["predict.py"])
        run_main(predict.main, argv)
    return exc.value.code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_only_missing_inputs_is_one_line(tmp_path, capsys):
    path, _ = exported(tmp_path)
    code, err = run_predict(["--model", path, str(tmp_path / "x.png")], capsys)
    assert code == 2 and err == [f"predict.py: error: {tmp_path / 'x.png'}: no such file or folder"]


@pytest.mark.parametrize("case", ["directory", "under_a_file", "unwritable"])
def test_unusable_out_is_refused_before_predicting(tmp_path, capsys, monkeypatch, case):
    path, _ = exported(tmp_path)
    image = write_image(str(tmp_path / "in" / "a.png"), size=12)
    (tmp_path / "file.txt").write_text("x")
    out = {"directory": tmp_path / "in", "under_a_file": tmp_path / "file.txt" / "sub" / "p.csv",
           "unwritable": tmp_path / "locked" / "p.csv"}[case]
    if case == "unwritable":
        (tmp_path / "locked").mkdir()
        real_access = os.access  # root may write anywhere: the permission is what the check reads
        monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path / "locked")
                            else real_access(p, mode))
    monkeypatch.setattr(predict, "predict", lambda *a, **k: pytest.fail("predicted before --out was checked"))
    code, err = run_predict(["--model", path, image, "--out", str(out)], capsys)
    expected = {
        "directory": f"--out {out} is a directory; name a CSV file, e.g. {out / 'predictions.csv'}",
        "under_a_file": f"--out {out}: {tmp_path / 'file.txt'} is a file, not a folder; name a CSV file in a folder",
        "unwritable": f"--out {out}: no permission to write in {tmp_path / 'locked'}; name a CSV file in a writable "
                      "folder"}[case]
    assert code == 2 and err == [f"predict.py: error: {expected}"]
    assert not list(tmp_path.rglob("*.csv")) and not list(tmp_path.rglob("*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["random_bytes", "state_dict", "missing", "folder", "truncated"])
def test_a_file_that_is_not_an_exported_model_is_one_line(tmp_path, case):
    image = write_image(str(tmp_path / "a.png"), size=12)
    model = tmp_path / "model.pt"
    if case == "random_bytes":
        model.write_bytes(b"\x00" + np.random.default_rng(0).bytes(4000))
    elif case == "state_dict":
        torch.save(create_model("test_resnet", num_classes=3, img_size=32).state_dict(), model)
    elif case == "folder":
        model.mkdir()
    elif case == "truncated":
        torch.save({"format": "ido-model/1", "w": torch.zeros(1000)}, model)
        model.write_bytes(model.read_bytes()[:2000])
    out = tmp_path / "p.csv"
    proc = subprocess.run([sys.executable, "predict.py", "--model", str(model), image, "--out", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=SUBPROCESS_ENV)
    why = {"random_bytes": "is not an exported model (not a file written by torch.save)",
           "state_dict": "is not an exported model (no format 'ido-model/1')",
           "missing": "does not exist (stage 2 writes stage2/<tag>_<bmm>_model.pt, ACTO acto/<tag>_model.pt)",
           "folder": "is not a file; name the _model.pt file that stage 2 or ACTO wrote",
           "truncated": "is not an exported model (truncated or corrupt: RuntimeError)"}[case]
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"predict.py: error: model file {model} {why}")
    assert not out.exists() and not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".p.csv*"))


def test_a_name_that_is_not_utf8_is_refused_before_predicting(tmp_path, capsys, monkeypatch):
    """The training listing's rule (dataloader/names.py): the CSV could not name the file, so one line, exit 2."""
    path, _ = exported(tmp_path)
    folder = tmp_path / "in"
    write_image(str(folder / "a.png"), size=12)
    os.makedirs(tmp_path / "named")
    named = os.fsdecode(os.fsencode(tmp_path / "named") + b"/\xe9t\xe9.png")  # a file named on the command line
    shutil.copy(folder / "a.png", named)
    os.makedirs(os.fsencode(folder) + b"/sub")
    shutil.copy(folder / "a.png", os.fsencode(folder) + b"/sub/caf\xe9.png")
    monkeypatch.setattr(predict, "predict", lambda *a, **k: pytest.fail("predicted a name that is not UTF-8"))
    out = tmp_path / "p.csv"
    code, err = run_predict(["--model", path, str(folder), "--out", str(out)], capsys)
    assert code == 2 and err == [f"predict.py: error: 1 file or folder names in {folder} are not valid UTF-8: "
                                 "sub/caf\\xe9.png; rename them to UTF-8 (e.g. convmv -f latin1 -t utf-8 -r --notest "
                                 "FOLDER, with the encoding they were written in): the report, the review page and "
                                 "corrected_labels.csv must name every file exactly"]
    code, err = run_predict(["--model", path, named, str(folder / "a.png"), "--out", str(out)], capsys)
    assert code == 2 and err[0].startswith(f"predict.py: error: 1 file or folder names in the inputs are not valid "
                                           f"UTF-8: {tmp_path}/named/\\xe9t\\xe9.png; rename them")
    assert not out.exists()


@pytest.mark.parametrize("case", ["named", "other_spelling", "symlink", "hardlink", "in_a_folder", "a_predict_csv"])
def test_out_that_is_an_input_is_refused_and_left_as_it_was(tmp_path, capsys, monkeypatch, case):
    """``--out P/*.png`` and its kin: the first image would become CSV text.  Refused before anything is
    predicted, also where --out names the input another way (a path through .., a link) or is a file that an
    input folder holds."""
    path, _ = exported(tmp_path)
    folder = tmp_path / "in"
    first = write_image(str(folder / "sub" / "a.png"), size=12)
    second = write_image(str(folder / "b.png"), size=12, seed=1)
    inputs = [first, second]
    out, shown = first, ""
    if case == "other_spelling":
        out, shown = str(folder / "sub" / ".." / "sub" / "a.png"), f" ({first})"
    elif case in ("symlink", "hardlink"):
        out, shown = str(tmp_path / "link.png"), f" ({first})"
        (os.symlink if case == "symlink" else os.link)(first, out)
    elif case == "in_a_folder":
        inputs = [str(folder)]
    elif case == "a_predict_csv":  # a CSV predict.py wrote, named as an input by mistake
        out = str(tmp_path / "p.csv")
        with open(out, "w", encoding="utf-8") as f:
            f.write(",".join(predict.csv_columns(3)) + "\n")
        inputs = [out, second]
    before = {p: open(p, "rb").read() for p in (first, second, out)}
    monkeypatch.setattr(predict, "predict", lambda *a, **k: pytest.fail("predicted before --out was checked"))
    code, err = run_predict(["--model", path, *inputs, "--out", out], capsys)
    assert code == 2 and err == [f"predict.py: error: --out {out} is one of the inputs{shown}, which the CSV would "
                                 "replace; name a new CSV file, e.g. predictions.csv"]
    assert {p: open(p, "rb").read() for p in before} == before
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("content", [b"", b"path,predicted_label,prob,top1_label,top1_prob,error\n"])
def test_out_that_exists_is_replaced_only_when_predict_wrote_it(tmp_path, capsys, monkeypatch, content):
    """Swapped arguments (``--out a.png b.png``) name an image that is no input: it is no CSV of predict.py,
    refused, kept byte for byte; so is any other file.  A CSV predict.py wrote (its header line, any top k) or
    an empty file (mktemp's) is replaced."""
    path, _ = exported(tmp_path)
    image = write_image(str(tmp_path / "a.png"), size=12)
    other = write_image(str(tmp_path / "b.png"), size=12, seed=1)
    notes = tmp_path / "notes.csv"
    notes.write_text("path,label\nx.png,ant\n")
    for out in (image, str(notes)):
        before = open(out, "rb").read()
        with monkeypatch.context() as patch:
            patch.setattr(predict, "predict", lambda *a, **k: pytest.fail("predicted before --out was checked"))
            code, err = run_predict(["--model", path, "--out", out, other], capsys)
        assert code == 2 and err == [f"predict.py: error: --out {out} exists and is not a CSV that predict.py wrote "
                                     "(its first line is not predict.py's header path,predicted_label,prob,...); "
                                     "name a new file, or remove this one first"]
        assert open(out, "rb").read() == before
    out = tmp_path / "p.csv"
    out.write_bytes(content)
    code = predict.main(["--model", path, other, "--out", str(out)])
    assert code == 0 and [r["path"] for r in read_csv(out)] == [other]
    assert out.read_text().splitlines()[0] == ",".join(predict.csv_columns(3))
