"""Run configuration: YAML file -> named CLI overrides -> ``--set key=value``, every key validated.

One :class:`Option` table describes every key (type, range, allowed values, which entry points
accept it).  :func:`parse_config` returns a :class:`Config` (attribute access, read-only) or raises
:class:`~utils.core.errors.ConfigError` with one line naming the key and what is expected.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import textwrap
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import yaml

from dataloader import LOADERS
from utils.core.errors import ConfigError
from utils.training.outputs import add_outputs_option

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STAGE1, STAGE2, ACTO = "stage1", "stage2", "acto"
ALL_SCOPES = frozenset({STAGE1, STAGE2, ACTO})


@dataclass(frozen=True)
class Option:
    """One config key: its type, default and the values it may take."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True
    nullable: bool = False
    scopes: frozenset = ALL_SCOPES
    words: tuple = ()  # strings accepted besides the type (num_workers: "auto")
    pattern: str | None = None  # a string value must match this regex as a whole
    pattern_help: str = ""  # what the pattern accepts, in words (for the error line)
    path: bool = False  # a file or folder: ~ and $VARIABLES are expanded (docs/own_data.md)
    # where the files are and how the machine runs them, not what is trained: may differ between a run and its
    # --resume, and between a finished stage 1 and a rerun that reuses it (utils.training.run.training_settings)
    resume_free: bool = False

    def check(self, value: Any, source: str) -> Any:
        """Return ``value`` converted to this option's type, or raise ConfigError."""
        where = f"config key '{self.name}'" + (f" (from {source})" if source else "")
        if value is None:
            if self.nullable:
                return None
            raise ConfigError(f"{where} must not be null; expected {self.pattern_help or self.describe()}")
        if isinstance(value, str) and value in self.words:
            return value
        if self.type is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false, got {value!r}")
            return value
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where} must be {self.describe()}, got {value!r}")
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where} must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(f"{where} must be finite, got {value!r}")
        elif self.type is str:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where} must be a non-empty string, got {value!r}")
            if self.path:
                value = expand_path(value, where)
        elif self.type is list:
            if not isinstance(value, list):
                raise ConfigError(f"{where} must be a list, got {value!r}")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise ConfigError(f"{where} must be {self.pattern_help}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(str(c) for c in self.choices)
            raise ConfigError(f"{where} must be one of {allowed}; got {value!r}")
        if self.min is not None and (value < self.min or (value == self.min and not self.min_inclusive)):
            raise ConfigError(f"{where} must be {'>=' if self.min_inclusive else '>'} {self.min}, got {value!r}")
        if self.max is not None and (value > self.max or (value == self.max and not self.max_inclusive)):
            raise ConfigError(f"{where} must be {'<=' if self.max_inclusive else '<'} {self.max}, got {value!r}")
        return value

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                list: "a list"}[self.type]
        return kind + "".join(f" or {word}" for word in self.words)


def expand_path(value: str, where: str) -> str:
    """``~`` and ``$VAR`` / ``${VAR}`` expanded; a variable that is not set is a ConfigError (not a literal ``$``)."""
    expanded = os.path.expandvars(os.path.expanduser(value))
    unset = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expanded)
    if unset:
        raise ConfigError(f"{where} uses the environment variable {unset[0]}, which is not set; set it or write the "
                          f"path out ({value!r})")
    return expanded


def _opt(name, type_, default, help_, **kw) -> Option:
    return Option(name, type_, default, help_, **kw)


S1, S2, SA = frozenset({STAGE1}), frozenset({STAGE2}), frozenset({ACTO})
S2A = frozenset({STAGE2, ACTO})

