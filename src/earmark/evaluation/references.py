"""Reference annotations: the labelled-event type and the readers of annotation files.

:func:`load_reference` reads DCASE TSV, scaper ``.txt``, Audacity labels and CSV/TSV with a
header; :func:`load_jams` reads JAMS. Files are matched between reference and predictions by
:func:`file_key`, their *stem* (name without folder and audio extension), because several
reference formats carry no folder (DCASE TSV) or no file at all (scaper ``.txt``, Audacity labels,
where the stem of the label file is used).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PureWindowsPath
from typing import Protocol

__all__ = ["EventLike", "RefEvent", "file_key", "load_jams", "load_reference"]


@dataclass(frozen=True)
class RefEvent:
    """One labelled event: a sound of class ``label`` in ``file`` from ``onset`` to ``offset``.

    Times are in seconds from the start of the recording.
    """

    file: str
    onset: float
    offset: float
    label: str

    def __post_init__(self) -> None:
        if not (math.isfinite(self.onset) and math.isfinite(self.offset)):
            raise ValueError(f"event times must be finite, got {self.onset}..{self.offset}")
        if self.offset < self.onset:
            raise ValueError(
                f"event offset {self.offset} is before its onset {self.onset} ({self.label!r})"
            )


class EventLike(Protocol):
    """Anything with a file, a label and onset/offset times (e.g. ``earmark.events.Event``)."""

    file: str
    label: str
    onset: float
    offset: float


def file_key(file: str | PurePath) -> str:
    """The key used to pair reference and predicted events of the same recording: the file name
    without its audio extension (``rec.part1.wav`` and ``rec.part1`` are one recording; only an
    audio file ending such as ``.wav`` is removed, so dots inside names are kept).

    Both ``/` and ``\\`` separators are understood, so Windows paths in a reference file work too.
    """
    from earmark.inputs import AUDIO_EXTENSIONS

    name = PureWindowsPath(str(file)).name  # splits on both separators
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and stem and f".{suffix.lower()}" in AUDIO_EXTENSIONS else name


_ONSET_NAMES = ("onset", "event_onset", "start", "start_time", "begin", "t_start", "onset_s")
_OFFSET_NAMES = ("offset", "event_offset", "end", "end_time", "stop", "t_end", "offset_s")
_LABEL_NAMES = ("event_label", "label", "class", "event", "class_label", "event_class")
_FILE_NAMES = ("filename", "file", "audio_filename", "audio_file", "path", "file_name")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _split_rows(text: str, suffix: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    # Audacity writes spectral selections as extra lines starting with a backslash.
    lines = [ln for ln in lines if not ln.lstrip().startswith("\\")]
    if not lines:
        return []
    sample = "\n".join(lines[:20])
    if "\t" in sample:
        return [[f.strip() for f in ln.split("\t")] for ln in lines]
    head = lines[:20]
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    if suffix == ".csv" or all(ln.count(delimiter) >= 2 for ln in head):
        return [
            [f.strip() for f in row]
            for row in csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
        ]
    # Whitespace separated: onset offset label-with-spaces, or filename onset offset label.
    rows = []
    for ln in lines:
        parts = ln.split()
        k = next(
            (i for i in range(len(parts) - 1) if _is_number(parts[i]) and _is_number(parts[i + 1])),
            None,
        )
        if k is None:
            rows.append(parts)
        else:
            rows.append([*parts[: k + 2], " ".join(parts[k + 2 :])])
    return rows


def _find_column(header: Sequence[str], names: Sequence[str]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def load_reference(path: str | Path, file: str | None = None) -> list[RefEvent]:
    """Read a strongly labelled annotation file.

    Understood formats (tab, comma, semicolon or whitespace separated, header optional):

    * DCASE TSV: ``filename onset offset event_label`` (rows with a filename only, i.e. files
      without events, are skipped); also the older ``filename scene onset offset label``.
    * scaper ``.txt`` and Audacity labels: ``onset offset label``; the file is the stem of the
      annotation file (or ``file`` when given). Audacity's spectral-selection lines (``\\ f0 f1``)
      are ignored.
    * CSV/TSV with a header naming the columns (``onset``/``start``, ``offset``/``end``,
      ``label``/``event_label``/``class`` and optionally ``filename``/``file``).
    * JAMS (``.jams``), see :func:`load_jams`.

    Args:
        path: the annotation file.
        file: file name to use for events whose row has no file column (default: the stem of
            ``path``).

    Returns:
        The events in file order.
    """
    path = Path(path)
    default_file = file if file is not None else path.stem
    if path.suffix.lower() == ".jams":
        return load_jams(path, file=file)
    rows = _split_rows(path.read_text(encoding="utf-8-sig"), path.suffix.lower())
    if not rows:
        return []
    header = rows[0]
    onset_col = _find_column(header, _ONSET_NAMES)
    offset_col = _find_column(header, _OFFSET_NAMES)
    events: list[RefEvent] = []
    if onset_col is not None and offset_col is not None:
        label_col = _find_column(header, _LABEL_NAMES)
        file_col = _find_column(header, _FILE_NAMES)
        if label_col is None:
            raise ValueError(f"{path}: header {header} has no label column")
        for n, row in enumerate(rows[1:], start=2):
            if max(onset_col, offset_col, label_col) >= len(row) or not row[onset_col]:
                continue  # a file without events
            events.append(
                _make_event(
                    path,
                    n,
                    row[file_col] if file_col is not None and file_col < len(row) else default_file,
                    row[onset_col],
                    row[offset_col],
                    row[label_col],
                )
            )
        return events
    for n, row in enumerate(rows, start=1):
        k = next(
            (i for i in range(len(row) - 1) if _is_number(row[i]) and _is_number(row[i + 1])),
            None,
        )
        if k is None:
            if n == 1 or len(row) <= 1 or not any(row[1:]):
                continue  # header of unknown column names, or a file without events
            raise ValueError(f"{path}:{n}: cannot find onset and offset in {row}")
        label = " ".join(f for f in row[k + 2 :] if f)
        event_file = row[0] if k >= 1 else default_file
        events.append(_make_event(path, n, event_file, row[k], row[k + 1], label))
    return events


_JAMS_NAMESPACES = ("scaper", "tag_open")


def load_jams(path: str | Path, file: str | None = None) -> list[RefEvent]:
    """Read the events of a JAMS annotation file (e.g. one written by scaper).

    Every annotation whose ``namespace`` is ``scaper`` or ``tag_open`` is read; each item of its
    ``data`` list (``time``, ``duration``, ``value``) is one event. The label is ``value`` itself,
    or ``value["label"]`` when ``value`` is a mapping (scaper also stores background items, with
    ``value["role"] == "background"``: they are skipped).

    Args:
        path: the ``.jams`` file.
        file: file name of the events (default: the stem of ``path``).

    Returns:
        The events sorted by onset.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a JAMS (JSON) file ({exc})") from None
    default_file = file if file is not None else path.stem
    annotations = data.get("annotations", []) if isinstance(data, dict) else []
    events: list[RefEvent] = []
    for i, annotation in enumerate(annotations):
        if not isinstance(annotation, dict) or annotation.get("namespace") not in _JAMS_NAMESPACES:
            continue
        for j, item in enumerate(annotation.get("data") or []):
            if not isinstance(item, dict):
                raise ValueError(f"{path}: annotation {i}, item {j} is not an object")
            value = item.get("value")
            if isinstance(value, dict):
                if value.get("role") == "background":
                    continue
                value = value.get("label")
            if value is None or str(value).strip() == "":
                continue
            try:
                onset = float(item["time"])
                offset = onset + float(item["duration"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(
                    f"{path}: annotation {i}, item {j} needs numeric time and duration"
                ) from None
            events.append(RefEvent(default_file, onset, offset, str(value).strip()))
    events.sort(key=lambda e: (e.onset, e.offset, e.label))
    return events


def _make_event(path: Path, line: int, file: str, onset: str, offset: str, label: str) -> RefEvent:
    try:
        return RefEvent(file=file, onset=float(onset), offset=float(offset), label=label.strip())
    except ValueError as error:
        raise ValueError(f"{path}:{line}: {error}") from None
