"""What a review card says a method saw of one sample, in words a person reads (docs/review.md#the-page).

IDO's evidence is the wrong-event count: how many of the model's predictions of the sample disagreed with its
given label, out of how many predictions (:class:`WrongEventTrials`; "wrong in 31 of 42 predictions").  The
label score (a clean posterior of a beta mixture; ACTO: the robust model's probability of the given label) is
shown to three decimals and below 0.001 as "< 0.001" (:func:`score_text`): a posterior of 8.3e-248 says no more
to a reviewer than 1e-9, and the digits are noise.  Pure functions of numbers; the CSV keeps the values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from utils.method.steps import VIEWS

SCORE_FLOOR = 0.001  # scores are shown in steps of this; below it they read "< 0.001"


@dataclass(frozen=True)
class WrongEventTrials:
    """The predictions a wrong-event count is out of (utils/method/steps.py): stage 1 counts one per epoch
    (``stage1_step``: one forward pass), stage 2 starts from stage 1's totals and adds one per view (weak,
    strong: ``stage2_step``, :data:`~utils.method.steps.VIEWS`) per stage-2 epoch."""

    stage1_epochs: int
    stage2_epochs: int = 0
    views: int = VIEWS

    @property
    def total(self) -> int:
        """The most wrong events a sample can have."""
        return self.stage1_epochs + self.views * self.stage2_epochs

    def unit(self) -> str:
        """What is counted: ``epochs`` (stage 1, one prediction each) or ``predictions`` (singular for one)."""
        unit = "predictions" if self.stage2_epochs else "epochs"
        return unit[:-1] if self.total == 1 else unit

    def card_line(self, count: int) -> str:
        """``"wrong in {count} of {total} {unit}"``: the card's line for one sample's count."""
        return f"wrong in {int(count)} of {self.total} {self.unit()}"

    def describe(self) -> str:
        """The page header's sentence on what the counts count."""
        s1, s2 = ("s" * (n != 1) for n in (self.stage1_epochs, self.stage2_epochs))
        if not self.stage2_epochs:
            return (f"Wrong: in how many of the {self.stage1_epochs} stage-1 training epoch{s1} the model's "
                    "prediction differed from the given label")
        return (f"Wrong: how many of the sample's {self.total} training predictions differed from the given label: "
                f"one in each of {self.stage1_epochs} stage-1 epoch{s1}, then {self.views} (weak and strong "
                f"augmentation) in each of {self.stage2_epochs} stage-2 epoch{s2}")


def shown_score(scores) -> np.ndarray:
    """Label scores (N,) in [0, 1] as a person sees them: in whole steps of :data:`SCORE_FLOOR` (float64,
    rounded down; 0 for every score below 0.001).  Scores equal here are equal on the page, and
    :func:`utils.report.sample_report.suspect_order` orders them by other evidence."""
    return np.floor(np.asarray(scores, dtype=np.float64) / SCORE_FLOOR + 1e-9)


def score_text(score: float) -> str:
    """A label score in [0, 1] for a person: ``"< 0.001"`` below :data:`SCORE_FLOOR`, else three decimals
    rounded down (:func:`shown_score`; 0.4996, a flag, reads 0.499, not 0.500)."""
    score = float(score)
    if math.isnan(score):
        return "not a number"
    if score < SCORE_FLOOR:
        return f"< {SCORE_FLOOR:g}"
    return f"{float(shown_score(score)) * SCORE_FLOOR:.3f}"
