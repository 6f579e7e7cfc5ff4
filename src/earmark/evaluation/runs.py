"""Scoring an earmark output folder against reference annotations (``earmark evaluate``).

Metrics (all on the reference vocabulary, after mapping AudioSet classes to reference labels):

* event-based P/R/F1 and error rates (onset collar 0.2 s, offset collar max(0.2 s, 20 %)) and
  segment-based (1 s) metrics, micro, macro and per class: :mod:`earmark.evaluation.metrics`;
* PSDS1 and PSDS2 (polyphonic sound detection score, Bilen et al. 2020, ICASSP) from the
  framewise scores, computed threshold-independently over every distinct score value as in
  Ebbers et al. 2022 (ICASSP): :func:`earmark.evaluation.psds.psds`.

Outputs: a terminal table, ``metrics.json`` and a self-contained ``evaluation.html`` (per-class
table and PSD-ROC curves as inline SVG), each written atomically.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from earmark.evaluation.metrics import (
    RefEvent,
    event_based_metrics,
    file_key,
    load_reference,
    map_predictions,
    segment_based_metrics,
)
from earmark.evaluation.psds import PSDS1, PSDS2, FileScores, psds

__all__ = [
    "Evaluation",
    "evaluate",
    "expand_label_map",
    "load_predictions",
    "load_references",
    "render_html",
]

REFERENCE_SUFFIXES = (".tsv", ".txt", ".csv", ".jams")
SECONDS_PER_HOUR = 3600.0


# --------------------------------------------------------------------------------------------
# Loading


def load_references(path: str | Path) -> tuple[list[RefEvent], set[str]]:
    """Reference events from an annotation file or a folder of them (searched recursively).

    Returns the events and the keys (see :func:`file_key`) of the annotated files: the files
    named in the events, plus the stem of every per-file annotation (so a file whose annotation
    is empty still counts as annotated).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in REFERENCE_SUFFIXES)
    elif path.exists():
        files = [path]
    else:
        raise FileNotFoundError(f"reference {path} does not exist")
    if not files:
        raise ValueError(f"no annotation files ({', '.join(REFERENCE_SUFFIXES)}) in {path}")
    events: list[RefEvent] = []
    keys: set[str] = set()
    for file in files:
        found = load_reference(file)
        events += found
        keys |= {file_key(e.file) for e in found}
        if path.is_dir() and not any(file_key(e.file) != file_key(file.stem) for e in found):
            keys.add(file_key(file.stem))  # a per-file annotation, possibly empty
    return events, keys


def load_predictions(
    out_dir: str | Path,
) -> tuple[list[Any], dict[str, tuple[np.ndarray, float, list[Any], float]]]:
    """Events and framewise scores of an ``earmark detect`` output folder.

    Returns ``(events, {file key: (scores, hop, labels, duration)})``; the scores part is empty
    when the run saved none.
    """
    from earmark.outputs import read_events, read_scores

    out = Path(out_dir)
    events_file = out / "events.csv"
    if events_file.exists():
        events = read_events(events_file)
    else:
        per_file = sorted((out / "files").rglob("*.events.csv"))
        if not per_file and not (out / "files").is_dir():
            raise FileNotFoundError(f"{out} is not an earmark output folder (no events.csv)")
        events = [e for p in per_file for e in read_events(p)]
    scores: dict[str, tuple[np.ndarray, float, list[Any], float]] = {}
    for path in sorted((out / "files").rglob("*.scores.npz")):
        matrix, hop, labels, meta = read_scores(path)
        name = meta.get("file") or path.name[: -len(".scores.npz")]
        duration = float(meta.get("duration") or len(matrix) * hop)
        scores[file_key(name)] = (matrix, hop, labels, duration)
    return events, scores


def expand_label_map(
    label_map: Mapping[str, Sequence[str]], ontology: Any | None
) -> dict[str, list[str]]:
    """Add every ontology descendant of each listed class (by name) to the label map."""
    if ontology is None:
        return {k: list(v) for k, v in label_map.items()}
    out: dict[str, list[str]] = {}
    for label, names in label_map.items():
        expanded = list(names)
        for name in names:
            mid = ontology.find(name)
            if mid is None:
                continue
            for child in sorted(ontology.descendants(mid), key=ontology.order):
                child_name = ontology.name(child)
                if child_name not in expanded:
                    expanded.append(child_name)
        out[label] = expanded
    return out


