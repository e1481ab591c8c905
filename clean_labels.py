"""From a folder (or a CSV) of your images to the labels that look wrong, in one command.

    python clean_labels.py /my/images --output_dir runs/mine                  # imagefolder: train/<class>/...
    python clean_labels.py /my/labels.csv --output_dir runs/mine              # csv: path,label
    python clean_labels.py /my/images --output_dir runs/mine --backbone resnet50 --resolution 224 \\
        --epochs 5 --stage2_epochs 10 --acto --set batch_size=32

Runs IDO stage 1 (stage_1.py) and class-wise stage 2 (stage_2_class.py), and with ``--acto`` ACTO
(acto.py), in this process, on the configs config/{stage1,stage2,acto}/{imagefolder,csv}.yaml.  Every
setting is given once: the data, the output folder, the model and the named options go to every stage,
a ``--set`` key to the stages that have it.  Stage 1 is skipped when ``output_dir`` already holds a
complete stage 1 of the same data and settings.  The last lines name the review page, the samples CSV
and the model for predict.py.  Train again on the corrected labels the page exports with the same
command on the CSV: ``python clean_labels.py corrected_labels.csv --output_dir runs/mine_corrected``.
"""
from __future__ import annotations

import argparse
import os
from typing import Mapping, Sequence

import stage_2_class
from utils.core.entry import run_main
from utils.training.config import ACTO, OPTION_BY_NAME, REPO_ROOT, STAGE1, STAGE2, ConfigError, options_help, parse_config
from utils.training.outputs import METHOD_OUTPUTS, Outputs, print_outputs
from utils.training.run import device_settings, settings_device
from utils.workflow.handoff import stage1_complete

STAGES = {STAGE1: "stage_1", STAGE2: "stage_2_class", ACTO: "acto"}
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
    p.add_argument("--outputs", nargs="?", const="all", default=None, metavar="NAME",
                   help="print the path of the output NAME (e.g. stage2.samples, stage2.model; without NAME every "
                        "output, as 'name<TAB>path' lines) and exit")
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
        option = OPTION_BY_NAME.get(key)
        if option is not None and not any(s in option.scopes for s in scopes):
            raise ConfigError(f"config key '{key}' (from --set) is used by {', '.join(sorted(option.scopes))} only, "
                              f"not by the stages this command runs ({', '.join(scopes)}); add --acto or remove it")


def stage1_done(argv: Sequence[str]) -> str | None:
    """The stage-1 result JSON when ``output_dir`` holds a complete stage 1 of this very data and these
    settings (utils/workflow/handoff.py: stage1_complete), else None."""
    from dataloader import build_data

    cfg = parse_config(argv, prog="clean_labels.py", scope=STAGE1)
    cfg, _ = device_settings(cfg, settings_device(cfg))  # stage 1 recorded its "auto" settings as decided
    return stage1_complete(cfg, lambda: build_data(cfg, stage="stage1", log=lambda message: None).fingerprint)


def stage_outputs(argvs: Mapping[str, Sequence[str]]) -> dict[str, Outputs]:
    """The outputs of every stage this command runs, named from each stage's own command line."""
    return {scope: METHOD_OUTPUTS[scope](parse_config(argv, prog="clean_labels.py", scope=scope,
                                                      forced=FORCED.get(scope)))
            for scope, argv in argvs.items()}


def main(argv: Sequence[str] | None = None) -> dict:
    import acto
    import stage_1

    args = build_parser().parse_args(argv)
    scopes = [STAGE1, STAGE2] + ([ACTO] if args.acto else [])
    check_set_keys(args, scopes)
    dataset, data_sets = data_settings(args.data)
    argvs = {scope: stage_argv(args, scope, dataset, data_sets) for scope in scopes}
    outputs = stage_outputs(argvs)
    if args.outputs is not None:
        print_outputs(outputs, args.outputs)
        return {}
    done = stage1_done(argvs[STAGE1])
    if done:
        print(f"clean_labels.py: stage 1 of this data and these settings is complete ({done}); going on with stage 2")
    else:
        stage_1.main(argvs[STAGE1])
    results = {STAGE2: stage_2_class.main(argvs[STAGE2])}
    if args.acto:
        results[ACTO] = acto.main(argvs[ACTO])
    lines = []
    for scope in results:
        out = outputs[scope]
        lines += [f"{STAGES[scope]}: review page {out.report.review}", f"{STAGES[scope]}: samples CSV {out.report.samples}",
                  f"{STAGES[scope]}: model for predict.py {out.model}"]
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    run_main(main)
