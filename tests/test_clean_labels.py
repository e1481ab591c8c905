"""clean_labels.py (one command for both stages) and the refusal to overwrite another run's outputs."""
from __future__ import annotations

import json
import os

import pytest

import clean_labels
import stage_1
import stage_2_class
from test_own_data_e2e import FAST, own_argv, write_small
from utils.core.errors import ConfigError, DataError
from utils.core.entry import run_main
from reference import stage1_complete

TAG = "test_resnet_scratch_imagefolder_real_0"
TINY = [*FAST, "--batch_size", "6", "--epochs", "1"]


def config_of(out, run: str) -> str:
    with open(os.path.join(out, "checkpoint", run, "config.yaml"), encoding="utf-8") as f:
        return f.read()


@pytest.mark.slow
def test_one_command_runs_both_stages_passes_each_setting_once_and_skips_a_finished_stage1(tmp_path, capsys):
    root, out = tmp_path / "data", tmp_path / "out"
    write_small(root, "imagefolder")
    argv = [str(root), "--output_dir", str(out), *TINY, "--set", "randaug_n=1", "--set", "frozen=true"]
    clean_labels.main(argv)
    last = capsys.readouterr().out.strip().splitlines()[-3:]
    stem = f"{out}/stage2/{TAG}_class"
    assert last == [f"stage_2_class: review page {stem}_review.html", f"stage_2_class: samples CSV {stem}_samples.csv",
                    f"stage_2_class: model for predict.py {stem}_model.pt"]
    assert all(os.path.isfile(p) for p in (f"{stem}_review.html", f"{stem}_samples.csv", f"{stem}_model.pt",
                                           f"{out}/stage1/{TAG}_review.html"))
    stage1, stage2 = config_of(out, f"stage1_{TAG}"), config_of(out, f"stage2_{TAG}_class")
    for text in (stage1, stage2):  # the data, the model and the named options reach both stages
        assert f"data_path: {root}\n" in text and "resolution: 16\n" in text and "batch_size: 6\n" in text
    assert "frozen: true\n" in stage1 and "randaug_n: 1\n" in stage2  # a --set key goes where it is used
    assert "randaug_n" not in stage1 and "frozen" not in stage2

    meta = f"{out}/stage1/{TAG}_wrongevent.json"
    before = os.stat(meta).st_mtime_ns
    clean_labels.main(argv)
    assert f"stage 1 of this data and these settings is complete ({meta})" in capsys.readouterr().out
    assert os.stat(meta).st_mtime_ns == before  # not run again

    # a stage 1 written before a key existed (the key absent from its settings) trained at the key's default
    args = clean_labels.build_parser().parse_args(argv)
    stage1_argv = clean_labels.stage_argv(args, clean_labels.STAGE1, *clean_labels.data_settings(args.data))
    cfg = clean_labels.configs_of({clean_labels.STAGE1: stage1_argv})[clean_labels.STAGE1]
    stage1_done = (lambda: stage1_complete(cfg, lambda: clean_labels.fingerprint_of(cfg, clean_labels.STAGE1)))
    with open(meta, encoding="utf-8") as f:
        record = json.load(f)
    assert record["settings"]["decode_background"] == "white"  # the default
    del record["settings"]["decode_background"]
    with open(meta, "w", encoding="utf-8") as f:
        json.dump(record, f)
    assert stage1_done() == meta
    record["settings"]["decode_background"] = "black"
    with open(meta, "w", encoding="utf-8") as f:
        json.dump(record, f)
    assert stage1_done() is None
    record["settings"]["decode_background"] = "white"
    with open(meta, "w", encoding="utf-8") as f:
        json.dump(record, f)
    before = os.stat(meta).st_mtime_ns

    # other settings for stage 1 (another epoch count): stage 1 runs again, on the same data and seed
    clean_labels.main(argv + ["--epochs", "2"])
    assert "is complete" not in capsys.readouterr().out and os.stat(meta).st_mtime_ns != before