def _map_scores(
    matrix: np.ndarray, labels: Sequence[Any], classes: Sequence[str], label_map: Mapping | None
) -> np.ndarray:
    """(frames, len(classes)): per reference class, the max over its mapped score columns."""
    out = np.zeros((len(matrix), len(classes)), dtype=np.float32)
    for k, cls in enumerate(classes):
        if label_map is not None:
            wanted = set(label_map.get(cls, ()))
            cols = [i for i, lab in enumerate(labels) if lab.name in wanted or lab.mid in wanted]
        else:
            cols = [i for i, lab in enumerate(labels) if lab.name.lower() == cls.lower()]
        if cols and len(matrix):
            out[:, k] = matrix[:, cols].max(axis=1)
    return out


# --------------------------------------------------------------------------------------------
# Orchestration


@dataclass
class Evaluation:
    """Everything ``earmark evaluate`` computes (``to_dict`` is ``metrics.json``)."""

    classes: list[str]
    event: dict[str, Any]
    segment: dict[str, Any]
    psds: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (NaN becomes ``null``)."""
        return _clean(asdict(self))


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def evaluate(
    pred_dir: str | Path,
    reference: str | Path,
    label_map: Mapping[str, Sequence[str]] | None = None,
    descendants: bool = True,
    ontology: Any | None = None,
    with_psds: bool = True,
) -> Evaluation:
    """Evaluate an ``earmark detect`` output folder against reference annotations.

    Args:
        pred_dir: the output folder of ``earmark detect``.
        reference: an annotation file or a folder of them (DCASE TSV, Audacity, CSV, scaper
            ``.txt``, JAMS).
        label_map: reference label -> AudioSet class names; ``None`` compares labels by name
            (case-insensitive).
        descendants: with a label map, also count every ontology descendant of a listed class.
        ontology: an :class:`earmark.labels.Ontology` (loaded from the model assets when needed
            and not given).
        with_psds: compute PSDS1/PSDS2 (needs the saved framewise scores).
    """
    warnings: list[str] = []
    ref_events, ref_keys = load_references(reference)
    predicted, raw_scores = load_predictions(pred_dir)
    if label_map is not None and descendants:
        if ontology is None:
            from earmark import assets
            from earmark.labels import Ontology

            ontology = Ontology.from_json(assets.resolve(assets.get_asset("ontology")).path)
        label_map = expand_label_map(label_map, ontology)
    ref_labels = sorted({e.label for e in ref_events})
    if label_map is not None:
        classes = list(dict.fromkeys([*ref_labels, *label_map]))
        unmapped = [c for c in ref_labels if c not in label_map]
        if unmapped:
            warnings.append(f"reference labels not in the label map (never predicted): {unmapped}")
        mapped = map_predictions(predicted, label_map)
    else:
        classes = ref_labels
        by_lower = {c.lower(): c for c in classes}
        mapped = [
            RefEvent(str(e.file), float(e.onset), float(e.offset), by_lower[e.label.lower()])
            for e in predicted
            if e.label.lower() in by_lower
        ]
    pred_keys = {file_key(e.file) for e in predicted} | set(raw_scores)
    extra = sorted(pred_keys - ref_keys)
    if extra:
        warnings.append(f"{len(extra)} predicted file(s) without reference, ignored: {extra[:5]}")
    missing = sorted(ref_keys - pred_keys)
    if missing:
        warnings.append(f"{len(missing)} annotated file(s) without predictions: {missing[:5]}")
    mapped = [e for e in mapped if file_key(e.file) in ref_keys]
    durations = {k: v[3] for k, v in raw_scores.items() if k in ref_keys}
    event = event_based_metrics(ref_events, mapped, labels=classes)
    segment = segment_based_metrics(ref_events, mapped, durations=durations, labels=classes)
    result = Evaluation(classes, event, segment, files=sorted(ref_keys), warnings=warnings)
    if with_psds:
        scored = {
            k: FileScores(_map_scores(m, labs, classes, label_map), hop, classes, dur)
            for k, (m, hop, labs, dur) in raw_scores.items()
            if k in ref_keys
        }
        if not scored:
            warnings.append("no framewise scores (run detect without --no-scores): no PSDS")
        else:
            if len(scored) < len(ref_keys):
                warnings.append("PSDS uses only the annotated files that have scores")
            for name, params in (("psds1", PSDS1), ("psds2", PSDS2)):
                result.psds[name] = psds(ref_events, scored, params, classes)
    return result


# --------------------------------------------------------------------------------------------
# Reports


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


_COLUMNS = ("Nref", "Nsys", "event F1", "event P", "event R", "event ER", "segment F1")


def _rows(ev: Evaluation) -> list[tuple[str, list[str]]]:
    rows = []
    for c in ev.classes:
        e, s = ev.event["class_wise"][c], ev.segment["class_wise"][c]
        rows.append(
            (
                c,
                [
                    str(e["Nref"]),
                    str(e["Nsys"]),
                    _fmt(e["f1"]),
                    _fmt(e["precision"]),
                    _fmt(e["recall"]),
                    _fmt(e["error_rate"]),
                    _fmt(s["f1"]),
                ],
            )
        )
    for name, e, s in (
        ("micro", ev.event["overall"], ev.segment["overall"]),
        ("macro", ev.event["macro"], ev.segment["macro"]),
    ):
        counts = [str(e["Nref"]), str(e["Nsys"])] if name == "micro" else ["", ""]
        rows.append(
            (
                name,
                [
                    *counts,
                    _fmt(e["f1"]),
                    _fmt(e["precision"]),
                    _fmt(e["recall"]),
                    _fmt(e["error_rate"]),
                    _fmt(s["f1"]),
                ],
            )
        )
    return rows


def print_table(ev: Evaluation, stream: TextIO) -> None:
    """Per-class and overall metrics as a text table, then error rates and PSDS."""
    rows = _rows(ev)
    width = max([len("class")] + [len(name) for name, _ in rows])
    stream.write(f"{'class':<{width}}  " + "  ".join(f"{c:>10}" for c in _COLUMNS) + "\n")
    for i, (name, cells) in enumerate(rows):
        if i == len(ev.classes):
            stream.write("-" * (width + 12 * len(_COLUMNS)) + "\n")
        stream.write(f"{name:<{width}}  " + "  ".join(f"{c:>10}" for c in cells) + "\n")
    o = ev.event["overall"]
    stream.write(
        f"\nevent-based ER {_fmt(o['error_rate'])} (S {o['S']}, D {o['D']}, I {o['I']};"
        " collars: onset 0.2 s, offset max(0.2 s, 20 %))\n"
    )
    s = ev.segment["overall"]
    stream.write(
        f"segment-based (1 s) F1 {_fmt(s['f1'])}, ER {_fmt(s['error_rate'])}"
        f" (S {s['S']}, D {s['D']}, I {s['I']})\n"
    )
    for name, res in ev.psds.items():
        stream.write(f"{name.upper()} {_fmt(res['psds'])}\n")
    for warning in ev.warnings:
        stream.write(f"warning: {warning}\n")


# Okabe-Ito (colour-blind safe; black is kept for the PSD-ROC); dashes tell cycles apart
_PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442")
_DASHES = ("", "6 3", "2 2")


def _svg_roc(title: str, res: Mapping[str, Any], width: int = 580, height: int = 300) -> str:
    """A PSD-ROC plot (per-class curves thin, the PSD-ROC thick, a legend on the right) as an
    inline SVG element."""
    max_x = float(res["params"]["max_efpr"])
    left, right, top, bottom = 48, 160, 24, 40
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + pw * min(x, max_x) / max_x

    def sy(y: float) -> float:
        return top + ph * (1.0 - y)

    def path(xs: Sequence[float], ys: Sequence[float]) -> str:
        pts: list[str] = []
        prev = 0.0
        for x, y in zip(xs, ys, strict=True):  # staircase: hold each TPR until the next eFPR
            pts.append(f"{sx(x):.1f},{sy(prev):.1f}")
            pts.append(f"{sx(x):.1f},{sy(y):.1f}")
            prev = y
        pts.append(f"{sx(max_x):.1f},{sy(prev):.1f}")
        return "M" + " L".join(pts)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>',
        f'<text x="{left}" y="16" font-size="13">{html.escape(title)} = {_fmt(res["psds"])}</text>',
    ]
    for i in range(6):
        y = i / 5
        parts.append(
            f'<text x="{left - 6}" y="{sy(y) + 4:.1f}" font-size="10" '
            f'text-anchor="end">{y:.1f}</text>'
        )
        x = max_x * i / 5
        parts.append(
            f'<text x="{sx(x):.1f}" y="{top + ph + 14}" font-size="10" '
            f'text-anchor="middle">{x:g}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2}" y="{height - 6}" font-size="11" text-anchor="middle">'
        "eFPR (per hour)</text>"
    )
    parts.append(
        f'<text x="12" y="{top + ph / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + ph / 2})">TPR</text>'
    )
    legend_x, step = left + pw + 14, min(14.0, (ph - 14) / max(len(res.get("class_roc", {})), 1))

    def legend(row: int, label: str, stroke: str, widths: float, dash: str) -> None:
        y = top + 8 + row * step
        parts.append(
            f'<line x1="{legend_x}" y1="{y:.1f}" x2="{legend_x + 20}" y2="{y:.1f}" '
            f'stroke="{stroke}" stroke-width="{widths}" stroke-dasharray="{dash}"/>'
        )
        parts.append(
            f'<text x="{legend_x + 26}" y="{y + 4:.1f}" font-size="11">{html.escape(label)}</text>'
        )

    roc = res.get("roc", {})
    if roc.get("efpr"):
        legend(0, "PSD-ROC", "#000", 2.5, "")
    for i, (cls, curve) in enumerate(res.get("class_roc", {}).items()):
        color, dash = _PALETTE[i % len(_PALETTE)], _DASHES[(i // len(_PALETTE)) % len(_DASHES)]
        parts.append(
            f'<path d="{path(curve["efpr"], curve["tpr"])}" fill="none" stroke="{color}" '
            f'stroke-width="1.5" stroke-dasharray="{dash}" opacity="0.85">'
            f"<title>{html.escape(cls)}</title></path>"
        )
        legend(i + 1, cls, color, 1.5, dash)
    if roc.get("efpr"):
        parts.append(
            f'<path d="{path(roc["efpr"], roc["tpr"])}" fill="none" stroke="#000" '
            'stroke-width="2.5"><title>PSD-ROC</title></path>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def render_html(ev: Evaluation, title: str = "earmark evaluation") -> str:
    """A self-contained HTML page: summary, per-class table, PSD-ROC curves (inline SVG)."""
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in ("class", *_COLUMNS))
    body = []
    for i, (name, cells) in enumerate(_rows(ev)):
        cls = ' class="total"' if i >= len(ev.classes) else ""
        tds = "".join(f"<td>{esc(c)}</td>" for c in cells)
        body.append(f"<tr{cls}><th>{esc(name)}</th>{tds}</tr>")
    o, s = ev.event["overall"], ev.segment["overall"]
    summary = [
        f"event-based F1 {_fmt(o['f1'])}, ER {_fmt(o['error_rate'])} "
        f"(S {o['S']}, D {o['D']}, I {o['I']})",
        f"segment-based (1 s) F1 {_fmt(s['f1'])}, ER {_fmt(s['error_rate'])}",
        *(f"{k.upper()} {_fmt(v['psds'])}" for k, v in ev.psds.items()),
    ]
    plots = "\n".join(_svg_roc(k.upper(), v) for k, v in ev.psds.items())
    warns = "".join(f"<li>{esc(w)}</li>" for w in ev.warnings)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; }}
tr th:first-child {{ text-align: left; }}
tr.total {{ font-weight: bold; background: #f4f4f4; }}
.plots svg {{ margin: 0 1em 1em 0; }}
</style></head>
<body>
<h1>{esc(title)}</h1>
<p>{len(ev.files)} annotated file(s), {len(ev.classes)} class(es).
Event-based: onset collar 0.2 s, offset collar max(0.2 s, 20 % of the event).</p>
<ul>{"".join(f"<li>{esc(x)}</li>" for x in summary)}</ul>
<h2>Per class</h2>
<table id="per-class"><thead><tr>{head}</tr></thead><tbody>
{"".join(body)}
</tbody></table>
<h2>PSD-ROC</h2>
<div class="plots">{plots or "<p>no framewise scores: PSDS not computed</p>"}</div>
{f"<h2>Warnings</h2><ul>{warns}</ul>" if warns else ""}
</body></html>
"""