OPTIONS: tuple[Option, ...] = (
    # --- data ---
    _opt("dataset", str, "digits", "data set name", choices=tuple(LOADERS)),  # the one list: dataloader.LOADERS
    _opt("data_path", str, "./data", "directory holding the data set files", path=True, resume_free=True),
    _opt("download", bool, False, "let torchvision download CIFAR into data_path", resume_free=True),
    _opt("noise_mode", str, "sym", "label noise", choices=("sym", "asym", "idn", "real")),
    _opt("noise_ratio", float, 0.4, "fraction of samples given a synthetic noisy label", min=0.0, max=1.0),
    _opt("noise_convention", str, "ido", "ido: IDO/DivideMix noise; act: ACT noise", choices=("ido", "act")),
    _opt("noise_seed", int, None, "seed of the noise generator (null: seed)", nullable=True, min=0),
    _opt("noise_dir", str, None, "cache of noisy-label files (null: {output_dir}/noise_file)", nullable=True,
         path=True, resume_free=True),
    _opt("resolution", int, None, "network input side in px (null: 224 if pretrained else native)",
         nullable=True, min=8),
    _opt("hflip", bool, True, "random horizontal flips in training views"),
    _opt("views", str, "ido", "training/test transforms: ido (IDO's views, the data set's statistics) or act "
         "(ACT's: AutoAugment CIFAR-10 / UDA RandAugment strong views, ImageNet statistics)", choices=("ido", "act")),
    _opt("num_workers", int, 4, "DataLoader worker processes (auto: the CPU cores of this process / processes "
         "on the node, at most 16)", min=0, words=("auto",), resume_free=True),
    _opt("persistent_workers", bool, False, "keep the training loader's workers between epochs (faster; resume is "
         "then not bit-exact; the evaluation loaders always keep theirs)", resume_free=True),
    _opt("check_images", bool, False, "decode every image file once before training and list all unreadable "
         "ones (checkpoint/{run}/bad_images.txt); file data sets only", resume_free=True),
    # data-set-specific keys (docs/data.md)
    _opt("noisy_label_file", str, None, "CIFAR-N human-label file for noise_mode real (null: "
         "{data_path}/CIFAR-10_human.pt or {data_path}/CIFAR-100_human.pt)", nullable=True, path=True, resume_free=True),
    _opt("cifar10n_label", str, "worse_label", "CIFAR-10N label set used with noise_mode real",
         choices=("aggre_label", "worse_label", "random_label1", "random_label2", "random_label3")),
    _opt("clothing1m_samples", int, 128000, "size of the class-balanced Clothing1M training subset (drawn once "
         "per seed, persisted in noise_dir, shared by both stages)", min=1),
    _opt("imagenet_val_path", str, None, "ILSVRC12 val folders for WebVision's second test set (first 50 "
         "classes; null: none)", nullable=True, path=True, resume_free=True),
    _opt("food101_path", str, None, "Food-101 release, the food101n test set (null: {data_path}/food-101)",
         nullable=True, path=True, resume_free=True),
    # own data (dataset imagefolder / csv) and the per-sample report (docs/own_data.md)
    _opt("train_csv", str, None, "csv: path,label list of the training images (null: {data_path}/train.csv)",
         nullable=True, path=True, resume_free=True),
    _opt("test_csv", str, None, "csv: path,label list of the test images (null: none)", nullable=True, path=True, resume_free=True),
    _opt("class_names", list, None, "the class list, named explicitly: csv with integer labels: names in index order "
         "(null: the integers); imagefolder: the class folders in index order (null: train/'s folders, sorted); "
         "named classes may have no training image",
         nullable=True),
    _opt("export_samples", bool, True, "write {stage}/..._samples.csv, _summary.json and _suspects.png "
         "(one extra evaluation pass over the training set)", resume_free=True),
    _opt("suspects_grid", int, 32, "number of images in the _suspects.png grid", min=1, resume_free=True),
    _opt("review_samples", int, 1000, "number of flagged samples (most suspect first) shown as thumbnails on "
         "the _review.html page", min=0, resume_free=True),
    _opt("decode_background", str, "white", "imagefolder/csv: colour that transparent pixels are composited onto "
         "(the training input; dataloader/decode.py)", pattern=r"white|black|#[0-9A-Fa-f]{6}",
         pattern_help="white, black or '#RRGGBB' (quoted: YAML reads # as a comment)"),
    _opt("max_image_pixels", int, 89_478_485, "images with more pixels stop the run with one line naming them "
         "(default: Pillow's limit; null or 0: no limit)", nullable=True, min=0, resume_free=True),
    _opt("val_fraction", float, 0.0, "imagefolder/csv without a test set: share of each class's training images "
         "held out (seed: seed), scored on their given labels (val_acc_given_labels)", min=0.0, max=0.5,
         max_inclusive=False),
    # --- model ---
    _opt("backbone", str, "resnet50", "resnet50, ViT-B, convnext-B, act_cnn (ACT's 7-layer CNN, 32 px) or any timm "
         "model name"),
    _opt("pretrained", bool, True, "load timm's pretrained weights"),
    _opt("pretrained_path", str, None, "local weights file for the backbone (offline route)", nullable=True, path=True),
    _opt("frozen", bool, False, "freeze the backbone, train the head only", scopes=S1),
    # --- optimisation ---
    _opt("epochs", int, 5, "training epochs", min=1),
    _opt("batch_size", int, 128, "training batch size (per process)", min=1),
    _opt("test_batch_size", int, 256, "evaluation batch size", min=1, resume_free=True),
    _opt("optimizer", str, None, "adamw or sgd (null: per backbone, docs/fidelity.md IDO-K1)", nullable=True,
         choices=("adamw", "sgd")),
    _opt("lr", float, None, "learning rate (null: per backbone)", nullable=True, min=0.0, min_inclusive=False),
    _opt("weight_decay", float, None, "weight decay (null: per backbone)", nullable=True, min=0.0),
    _opt("momentum", float, 0.0, "SGD momentum (the official ViT setting has none)", min=0.0, max=0.999),
    _opt("scheduler", str, None, "stage-1 schedule: constant, cosine or step (null: constant if pretrained, "
         "cosine from scratch)", nullable=True, choices=("constant", "cosine", "step"), scopes=S1),
    _opt("step_milestones", list, [0.5, 0.75], "step schedule: epochs (int) or fractions of epochs", scopes=S1),
    _opt("eta_min", float, 1e-4, "final learning rate of the cosine schedule", min=0.0, scopes=S2),
    _opt("seed", int, 0, "seed of python, numpy and torch", min=0),
    _opt("precision", str, "fp32", "fp32, bf16 or fp16 (torch.amp; fp16 with a gradient scaler); auto: bf16 on GPUs "
         "with bf16 units (compute capability 8.0 on), fp16 on older GPUs, fp32 on the CPU",
         choices=("fp32", "bf16", "fp16", "auto")),
    _opt("channels_last", bool, False, "channels_last memory format (auto: on CUDA only)", words=("auto",)),
    _opt("tf32", bool, False, "fp32 matrix multiplications in TF32 on GPUs from Ampere on (cuDNN convolutions use "
         "TF32 already, torch's default); no effect on the CPU"),
    _opt("cudnn_benchmark", bool, False, "cuDNN picks the fastest convolution algorithm per input shape (GPU only)",
         resume_free=True),
    _opt("compile", bool, False, "torch.compile the model", resume_free=True),
    # --- stage 2 ---
    _opt("bmm", str, "global", "global: one beta mixture; class: one per noisy class", choices=("global", "class"),
         scopes=S2),
    _opt("bmm_init_iters", int, 20, "EM iterations of the first fit", min=1, scopes=S2),
    _opt("bmm_refit_iters", int, None, "EM iterations per epoch (null: 1 global, 2 class)", nullable=True, min=0,
         scopes=S2),
    _opt("entropy_weight", str, "confidence", "confidence: kappa_i*H_i (HEAD, IDO-B4 fixed); plain: H_i (Jan 2025)",
         choices=("confidence", "plain"), scopes=S2),
    _opt("noisy_weight", str, "one_minus_clean", "weight of the entropy term: 1 - clean posterior (code) or the "
         "noisy posterior (figure)", choices=("one_minus_clean", "noisy_posterior"), scopes=S2),
    _opt("randaug_n", int, 2, "RandAugment ops per strong view", min=0, scopes=S2A),
    _opt("randaug_m", int, 10, "RandAugment maximum magnitude (0-10)", min=0, max=10, scopes=S2A),
    _opt("cutout", float, 0.15, "side of the strong view's grey square, fraction of the image", min=0.0, max=1.0,
         scopes=S2A),
    _opt("base_model", str, None, "stage-1 base model file (null: base_model/{tag}.pt)", nullable=True, scopes=S2,
         path=True, resume_free=True),
    _opt("wrong_events", str, None, "stage-1 wrong-event file (null: stage1/{tag}_wrongevent.npy)",
         nullable=True, scopes=S2, path=True, resume_free=True),
    # --- run ---
    _opt("device", str, None, "cpu, cuda or cuda:N (null: cuda if available)", nullable=True, resume_free=True),
    _opt("gpuid", int, None, "official spelling of device cuda:N", nullable=True, min=0, resume_free=True),
    _opt("output_dir", str, ".", "where stage1/, stage2/, base_model/ and checkpoint/ are written", path=True, resume_free=True),
    _opt("run_name", str, None, "name of checkpoint/{run} (null: from the stage and tag)", nullable=True, resume_free=True),
    _opt("resume", bool, False, "continue from checkpoint/{run}/last.pt", resume_free=True),
    _opt("overwrite", bool, False, "replace the outputs in output_dir of a run on other data, noisy labels or seed "
         "(refused otherwise)", resume_free=True),
    _opt("print_config", bool, False, "print the whole resolved config on the console too (it always goes to "
         "checkpoint/{run}/config.yaml and train.log)", resume_free=True),
    # --- ACTO (docs/fidelity.md#act-1-method; docs/acto.md) ---
    _opt("warmup_epochs", int, 2, "ACTO warm-up epochs W (both models on all samples, RTM with the "
         "confidence penalty); must be < epochs", min=0, scopes=SA),
    _opt("checkpoint_every", int, 1, "ACTO: write checkpoint/{run}/last.pt and the N x C soft-label bank "
         "(4 N C bytes, a file of its own beside last.pt) every this many epochs and after the last; a stop or "
         "preemption resumes from the last one written", min=1, scopes=SA, resume_free=True),
    _opt("tau", float, 0.025, "ACTO memorisation threshold: mining on in a batch iff M < tau", scopes=SA),
    _opt("ema_alpha", float, 0.8, "ACTO soft-label bank: q <- alpha*q + (1-alpha)*softmax(RTM weak)", min=0.0,
         max=1.0, scopes=SA),
    _opt("selection_weight", float, 0.8, "ACTO weight of the selected-set loss; consistency gets 1 - it",
         min=0.0, max=1.0, scopes=SA),
    _opt("label_smoothing", float, 0.0, "ACTO label smoothing of every cross-entropy (0.35 in ACT's web/food "
         "scripts)", min=0.0, max=0.99, scopes=SA),
    _opt("selection_rule", str, "paper_fig2", "ACTO selection: paper_fig2 (main.py, Figure 2) or web_variant "
         "(main_web.py / main_food101n.py)", choices=("paper_fig2", "web_variant"), scopes=SA),
    _opt("confidence_penalty", bool, True, "ACTO: negative-entropy penalty on the RTM during warm-up",
         scopes=SA),
    _opt("faithful_conf_penalty_clamp", bool, False, "ACTO: clamp the logits (not the probabilities) in the "
         "confidence penalty, as the official code (bug ACT-B7)", scopes=SA),
    _opt("use_mining", bool, True, "ACTO ablation: asymmetric sample mining (ACT-B19)", scopes=SA),
    _opt("use_dsrw", bool, True, "ACTO ablation: dynamic sample re-weighting c_i/(e+1) (else weight 1)",
         scopes=SA),
    _opt("use_cr", bool, True, "ACTO ablation: consistency regularisation on the strong view (else L_R = "
         "L_sel)", scopes=SA),
    _opt("lr_plan", str, None, "ACTO RTM learning-rate plan: cosine:S,END,T | cosine | constant | baseline "
         "(null: cosine:W,1e-4,E)", nullable=True, scopes=SA),
    _opt("warmup_lr", float, None, "ACTO learning rate of the warm-up epochs (null: lr)", nullable=True, min=0.0,
         min_inclusive=False, scopes=SA),
    _opt("ntm_lr", float, None, "ACTO NTM learning rate (null: the RTM's lr)", nullable=True, min=0.0,
         min_inclusive=False, scopes=SA),
    _opt("ntm_lr_plan", str, None, "ACTO NTM learning-rate plan (null: lr_plan)", nullable=True, scopes=SA),
    _opt("nesterov", bool, False, "ACTO: Nesterov momentum for optimizer sgd (ACT's own optimiser)", scopes=SA),
)

