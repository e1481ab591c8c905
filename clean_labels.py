"""From a folder (or a CSV) of your images to the labels that look wrong, in one command.

    python clean_labels.py /my/images --output_dir runs/mine                  # imagefolder: train/<class>/...
    python clean_labels.py /my/labels.csv --output_dir runs/mine              # csv: path,label
    python clean_labels.py /my/images --output_dir runs/mine --backbone resnet50 --resolution 224 \\
        --epochs 5 --stage2_epochs 10 --acto --set batch_size=32

Runs IDO stage 1 (stage_1.py) and class-wise stage 2 (stage_2_class.py), and with ``--acto`` ACTO
(acto.py), in this process, on the configs config/{stage1,stage2,acto}/{imagefolder,csv}.yaml.  Every
setting is given once: the data, the output folder, the model and the named options go to every stage,
a ``--set`` key to the stages that have it.  Run again, the same command goes on where it stopped
(utils/workflow/continuation.py): a stage that ``output_dir`` holds finished, on the same data and settings,
is kept; one stopped part-way (Ctrl-C, SIGTERM, a full disk) continues from its ``last.pt``; the others start
(stage 2 always after a stage 1 that ran now); each says so in one line.  The last lines name the review
page, the samples CSV and the model for predict.py.  Train again on the corrected labels the page exports
with the same command on the CSV: ``python clean_labels.py corrected_labels.csv --output_dir
runs/mine_corrected``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial
from typing import Mapping, Sequence

import stage_2_class
from utils.core.entry import remember_rerun, run_main
from utils.core.shell import command as shell_command
from utils.training.config import ACTO, OPTION_BY_NAME, REPO_ROOT, STAGE1, STAGE2, ConfigError, options_help, parse_config
from utils.training.outputs import METHOD_OUTPUTS, add_outputs_option, print_outputs
from utils.training.run import device_settings, settings_device
from utils.workflow.continuation import next_step

STAGES = {STAGE1: "stage_1", STAGE2: "stage_2_class", ACTO: "acto"}
STAGE_NAMES = {STAGE1: "stage 1", STAGE2: "stage 2", ACTO: "ACTO"}  # in the lines it prints
FORCED = {STAGE2: stage_2_class.FORCED}
PASSED = ("backbone", "seed", "batch_size", "device", "gpuid", "noise_mode", "noise_ratio")  # to every stage


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2 (run_main)
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="clean_labels.py", description=__doc__.split("\n")[0], epilog=options_help(None),
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="an imagefolder (DATA/train/<class>/<image>, optional val/ or test/) or a "
                                "path,label CSV file")
    p.add_argument("--output_dir", required=True, help="where stage1/, stage2/, acto/, base_model/ go")
    p.add_argument("--pretrained_path", help="local weights file of the backbone (offline)")
    p.add_argument("--resolution", type=int, help="network input side in px (default: the configs')")
    p.add_argument("--epochs", type=int, help="epochs of every stage (default: the configs')")
    p.add_argument("--stage2_epochs", type=int, help="epochs of stage 2 (default: --epochs)")
    p.add_argument("--acto_epochs", type=int, help="epochs of ACTO (default: --epochs)")
    p.add_argument("--acto", action="store_true", help="also run ACTO (acto.py) after stage 1 and 2")
    p.add_argument("--test_csv", help="csv data: a path,label list of test images")
    for name in PASSED:
        p.add_argument(f"--{name}", help=OPTION_BY_NAME[name].help)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key, passed to the stages that use it (repeatable)")
    add_outputs_option(p, example="e.g. stage2.samples, stage2.model")
    return p


def data_settings(data: str) -> tuple[str, list[str]]:
    """(dataset, --set items) of the DATA argument: a folder is an imagefolder, a file a csv."""
    data = os.path.expanduser(data)
    if os.path.isdir(data):
        return "imagefolder", [f"data_path={data}"]
    if os.path.isfile(data):
        return "csv", [f"data_path={os.path.dirname(os.path.abspath(data))}", f"train_csv={data}"]
    raise ConfigError(f"{data} is neither a folder (imagefolder: {data}/train/<class>/<image>) nor a CSV file "
                      "(path,label)")


def stage_argv(args, scope: str, dataset: str, data_sets: list[str]) -> list[str]:
    """The command line of one stage: its config file, the named options and the --set keys it has."""
    argv = ["--config", os.path.join(REPO_ROOT, "config", scope, f"{dataset}.yaml"), "--output_dir", args.output_dir]
    for name in PASSED:
        if getattr(args, name) is not None:
            argv += [f"--{name}", getattr(args, name)]
    epochs = {STAGE1: args.epochs, STAGE2: args.stage2_epochs or args.epochs, ACTO: args.acto_epochs or args.epochs}
    if epochs[scope] is not None:
        argv += ["--epochs", str(epochs[scope])]
    sets = list(data_sets)
    for key in ("pretrained_path", "resolution", "test_csv"):
        if getattr(args, key) is not None:
            sets.append(f"{key}={getattr(args, key)}")
    for item in args.overrides:
        key = item.split("=", 1)[0].strip()
        option = OPTION_BY_NAME.get(key)
        if option is None or scope in option.scopes:  # an unknown key is reported by the stage's own parser
            sets.append(item)
    return argv + [a for s in sets for a in ("--set", s)]


def check_set_keys(args, scopes: Sequence[str]) -> None:
    for item in args.overrides:
        key = item.split("=", 1)[0].strip()
        if key == "resume":  # each stage decides by itself; forced on every stage it failed on a stage not begun
            raise ConfigError("config key 'resume' (from --set): clean_labels.py continues a stopped run by itself; "
                              "run the same command without --set resume")
        option = OPTION_BY_NAME.get(key)
        if option is not None and not any(s in option.scopes for s in scopes):
            raise ConfigError(f"config key '{key}' (from --set) is used by {', '.join(sorted(option.scopes))} only, "
                              f"not by the stages this command runs ({', '.join(scopes)}); add --acto or remove it")


def fingerprint_of(cfg, scope: str) -> str:
    """The fingerprint of the samples and noisy labels a stage's config names (lists or reads the data set)."""
    from dataloader import build_data

    return build_data(cfg, stage="stage1" if scope == STAGE1 else "stage2", log=lambda message: None).fingerprint


