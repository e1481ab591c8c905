"""Reference implementations the exactness tests compare the product against: the plain forms (the docs' form
of the loss, the report's table as N dicts, stage 1's "complete" check by its old name) that the product replaced
by faster or more general ones.  Nothing in the product calls them; benchmarks/scale.py times
:func:`sample_rows` as the ``before`` of the CSV writer."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from utils.method.losses import LOSS_TERMS, loss_weights, weighted_dynamic_loss
from utils.report.sample_report import SampleScores, scores_from_predictions, suspect_order
from utils.training.outputs import Stage1Outputs
from utils.workflow.continuation import finished_result


def dynamic_loss(logits_weak: torch.Tensor, logits_strong: torch.Tensor, labels: torch.Tensor, *,
                 clean_posterior: Any, noisy_posterior: Any, clean_cdf: Any, noisy_cdf: Any,
                 entropy_weight: str = "confidence",
                 noisy_weight: str = "one_minus_clean") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """IDO dynamic loss of one batch from the per-sample BMM outputs tau1, tau2, F1, F2 ((B,) tensors or arrays,
    treated as constants), the form of docs/fidelity.md#ido-17-dynamic-loss: ``(total, {"clean": L_C, "sim":
    L_SIM, "noisy": L_N})``.  Stage 2 runs :func:`~utils.method.losses.weighted_dynamic_loss` with the weights
    of :func:`~utils.method.losses.loss_weights` gathered from a table; this composes the two per batch."""
    device = logits_weak.device
    outputs = {name: torch.as_tensor(value).detach().to(device=device, dtype=torch.float32) for name, value in (
        ("clean_posterior", clean_posterior), ("noisy_posterior", noisy_posterior), ("clean_cdf", clean_cdf),
        ("noisy_cdf", noisy_cdf))}
    weights = loss_weights(**outputs, noisy_weight=noisy_weight)
    total, parts = weighted_dynamic_loss(logits_weak, logits_strong, labels, weights=weights,
                                         entropy_weight=entropy_weight)
    return total, dict(zip(LOSS_TERMS, parts.unbind(0)))


def sample_scores(probs: np.ndarray, given: np.ndarray, *, label_score: np.ndarray | None = None,
                  wrong_events: np.ndarray | None = None, true_label: np.ndarray | None = None,
                  not_judged: dict | None = None) -> SampleScores:
    """The report's scores from the final model's softmax ``probs`` (N, C) and the given labels (N,), reduced
    on the host here; the product reduces each batch on the device
    (:func:`utils.training.engine.predict_labels`) and calls
    :func:`~utils.report.sample_report.scores_from_predictions`."""
    probs = np.asarray(probs)
    given = np.asarray(given, dtype=np.int64)
    rows = np.arange(len(given))
    predicted = probs.argmax(axis=1)
    return scores_from_predictions(predicted, probs[rows, predicted], probs[rows, given], given,
                                   label_score=label_score, wrong_events=wrong_events, true_label=true_label,
                                   not_judged=not_judged)


def sample_rows(scores: SampleScores, *, paths: Sequence[str], class_names: Sequence[str] | None) -> list[dict]:
    """The report's table as one dict per training sample in suspect order (keys ``COLUMNS``; no ``true_label``
    where the truth is unknown, an empty ``wrong_events`` where there are none): a ``csv.DictWriter`` over these
    rows gives the bytes :func:`~utils.report.sample_report.write_samples_csv` streams."""
    def name(label) -> str:
        return str(label) if class_names is None else str(class_names[label])

    def six_digits(value) -> float:
        return float(f"{float(value):.6g}")

    rows = []
    for i in suspect_order(scores):
        row = {"index": int(i), "path": paths[i], "given_label": name(scores.given_label[i]),
               "predicted_label": name(scores.predicted_label[i]),
               "predicted_prob": six_digits(scores.predicted_prob[i]),
               "wrong_events": "" if scores.wrong_events is None else int(scores.wrong_events[i]),
               "label_score": six_digits(scores.label_score[i]),
               "is_label_issue": bool(scores.is_label_issue[i])}
        if scores.true_label is not None:
            row["true_label"] = name(scores.true_label[i])
        rows.append(row)
    return rows


def stage1_complete(cfg, fingerprint) -> str | None:
    """Stage 1's result JSON (its wrong events' JSON) when ``cfg.output_dir`` holds a finished stage 1 of this data
    (``fingerprint``) and these settings, else None: what clean_labels.py asks of stage 1 through
    :func:`utils.workflow.continuation.next_step`."""
    return finished_result(Stage1Outputs.of(cfg), cfg, fingerprint)
