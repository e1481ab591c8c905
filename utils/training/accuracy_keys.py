"""Names of the accuracies in logs, metrics.csv and result JSONs, one rule for every evaluation set.

A run evaluates the sets of ``Data.test_sets`` (possibly none).  Their names:

* ``"test"``: the clean test set; keys ``test_acc`` (per epoch), ``last_acc``, ``best_acc``, ``base_acc``
  (the names the paper reproductions have always written);
* another clean set such as WebVision's ``"imagenet_val"``: ``imagenet_val_acc``, ``imagenet_val_last_acc``, ...;
* a set scored against its *given* (possibly wrong) labels ends in ``_given_labels`` (own data with
  ``val_fraction``: ``"val_given_labels"``), and its keys keep that qualifier at the end, so no reader mistakes
  them for clean accuracy: ``val_acc_given_labels``, ``val_last_acc_given_labels``, ``val_best_acc_given_labels``.
"""
from __future__ import annotations

from typing import Iterable, Mapping

GIVEN_LABELS = "_given_labels"  # suffix of an evaluation set whose labels are the given (noisy) ones


def acc_key(name: str, kind: str | None = None) -> str:
    """Key of set ``name``'s accuracy (%): per epoch (``kind`` None) or ``kind`` "last", "best", "base"."""
    stem, qualifier = (name[:-len(GIVEN_LABELS)], GIVEN_LABELS) if name.endswith(GIVEN_LABELS) else (name, "")
    if kind is None:
        return f"{stem}_acc{qualifier}"
    return f"{'' if name == 'test' else stem + '_'}{kind}_acc{qualifier}"


def accuracy_columns(accuracies: Mapping[str, float], *, prefix: str = "") -> dict[str, float]:
    """``{prefix + acc_key(name): accuracy rounded to 4 places}`` for history rows and metrics.csv."""
    return {prefix + acc_key(name): round(acc, 4) for name, acc in accuracies.items()}


def describe_accuracies(accuracies: Mapping[str, float]) -> str:
    """``"test acc 91.20, imagenet_val acc 80.10"`` or ``"val_acc_given_labels 88.10"`` for the log;
    ``"no evaluation"`` without sets."""
    if not accuracies:
        return "no evaluation"
    return ", ".join(f"{acc_key(name) if name.endswith(GIVEN_LABELS) else name + ' acc'} {acc:.2f}"
                     for name, acc in accuracies.items())


def accuracy_summary(history: list[dict], names: Iterable[str], *, base: Mapping[str, float] | None = None,
                     prefix: str = "") -> dict:
    """Per set: its per-epoch accuracies, the last, the best and (``base`` given) the accuracy before training,
    read from the ``history`` rows written with :func:`accuracy_columns` (same ``prefix``).  No set: ``{}``."""
    out = {}
    for name in names:
        accs = [row[prefix + acc_key(name)] for row in history]
        out.update({prefix + acc_key(name, "last"): accs[-1], prefix + acc_key(name, "best"): max(accs),
                    prefix + acc_key(name): accs})
        if base is not None:
            out[prefix + acc_key(name, "base")] = round(base[name], 4)
    return out


def describe_result(result: Mapping, names: Iterable[str], *, base: bool = False) -> str:
    """The final log line's accuracy part for the first set: ``"last acc 98.33 (best 99.07, base model 97.41)"``;
    ``"no evaluation set"`` without one."""
    name = next(iter(names), None)
    if name is None:
        return "no evaluation set"
    label = "acc" if name == "test" else acc_key(name)
    text = f"last {label} {result[acc_key(name, 'last')]:.2f} (best {result[acc_key(name, 'best')]:.2f}"
    return text + (f", base model {result[acc_key(name, 'base')]:.2f})" if base else ")")