def configs_of(argvs: Mapping[str, Sequence[str]]) -> dict:
    """The config of every stage this command runs, parsed from each stage's own command line, with its
    ``auto`` settings decided for the device it would run on: a run records them decided (in last.pt and
    its result JSON), so only decided values tell whether a finished or stopped stage is this very run."""
    configs = {}
    for scope, argv in argvs.items():
        cfg = parse_config(argv, prog="clean_labels.py", scope=scope, forced=FORCED.get(scope))
        configs[scope], _ = device_settings(cfg, settings_device(cfg))
    return configs


def read_result(path: str) -> dict:
    """The result JSON of a finished stage (what its main returned, as JSON keeps it)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def rerun_command(argv: Sequence[str] | None) -> str:
    """This very command, shell-quoted on one line: what continues it after a stop."""
    script = sys.argv[0] if argv is None and sys.argv and sys.argv[0] else "clean_labels.py"
    return shell_command(["python", script, *(sys.argv[1:] if argv is None else argv)])


def main(argv: Sequence[str] | None = None) -> dict:
    import acto
    import stage_1

    args = build_parser().parse_args(argv)
    scopes = [STAGE1, STAGE2] + ([ACTO] if args.acto else [])
    check_set_keys(args, scopes)
    dataset, data_sets = data_settings(args.data)
    argvs = {scope: stage_argv(args, scope, dataset, data_sets) for scope in scopes}
    configs = configs_of(argvs)
    outputs = {scope: METHOD_OUTPUTS[scope](cfg) for scope, cfg in configs.items()}
    if args.outputs is not None:
        print_outputs(outputs, args.outputs)
        return {}
    remember_rerun(rerun_command(argv))  # a stop now names this command: it continues where it stopped
    mains = {STAGE1: stage_1.main, STAGE2: stage_2_class.main, ACTO: acto.main}
    # stage 2 starts from stage 1's outputs: when stage 1 runs now, whatever stage 2 left belongs to another
    after = {STAGE2: outputs[STAGE2].input.wrong_events_meta}
    results, ran = {}, set()
    for scope in scopes:
        cfg = configs[scope]
        if scope == STAGE2 and STAGE1 in ran:
            action, line = "start", None
        else:
            action, line = next_step(STAGE_NAMES[scope], cfg, outputs[scope], partial(fingerprint_of, cfg, scope),
                                     after=after.get(scope))
        if line:
            print(f"clean_labels.py: {line}")
        if action == "finished":
            result = read_result(outputs[scope].result)
        else:
            result = mains[scope](list(argvs[scope]) + (["--resume"] if action == "resume" else []))
            ran.add(scope)
        if scope != STAGE1:
            results[scope] = result
    lines = []
    for scope in (s for s in scopes if s != STAGE1):
        out = outputs[scope]
        lines += [f"{STAGES[scope]}: review page {out.report.review}", f"{STAGES[scope]}: samples CSV {out.report.samples}",
                  f"{STAGES[scope]}: model for predict.py {out.model}"]
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    run_main(main)
