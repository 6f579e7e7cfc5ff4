"""Outputs of ``earmark repeats``: tables, chapter files, edit decision lists, events.

Written into an output folder (every file atomically, see :mod:`earmark.outputs`):

================================  ===========================================================
``repeats.json``                  the whole run: per file its segments and what it lacks, the
                                  recurring segments with their occurrences, timings, options
``repeats.csv``                   one row per file and recurring segment: ``found`` with start,
                                  end, confidence and the files sharing it, or ``absent`` (with
                                  the confidence of the best candidate that was rejected)
``events.csv/.json/.tsv``         the occurrences as earmark events (label ``Intro``,
                                  ``Outro``, ``Recap``, ``Recurring``; peak = confidence), so
                                  they can be merged with detected sound events in a report
``files/<name>.ffmeta``           FFmetadata chapters covering the whole file (``ffmpeg -i
                                  in.mkv -i x.ffmeta -map_metadata 1 -map_chapters 1 -c copy``)
``files/<name>.edl``              MPlayer/Kodi EDL: ``start end 3`` per segment (players skip
                                  or mark them)
``files/<name>.cmx3600.edl``      CMX3600-style EDL with one event per segment and its kind as
                                  comment and marker (editors), 25 fps non-drop timecode
================================  ===========================================================
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from earmark.events import Event
from earmark.outputs import atomic_write_text, write_events, write_json
from earmark.repeats.results import Occurrence, RepeatsResult

__all__ = [
    "CSV_COLUMNS",
    "cmx3600_edl",
    "ffmetadata",
    "mplayer_edl",
    "to_events",
    "write_repeats",
]

CSV_COLUMNS = (
    "file",
    "segment",
    "kind",
    "status",
    "start",
    "end",
    "duration",
    "confidence",
    "ber",
    "shared_with",
)
LABELS = {"intro": "Intro", "outro": "Outro", "recap": "Recap", "other": "Recurring"}
EDL_FPS = 25


def _title(o: Occurrence) -> str:
    return LABELS.get(o.kind, o.kind.title())


def to_events(result: RepeatsResult) -> list[Event]:
    """The occurrences as :class:`earmark.events.Event` (peak and mean are the confidence)."""
    return [
        Event(
            file=o.file,
            label=_title(o),
            mid=f"earmark:repeats/{o.kind}",
            onset=o.start,
            offset=o.end,
            peak=o.confidence,
            mean=o.confidence,
        )
        for o in result.occurrences()
    ]


def repeats_csv(result: RepeatsResult) -> str:
    """The CSV table: every (file, recurring segment) found, then the absent ones."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for f in result.files:
        for o in result.occurrences(f.file):
            writer.writerow(
                [
                    o.file,
                    o.segment,
                    o.kind,
                    "found",
                    f"{o.start:.3f}",
                    f"{o.end:.3f}",
                    f"{o.end - o.start:.3f}",
                    f"{o.confidence:.4f}",
                    f"{o.ber:.4f}",
                    ";".join(o.shared_with),
                ]
            )
        for s in result.segments:
            if f.file in s.missing:  # confidence: of the best candidate, rejected
                best = s.candidates.get(f.file)
                confidence = "" if best is None else f"{best:.4f}"
                writer.writerow([f.file, s.id, s.kind, "absent", "", "", "", confidence, "", ""])
        if f.status == "failed":
            writer.writerow([f.file, "", "", "failed", "", "", "", "", "", f.error or ""])
    return buffer.getvalue()


def _escape_ffmeta(text: str) -> str:
    out = text
    for ch in ("\\", "=", ";", "#", "\n"):
        out = out.replace(ch, "\\" + ch)
    return out


def ffmetadata(occurrences: list[Occurrence], duration: float) -> str:
    """FFmetadata text with chapters covering ``[0, duration]``: the segments and the parts
    between them (``Part 1``, ``Part 2``...); times in milliseconds."""
    lines = [";FFMETADATA1"]
    pos = 0
    part = 0

    def chapter(start_ms: int, end_ms: int, title: str) -> None:
        lines.extend(
            [
                "",
                "[CHAPTER]",
                "TIMEBASE=1/1000",
                f"START={start_ms}",
                f"END={end_ms}",
                f"title={_escape_ffmeta(title)}",
            ]
        )

    total = round(duration * 1000)
    for o in sorted(occurrences, key=lambda o: o.start):
        start, end = round(o.start * 1000), min(round(o.end * 1000), total)
        if start < pos:  # overlapping segments: keep chapters contiguous
            start = pos
        if end <= start:
            continue
        if start > pos:
            part += 1
            chapter(pos, start, f"Part {part}")
        chapter(start, end, _title(o))
        pos = end
    if pos < total:
        part += 1
        chapter(pos, total, f"Part {part}")
    return "\n".join(lines) + "\n"


def mplayer_edl(occurrences: list[Occurrence]) -> str:
    """MPlayer/Kodi EDL: ``start<TAB>end<TAB>3`` per segment (3: commercial break, skippable)."""
    return "".join(
        f"{o.start:.3f}\t{o.end:.3f}\t3\n" for o in sorted(occurrences, key=lambda o: o.start)
    )


def _timecode(seconds: float, fps: int = EDL_FPS) -> str:
    frames = max(0, math.floor(seconds * fps + 0.5))
    f = frames % fps
    s = frames // fps
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}:{f:02d}"


def cmx3600_edl(occurrences: list[Occurrence], source: str, title: str) -> str:
    """A CMX3600-style EDL: one audio event per segment, record time = source time."""
    reel = "AX"
    lines = [f"TITLE: {title}", "FCM: NON-DROP FRAME", ""]
    for n, o in enumerate(sorted(occurrences, key=lambda o: o.start), start=1):
        a, b = _timecode(o.start), _timecode(o.end)
        lines.append(f"{n:03d}  {reel:<8} A     C        {a} {b} {a} {b}")
        lines.append(f"* FROM CLIP NAME: {source}")
        lines.append(f"* COMMENT: {_title(o)} (segment {o.segment}, confidence {o.confidence:.2f})")
        lines.append(f"* LOC: {a} YELLOW {_title(o).upper()}")
        lines.append("")
    return "\n".join(lines)


def _unique_names(files: list[str]) -> dict[str, str]:
    """A distinct output name per input file (its base name, made unique with a counter)."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for f in files:
        base = Path(f).name or "file"
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}.{k}"
        used.add(name)
        names[f] = name
    return names


def write_repeats(result: RepeatsResult, out_dir: str | Path) -> dict[str, Path]:
    """Write every output of a run into ``out_dir``; returns ``{what: path}`` of the run files."""
    out = Path(out_dir)
    files_dir = out / "files"
    files_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    write_json(out / "repeats.json", result.to_dict())
    written["json"] = out / "repeats.json"
    atomic_write_text(out / "repeats.csv", repeats_csv(result))
    written["csv"] = out / "repeats.csv"
    events = write_events(
        out, "repeats", to_events(result), ("csv", "json", "tsv"), meta={"tool": "repeats"}
    )
    written.update({f"events_{k}": v for k, v in events.items()})
    names = _unique_names([f.file for f in result.files])
    for f in result.files:
        if f.status == "failed":
            continue
        occ = result.occurrences(f.file)
        name = names[f.file]
        atomic_write_text(files_dir / f"{name}.ffmeta", ffmetadata(occ, f.duration))
        atomic_write_text(files_dir / f"{name}.edl", mplayer_edl(occ))
        atomic_write_text(
            files_dir / f"{name}.cmx3600.edl", cmx3600_edl(occ, Path(f.file).name, name)
        )
    return written
