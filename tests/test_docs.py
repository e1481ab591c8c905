"""The documentation points at things that exist: every relative link and anchor of README.md and docs/*.md,
every ``docs/<page>.md#anchor`` cited in the code, and every module named in the README's Layout."""
from __future__ import annotations

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CITED = re.compile(r"docs/([\w-]+\.md)#([\w-]+)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: str) -> set[str]:
    """Every heading anchor of the Markdown file ``path`` (repeated headings get -1, -2, ... as on GitHub)."""
    with open(path, encoding="utf-8") as f:
        text = FENCE.sub("", f.read())
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M):
        base = slug(heading)
        out.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return out


def links(page: str) -> list[str]:
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        text = FENCE.sub("", f.read())
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_slug_follows_github():
    assert slug("ACT's views (`views: act`, dataloader/act_augment.py)") == "acts-views-views-act-dataloaderact_augmentpy"
    assert slug("ACT / ACTO") == "act--acto"
    assert slug("IDO 1.6 Stage-2 views") == "ido-16-stage-2-views"


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_and_anchor_exists(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path else os.path.join(ROOT, page)
        if not os.path.exists(file):
            broken.append(f"{target}: no file {os.path.relpath(file, ROOT)}")
        elif anchor and file.endswith(".md") and anchor not in anchors(file):
            broken.append(f"{target}: no heading with anchor #{anchor}")
    assert not broken, f"{page}: " + "; ".join(broken)


def test_every_docs_anchor_cited_in_the_code_exists():
    broken = []
    for path in glob.glob(os.path.join(ROOT, "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as f:
            for page, anchor in CITED.findall(f.read()):
                target = os.path.join(ROOT, "docs", page)
                if not os.path.exists(target) or anchor not in anchors(target):
                    broken.append(f"{os.path.relpath(path, ROOT)}: docs/{page}#{anchor}")
    assert not broken, "; ".join(sorted(set(broken)))


def test_readme_layout_names_every_module_and_script():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        layout = f.read().split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    words = set(re.findall(r"[\w.]+", layout))
    files = [os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "*.py")) + glob.glob(os.path.join(ROOT, "sh", "*.sh"))]
    modules = [os.path.basename(p)[:-3] for folder in ("dataloader", "model", "utils/*", "benchmarks")
               for p in glob.glob(os.path.join(ROOT, folder, "*.py")) if not p.endswith("__init__.py")]
    missing = sorted(name for name in files + modules if name not in words)
    assert not missing, f"README's Layout does not name: {', '.join(missing)}"
