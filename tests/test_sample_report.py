"""The per-sample report's pure functions (order, flags, summary), its files, and the exported model format."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from model import create_model
from model.export import FORMAT, KEYS, load_exported, read_exported, transform_spec
from utils.core.errors import DataError
import utils.report.sample_report as report
from utils.training.outputs import ReportFiles
from reference import sample_rows, sample_scores
from utils.report.sample_report import stage1_label_score, summarize, suspect_order, unjudged_classes, \
    write_sample_report, write_samples_csv

PROBS = np.array([[0.9, 0.1, 0.0],   # given 0, predicted 0
                  [0.2, 0.7, 0.1],   # given 0, predicted 1
                  [0.1, 0.1, 0.8],   # given 2, predicted 2
                  [0.6, 0.3, 0.1],   # given 1, predicted 0
                  [0.3, 0.3, 0.4]])  # given 1, predicted 2
GIVEN = np.array([0, 0, 2, 1, 1])


def test_without_a_score_the_given_label_probability_and_disagreement_decide():
    s = sample_scores(PROBS, GIVEN)
    assert s.label_score.tolist() == [0.9, 0.2, 0.8, 0.3, 0.3]
    assert s.is_label_issue.tolist() == [False, True, False, True, True]
    assert s.predicted_label.tolist() == [0, 1, 2, 0, 2] and s.predicted_prob.tolist() == [0.9, 0.7, 0.8, 0.6, 0.4]
    # flagged first, each part by ascending score; the tie 0.3 / 0.3 goes to the more confident disagreement (3: 0.6)
    assert suspect_order(s).tolist() == [1, 3, 4, 2, 0]


def test_a_clean_posterior_flags_below_one_half_and_ties_go_to_more_wrong_events():
    s = sample_scores(PROBS, GIVEN, label_score=np.array([0.9, 0.49, 0.5, 0.1, 0.1]),
                      wrong_events=np.array([0, 3, 4, 5, 9]))
    assert s.is_label_issue.tolist() == [False, True, False, True, True]
    assert suspect_order(s).tolist() == [4, 3, 1, 2, 0]


def test_scores_equal_as_shown_go_to_more_wrong_events_then_the_most_confident_disagreement():
    # every score below 0.001 reads "< 0.001" and ranks as one: a class-wise mixture gives each class its own
    # tiny posterior for the most wrong events, and ordered by those values one class filled the first screen
    score = np.array([8.3e-248, 5e-4, 1e-9, 0.0125, 0.0129, 3e-5, 1e-7, 0.0, 0.7])
    events = np.array([10, 10, 10, 10, 10, 10, 10, 9, 0])
    given = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
    predicted = np.array([1, 2, 2, 1, 1, 0, 0, 2, 2])  # 2, 4 and 6 agree with their given label
    prob = np.array([0.6, 0.95, 0.9, 0.5, 0.55, 0.7, 0.4, 0.99, 0.9])
    s = report.scores_from_predictions(predicted, prob, np.zeros(9), given, label_score=score, wrong_events=events)
    # "< 0.001" with 10 events: disagreements by confidence (1: 0.95, 5: 0.7, 0: 0.6), then agreements, the less
    # confident first (6: 0.4, 2: 0.9); then 7 (fewer events, however confident); then "0.012": 3 (disagrees)
    # before 4 (agrees); then the unflagged 8
    assert suspect_order(s).tolist() == [1, 5, 0, 6, 2, 7, 3, 4, 8]
    # the classes of the first three: 1, 2, 0 (ordered by the exact score they were 0, 0, 2: one class first)
    assert given[suspect_order(s)[:3]].tolist() == [1, 2, 0]
    # the report's numbers are the same values: only their order changed
    assert s.label_score.tolist() == score.tolist() and s.predicted_prob.tolist() == prob.tolist()


def test_summary_counts_and_detection_quality():
    true = np.array([0, 1, 2, 1, 0])  # samples 1 and 4 carry wrong labels
    s = sample_scores(PROBS, GIVEN, true_label=true)
    summary = summarize(s, num_classes=3, class_names=["a", "b", "c"])
    assert summary["num_samples"] == 5 and summary["num_flagged"] == 3
    assert [(c["class"], c["given"], c["flagged"]) for c in summary["classes"]] == [("a", 2, 1), ("b", 2, 2),
                                                                                     ("c", 1, 0)]
    assert summary["flagged_given_to_predicted"]["counts"] == [[0, 1, 0], [1, 0, 1], [0, 0, 0]]
    det = summary["detection"]
    assert det["num_wrong_labels"] == 2 and det["precision"] == pytest.approx(2 / 3) and det["recall"] == 1.0
    # AUC of the given-label probability as a clean score: clean 0.9, 0.8, 0.3 against noisy 0.2, 0.3
    assert det["auc"] == pytest.approx((3 + 2 + 0.5) / 6)
    assert summarize(sample_scores(PROBS, GIVEN), num_classes=3, class_names=None)["detection"] is None


def test_stage1_score_separates_many_from_few_wrong_events():
    counts = np.array([0] * 80 + [1] * 10 + [15] * 10 + [18] * 10)
    score = stage1_label_score(counts)
    assert (score[:90] > 0.5).all() and (score[90:] < 0.5).all()


def test_written_files_agree(tmp_path):
    true = np.array([0, 1, 2, 1, 0])
    s = sample_scores(PROBS, GIVEN, true_label=true, wrong_events=np.array([1, 5, 0, 3, 2]),
                      label_score=np.array([0.9, 0.1, 0.95, 0.2, 0.4]))
    paths = [f"train/{i}" for i in range(5)]
    images = [Image.new("RGB", (8, 8), (i * 40, 0, 0)) for i in range(5)]
    files = write_sample_report(s, files=ReportFiles.at(str(tmp_path / "r")), paths=paths, class_names=["a", "b", "c"], num_classes=3,
                                load_image=images.__getitem__, grid=2, title="t")
    with open(files["samples"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["index", "path", "given_label", "predicted_label", "predicted_prob", "wrong_events",
                             "label_score", "is_label_issue", "true_label"]
    assert [r["index"] for r in rows] == ["1", "3", "4", "0", "2"]
    assert rows[0] == {"index": "1", "path": "train/1", "given_label": "a", "predicted_label": "b",
                       "predicted_prob": "0.7", "wrong_events": "5", "label_score": "0.1", "is_label_issue": "True",
                       "true_label": "b"}
    summary = json.loads(open(files["summary"]).read())
    assert summary["num_flagged"] == sum(r["is_label_issue"] == "True" for r in rows) == 3
    assert summary == summarize(s, num_classes=3, class_names=["a", "b", "c"])
    assert Image.open(files["suspects"]).size[0] > 100
    assert rows == [{k: str(v) for k, v in r.items()} for r in sample_rows(s, paths=paths, class_names=["a", "b", "c"])]


def test_streamed_csv_equals_a_dict_writer_over_the_rows(tmp_path, monkeypatch):
    # chunks of two rows; paths and class names that need quoting; no truth and no wrong events
    monkeypatch.setattr(report, "CSV_CHUNK_ROWS", 2)
    names = ['a,1', 'b "x"', "c"]
    paths = ["train/0", "dir, with comma/1.png", 'q"uote/2.png', "train/3", "caf\u00e9/4.png"]
    for s in (sample_scores(PROBS, GIVEN),
              sample_scores(PROBS, GIVEN, true_label=np.array([0, 1, 2, 1, 0]), wrong_events=np.arange(5),
                            label_score=np.array([1e-9, 0.25, 0.5, 0.123456789, 0.49]))):
        path = write_samples_csv(s, str(tmp_path / "s.csv"), paths=paths, class_names=names)
        rows = sample_rows(s, paths=paths, class_names=names)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        assert open(path, encoding="utf-8", newline="").read() == buffer.getvalue()
    assert not list(tmp_path.glob(".*tmp"))


def test_a_class_the_mixture_cannot_separate_is_not_judged():
    # class 0: 6 samples with counts to separate; class 1: all counts equal; class 2: 3 samples
    given = np.array([0] * 6 + [1] * 6 + [2] * 3)
    counts = np.array([0, 0, 0, 1, 9, 9] + [4] * 6 + [0, 5, 9])
    reasons = unjudged_classes(counts, given, num_classes=4, class_wise=True)
    assert reasons == {1: "all 6 samples have 4 wrong events",
                       2: "3 samples, fewer than the 5 a mixture needs"}  # class 3 has no samples: not listed
    posterior = np.full(15, 0.4999995)  # what the fit gives a degenerate class (u = 0.5)
    posterior[:6] = [0.9, 0.9, 0.9, 0.8, 0.1, 0.1]
    probs = np.eye(4)[np.r_[given[:6], [0] * 9]] * 0.7 + 0.075
    s = sample_scores(probs, given, label_score=posterior, wrong_events=counts, not_judged=reasons)
    assert s.label_score[6:].tolist() == [0.5] * 9 and not s.is_label_issue[6:].any()
    assert s.is_label_issue[:6].tolist() == [False] * 4 + [True] * 2
    assert (s.is_label_issue == (s.label_score < 0.5)).all()  # the README's rule, every row
    assert posterior[6] == 0.4999995  # the caller's array (the training side's posterior) is left alone
    summary = summarize(s, num_classes=4, class_names=None)
    assert summary["not_judged"] == [{"class": "1", "given": 6, "reason": "all 6 samples have 4 wrong events"},
                                     {"class": "2", "given": 3, "reason": "3 samples, fewer than the 5 a mixture needs"}]
    assert [c["flagged"] for c in summary["classes"]] == [2, 0, 0, 0]
    # one global mixture: judged as a whole
    assert unjudged_classes(counts, given, num_classes=4, class_wise=False) == {}
    flat = unjudged_classes(np.full(15, 2), given, num_classes=4, class_wise=False)
    assert set(flat) == {0, 1, 2} and flat[0] == "whole training set: all 15 samples have 2 wrong events"


def test_not_judging_leaves_the_stage2_training_weights_as_fitted():
    # the report's 0.5 is the report's alone: the loss weights of a degenerate class stay the mixture's
    from utils.method.sample_weights import SampleWeights
    from utils.method.losses import loss_weights

    given = np.array([0] * 6 + [1] * 6)
    counts = np.array([0, 0, 1, 2, 8, 9] + [4] * 6)
    weights = SampleWeights(class_wise=True, noisy_labels=given, num_classes=2, device=torch.device("cpu"),
                            new_events=2)
    weights.fit(counts, iterations=2)
    fitted = weights.bmm.evaluate(counts, given)
    expected = loss_weights(**{k: torch.as_tensor(v, dtype=torch.float32) for k, v in fitted.items()},
                            noisy_weight="one_minus_clean")
    got = weights(torch.as_tensor(counts), torch.arange(12))
    assert torch.allclose(got, expected, atol=1e-6)
    assert fitted["clean_posterior"][6] != 0.5  # the degenerate class trains with the fit's value


# --------------------------------------------------------------------------------------- exported model

def exported(tmp_path, **changes):
    model = create_model("test_resnet", num_classes=3, img_size=16)
    payload = {"format": FORMAT, "model": model.state_dict(), "backbone": "test_resnet", "timm_name": "test_resnet",
               "num_classes": 3, "class_names": ["a", "b", "c"], "resolution": 16, "mean": [0.5] * 3,
               "std": [0.25] * 3, "test_transform": transform_spec(family="small", resolution=16, large=None),
               "dataset": "digits", **changes}
    path = tmp_path / "m.pt"
    torch.save(payload, path)
    return str(path), model


def test_exported_model_round_trip(tmp_path):
    path, model = exported(tmp_path)
    loaded, meta = load_exported(path)
    assert set(meta) == set(KEYS)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(loaded(x)[1], model.eval()(x)[1])


@pytest.mark.parametrize("content, words", [
    (None, "does not exist"),
    (b"not a torch file", "is not an exported model ("),
    ({"backbone.x": torch.zeros(1)}, "is not an exported model (no format 'ido-model/1')"),
])
def test_foreign_model_files_are_refused(tmp_path, content, words):
    path = tmp_path / "x.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(DataError) as err:
        read_exported(str(path))
    assert words in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
