"""The review page ``..._review.html``: the flagged samples as thumbnails, a decision per sample, and
the export of ``corrected_labels.csv`` that ``dataset: csv`` trains on.

One self-contained HTML file (inline CSS and JavaScript, thumbnails as ``data:`` URIs, no network):
:func:`review_html` is a pure function from arrays and thumbnails to that string, :func:`thumbnail_uri`
makes one thumbnail.  Decisions live in the browser's ``localStorage`` under a key made of the report
name and a digest of the page's data, so a reload keeps them and another report never sees them.

The export needs every training sample's path and label, not only the flagged ones.  At a million
samples they are embedded compactly: the paths front-coded (shared-prefix lengths and suffix lengths
as base64 little-endian integer arrays, the suffixes as one string) and the labels as one base64
array of class indices; the browser expands them only when the file is exported.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from utils.report.evidence import WrongEventTrials, score_text

THUMBNAIL_SIDE = 96  # px, the longer side of a thumbnail
TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "review_page.html")


@dataclass(frozen=True)
class ShownSamples:
    """The flagged samples on the page, most suspect first (all sequences of the same length S)."""

    index: np.ndarray            # (S,) int, dataset index (the position in the export arrays)
    key: Sequence[str]           # the path shown (relative to data_path where possible)
    given: np.ndarray            # (S,) int class index, the label trained on
    predicted: np.ndarray        # (S,) int class index
    predicted_prob: np.ndarray   # (S,) float in [0, 1]
    label_score: np.ndarray      # (S,) float in [0, 1], low = suspect
    thumbnail: Sequence[str]     # data: URIs
    wrong_events: np.ndarray | None = None  # (S,) int, IDO's counts (None for ACTO)

    def __len__(self) -> int:
        return len(self.index)


def thumbnail_uri(image, *, side: int = THUMBNAIL_SIDE, quality: int = 80) -> str:
    """A PIL image as a ``data:image/jpeg;base64,...`` URI whose longer side is ``side`` px.

    Small images (8x8 digits) are enlarged with nearest-neighbour sampling so their pixels stay visible.
    """
    from PIL import Image

    image = image.convert("RGB")
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.NEAREST if scale > 1 else Image.BICUBIC
    buffer = io.BytesIO()
    image.resize(size, resample).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def front_code(paths: Sequence[str]) -> dict:
    """Paths as ``{"prefix": base64 <u2, "suffix_len": base64 <u4, "suffixes": str}`` in UTF-16 code units
    (the unit of JavaScript strings): path i = path i-1 cut to ``prefix[i]`` units + its next
    ``suffix_len[i]`` units of ``suffixes``."""
    prefix = np.zeros(len(paths), np.uint16)
    suffix_len = np.zeros(len(paths), np.uint32)
    parts = []
    previous = b""
    for i, path in enumerate(paths):
        units = path.encode("utf-16-le", "surrogatepass")
        limit = min(len(units), len(previous), 2 * 65535)
        shared = 0
        while shared < limit and units[shared] == previous[shared]:
            shared += 1
        shared -= shared % 2
        prefix[i] = shared // 2
        suffix_len[i] = (len(units) - shared) // 2
        parts.append(units[shared:])
        previous = units
    suffixes = b"".join(parts).decode("utf-16-le", "surrogatepass")
    return {"prefix": _b64(prefix, "<u2"), "suffix_len": _b64(suffix_len, "<u4"), "suffixes": suffixes}


def page_data(*, report: str, class_names: Sequence[str], shown: ShownSamples, num_flagged: int,
              num_samples: int, export_paths: Sequence[str] | None, export_labels: np.ndarray,
              duplicate_groups: Sequence[np.ndarray] = (), duplicate_keys: Sequence[Sequence[str]] = (),
              trials: WrongEventTrials | None = None, score_name: str = "label score") -> dict:
    """The JSON the page's script reads (see the module doc for the export arrays).

    Each card's words are made here (utils/report/evidence.py): ``shown.seen`` "wrong in 31 of 42 predictions"
    where ``trials`` says what ``shown.wrong_events`` count (else None), ``shown.score_text`` "{score_name}
    < 0.001"; ``seen_note`` is the header's sentence on what the counts count.

    ``export_paths`` / ``export_labels``: every sample of the export, the ``num_samples`` training samples
    first in dataset order (their decisions apply), then any not judged (held out); ``export_paths`` None
    when the samples are not files (no ``corrected_labels.csv``, the decisions file only).
    ``duplicate_groups``: dataset indices of identical files under different labels, ``duplicate_keys``
    their shown paths.
    """
    labels = np.asarray(export_labels, dtype=np.int64)
    label_dtype = "<u2" if len(class_names) <= 65535 else "<u4"
    data = {
        "report": report, "classes": [str(c) for c in class_names], "num_samples": int(num_samples),
        "num_flagged": int(num_flagged),
        "shown": {"index": [int(i) for i in shown.index], "key": [str(k) for k in shown.key],
                  "given": [int(c) for c in shown.given], "predicted": [int(c) for c in shown.predicted],
                  "prob": [round(float(p), 4) for p in shown.predicted_prob],
                  "score_text": [f"{score_name} {score_text(s)}" for s in shown.label_score],
                  "seen": None if trials is None or shown.wrong_events is None
                  else [trials.card_line(n) for n in shown.wrong_events]},
        "seen_note": None if trials is None else trials.describe(),
        "export": {"count": int(len(labels)), "label_width": 2 if label_dtype == "<u2" else 4,
                   "labels": _b64(labels, label_dtype),
                   "paths": None if export_paths is None else front_code(export_paths)},
        "duplicates": [{"index": [int(i) for i in g], "key": [str(k) for k in keys]}
                       for g, keys in zip(duplicate_groups, duplicate_keys)],
    }
    if export_paths is not None and len(export_paths) != len(labels):
        raise ValueError(f"{len(export_paths)} export paths but {len(labels)} export labels")
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    data["storage_key"] = f"label-review:{report}:{digest}"
    data["thumbnails"] = [str(t) for t in shown.thumbnail]
    return data


def page_template() -> str:
    """review_page.html beside this module: the page's HTML, CSS and JavaScript, with the placeholders
    ``__TITLE__`` and ``__DATA__``.  Plain DOM and CSS; the script reads the JSON block, builds the cards once,
    and keeps every decision in ``decisions`` (index -> [decision, class]) mirrored to localStorage."""
    with open(TEMPLATE, encoding="utf-8") as f:
        return f.read()


# characters of the embedded JSON written as JSON escapes: with no "<" the HTML parser cannot leave the script
# element or enter its escaped states ("<!--<script" swallows the page's own script), ">" and "&" for good measure,
# U+2028/U+2029 because older JavaScript parsers read them as line ends
_INERT_JSON = {ord(c): f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"}


def inert_json(data) -> str:
    """``data`` as JSON that is inert inside ``<script type="application/json">``: no ``<``, ``>``, ``&``,
    U+2028 or U+2029 character appears in it (each is written ``\\u003c``, ...), so no file or class name can
    change how the page parses; ``JSON.parse`` (and :func:`json.loads`) return exactly ``data``."""
    return json.dumps(data, ensure_ascii=True, separators=(",", ":")).translate(_INERT_JSON)


def review_html(*, title: str, data: dict) -> str:
    """The whole page: :func:`page_template` with the title (HTML-escaped) and ``data`` (from :func:`page_data`,
    as :func:`inert_json`) filled in.  Each placeholder is replaced once, in one pass, so nothing a title or the
    data holds is read as one."""
    values = {"__TITLE__": html.escape(title), "__DATA__": inert_json(data)}
    return re.sub(r"__TITLE__|__DATA__", lambda m: values[m.group(0)], page_template())



def write_review_page(scores, *, path: str, report: str, keys: Sequence[str], class_names: Sequence[str], load_image,
                      order: np.ndarray, max_shown: int, export_paths: Sequence[str] | None,
                      export_labels: np.ndarray, duplicate_groups: Sequence[np.ndarray] = (), title: str,
                      trials: WrongEventTrials | None = None, score_name: str = "label score") -> str:
    """Write the page ``path`` (atomically) for a report's :class:`~utils.report.sample_report.SampleScores`;
    ``report`` names the report on the page (the name of its stem); ``trials`` and ``score_name``: what the
    cards say of the wrong events and the label score (:func:`page_data`).

    ``order``: dataset indices most suspect first; the first ``max_shown`` flagged ones are shown, each
    read once through ``load_image(index)`` for its thumbnail.  Returns the path.
    """
    from utils.core.io import save_text

    flagged = np.asarray(order)[np.asarray(scores.is_label_issue)[order]]
    top = flagged[:max_shown]
    shown = ShownSamples(index=top, key=[keys[i] for i in top], given=scores.given_label[top],
                         predicted=scores.predicted_label[top], predicted_prob=scores.predicted_prob[top],
                         label_score=scores.label_score[top],
                         thumbnail=[thumbnail_uri(load_image(int(i))) for i in top], wrong_events=None if scores.wrong_events is None else scores.wrong_events[top])
    data = page_data(report=report, class_names=class_names, shown=shown, trials=trials, score_name=score_name,
                     num_flagged=len(flagged), num_samples=len(scores), export_paths=export_paths,
                     export_labels=export_labels, duplicate_groups=duplicate_groups,
                     duplicate_keys=[[keys[i] for i in g] for g in duplicate_groups])
    return save_text(review_html(title=title, data=data), path)
