"""The review page (utils/report/review_page.py): its data, the duplicate groups, the page a run writes, and the page
itself driven in a real headless Chromium (tests/headless_browser.py; the ``browser`` fixture of conftest.py)."""
from __future__ import annotations

import base64
import csv
import json
import os
import re
import time

import numpy as np
import pytest
from PIL import Image

import acto
import clean_labels
import stage_1
import stage_2_class
from headless_browser import wait_for_file
from test_own_data_e2e import FAST, own_argv, write_small
from utils.report.identical_images import conflicting_duplicates
from utils.report.evidence import WrongEventTrials, score_text
from utils.report.review_page import ShownSamples, front_code, page_data, review_html, thumbnail_uri, write_review_page
from reference import sample_scores
from utils.report.sample_report import suspect_order

TAG = "test_resnet_scratch_imagefolder_real_0"
CLASSES = ["ant", "bee", "cat"]


def page_json(path) -> dict:
    text = open(path, encoding="utf-8").read()
    blob = re.search(r'<script type="application/json" id="review-data">(.*?)</script>', text, re.S).group(1)
    return json.loads(blob)  # "<\/" is JSON's escaped "/"


def decode_front_code(coded: dict) -> list[str]:
    """The page's exportPaths() in Python (UTF-16 code units, as JavaScript strings)."""
    prefix = np.frombuffer(base64.b64decode(coded["prefix"]), "<u2")
    length = np.frombuffer(base64.b64decode(coded["suffix_len"]), "<u4")
    units = coded["suffixes"].encode("utf-16-le", "surrogatepass")
    out, previous, at = [], b"", 0
    for p, n in zip(prefix, length):
        previous = previous[:2 * p] + units[at:at + 2 * n]
        at += 2 * n
        out.append(previous.decode("utf-16-le", "surrogatepass"))
    return out


def read_csv(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


# ------------------------------------------------------------------------------------------ pure parts

def test_identical_content_is_grouped_only_where_the_labels_differ():
    d = np.array([[1, 2], [3, 4], [1, 2], [5, 6], [3, 4], [1, 2], [7, 7], [7, 7]], np.uint8)
    given = np.array([0, 1, 2, 0, 1, 0, 3, 4])
    groups = conflicting_duplicates(d, given)
    # {0, 2, 5}: labels 0, 2, 0 differ; {1, 4}: both 1 (plain duplicates, no conflict); {6, 7}: 3 and 4
    assert [g.tolist() for g in groups] == [[0, 2, 5], [6, 7]]
    assert conflicting_duplicates(np.zeros((0, 16), np.uint8), np.zeros(0)) == []
    with pytest.raises(ValueError, match=r"expected digests \(N, D\) for 3 labels"):
        conflicting_duplicates(d, given[:3])


def test_the_digest_comes_with_the_same_image_as_load(tmp_path):
    from dataloader.base import ArrayImages, content_digest
    from dataloader.files import FileImagesWithDecoding

    path = tmp_path / "a.png"
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).convert("RGBA").save(path)
    files = FileImagesWithDecoding([str(path)])
    image, digest = files.load_with_digest(0)
    assert np.array_equal(np.asarray(image), np.asarray(files.load(0))) and image.mode == "RGB"
    assert digest == content_digest(path.read_bytes()) and len(digest) == 16
    pixels = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    image, digest = ArrayImages(pixels).load_with_digest(1)
    assert np.array_equal(np.asarray(image), pixels[1]) and digest == content_digest(pixels[1].tobytes())