@pytest.mark.slow
def test_another_seed_in_the_same_output_dir_is_refused_before_anything_is_written(tmp_path, capsys):
    root, out = tmp_path / "data", tmp_path / "out"
    write_small(root, "imagefolder")
    stage_1.main(own_argv("stage1", "imagefolder", root, out, *TINY[len(FAST):]))
    meta = out / "stage1" / f"{TAG}_wrongevent.json"
    run_dir = out / "checkpoint" / f"stage1_{TAG}"
    files = {p: p.stat().st_mtime_ns for p in (meta, out / "base_model" / f"{TAG}.pt", run_dir / "train.log",
                                               run_dir / "config.yaml", run_dir / "last.pt")}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run_main(clean_labels.main, [str(root), "--output_dir", str(out), *TINY, "--seed", "1"])
    line = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(line) == 1
    assert line[0].endswith(f": error: {meta} holds the outputs of another run (seed 0, this run seed 1), which this "
                            f"run would overwrite; use another --output_dir (e.g. {out}_seed1), or --set "
                            "overwrite=true to replace them")
    assert {p: p.stat().st_mtime_ns for p in files} == files
    assert not (out / "stage2").exists()


@pytest.mark.slow
def test_other_data_is_refused_and_the_same_run_resumes_or_overwrites_on_request(tmp_path):
    first, second, out = tmp_path / "first", tmp_path / "second", tmp_path / "out"
    write_small(first, "imagefolder")
    write_small(second, "imagefolder")
    os.remove(second / "train" / "ant" / "0.png")  # another folder: other samples
    stage_1.main(own_argv("stage1", "imagefolder", first, out, "--epochs", "1", "--batch_size", "6"))
    stage_2_class.main(own_argv("stage2", "imagefolder", first, out, "--epochs", "1", "--batch_size", "6"))
    with pytest.raises(DataError, match=r"wrongevent\.json holds the outputs of another run \(other data or noisy labels\)"):
        stage_1.main(own_argv("stage1", "imagefolder", second, out, "--epochs", "1", "--batch_size", "6"))
    with pytest.raises(DataError, match=r"_class\.json holds the outputs of another run \(seed 0, this run seed 2\)"):
        stage_2_class.main(own_argv("stage2", "imagefolder", first, out, "--epochs", "1", "--batch_size", "6",
                                    "--seed", "2"))
    # the identical run again, and its --resume, keep working
    stage_1.main(own_argv("stage1", "imagefolder", first, out, "--epochs", "1", "--batch_size", "6"))
    stage_1.main(own_argv("stage1", "imagefolder", first, out, "--epochs", "1", "--batch_size", "6", "--resume"))
    stage_1.main(own_argv("stage1", "imagefolder", second, out, "--epochs", "1", "--batch_size", "6",
                          "--set", "overwrite=true"))
    with open(out / "stage1" / f"{TAG}_wrongevent.json", encoding="utf-8") as f:
        assert json.load(f)["num_samples"] == 17
    # stage 2 finds its stage 1 by itself, and refuses the one of other data
    with pytest.raises(DataError, match="was made for other samples or noisy labels"):
        stage_2_class.main(own_argv("stage2", "imagefolder", first, out, "--epochs", "1", "--batch_size", "6",
                                    "--set", "overwrite=true"))


def test_set_keys_reach_only_the_stages_that_have_them_and_data_kinds(tmp_path):
    args = clean_labels.build_parser().parse_args([str(tmp_path), "--output_dir", "o", "--set", "cutout=0.1",
                                                   "--set", "lr=0.01", "--resolution", "32"])
    s1 = clean_labels.stage_argv(args, "stage1", "imagefolder", ["data_path=d"])
    s2 = clean_labels.stage_argv(args, "stage2", "imagefolder", ["data_path=d"])
    assert "cutout=0.1" not in s1 and "cutout=0.1" in s2 and "lr=0.01" in s1 and "lr=0.01" in s2
    assert "resolution=32" in s1 and "resolution=32" in s2
    with pytest.raises(ConfigError) as err:
        clean_labels.check_set_keys(clean_labels.build_parser().parse_args(
            ["d", "--output_dir", "o", "--set", "resume=true"]), ["stage1", "stage2"])
    assert str(err.value) == ("config key 'resume' (from --set): clean_labels.py continues a stopped run by itself; "
                              "run the same command without --set resume")
    with pytest.raises(ConfigError, match="config key 'warmup_epochs' .* add --acto or remove it"):
        clean_labels.check_set_keys(clean_labels.build_parser().parse_args(
            ["d", "--output_dir", "o", "--set", "warmup_epochs=1"]), ["stage1", "stage2"])
    (tmp_path / "labels.csv").write_text("path,label\n")
    assert clean_labels.data_settings(str(tmp_path)) == ("imagefolder", [f"data_path={tmp_path}"])
    assert clean_labels.data_settings(str(tmp_path / "labels.csv")) == (
        "csv", [f"data_path={tmp_path}", f"train_csv={tmp_path / 'labels.csv'}"])
    with pytest.raises(ConfigError, match="is neither a folder"):
        clean_labels.data_settings(str(tmp_path / "missing"))


