"""The corrections of a review as strong labels: DCASE TSV, Audacity labels, Raven tables.

Written into ``RUN_DIR/reviews/`` after every decision (atomically):

* ``labels.tsv``: the positives (accepted, corrected and added events), DCASE TSV with a
  header ``filename onset offset event_label status reviewer time``;
* ``negatives.tsv``: the rejected detections (hard negatives: *not* ``event_label`` there);
* ``regions.tsv``: the stretches of audio the reviewer vouched for (every reviewed event with
  up to :data:`CONTEXT` seconds around it, cut short of unreviewed detections): what
  ``earmark train --from-reviews`` learns from, positives inside as events, the rest as
  negatives;
* ``audacity/<stem>.txt`` and ``audacity/<stem>.negatives.txt``: Audacity label tracks;
* ``raven/<stem>.selections.txt`` and ``raven/<stem>.negatives.selections.txt``: Raven
  selection tables.

``earmark train --labelled RUN_DIR/reviews/labels.tsv`` reads the positives back as strongly
labelled recordings (the file names are absolute paths).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from earmark.outputs import atomic_write_text
from earmark.review.items import POSITIVE, Item

CONTEXT = 1.0
"""Seconds of audio kept on each side of a reviewed event in ``regions.tsv``."""
TSV_HEADER = ("filename", "onset", "offset", "event_label", "status", "reviewer", "time")
RAVEN_HEADER = (
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Annotation",
    "Status",
    "Reviewer",
)


def _tsv(rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    for row in rows:
        writer.writerow(row)
    return out.getvalue()


def dcase_tsv(items: Sequence[Item]) -> str:
    """DCASE TSV (with a header and review columns) of ``items``."""
    rows = [
        (i.file, f"{i.onset:.3f}", f"{i.offset:.3f}", i.label, i.status, i.user or "", i.time)
        for i in sorted(items, key=lambda i: (i.file, i.onset, i.label))
    ]
    return _tsv([TSV_HEADER, *rows])


def audacity_labels(items: Sequence[Item]) -> str:
    """An Audacity label track (``onset offset label``, tab separated) of ``items``."""
    rows = sorted(items, key=lambda i: (i.onset, i.label))
    return "".join(f"{i.onset:.6f}\t{i.offset:.6f}\t{i.label}\n" for i in rows)


def raven_table(items: Sequence[Item]) -> str:
    """A Raven selection table of ``items`` (one spectrogram-view row per selection)."""
    rows = sorted(items, key=lambda i: (i.onset, i.label))
    return _tsv(
        [
            RAVEN_HEADER,
            *(
                (
                    n,
                    "Spectrogram 1",
                    1,
                    f"{i.onset:.6f}",
                    f"{i.offset:.6f}",
                    0,
                    16000,
                    i.label,
                    i.status,
                    i.user or "",
                )
                for n, i in enumerate(rows, start=1)
            ),
        ]
    )


def reviewed_regions(
    items: Sequence[Item], durations: Mapping[str, float]
) -> list[tuple[str, float, float]]:
    """``(file, start, end)`` the reviewer vouched for: every reviewed event with
    :data:`CONTEXT` seconds around it (within the recording), cut short of any unreviewed
    detection nearby, overlapping stretches merged."""
    pending: dict[str, list[Item]] = {}
    for item in items:
        if item.status == "pending":
            pending.setdefault(item.file, []).append(item)
    spans: dict[str, list[tuple[float, float]]] = {}
    for item in (i for i in items if i.status != "pending"):
        start, end = max(0.0, item.onset - CONTEXT), item.offset + CONTEXT
        duration = durations.get(item.file)
        if duration is not None:
            end = min(end, duration)
        for p in pending.get(item.file, ()):
            if p.offset <= item.onset:
                start = max(start, p.offset)
            elif p.onset >= item.offset:
                end = min(end, p.onset)
        spans.setdefault(item.file, []).append((start, end))
    regions = []
    for file, found in sorted(spans.items()):
        merged: list[list[float]] = []
        for start, end in sorted(found):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        regions += [(file, round(a, 3), round(b, 3)) for a, b in merged if b > a]
    return regions


def _stem(file: str, taken: dict[str, str]) -> str:
    """A per-file export name: the audio's name, numbered when two files share it."""
    stem = Path(file).stem
    name, n = stem, 1
    while name in taken.values() and taken.get(file) != name:
        n += 1
        name = f"{stem}-{n}"
    taken[file] = name
    return name


def write_exports(folder: Path, items: Sequence[Item], durations: Mapping[str, float]) -> None:
    """Write every export of ``items`` (the events of a run under review, ``durations``: seconds
    per file) into ``folder`` (see the module docstring)."""
    reviewed = [i for i in items if i.status != "pending"]
    positives = [i for i in reviewed if i.status in POSITIVE]
    negatives = [i for i in reviewed if i.status == "rejected" and i.original]
    atomic_write_text(folder / "labels.tsv", dcase_tsv(positives))
    atomic_write_text(folder / "negatives.tsv", dcase_tsv(negatives))
    regions = reviewed_regions(items, durations)
    atomic_write_text(
        folder / "regions.tsv",
        _tsv(
            [("filename", "onset", "offset"), *((f, f"{a:.3f}", f"{b:.3f}") for f, a, b in regions)]
        ),
    )
    names: dict[str, str] = {}
    for sub in ("audacity", "raven"):
        (folder / sub).mkdir(exist_ok=True)
    for file in sorted({i.file for i in items if i.history}):
        stem = _stem(file, names)
        pos = [i for i in positives if i.file == file]
        neg = [i for i in negatives if i.file == file]
        atomic_write_text(folder / "audacity" / f"{stem}.txt", audacity_labels(pos))
        atomic_write_text(folder / "audacity" / f"{stem}.negatives.txt", audacity_labels(neg))
        atomic_write_text(folder / "raven" / f"{stem}.selections.txt", raven_table(pos))
        atomic_write_text(folder / "raven" / f"{stem}.negatives.selections.txt", raven_table(neg))