def test_paths_are_front_coded_losslessly_and_the_page_is_self_contained():
    paths = ["/d/train/ant/0.png", "/d/train/ant/01.png", "/d/train/bée/ü 😀.png", "/d/train/bée/ü 😁.png",
             "/e/a,b\"c</script>.png", "/e"]
    coded = front_code(paths)
    assert decode_front_code(coded) == paths
    assert len(coded["suffixes"]) < sum(map(len, paths)) - 30  # shared prefixes are stored once
    thumb = thumbnail_uri(Image.new("RGB", (8, 4), (200, 10, 10)))
    assert thumb.startswith("data:image/jpeg;base64,")
    assert Image.open(__import__("io").BytesIO(base64.b64decode(thumb.split(",", 1)[1]))).size == (96, 48)
    shown = ShownSamples(index=np.array([4]), key=["e/x</script>"], given=np.array([1]), predicted=np.array([0]),
                         predicted_prob=np.array([0.9]), label_score=np.array([0.01]), thumbnail=[thumb])
    kw = dict(report="r", class_names=CLASSES, shown=shown, num_flagged=3, num_samples=6, export_paths=paths)
    data = page_data(export_labels=np.array([0, 0, 1, 1, 2, 2]), **kw)
    text = review_html(title="t <b>", data=data)
    assert text.count("</script>") == 2 and "<title>t &lt;b&gt;</title>" in text  # the data cannot end a script
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|<link|@import|url\(\s*["']?https?""", text)
    assert np.frombuffer(base64.b64decode(data["export"]["labels"]), "<u2").tolist() == [0, 0, 1, 1, 2, 2]
    other = page_data(export_labels=np.array([0, 0, 1, 1, 2, 1]), **kw)
    assert other["storage_key"] != data["storage_key"] and data["storage_key"].startswith("label-review:r:")
    with pytest.raises(ValueError, match="6 export paths but 5 export labels"):
        page_data(export_labels=np.zeros(5), **kw)


@pytest.mark.parametrize("score, text", [(8.3e-248, "< 0.001"), (0.0, "< 0.001"), (0.000999, "< 0.001"),
                                         (0.001, "0.001"), (0.0129, "0.012"), (0.03, "0.030"), (0.4996, "0.499"),
                                         (0.5, "0.500"), (1.0, "1.000")])
def test_a_score_reads_to_three_decimals_rounded_down_and_below_one_thousandth_as_such(score, text):
    assert score_text(score) == text


def test_cards_say_what_ido_saw_and_acto_what_its_report_has():
    thumb = thumbnail_uri(Image.new("RGB", (8, 8)))
    shown = ShownSamples(index=np.array([4, 0]), key=["a", "b"], given=np.array([1, 0]), predicted=np.array([0, 2]),
                         predicted_prob=np.array([0.93, 0.6]), label_score=np.array([8.3e-248, 0.0125]),
                         thumbnail=[thumb, thumb], wrong_events=np.array([20, 7]))
    kw = dict(report="r", class_names=CLASSES, shown=shown, num_flagged=2, num_samples=6, export_paths=None,
              export_labels=np.zeros(6))
    stage1 = page_data(trials=WrongEventTrials(stage1_epochs=20), **kw)
    assert stage1["shown"]["seen"] == ["wrong in 20 of 20 epochs", "wrong in 7 of 20 epochs"]
    assert stage1["seen_note"] == ("Wrong: in how many of the 20 stage-1 training epochs the model's prediction "
                                   "differed from the given label")
    stage2 = page_data(trials=WrongEventTrials(stage1_epochs=20, stage2_epochs=20), **kw)
    assert stage2["shown"]["seen"] == ["wrong in 20 of 60 predictions", "wrong in 7 of 60 predictions"]
    assert stage2["seen_note"] == ("Wrong: how many of the sample's 60 training predictions differed from the "
                                   "given label: one in each of 20 stage-1 epochs, then 2 (weak and strong "
                                   "augmentation) in each of 20 stage-2 epochs")
    assert stage2["shown"]["score_text"] == ["label score < 0.001", "label score 0.012"]
    acto = page_data(score_name="probability of the given label", **kw)  # no wrong events, no trials
    assert acto["shown"]["seen"] is None and acto["seen_note"] is None
    assert acto["shown"]["score_text"] == ["probability of the given label < 0.001",
                                           "probability of the given label 0.012"]


def test_the_counts_are_out_of_one_prediction_per_stage1_epoch_and_two_per_stage2_epoch():
    # the trials follow the steps that count: stage1_step records one view, stage2_step VIEWS
    import torch
    from utils.method.steps import VIEWS
    from utils.method.wrong_events import WrongEvents

    trials = WrongEventTrials(stage1_epochs=3, stage2_epochs=2)
    events = WrongEvents(4)
    labels, wrong = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    for _ in range(trials.stage1_epochs):
        events.record(torch.arange(4), wrong, labels=labels)
        events.end_epoch()
    for _ in range(trials.stage2_epochs):
        events.record(torch.arange(4), *[wrong] * VIEWS, labels=labels)
        events.end_epoch()
    assert events.counts.tolist() == [trials.total] * 4 == [7] * 4
    assert WrongEventTrials(stage1_epochs=1).card_line(0) == "wrong in 0 of 1 epoch"


@pytest.mark.slow
def test_a_run_writes_the_page_and_finds_an_identical_file_under_another_label(tmp_path):
    root, out = tmp_path / "data", tmp_path / "out"
    write_small(root, "imagefolder")
    (root / "train" / "cat" / "copy.png").write_bytes((root / "train" / "ant" / "2.png").read_bytes())
    (root / "train" / "ant" / "same.png").write_bytes((root / "train" / "ant" / "3.png").read_bytes())  # one label
    stage_1.main(own_argv("stage1", "imagefolder", root, out, "--epochs", "1", "--batch_size", "8",
                          "--set", "review_samples=2"))
    stem = out / "stage1" / TAG
    summary = json.loads((out / "stage1" / f"{TAG}_summary.json").read_text())
    assert summary["identical_files_under_different_labels"] == [
        {"paths": ["train/ant/2.png", "train/cat/copy.png"], "given_labels": ["ant", "cat"]}]
    data = page_json(f"{stem}_review.html")
    keys = [f"train/{c}/{n}" for c, names in (("ant", ["0.png", "1.png", "2.png", "3.png", "4.png", "5.png",
                                                          "same.png"]), ("bee", [f"{i}.png" for i in range(6)]),
                                               ("cat", ["0.png", "1.png", "2.png", "3.png", "4.png", "5.png",
                                                        "copy.png"])) for n in names]
    assert decode_front_code(data["export"]["paths"]) == [os.path.abspath(root / k) for k in keys]
    labels = np.frombuffer(base64.b64decode(data["export"]["labels"]), "<u2").tolist()
    assert labels == [0] * 7 + [1] * 6 + [2] * 7
    assert data["duplicates"] == [{"index": [2, 19], "key": ["train/ant/2.png", "train/cat/copy.png"]}]
    assert data["num_flagged"] == summary["num_flagged"] and len(data["shown"]["index"]) == min(2, data["num_flagged"])
    rows = [r for r in csv.DictReader(open(f"{stem}_samples.csv", encoding="utf-8")) if r["is_label_issue"] == "True"]
    assert data["shown"]["key"] == [r["path"] for r in rows[:2]]  # the most suspect flags, in the CSV's order
    assert len(data["thumbnails"]) == len(data["shown"]["index"])
    assert data["shown"]["seen"] == [f"wrong in {r['wrong_events']} of 1 epoch" for r in rows[:2]]

    # stage 2 (2 epochs) on stage 1's counts: out of 1 + 2 x 2 predictions, every count within it
    stage_2_class.main(own_argv("stage2", "imagefolder", root, out, "--epochs", "2", "--batch_size", "8"))
    stem = out / "stage2" / f"{TAG}_class"
    data = page_json(f"{stem}_review.html")
    rows = [r for r in csv.DictReader(open(f"{stem}_samples.csv", encoding="utf-8")) if r["is_label_issue"] == "True"]
    assert data["shown"]["seen"] == [f"wrong in {r['wrong_events']} of 5 predictions" for r in rows]
    assert all(int(r["wrong_events"]) <= 5 for r in csv.DictReader(open(f"{stem}_samples.csv", encoding="utf-8")))
    assert data["seen_note"].startswith("Wrong: how many of the sample's 5 training predictions")

    # ACTO counts no wrong events: no such line; its score is the robust model's probability of the given label
    acto.main(own_argv("acto", "imagefolder", root, out, "--epochs", "2", "--set", "warmup_epochs=1",
                       "--batch_size", "8"))
    stem = out / "acto" / TAG
    data = page_json(f"{stem}_review.html")
    rows = [r for r in csv.DictReader(open(f"{stem}_samples.csv", encoding="utf-8")) if r["is_label_issue"] == "True"]
    assert data["shown"]["seen"] is None and data["seen_note"] is None
    texts = data["shown"]["score_text"]
    assert len(texts) == len(rows) and all(t.startswith("probability of the given label ") for t in texts)
    for text, row in zip(texts, rows):  # the CSV's six digits, shown rounded down to three
        shown, value = text.removeprefix("probability of the given label "), float(row["label_score"])
        low = 0.0 if shown == "< 0.001" else float(shown)
        assert low - 1e-6 <= value < low + 0.001 + 1e-6


# ------------------------------------------------------------------------------------ in the browser

def small_page(tmp_path):
    """A page over the real files of a small tree, five flags with chosen predictions; returns
    (page path, absolute paths in dataset order, given labels, suspect order of the flags, predicted)."""
    root = tmp_path / "data"
    write_small(root, "imagefolder")
    paths = [str(root / "train" / c / f"{i}.png") for c in CLASSES for i in range(6)]
    given = np.repeat(np.arange(3), 6)
    flags = {1: 1, 7: 2, 13: 0, 2: 2, 8: 0}  # dataset index -> predicted class
    probs = np.full((18, 3), 0.05)
    probs[np.arange(18), given] = 0.9
    for rank, (i, p) in enumerate(flags.items()):
        probs[i] = 0.1
        probs[i, given[i]] = 0.02 + 0.01 * rank  # the order of the dict is the suspect order
        probs[i, p] = 0.8
    scores = sample_scores(probs, given)
    order = suspect_order(scores)
    page = write_review_page(scores, path=str(tmp_path / "small_review.html"), report="small", keys=[os.path.relpath(p, root) for p in paths],
                             class_names=CLASSES, load_image=lambda i: Image.open(paths[i]), order=order,
                             max_shown=1000, export_paths=paths, export_labels=given, title="small")
    return page, paths, given, list(flags), flags


def select(browser, selector: str, value: str) -> None:
    """Pick ``value`` in a <select> as a click in its list does (value set, change event)."""
    browser.evaluate(f"(() => {{ const s = document.querySelector({json.dumps(selector)}); s.value = {json.dumps(value)}; "
                     "s.dispatchEvent(new Event('change', {bubbles: true})); })()")


@pytest.mark.slow
def test_review_decide_reload_export_and_train_on_the_corrected_labels(browser, tmp_path, capsys):
    page, paths, given, suspects, predicted = small_page(tmp_path)
    browser.open("file://" + page)
    counts = "document.getElementById('counts').textContent"
    visible = ("[...document.querySelectorAll('.card')].filter(c => c.style.display !== 'none')"
               ".map(c => +c.dataset.index)")
    assert browser.evaluate(visible) == suspects
    assert browser.evaluate("document.getElementById('shown-note').textContent").startswith(
        "5 of 18 training labels flagged; the 5 most suspect are shown.")
    # filters: given bee (indices 7, 8), predicted ant (13, 8), the pair bee -> ant (8)
    select(browser, "#f-given", "1")
    assert browser.evaluate(visible) == [7, 8]
    select(browser, "#f-given", "")
    select(browser, "#f-pred", "0")
    assert browser.evaluate(visible) == [13, 8]
    select(browser, "#f-pred", "")
    select(browser, "#f-pair", "1>0")
    assert browser.evaluate(visible) == [8] and "1 of 5 shown samples match" in browser.evaluate(
        "document.getElementById('visible').textContent")
    select(browser, "#f-pair", "")
    assert browser.evaluate("document.querySelector('.card.focus').dataset.index") == "8"  # the filter's first card

    # keyboard on the focused card (a click on the first card's picture focuses it); each decision moves on
    browser.click(".card[data-index='1'] img")
    browser.press("p")            # 1: ant -> predicted bee
    browser.press("r")            # 7: removed
    browser.press("ArrowRight")   # skip 13
    browser.press("u")            # 2: unsure (keeps ant)
    browser.press("c")            # 8: the class list gets the focus
    assert browser.evaluate("document.activeElement.closest('.card').dataset.index") == "8"
    select(browser, ".card[data-index='8'] select", "2")  # 8: another class, cat
    browser.click(".card[data-index='13'] button[data-d='keep']")  # 13: keep, by a mouse click
    expected_counts = "decided 5 of 5: keep 1, predicted 1, other class 1, remove 1, unsure 1"
    assert browser.evaluate(counts) == expected_counts
    browser.press("x")            # the click focused 13: undo its decision, then decide it again by click
    assert browser.evaluate(counts).startswith("decided 4 of 5")
    browser.click(".card[data-index='13'] button[data-d='keep']")

    browser.reload()
    assert browser.evaluate(counts) == expected_counts
    assert browser.evaluate("[...document.querySelectorAll('.card')].map(c => c.className.split(' ')[1])") == [
        "d-predicted", "d-remove", "d-keep", "d-unsure", "d-other"]

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.allow_downloads(str(downloads))
    browser.click("#export-labels")
    browser.click("#export-decisions")
    corrected = wait_for_file(str(downloads / "corrected_labels.csv"))
    decisions = wait_for_file(str(downloads / "decisions.csv"))
    new = {1: 1, 7: None, 13: 2, 2: 0, 8: 2}  # dataset index -> class after the decisions (None: removed)
    expected = [["path", "class_name"]] + [[p, CLASSES[new.get(i, given[i])]] for i, p in enumerate(paths)
                                      if new.get(i, given[i]) is not None]
    assert read_csv(corrected) == expected
    assert read_csv(decisions) == [["path", "given", "decision", "new_label"],
                                   [paths[1], "ant", "predicted", "bee"], [paths[7], "bee", "remove", ""],
                                   [paths[13], "cat", "keep", "cat"], [paths[2], "ant", "unsure", "ant"],
                                   [paths[8], "bee", "other", "cat"]]

    # retrain on the corrected labels: the documented command; the run trains on exactly those labels
    out = tmp_path / "retrained"
    clean_labels.main([corrected, "--output_dir", str(out), *FAST, "--batch_size", "6", "--epochs", "1"])
    for stem in ("stage1/test_resnet_scratch_csv_real_0", "stage2/test_resnet_scratch_csv_real_0_class"):
        rows = read_csv(out / f"{stem}_samples.csv")
        column = rows[0].index("given_label")
        assert sorted((r[1], r[column]) for r in rows[1:]) == sorted(map(tuple, expected[1:]))


# class folders of issue 31 item 3: numbers (01 and 1 two classes, 02 not 2), surrounding spaces, CSV quoting
ODD_CLASSES = [" lead", "01", "02", "1", "10", "2", 'a,b"c', "caf\u00e9", "trail "]  # code-point order


@pytest.mark.slow
def test_class_names_survive_export_and_retraining_exactly(browser, tmp_path, capsys):
    """An imagefolder whose class names look like numbers or carry spaces: its page (listed as a run lists it),
    three decisions, the export, and stage 1 on the exported corrected_labels.csv: the same class names, and
    every file with the label the page exported."""
    from dataloader import build_data
    from fixtures_data import make_cfg, write_image
    from utils.report.sample_report import export_rows

    root = tmp_path / "data"
    for n, c in enumerate(ODD_CLASSES):
        for i in range(3):
            write_image(str(root / "train" / c / f"{i}.png"), size=12, seed=10 * n + i)
    data = build_data(make_cfg(dataset="imagefolder", data_path=str(root), noise_mode="real"), stage="stage1",
                      log=lambda m: None)
    classes = data.raw.extra["classes"]
    assert classes == ODD_CLASSES
    rows = export_rows(data)
    paths, given = rows["export_paths"], rows["export_labels"]
    flags = {0: 2, 3: 5, 7: 0}  # dataset index -> predicted class: ' lead' -> '02', '01' -> '2', '02' -> ' lead'
    probs = np.full((len(given), len(classes)), 0.01)
    probs[np.arange(len(given)), given] = 0.9
    for i, p in flags.items():
        probs[i, given[i]], probs[i, p] = 0.02, 0.9
    scores = sample_scores(probs, given)
    page = write_review_page(scores, path=str(tmp_path / "odd_review.html"), report="odd",
                             keys=list(data.train.images.keys), class_names=classes, load_image=data.raw.train_images.load,
                             order=suspect_order(scores), max_shown=1000, title="odd", **rows)
    browser.open("file://" + page)
    browser.click(".card[data-index='0'] img")
    browser.press("p")                                      # 0: ' lead' -> the predicted '02'
    browser.click(".card[data-index='3'] img")
    browser.press("c")                                      # the class list of card 3 gets the focus
    select(browser, ".card[data-index='3'] select", "3")     # 3: '01' -> another class, '1'
    browser.click(".card[data-index='7'] button[data-d='remove']")  # 7: removed
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.allow_downloads(str(downloads))
    browser.click("#export-labels")
    corrected = wait_for_file(str(downloads / "corrected_labels.csv"))
    new = {0: 2, 3: 3, 7: None}
    expected = {p: classes[new.get(i, given[i])] for i, p in enumerate(paths) if new.get(i, given[i]) is not None}
    exported = read_csv(corrected)
    assert exported[0] == ["path", "class_name"] and dict(exported[1:]) == expected and len(exported) == 27

    # retrain: stage 1 on the export trains on exactly these names and labels
    out = tmp_path / "retrained"
    stage_1.main(own_argv("stage1", "csv", downloads, out, "--set", f"train_csv={corrected}", "--epochs", "1",
                          "--batch_size", "8"))
    stem = out / "stage1" / "test_resnet_scratch_csv_real_0"
    summary = json.loads((stem.parent / f"{stem.name}_summary.json").read_text(encoding="utf-8"))
    assert [c["class"] for c in summary["classes"]] == ODD_CLASSES
    samples = read_csv(f"{stem}_samples.csv")
    column = samples[0].index("given_label")
    assert {str(root / r[1]): r[column] for r in samples[1:]} == expected


@pytest.mark.slow
def test_two_thousand_thumbnails_load_and_respond(browser, tmp_path, capsys):
    """Interactivity of a page with 2,000 thumbnails (logged, not asserted: machines differ)."""
    rng = np.random.default_rng(0)
    n, shown = 20000, 2000
    ramp = np.linspace(0, 255, 64, dtype=np.float32)
    thumbs = []
    for i in range(shown):
        pixels = (ramp[None, :, None] * rng.random(3) + ramp[:, None, None] * rng.random(3)) / 2
        thumbs.append(thumbnail_uri(Image.fromarray(pixels.astype(np.uint8))))
    index = rng.permutation(n)[:shown]
    data = page_data(report="big", class_names=[f"class {c}" for c in range(100)],
                     shown=ShownSamples(index=index, key=[f"train/{i}.jpg" for i in index],
                                        given=rng.integers(0, 100, shown), predicted=rng.integers(0, 100, shown),
                                        predicted_prob=rng.random(shown), label_score=rng.random(shown) / 2,
                                        thumbnail=thumbs),
                     num_flagged=3000, num_samples=n, export_paths=[f"/data/set/train/c{i % 100}/{i:06d}.jpg"
                                                                    for i in range(n)],
                     export_labels=np.arange(n) % 100)
    page = tmp_path / "big_review.html"
    page.write_text(review_html(title="big", data=data), encoding="utf-8")
    seconds = browser.open("file://" + str(page))
    marks = browser.evaluate("Object.fromEntries(performance.getEntriesByType('mark').map(m => [m.name, m.startTime]))")
    start = time.perf_counter()
    browser.press("p")
    browser.wait_for("document.getElementById('counts').textContent.startsWith('decided 1 of 2000')")
    key = time.perf_counter() - start
    start = time.perf_counter()
    select(browser, "#f-given", str(int(data["shown"]["given"][0])))
    filtered = time.perf_counter() - start
    assert browser.evaluate("document.querySelectorAll('.card').length") == shown
    assert "1000 flags not shown" in browser.evaluate("document.getElementById('shown-note').textContent")
    with capsys.disabled():
        print(f"\nreview page with {shown} thumbnails ({page.stat().st_size / 1e6:.1f} MB, {n} samples to export): "
              f"interactive {seconds:.2f} s after navigation (page's clock: HTML read {marks['review-script'] / 1000:.2f}"
              f" s, data parsed +{(marks['review-parsed'] - marks['review-script']) / 1000:.2f} s, cards built "
              f"+{(marks['review-ready'] - marks['review-parsed']) / 1000:.2f} s); a key decision {1000 * key:.0f} ms, "
              f"a filter {1000 * filtered:.0f} ms; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


# --------------------------------------------------------------------------- untrusted names, lost storage

# names that once ended the page's script or could start one: "<!--<script" put the HTML parser into the
# "script data double escaped" state, which swallowed the page's own script (0 cards, no error)
RAN = "window.ran=(window.ran||0)+1"
HOSTILE_CLASSES = ["<!--<script>", f"</script><script>{RAN}</script>", f'<img src=x onerror="{RAN}">',
                   "say \"hi\" & 'bye' &amp; \u2028\u2029"]  # no "-->": in the data it would end the escape
HOSTILE_FILES = ["<!--<script>.png", f"<img src=x onerror={RAN}>.png", 'q"uote\'s &lt;.png', "plain.png"]
# an init script (runs before the page's): records the page's uncaught errors
HOSTILE_TRIALS = WrongEventTrials(stage1_epochs=3, stage2_epochs=2)
RECORD_ERRORS = "window.errors = []; window.addEventListener('error', e => window.errors.push(String(e.message)));"


def hostile_page(tmp_path):
    """A page of eight flagged samples whose file and class names are all hostile; returns (page, shown keys
    in page order, export paths, given labels, predicted labels)."""
    n, classes = 8, HOSTILE_CLASSES
    given = np.arange(n) % len(classes)
    predicted = (given + 1) % len(classes)
    probs = np.full((n, len(classes)), 0.05)
    probs[np.arange(n), predicted] = 0.8 - 0.001 * np.arange(n)  # reads 0.79 (rounded down), not 0.80
    probs[np.arange(n), given] = 0.01 + 0.01 * np.arange(n)  # distinct: a determinate order
    keys = [f"train/{classes[given[i]]}/{i}{HOSTILE_FILES[i % len(HOSTILE_FILES)]}" for i in range(n)]
    paths = [f"/data/<!--<script>/{k}" for k in keys]
    scores = sample_scores(probs, given, label_score=probs[np.arange(n), given], wrong_events=np.arange(n) % 3 + 5)
    order = suspect_order(scores)
    page = write_review_page(scores, path=str(tmp_path / "hostile_review.html"), report="hostile</script>",
                             trials=HOSTILE_TRIALS,
                             keys=keys, class_names=classes, load_image=lambda i: Image.new("RGB", (8, 8), (30 * i, 0, 0)),
                             order=order, max_shown=100, export_paths=paths, export_labels=given,
                             title=f"<!--<script> {RAN}")
    return page, [keys[i] for i in order], paths, given, predicted, scores


def test_names_cannot_change_how_the_page_parses(tmp_path):
    page, shown_keys, paths, given, _, _ = hostile_page(tmp_path)
    text = open(page, encoding="utf-8").read()
    start = text.index('<script type="application/json" id="review-data">') + len(
        '<script type="application/json" id="review-data">')
    blob = text[start:text.index("</script>", start)]
    assert not set(blob) & set("<>&\u2028\u2029")  # nothing in the data can open, close or escape an element
    data = json.loads(blob)  # and it is the whole data: the first "</script>" after it is the block's own end
    assert data["classes"] == HOSTILE_CLASSES and data["shown"]["key"] == shown_keys
    assert decode_front_code(data["export"]["paths"]) == paths
    assert text.count("<script") == 2 and text.count("</script>") == 2  # the data block and the page's script
    assert "<!--" not in text  # nor can it open a comment anywhere (title included)


def storage_init(kind: str) -> str:
    """An init script that breaks localStorage the way a browser can: refused outright (storage disabled,
    some private modes), full (every write throws), or writes that do not stick."""
    return {"refused": "Object.defineProperty(window, 'localStorage', {configurable: true, get() { "
                       "throw new DOMException('access denied', 'SecurityError'); }});",
            "full": "Storage.prototype.setItem = function () { "
                    "throw new DOMException('quota', 'QuotaExceededError'); };",
            "lost": "Storage.prototype.setItem = function () {};"}[kind]


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["works", "refused", "full", "lost"])
def test_hostile_names_stay_text_and_a_lost_storage_is_said_and_exports_still_work(browser, tmp_path, storage):
    page, shown_keys, paths, given, predicted, scores = hostile_page(tmp_path)
    browser.send("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_ERRORS})
    if storage != "works":
        browser.send("Page.addScriptToEvaluateOnNewDocument", {"source": storage_init(storage)})
    browser.open("file://" + page)  # waits for the page's script to finish: it ran
    assert browser.evaluate("window.ran") is None and browser.evaluate("window.errors") == []
    assert browser.evaluate("document.scripts.length") == 2
    assert browser.evaluate("document.querySelectorAll('img').length") == len(shown_keys)  # the thumbnails only
    assert browser.evaluate("document.title") == f"<!--<script> {RAN}"
    # the names read back exactly as the page shows them
    assert browser.evaluate("[...document.querySelectorAll('.card .path')].map(e => e.textContent)") == shown_keys
    assert browser.evaluate("[...document.querySelectorAll('.card img')].map(e => e.alt)") == shown_keys
    index = browser.evaluate("[...document.querySelectorAll('.card')].map(c => +c.dataset.index)")
    assert browser.evaluate("[...document.querySelectorAll('.card .labels')].map(e => e.textContent)") == [
        f"given {HOSTILE_CLASSES[given[i]]} \u2192 predicted {HOSTILE_CLASSES[predicted[i]]} "
        f"(probability {'0.79' if i else '0.80'})"
        for i in index]
    assert browser.evaluate("[...document.querySelectorAll('#f-given option')].slice(1).map(o => o.textContent)") == \
        HOSTILE_CLASSES
    # what IDO saw, in words: the count out of its predictions, the score as shown
    assert browser.evaluate("[...document.querySelectorAll('.card .seen')].map(e => e.textContent)") == [
        f"wrong in {scores.wrong_events[i]} of 7 predictions" for i in index]
    assert browser.evaluate("[...document.querySelectorAll('.card .score')].map(e => e.textContent)") == [
        f"label score {score_text(scores.label_score[i])}" for i in index]
    assert browser.evaluate("document.getElementById('seen-note').textContent") == HOSTILE_TRIALS.describe() + "."
    warning = "document.getElementById('storage').hidden ? '' : document.getElementById('storage').textContent"
    if storage == "refused":  # said at once: nothing can be read
        assert browser.evaluate(warning) == (
            "Decisions cannot be kept in this browser (localStorage: SecurityError): they live in this page only and "
            "are lost on reload or close. Export corrected_labels.csv or decisions.csv before leaving.")
    else:
        assert browser.evaluate(warning) == ""

    # decide three cards by click: predicted, remove, another class (the hostile class 1)
    browser.click(f".card[data-index='{index[0]}'] button[data-d='predicted']")
    browser.click(f".card[data-index='{index[1]}'] button[data-d='remove']")
    other = f".card[data-index='{index[2]}'] select"
    browser.evaluate(f"document.querySelector({json.dumps(other)}).focus()")  # focus fills its class list
    assert browser.evaluate(f"[...document.querySelector({json.dumps(other)}).options].slice(1)"
                            ".map(o => o.textContent)") == HOSTILE_CLASSES
    select(browser, other, "1")
    assert browser.evaluate("document.getElementById('counts').textContent").startswith("decided 3 of 8")
    why = {"works": None, "refused": "SecurityError", "full": "QuotaExceededError", "lost": "read back differs"}[storage]
    if why is None:
        assert browser.evaluate(warning) == ""
    else:
        assert browser.evaluate(warning).startswith(f"Decisions cannot be kept in this browser (localStorage: {why}):")

    # the exports come from the page's memory, whatever the storage did
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.allow_downloads(str(downloads))
    browser.click("#export-labels")
    browser.click("#export-decisions")
    new = {index[0]: int(predicted[index[0]]), index[1]: None, index[2]: 1}
    assert read_csv(wait_for_file(str(downloads / "corrected_labels.csv"))) == [["path", "class_name"]] + [
        [p, HOSTILE_CLASSES[new.get(i, given[i])]] for i, p in enumerate(paths) if new.get(i, given[i]) is not None]
    assert read_csv(wait_for_file(str(downloads / "decisions.csv"))) == [
        ["path", "given", "decision", "new_label"],
        [paths[index[0]], HOSTILE_CLASSES[given[index[0]]], "predicted", HOSTILE_CLASSES[predicted[index[0]]]],
        [paths[index[1]], HOSTILE_CLASSES[given[index[1]]], "remove", ""],
        [paths[index[2]], HOSTILE_CLASSES[given[index[2]]], "other", HOSTILE_CLASSES[1]]]
    assert browser.evaluate("window.ran") is None and browser.evaluate("window.errors") == []
