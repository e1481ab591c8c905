"""Own data without a test set: ``val_fraction`` holds out a seeded, class-stratified share of the training images,
scored on their given labels (``val_acc_given_labels``, never ``test_acc``); with neither, the run trains without
evaluation and still writes the model and the report."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import acto
import stage_1
import stage_2
import stage_2_class
from dataloader import build_data
from dataloader.holdout import stratified_holdout
from fixtures_data import make_cfg, write_text
from utils.training.accuracy_keys import acc_key, accuracy_summary, describe_accuracies, describe_result
from test_own_data import cli, run_cli, write_tree
from test_own_data_e2e import own_argv

TREE = {f"train/{c}": [f"{i}.png" for i in range(n)] for c, n in (("ant", 10), ("bee", 6), ("cat", 4))}


def load(**values):
    return build_data(make_cfg("stage1", **values), stage="stage1", log=lambda m: None)


def test_stratified_holdout_is_seeded_stratified_and_disjoint():
    labels = np.repeat([2, 0, 1], [40, 20, 7])[np.random.default_rng(5).permutation(67)]
    train, held = stratified_holdout(labels, fraction=0.25, seed=3)
    assert np.array_equal(np.sort(np.concatenate([train, held])), np.arange(67))  # a partition ...
    assert np.all(np.diff(train) > 0) and np.all(np.diff(held) > 0)  # ... in dataset order
    assert [int(np.sum(labels[held] == c)) for c in range(3)] == [5, 2, 10]  # round(0.25 n_c): 20, 7, 40
    again, _ = stratified_holdout(labels, fraction=0.25, seed=3)
    other, _ = stratified_holdout(labels, fraction=0.25, seed=4)
    assert np.array_equal(again, train) and not np.array_equal(other, train)
    assert len(stratified_holdout(labels, fraction=0.0, seed=3)[1]) == 0
    assert len(stratified_holdout(np.array([0, 1, 1]), fraction=0.49, seed=0)[0]) == 2  # each class keeps one


@pytest.mark.parametrize("dataset", ["imagefolder", "csv"])
def test_val_fraction_holds_out_training_images(dataset, tmp_path):
    write_tree(tmp_path, TREE)
    keys = [f"{folder}/{name}" for folder, names in sorted(TREE.items()) for name in names]
    write_text(str(tmp_path / "train.csv"), ["path,label"] + [f"{k},{k.split('/')[1]}" for k in keys])
    data = load(dataset=dataset, data_path=str(tmp_path), noise_mode="real", val_fraction=0.2, seed=1)
    assert list(data.test_sets) == ["val_given_labels"] and data.test_name == "val_given_labels"
    train_keys, val_keys = data.train.images.keys, data.test.images.keys
    assert sorted(train_keys + val_keys) == sorted(keys) and not set(train_keys) & set(val_keys)
    assert train_keys == [k for k in keys if k in set(train_keys)]  # the training part keeps the dataset order
    assert [sum(k.split("/")[1] == c for k in val_keys) for c in ("ant", "bee", "cat")] == [2, 1, 1]
    names = data.raw.extra["classes"]
    assert [names[y] for y in data.test.labels] == [k.split("/")[1] for k in val_keys]  # scored on given labels
    assert len(data.noisy_labels) == len(data.train) == 16
    fingerprints = {load(dataset=dataset, data_path=str(tmp_path), noise_mode="real", val_fraction=f, seed=s)
                    .fingerprint for f, s in ((0.2, 1), (0.2, 2), (0.4, 1), (0.0, 1))}
    assert data.fingerprint in fingerprints and len(fingerprints) == 4  # the training part differs


def read_json(path):
    return json.loads(path.read_text())


@pytest.mark.slow
def test_val_fraction_named_on_the_given_labels_in_every_result(tmp_path):
    root, out = tmp_path / "data", tmp_path / "out"
    write_tree(root, TREE)
    tag = "test_resnet_scratch_imagefolder_real_0"
    argv = ["--set", "val_fraction=0.2", "--epochs", "1", "--batch_size", "8"]
    stage_1.main(own_argv("stage1", "imagefolder", root, out, *argv))
    stage_2.main(own_argv("stage2", "imagefolder", root, out, *argv))
    result = acto.main(own_argv("acto", "imagefolder", root, out, *argv[:2], "--epochs", "2", "--set",
                                "warmup_epochs=1", "--batch_size", "8"))
    stage1 = read_json(out / "stage1" / f"{tag}_wrongevent.json")
    stage2 = read_json(out / "stage2" / f"{tag}_global.json")
    assert stage1["num_samples"] == 16 and len(stage1["val_acc_given_labels"]) == 1
    assert {"val_acc_given_labels", "val_last_acc_given_labels", "val_best_acc_given_labels",
            "val_base_acc_given_labels"} <= set(stage2)
    assert {"val_acc_given_labels", "val_last_acc_given_labels", "ntm_val_acc_given_labels",
            "ntm_val_best_acc_given_labels"} <= set(result)
    assert len(result["val_acc_given_labels"]) == 2
    for saved in (stage1, stage2, result):  # never a clean-accuracy name
        assert not {"test_acc", "last_acc", "best_acc", "base_acc", "ntm_test_acc", "last_k_mean"} & set(saved)
    for run in ("stage1_" + tag, f"stage2_{tag}_global", "acto_" + tag):
        with open(out / "checkpoint" / run / "metrics.csv", newline="") as f:
            header = next(csv.reader(f))
        assert "val_acc_given_labels" in header and "test_acc" not in header
        log = (out / "checkpoint" / run / "train.log").read_text()
        assert "val_acc_given_labels" in log and "test acc" not in log
    with open(out / "stage2" / f"{tag}_global_samples.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16 == len(np.load(out / "stage1" / f"{tag}_wrongevent.npy"))  # training part only


@pytest.mark.slow
def test_no_test_set_and_no_val_fraction_trains_without_evaluation(tmp_path):
    root, out = tmp_path / "data", tmp_path / "out"
    write_tree(root, TREE)
    keys = [f"{folder}/{name}" for folder, names in sorted(TREE.items()) for name in names]
    write_text(str(root / "train.csv"), ["path,label"] + [f"{k},{k.split('/')[1]}" for k in keys])
    tag = "test_resnet_scratch_csv_real_0"
    argv = ["--epochs", "1", "--batch_size", "8"]
    stage_1.main(own_argv("stage1", "csv", root, out, *argv))
    stage2 = stage_2_class.main(own_argv("stage2", "csv", root, out, *argv))
    result = acto.main(own_argv("acto", "csv", root, out, "--epochs", "2", "--set", "warmup_epochs=1",
                                "--batch_size", "8"))
    stage1 = read_json(out / "stage1" / f"{tag}_wrongevent.json")
    for saved in (stage1, stage2, result):
        assert not [k for k in saved if "acc" in k and not k.startswith("train_acc")], saved.keys()
    for stem in (f"stage2/{tag}_class", f"acto/{tag}"):
        assert (out / f"{stem}_model.pt").is_file()
        for suffix in ("_samples.csv", "_summary.json", "_suspects.png"):
            assert (out / f"{stem}{suffix}").is_file()
    for run in ("stage1_" + tag, f"stage2_{tag}_class", "acto_" + tag):
        log = (out / "checkpoint" / run / "train.log").read_text()
        assert log.count("training without evaluation") == 1, run


@pytest.mark.parametrize("case, expected", [
    ("half", "error: config key 'val_fraction' (from --set) must be < 0.5, got 0.5"),
    ("negative", "error: config key 'val_fraction' (from --set) must be >= 0.0, got -0.1"),
    ("with_test", "error: config key 'val_fraction' holds out training images only without a test set; {root} has "
                  "1 test images (val/ or test/ folders): remove the key"),
    ("too_small", "error: config key 'val_fraction' 0.1 holds out no image of 3 (2 classes); raise it or add val/ "
                  "or test/ folders"),
])
def test_bad_val_fraction_one_line_exit_2(case, expected, tmp_path, capsys):
    root = tmp_path / "data"
    layout = {"train/a": ["1.png", "2.png"], "train/b": ["3.png"]}
    write_tree(root, layout | ({"val/a": ["4.png"]} if case == "with_test" else {}))
    value = {"half": "0.5", "negative": "-0.1", "with_test": "0.2", "too_small": "0.1"}[case]
    code, err = run_cli(cli("imagefolder", root, tmp_path / "out", "--set", f"val_fraction={value}"), capsys)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err == f"{err.split(': ', 1)[0]}: {expected.format(root=root)}"
    assert not (tmp_path / "out" / "stage1").exists()


def test_val_fraction_refused_for_a_set_with_its_test_set(capsys, tmp_path):
    code, err = run_cli(["--set", "val_fraction=0.1", "--device", "cpu", "--output_dir", str(tmp_path)], capsys)
    assert code == 2 and err.endswith("error: config key 'val_fraction' holds out training images of imagefolder or "
                                      "csv data without a test set; digits has its test set: remove the key")


def test_accuracy_keys_keep_the_paper_names_and_qualify_given_labels():
    assert [acc_key("test", k) for k in (None, "last", "best", "base")] == ["test_acc", "last_acc", "best_acc",
                                                                             "base_acc"]
    assert [acc_key("imagenet_val", k) for k in (None, "last")] == ["imagenet_val_acc", "imagenet_val_last_acc"]
    assert [acc_key("val_given_labels", k) for k in (None, "best")] == ["val_acc_given_labels",
                                                                         "val_best_acc_given_labels"]
    history = [{"test_acc": 50.0, "val_acc_given_labels": 40.0}, {"test_acc": 45.0, "val_acc_given_labels": 60.0}]
    assert accuracy_summary(history, ["val_given_labels"]) == {
        "val_acc_given_labels": [40.0, 60.0], "val_last_acc_given_labels": 60.0, "val_best_acc_given_labels": 60.0}
    assert describe_result(accuracy_summary(history, ["test"], base={"test": 30.0}), ["test"], base=True) == \
        "last acc 45.00 (best 50.00, base model 30.00)"
    assert describe_accuracies({"val_given_labels": 12.345}) == "val_acc_given_labels 12.35"
    assert describe_accuracies({}) == "no evaluation" and accuracy_summary(history, []) == {}


@pytest.mark.parametrize("seed", [0, 3])
def test_stratified_holdout_draws_what_the_per_class_scan_drew(seed):
    # the O(N log N) version takes each class's members from one stable sort: same draws as the old
    # O(N C) scan (flatnonzero per class), kept here as the reference
    labels = np.random.default_rng(seed).integers(0, 40, 5000) * 3  # sparse labels, uneven classes
    labels[:7] = 500  # a class of seven

    def per_class_scan(labels, fraction, seed):
        rng = np.random.default_rng(seed)
        held = np.zeros(len(labels), dtype=bool)
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            held[rng.permutation(members)[:int(round(fraction * len(members)))]] = True
        return np.flatnonzero(~held), np.flatnonzero(held)

    for fraction in (0.0, 0.1, 0.37):
        got, want = stratified_holdout(labels, fraction=fraction, seed=seed), per_class_scan(labels, fraction, seed)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
