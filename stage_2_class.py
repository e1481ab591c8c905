"""IDO stage 2 with one beta mixture per noisy class: ``stage_2.py`` with ``bmm: class``.

    python stage_2_class.py --config config/stage2/cifar100.yaml --noise_mode sym --noise_ratio 0.4
"""
from __future__ import annotations

from typing import Sequence

import stage_2
from utils.core.entry import run_main


FORCED = {"bmm": "class"}  # the one key this program fixes


def main(argv: Sequence[str] | None = None) -> dict:
    return stage_2.main(argv, prog="stage_2_class.py", forced=FORCED)


if __name__ == "__main__":
    run_main(main)