OPTION_BY_NAME = {o.name: o for o in OPTIONS}

# Named command-line overrides (docs/fidelity.md#command-line); everything else goes through --set.
NAMED_OVERRIDES = ("noise_mode", "noise_ratio", "backbone", "seed", "epochs", "batch_size", "device",
                   "gpuid", "output_dir")

DEVICE_PATTERN = re.compile(r"^(cpu|cuda|cuda:\d+|mps)$")


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``3e-4`` as a float as YAML 1.2 does (YAML 1.1 wants ``3.0e-4``)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_yaml(text_or_stream) -> Any:
    """``yaml.safe_load`` with YAML 1.2 exponent floats (the loader of every config file and value)."""
    return yaml.load(text_or_stream, Loader=_YamlLoader)


class Config(Mapping):
    """Resolved, validated configuration; read-only attribute and mapping access."""

    def __init__(self, values: Mapping[str, Any], scope: str, source: str | None):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "scope", scope)
        object.__setattr__(self, "source", source)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        raise AttributeError("Config is read-only; use Config.replace(**changes)")

    def __getitem__(self, key):
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def replace(self, **changes) -> "Config":
        values = dict(self._values)
        for key, value in changes.items():
            values[key] = OPTION_BY_NAME[key].check(value, "replace") if key in OPTION_BY_NAME else value
        return Config(values, self.scope, self.source)

    def to_dict(self) -> dict:
        return dict(self._values)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def tag(self) -> str:
        """``{backbone}_{pretrained|scratch}_{dataset}_{noise_mode}_{noise_ratio}`` (docs/fidelity.md#output-names)."""
        init = "pretrained" if (self.pretrained or self.pretrained_path) else "scratch"
        backbone = re.sub(r"[^A-Za-z0-9._-]", "-", self.backbone)
        return f"{backbone}_{init}_{self.dataset}_{self.noise_mode}_{self.noise_ratio:g}"


