"""benchmarks/loader.py: the 'old' views it reconstructs are the pre-issue-16 pipeline, and its section
replaces only its own part of docs/performance.md."""
from __future__ import annotations

import os
import sys

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from utils.training.config import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

import loader  # noqa: E402


def test_old_and_new_views():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    for family in ("small", "large"):
        views = loader.variants(family)
        old_pair, new_pair = views[("stage 2", "old")](img), views[("stage 2", "new")](img)
        assert all(v.dtype == torch.float32 and v.shape == (3, 224, 224) for v in old_pair)
        assert all(v.dtype == torch.uint8 and v.shape == (3, 224, 224) for v in new_pair)
        old_strong = [type(op).__name__ for op in views[("stage 2", "old")].strong.transforms]
        assert old_strong[0] == "Resize" and "RandAugment" in old_strong and "RandomErasing" in old_strong
        assert views[("stage 2", "old")].shared is None and isinstance(views[("stage 2", "new")].shared, T.Resize)
        assert views[("stage 1", "old")](img).dtype == torch.float32
        assert views[("stage 1", "new")](img).dtype == torch.uint8


def test_section_replaced_between_markers(tmp_path):
    path = str(tmp_path / "perf.md")
    with open(path, "w") as f:
        f.write("# Performance\n\nother text\n")
    loader.write_section(f"{loader.BEGIN}\nfirst\n{loader.END}", path)
    loader.write_section(f"{loader.BEGIN}\nsecond\n{loader.END}", path)
    with open(path) as f:
        text = f.read()
    assert text == f"# Performance\n\nother text\n\n{loader.BEGIN}\nsecond\n{loader.END}\n"