def test_stage2_without_its_stage1_suggests_a_complete_stage1_command(tmp_path):
    from utils.workflow.handoff import stage1_command
    from utils.training.config import parse_config

    cfg = parse_config(["--config", "config/stage2/imagefolder.yaml", "--set", "data_path=/my/images", "--output_dir",
                        "runs/x", "--set", "resolution=64", "--set", "pretrained=false", "--seed", "3"],
                       prog="stage_2.py", scope="stage2")
    assert stage1_command(cfg) == (
        "python stage_1.py --config config/stage1/imagefolder.yaml --noise_mode real --noise_ratio 0 --backbone "
        "resnet50 --output_dir runs/x --set data_path=/my/images --set resolution=64 --set pretrained=false --set "
        "seed=3; or both stages in one: python clean_labels.py DATA --output_dir runs/x")
    spaced = cfg.replace(output_dir="runs/my run's", data_path="/my images")
    assert "--output_dir 'runs/my run'\"'\"'s' --set 'data_path=/my images'" in stage1_command(spaced)
    assert stage1_command(spaced).endswith("python clean_labels.py DATA --output_dir 'runs/my run'\"'\"'s'")


def test_a_stage1_is_complete_only_with_every_file_of_its_report(tmp_path):
    """clean_labels.py reuses a stage 1 only when all it writes at its end is there: a stage 1 whose report was
    cut short (on main a file name that is not UTF-8 stopped it after the wrong events) is run again."""
    from dataclasses import astuple

    from utils.training.config import parse_config
    from utils.training.outputs import Stage1Outputs
    from utils.training.run import training_settings
    
    argv = ["--config", "config/stage1/imagefolder.yaml", "--set", f"data_path={tmp_path}", "--output_dir",
            str(tmp_path / "out"), "--set", "pretrained=false"]
    cfg = parse_config(argv, prog="clean_labels.py", scope="stage1")
    out = Stage1Outputs.of(cfg)
    report = list(astuple(out.report))
    assert [os.path.basename(p) for p in report] == [f"resnet50_scratch_imagefolder_real_0{s}" for s in (
        "_samples.csv", "_summary.json", "_suspects.png", "_review.html")]
    for path in [out.wrong_events, out.wrong_events_plot, out.base_model, *report]:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").close()
    with open(out.wrong_events_meta, "w", encoding="utf-8") as f:
        json.dump({"settings": json.loads(json.dumps(training_settings(cfg))), "fingerprint": "fp"}, f)
    assert stage1_complete(cfg, "fp") == out.wrong_events_meta
    assert stage1_complete(cfg, "other") is None
    for path in report:  # any one report file missing: not complete
        os.rename(path, path + ".away")
        assert stage1_complete(cfg, "fp") is None, path
        os.rename(path + ".away", path)
    os.remove(out.report.review)
    no_report = parse_config(argv + ["--set", "export_samples=false"], prog="clean_labels.py", scope="stage1")
    with open(out.wrong_events_meta, "w", encoding="utf-8") as f:
        json.dump({"settings": json.loads(json.dumps(training_settings(no_report))), "fingerprint": "fp"}, f)
    assert stage1_complete(no_report, "fp") == out.wrong_events_meta  # without a report, none is needed
