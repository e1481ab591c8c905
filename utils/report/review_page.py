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
from dataclasses import dataclass
from typing import Sequence

import numpy as np

THUMBNAIL_SIDE = 96  # px, the longer side of a thumbnail


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
              duplicate_groups: Sequence[np.ndarray] = (), duplicate_keys: Sequence[Sequence[str]] = ()) -> dict:
    """The JSON the page's script reads (see the module doc for the export arrays).

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
                  "score": [float(f"{float(s):.4g}") for s in shown.label_score]},
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


def review_html(*, title: str, data: dict) -> str:
    """The whole page: :data:`_PAGE` with the title and ``data`` (from :func:`page_data`) filled in."""
    blob = json.dumps(data, ensure_ascii=True, separators=(",", ":")).replace("</", "<\\/")
    return _PAGE.replace("__TITLE__", html.escape(title)).replace("__DATA__", blob)



def write_review_page(scores, *, path: str, report: str, keys: Sequence[str], class_names: Sequence[str], load_image,
                      order: np.ndarray, max_shown: int, export_paths: Sequence[str] | None,
                      export_labels: np.ndarray, duplicate_groups: Sequence[np.ndarray] = (), title: str) -> str:
    """Write the page ``path`` (atomically) for a report's :class:`~utils.report.sample_report.SampleScores`;
    ``report`` names the report on the page (the name of its stem).

    ``order``: dataset indices most suspect first; the first ``max_shown`` flagged ones are shown, each
    read once through ``load_image(index)`` for its thumbnail.  Returns the path.
    """
    from utils.core.io import save_text

    flagged = np.asarray(order)[np.asarray(scores.is_label_issue)[order]]
    top = flagged[:max_shown]
    shown = ShownSamples(index=top, key=[keys[i] for i in top], given=scores.given_label[top],
                         predicted=scores.predicted_label[top], predicted_prob=scores.predicted_prob[top],
                         label_score=scores.label_score[top], thumbnail=[thumbnail_uri(load_image(int(i))) for i in top])
    data = page_data(report=report, class_names=class_names, shown=shown,
                     num_flagged=len(flagged), num_samples=len(scores), export_paths=export_paths,
                     export_labels=export_labels, duplicate_groups=duplicate_groups,
                     duplicate_keys=[[keys[i] for i in g] for g in duplicate_groups])
    return save_text(review_html(title=title, data=data), path)

# The page.  Plain DOM and CSS; the script reads the JSON block, builds the cards once, and keeps every
# decision in `decisions` (index -> [decision, class]) mirrored to localStorage.
_PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body{font:14px system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{position:sticky;top:0;z-index:2;background:#fff;border-bottom:1px solid #ccc;padding:8px 12px}
h1{font-size:17px;margin:0 0 4px}
.bar{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin-top:4px}
.note{color:#555}
#grid{display:flex;flex-wrap:wrap;gap:8px;padding:12px}
.card{width:190px;background:#fff;border:2px solid #ddd;border-radius:6px;padding:6px;box-sizing:border-box;
content-visibility:auto;contain-intrinsic-size:190px 232px}
.card.focus{border-color:#1a66d6;box-shadow:0 0 0 2px #9cc0f5}
.card img{width:96px;height:96px;object-fit:contain;display:block;margin:0 auto;background:#eee;image-rendering:pixelated}
.card .path{font-size:11px;color:#666;word-break:break-all}
.card .labels b{color:#b00}
.card .buttons{display:flex;flex-wrap:wrap;gap:2px;margin-top:4px}
.card button{font-size:11px;padding:2px 4px}
.card button.on{background:#1a66d6;color:#fff;border-color:#1a66d6}
.card .dup{font-size:11px;color:#a05a00}
.card.d-keep{background:#eef8ee}.card.d-predicted{background:#eef3fc}.card.d-other{background:#f4eefc}
.card.d-remove{background:#fcecec;opacity:.75}.card.d-unsure{background:#fff8e0}
#help,#dups{padding:0 12px}
kbd{border:1px solid #aaa;border-radius:3px;padding:0 3px;background:#f3f3f3;font-size:12px}
</style></head>
<body>
<header>
<h1>__TITLE__</h1>
<div class="note" id="shown-note"></div>
<div class="bar">
<label>given <select id="f-given"><option value="">all</option></select></label>
<label>predicted <select id="f-pred"><option value="">all</option></select></label>
<label>given &rarr; predicted <select id="f-pair"><option value="">all</option></select></label>
<span id="visible"></span>
</div>
<div class="bar">
<span id="counts"></span>
<button id="export-labels">export corrected_labels.csv</button>
<button id="export-decisions">export decisions.csv</button>
<button id="clear">clear decisions</button>
</div>
</header>
<details id="help"><summary>How to review (keyboard)</summary>
<p>Click a card or move with <kbd>&rarr;</kbd>/<kbd>&darr;</kbd> (next) and <kbd>&larr;</kbd>/<kbd>&uarr;</kbd>
(previous). Decide the focused sample with <kbd>k</kbd> keep the given label, <kbd>p</kbd> take the predicted
label, <kbd>c</kbd> choose another class (then pick it in the list and press <kbd>Enter</kbd>), <kbd>r</kbd>
remove the sample, <kbd>u</kbd> unsure (kept with its given label), <kbd>x</kbd> undo. A decision moves to the
next card. Decisions are kept in this browser (localStorage) for this report and survive a reload.</p>
<p><b>corrected_labels.csv</b> lists every training sample (not only the flagged) as <code>path,label</code> with
the decisions applied and removed samples left out; train on it with <code>dataset: csv</code> and
<code>train_csv</code> set to the file. <b>decisions.csv</b> lists each decision: path, given, decision, new label.</p>
</details>
<div id="dups"></div>
<div id="grid"></div>
<script type="application/json" id="review-data">__DATA__</script>
<script>
"use strict";
performance.mark("review-script");
const D = JSON.parse(document.getElementById("review-data").textContent);
performance.mark("review-parsed");
const S = D.shown, C = D.classes, N = S.index.length;
const KEYS = {k: "keep", p: "predicted", r: "remove", u: "unsure"};
let decisions = {};
try { decisions = JSON.parse(localStorage.getItem(D.storage_key) || "{}"); } catch (e) { decisions = {}; }
let focus = -1;
const cards = [];
const dupOf = {};
D.duplicates.forEach((g, n) => g.index.forEach(i => { dupOf[i] = n; }));

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function save() { localStorage.setItem(D.storage_key, JSON.stringify(decisions)); }
function newLabel(pos) {  // class index after the decision, -1 removed
  const d = decisions[S.index[pos]];
  if (!d) return S.given[pos];
  if (d[0] === "predicted") return S.predicted[pos];
  if (d[0] === "other") return d[1];
  if (d[0] === "remove") return -1;
  return S.given[pos];
}
function fillClasses(select) {  // C options per card would cost seconds on a page of thousands of cards
  if (select.options.length > 1) return;
  const frag = document.createDocumentFragment();
  C.forEach((name, c) => frag.appendChild(el("option", {value: String(c)}, name)));
  select.appendChild(frag);
}
function paint(pos) {
  const card = cards[pos], d = decisions[S.index[pos]];
  card.className = "card" + (d ? " d-" + d[0] : "") + (pos === focus ? " focus" : "");
  card.querySelectorAll("button[data-d]").forEach(b => b.classList.toggle("on", !!d && b.dataset.d === d[0]));
  const select = card.querySelector("select");
  if (d && d[0] === "other") fillClasses(select);
  select.value = d && d[0] === "other" ? String(d[1]) : "";
  card.querySelector(".decision").textContent = d ? "decision: " + d[0] + (d[0] === "other" || d[0] === "predicted"
    ? " \u2192 " + C[newLabel(pos)] : "") : "";
}
function counts() {
  const c = {keep: 0, predicted: 0, other: 0, remove: 0, unsure: 0};
  let n = 0;
  for (let pos = 0; pos < N; pos++) { const d = decisions[S.index[pos]]; if (d) { c[d[0]]++; n++; } }
  document.getElementById("counts").textContent = "decided " + n + " of " + N + ": keep " + c.keep +
    ", predicted " + c.predicted + ", other class " + c.other + ", remove " + c.remove + ", unsure " + c.unsure;
}
function decide(pos, what, cls) {
  const i = S.index[pos];
  if (what === null) delete decisions[i]; else decisions[i] = [what, what === "other" ? cls : null];
  save(); paint(pos); counts();
}
function visible(pos) { return cards[pos].style.display !== "none"; }
function setFocus(pos) {
  const old = focus; focus = pos;
  if (old >= 0) paint(old);
  if (pos >= 0) { paint(pos); cards[pos].scrollIntoView({block: "nearest"}); }
}
function step(delta) {
  let pos = focus;
  for (let n = 0; n < N; n++) {
    pos += delta;
    if (pos < 0 || pos >= N) return;
    if (visible(pos)) { setFocus(pos); return; }
  }
}
function build() {
  const grid = document.getElementById("grid"), frag = document.createDocumentFragment();
  for (let pos = 0; pos < N; pos++) {
    const card = el("div", {"class": "card", "data-pos": pos, "data-index": S.index[pos]});
    card.appendChild(el("img", {src: D.thumbnails[pos], alt: S.key[pos], loading: "lazy", decoding: "async"}));
    card.appendChild(el("div", {"class": "path"}, S.key[pos]));
    const labels = el("div", {"class": "labels"});
    labels.appendChild(document.createTextNode("given " + C[S.given[pos]] + " \u2192 predicted "));
    labels.appendChild(el("b", {}, C[S.predicted[pos]]));
    labels.appendChild(document.createTextNode(" (" + S.prob[pos].toFixed(2) + ")"));
    card.appendChild(labels);
    card.appendChild(el("div", {"class": "score"}, "label score " + S.score[pos].toPrecision(2)));
    if (S.index[pos] in dupOf) card.appendChild(el("div", {"class": "dup"}, "identical file under another label (group " + (dupOf[S.index[pos]] + 1) + ")"));
    const buttons = el("div", {"class": "buttons"});
    [["keep", "keep"], ["predicted", "predicted"], ["remove", "remove"], ["unsure", "unsure"]].forEach(([d, t]) =>
      buttons.appendChild(el("button", {"data-d": d, type: "button"}, t)));
    const select = el("select", {"aria-label": "another class"});  // its classes are added when it is used
    select.appendChild(el("option", {value: ""}, "other class\u2026"));
    buttons.appendChild(select);
    card.appendChild(buttons);
    card.appendChild(el("div", {"class": "decision"}));
    cards.push(card); frag.appendChild(card);
  }
  grid.appendChild(frag);
  for (let pos = 0; pos < N; pos++) if (decisions[S.index[pos]]) paint(pos);
  grid.addEventListener("click", e => {
    const card = e.target.closest(".card");
    if (!card) return;
    const pos = +card.dataset.pos;
    if (e.target.dataset.d) { decide(pos, e.target.dataset.d); }
    if (e.target.tagName !== "SELECT") setFocus(pos);
  });
  ["focusin", "mousedown"].forEach(kind => grid.addEventListener(kind, e => {
    if (e.target.tagName === "SELECT") fillClasses(e.target); }));
  grid.addEventListener("change", e => {
    if (e.target.tagName !== "SELECT") return;
    const pos = +e.target.closest(".card").dataset.pos;
    if (e.target.value === "") decide(pos, null); else decide(pos, "other", +e.target.value);
    setFocus(pos);
  });
}
function filters() {
  const given = new Set(), pred = new Set(), pairs = new Map();
  for (let pos = 0; pos < N; pos++) {
    given.add(S.given[pos]); pred.add(S.predicted[pos]);
    const p = S.given[pos] + ">" + S.predicted[pos];
    pairs.set(p, (pairs.get(p) || 0) + 1);
  }
  const fill = (id, values, label) => { const s = document.getElementById(id);
    values.forEach(v => s.appendChild(el("option", {value: v[0]}, label(v)))); };
  const byName = (a, b) => a - b;
  fill("f-given", [...given].sort(byName).map(c => [String(c)]), v => C[+v[0]]);
  fill("f-pred", [...pred].sort(byName).map(c => [String(c)]), v => C[+v[0]]);
  fill("f-pair", [...pairs.entries()].sort((a, b) => b[1] - a[1]),
       v => C[+v[0].split(">")[0]] + " \u2192 " + C[+v[0].split(">")[1]] + " (" + v[1] + ")");
  ["f-given", "f-pred", "f-pair"].forEach(id => document.getElementById(id).addEventListener("change", applyFilters));
}
function applyFilters() {
  const g = document.getElementById("f-given").value, p = document.getElementById("f-pred").value,
        pair = document.getElementById("f-pair").value;
  let n = 0;
  for (let pos = 0; pos < N; pos++) {
    const ok = (g === "" || +g === S.given[pos]) && (p === "" || +p === S.predicted[pos]) &&
               (pair === "" || pair === S.given[pos] + ">" + S.predicted[pos]);
    cards[pos].style.display = ok ? "" : "none";
    if (ok) n++;
  }
  document.getElementById("visible").textContent = n + " of " + N + " shown samples match";
  if (focus < 0 || !visible(focus)) {  // the keys act on the first card the filters show
    let first = -1;
    for (let pos = 0; pos < N && first < 0; pos++) if (visible(pos)) first = pos;
    if (focus >= 0) { const old = focus; focus = -1; paint(old); }
    if (first >= 0) setFocus(first);
  }
}
function bytesOf(b64) { const s = atob(b64), out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i); return out; }
function uintArray(b64, width) { const b = bytesOf(b64), v = new DataView(b.buffer), n = b.length / width,
  out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = width === 2 ? v.getUint16(2 * i, true) : v.getUint32(4 * i, true);
  return out; }
function exportPaths() {
  const P = D.export.paths, prefix = uintArray(P.prefix, 2), len = uintArray(P.suffix_len, 4), out = [];
  let at = 0, prev = "";
  for (let i = 0; i < prefix.length; i++) {
    prev = prev.slice(0, prefix[i]) + P.suffixes.slice(at, at + len[i]); at += len[i]; out.push(prev);
  }
  return out;
}
function csvCell(s) { s = String(s); return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], {type: "text/csv"}));
  const a = el("a", {href: url, download: name}); document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
function exportLabels() {
  const paths = exportPaths(), labels = uintArray(D.export.labels, D.export.label_width);
  const changed = new Map();
  for (let pos = 0; pos < N; pos++) if (decisions[S.index[pos]]) changed.set(S.index[pos], newLabel(pos));
  const lines = ["path,label"];
  for (let i = 0; i < paths.length; i++) {
    const label = changed.has(i) ? changed.get(i) : labels[i];
    if (label >= 0) lines.push(csvCell(paths[i]) + "," + csvCell(C[label]));
  }
  download("corrected_labels.csv", lines.join("\n") + "\n");
}
function exportDecisions() {
  const paths = D.export.paths ? exportPaths() : null, lines = ["path,given,decision,new_label"];
  for (let pos = 0; pos < N; pos++) {
    const d = decisions[S.index[pos]];
    if (!d) continue;
    const label = newLabel(pos);
    lines.push([paths ? paths[S.index[pos]] : S.key[pos], C[S.given[pos]], d[0], label >= 0 ? C[label] : ""]
      .map(csvCell).join(","));
  }
  download("decisions.csv", lines.join("\n") + "\n");
}
function duplicatesSection() {
  if (!D.duplicates.length) return;
  const box = document.getElementById("dups");
  box.appendChild(el("h2", {style: "font-size:15px"}, "Identical files under different labels: " + D.duplicates.length + " groups"));
  const list = el("ol");
  D.duplicates.slice(0, 200).forEach(g => list.appendChild(el("li", {}, g.key.map((k, n) => k).join("  |  "))));
  box.appendChild(list);
  if (D.duplicates.length > 200) box.appendChild(el("p", {}, (D.duplicates.length - 200) + " more groups in the summary JSON"));
}
document.addEventListener("keydown", e => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const inSelect = e.target.tagName === "SELECT";
  if (inSelect && e.target.closest(".card")) {
    if (e.key === "Enter" || e.key === "Escape") { e.preventDefault(); e.target.blur();
      if (e.key === "Enter") step(1); }
    return;
  }
  if (inSelect) return;
  if (e.key === "ArrowRight" || e.key === "ArrowDown") { e.preventDefault(); step(1); return; }
  if (e.key === "ArrowLeft" || e.key === "ArrowUp") { e.preventDefault(); step(-1); return; }
  if (focus < 0) return;
  if (KEYS[e.key]) { decide(focus, KEYS[e.key]); step(1); }
  else if (e.key === "x") { decide(focus, null); }
  else if (e.key === "c") { e.preventDefault(); const s = cards[focus].querySelector("select"); fillClasses(s); s.focus(); }
});
document.getElementById("export-labels").addEventListener("click", exportLabels);
document.getElementById("export-decisions").addEventListener("click", exportDecisions);
document.getElementById("clear").addEventListener("click", () => {
  if (!confirm("Clear every decision of this report?")) return;
  decisions = {}; save(); for (let pos = 0; pos < N; pos++) paint(pos); counts(); });
if (!D.export.paths) { const b = document.getElementById("export-labels"); b.disabled = true;
  b.title = "the samples of this data set are not files: export decisions.csv instead"; }
document.getElementById("shown-note").textContent = D.num_flagged + " of " + D.num_samples +
  " training labels flagged; the " + N + " most suspect are shown" + (D.num_flagged > N ? " (" + (D.num_flagged - N) +
  " flags not shown: raise the config key review_samples)" : "") + ". Unflagged and undecided samples keep their label.";
build(); filters(); applyFilters(); counts(); duplicatesSection();
performance.mark("review-ready");
document.body.dataset.ready = "1";
</script>
</body></html>
"""