def default_config_path(scope: str) -> str:
    return os.path.join(REPO_ROOT, "config", scope, "digits.yaml")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line and exit status 2."""

    def error(self, message):  # noqa: D401 - argparse API
        raise ConfigError(message)


def yaml_text(value: Any) -> str:
    """``value`` as it is written in a config file (``null``, ``true``, ``[0.5, 0.75]``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def allowed_values(opt: Option) -> str:
    """What ``opt`` accepts beyond the obvious, in words (``one of fp32, bf16, fp16``; ``an integer >= 1``;
    ``a path: ~ and $VARIABLES expanded``); empty for a plain string or a true/false key."""
    if opt.choices is not None:
        return "one of " + ", ".join(str(c) for c in opt.choices)
    if opt.pattern is not None:
        return opt.pattern_help
    if opt.path:
        return "a path; ~ and $VARIABLES are expanded"
    if opt.type in (int, float):
        bounds = []
        if opt.min is not None:
            bounds.append(f"{'>=' if opt.min_inclusive else '>'} {opt.min:g}")
        if opt.max is not None:
            bounds.append(f"{'<=' if opt.max_inclusive else '<'} {opt.max:g}")
        kind = "an integer" if opt.type is int else "a number"
        return " ".join([kind, " and ".join(bounds)] if bounds else [kind]) + "".join(f" or {w}" for w in opt.words)
    return ""


def options_help(scope: str | None, *, width: int = 100, forced: Mapping[str, Any] | None = None) -> str:
    """Every config key that ``scope`` accepts (None: every key, each marked with the stages that take it
    unless all do), with its default, meaning and allowed values, in :data:`OPTIONS` order: the epilog of
    ``--help``.  A key in ``forced`` (fixed by the entry point) shows that value instead of the default."""
    forced = forced or {}
    title = f"config keys of {scope}" if scope else "config keys (passed to the stages that take them)"
    lines = [f"{title}, set in the YAML file or with --set KEY=VALUE; each with the default it takes where the "
             "config file does not set it:"]
    for opt in OPTIONS:
        if scope is not None and scope not in opt.scopes:
            continue
        only = f"  [{', '.join(sorted(opt.scopes))} only]" if scope is None and opt.scopes != ALL_SCOPES else ""
        allowed = allowed_values(opt)
        if opt.name in forced:
            lines.append(f"  {opt.name} = {yaml_text(forced[opt.name])}  [fixed by this script]")
        else:
            lines.append(f"  {opt.name} = {yaml_text(opt.default)}{only}")
        lines += textwrap.wrap(opt.help + (f" ({allowed})" if allowed else ""), width=width,
                               initial_indent=" " * 6, subsequent_indent=" " * 6, break_on_hyphens=False)
    return "\n".join(lines)


def build_arg_parser(prog: str, scope: str, forced: Mapping[str, Any] | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=f"{prog} ({scope}); see README.md and docs/usage.md",
                     epilog=options_help(scope, forced=forced), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "--cfg", dest="config", default=None,
                        help=f"YAML config (default: config/{scope}/digits.yaml)")
    for name in NAMED_OVERRIDES:
        opt = OPTION_BY_NAME[name]
        parser.add_argument(f"--{name}", default=None, type=str, metavar=name.upper(), help=opt.help)
    parser.add_argument("--resume", action="store_true", help="continue from checkpoint/{run}/last.pt")
    parser.add_argument("--print_config", action="store_true",
                        help="print the whole resolved config on the console (always in config.yaml and train.log)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key; the value is parsed as YAML (repeatable)")
    add_outputs_option(parser, example="e.g. samples, review, run.last")
    return parser


def _yaml_value(text: str, key: str) -> Any:
    try:
        return load_yaml(text) if text != "" else None
    except yaml.YAMLError:
        raise ConfigError(f"value {text!r} for '{key}' is not valid YAML") from None


def _read_yaml(path: str) -> dict:
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist (configs live in config/stage1, config/stage2, "
                          "config/acto)")
    try:
        with open(path, encoding="utf-8") as f:
            data = load_yaml(f)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of key: value, got {type(data).__name__}")
    return data


def resolve(layers: Iterable[tuple[str, Mapping[str, Any]]], scope: str, source: str | None) -> Config:
    """Merge ``(source_name, mapping)`` layers over the defaults and validate every key."""
    values = {o.name: o.default for o in OPTIONS if scope in o.scopes}
    origin: dict[str, str] = {}
    for layer_name, layer in layers:
        for key, value in layer.items():
            opt = OPTION_BY_NAME.get(key)
            if opt is None:
                close = [n for n in OPTION_BY_NAME if n.startswith(key[:4])] if len(key) >= 4 else []
                hint = f"; did you mean {close[0]}?" if close else ""
                raise ConfigError(f"unknown config key '{key}' (from {layer_name}){hint}")
            if scope not in opt.scopes:
                raise ConfigError(f"config key '{key}' (from {layer_name}) is not used by {scope}; remove it")
            values[key] = opt.check(value, layer_name)
            origin[key] = layer_name
    if values.get("device") is not None and not DEVICE_PATTERN.match(values["device"]):
        raise ConfigError(f"config key 'device' must be cpu, cuda or cuda:N, got {values['device']!r}")
    if values.get("gpuid") is not None:
        if origin.get("device") and values["device"] != f"cuda:{values['gpuid']}":
            raise ConfigError("set either 'device' or 'gpuid', not both")
        values["device"] = f"cuda:{values['gpuid']}"
    return Config(values, scope, source)


def parse_config(argv: Sequence[str] | None, *, prog: str, scope: str,
                 forced: Mapping[str, Any] | None = None) -> Config:
    """Parse the command line of an entry point into a validated :class:`Config`.

    ``forced`` holds values the entry point itself fixes (``stage_2_class.py`` fixes ``bmm: class``);
    a user value that contradicts one is an error rather than silently ignored.
    """
    return parse_command_line(argv, prog=prog, scope=scope, forced=forced)[0]


def parse_command_line(argv: Sequence[str] | None, *, prog: str, scope: str,
                       forced: Mapping[str, Any] | None = None) -> tuple[Config, str | None]:
    """:func:`parse_config`, and the output name asked for with ``--outputs`` (None without it)."""
    args = build_arg_parser(prog, scope, forced).parse_args(argv)
    path = args.config or default_config_path(scope)
    layers: list[tuple[str, Mapping[str, Any]]] = [(path, _read_yaml(path))]
    named = {}
    for name in NAMED_OVERRIDES:
        text = getattr(args, name)
        if text is not None:
            named[name] = _yaml_value(text, name)
    if args.resume:
        named["resume"] = True
    if args.print_config:
        named["print_config"] = True
    layers.append(("the command line", named))
    sets = {}
    for item in args.overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        sets[key.strip()] = _yaml_value(text.strip(), key.strip())
    layers.append(("--set", sets))
    cfg = resolve(layers, scope, path)
    for key, value in (forced or {}).items():
        if cfg[key] != value and any(key in layer for name, layer in layers[1:]):
            raise ConfigError(f"{prog} always uses {key}: {value}; use stage_2.py for {key}: {cfg[key]}")
    return (cfg.replace(**forced) if forced else cfg), args.outputs
