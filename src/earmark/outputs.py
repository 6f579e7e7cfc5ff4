"""Writing results: event lists in several formats and framewise score matrices.

Every writer is atomic: it writes a hidden temporary file in the target's directory and
renames it onto the target only once the content is complete and flushed to disk, so a
crash or an error never leaves a half-written or truncated file, and an existing file
stays intact until its replacement is ready.

File naming scheme for one input recording with stem ``<stem>`` (the audio file name
without its extension) in an output directory:

===========================  ==================================================
``<stem>.events.csv``        events, one row each, columns :data:`EVENT_COLUMNS`
``<stem>.events.json``       ``{"meta": {...}, "events": [{...}, ...]}``
``<stem>.events.tsv``        DCASE format: ``filename onset offset event_label``
``<stem>.audacity.txt``      Audacity label track (File > Import > Labels...)
``<stem>.scores.npz``        framewise scores (:func:`write_scores`)
===========================  ==================================================

Times are written in seconds with millisecond precision (3 decimals) in CSV, TSV and
JSON, confidences with 4 decimals; Audacity labels use 6 decimals.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from os import PathLike
from pathlib import Path

import numpy as np

from .events import Event
from .labels import Label

__all__ = [
    "EVENT_COLUMNS",
    "EVENT_FORMATS",
    "EVENT_SUFFIXES",
    "SCORES_SUFFIX",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "read_events",
    "read_scores",
    "write_audacity_labels",
    "write_events",
    "write_events_csv",
    "write_events_json",
    "write_events_tsv",
    "write_json",
    "write_scores",
]

EVENT_COLUMNS = (
    "file",
    "label",
    "mid",
    "onset",
    "offset",
    "duration",
    "peak",
    "mean",
    "alternatives",
)
"""``alternatives``: the other classes of the same sound, ``label (mid) peak`` joined by
``"; "`` (see :mod:`earmark.sounds`)."""
EVENT_FORMATS = ("csv", "json", "tsv", "audacity")
#: File name suffix (after the stem) of each event format.
EVENT_SUFFIXES = {
    "csv": ".events.csv",
    "json": ".events.json",
    "tsv": ".events.tsv",
    "audacity": ".audacity.txt",
}
#: File name suffix (after the stem) of a score matrix.
SCORES_SUFFIX = ".scores.npz"
DCASE_HEADER = ("filename", "onset", "offset", "event_label")

StrPath = str | PathLike[str]


# -- atomic files ----------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: StrPath) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``.

    The temporary file is created empty (with the usual permissions for new files) in
    the same directory, so the final :func:`os.replace` is an atomic rename. When the
    ``with`` block ends normally the file is flushed to disk (fsync) and renamed onto
    ``path``; when it raises, the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    directory = target.parent
    while True:
        temp = directory / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        break
    try:
        yield temp
        with open(temp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable where the platform allows it (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: StrPath, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as temp, open(temp, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: StrPath, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


# -- JSON ------------------------------------------------------------------------------


def _jsonable(obj: object) -> object:
    """Plain JSON types for numpy scalars/arrays, paths, tuples, sets and events.

    Non-finite floats (NaN, inf) become ``null`` so the output is strict JSON.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int)):
        return obj  # bool is an int
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return [_jsonable(v) for v in sorted(obj, key=str)]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, PathLike):
        return os.fspath(obj)
    if isinstance(obj, Event):
        return obj.to_dict()
    if isinstance(obj, Label):
        return {"index": obj.index, "mid": obj.mid, "name": obj.name}
    raise TypeError(f"cannot write {type(obj).__name__} as JSON: {obj!r}")


def json_for_script(obj: object) -> str:
    """JSON safe inside an HTML ``<script>`` element: ``<``, ``>`` and ``&`` as ``\\u`` escapes.

    Any text (a label like ``<!--<script>``, a file name with ``</script>``) then stays data:
    the HTML parser never sees a tag or comment opener inside the element.
    """
    text = json.dumps(_jsonable(obj), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_json(path: StrPath, obj: object) -> None:
    """Write ``obj`` as JSON (indent 2, UTF-8, not ASCII-escaped) atomically.

    numpy scalars and arrays, paths, tuples, sets, :class:`Event` and :class:`Label` are
    converted; NaN and infinity are written as ``null``.
    """
    text = json.dumps(_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")


# -- events ----------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:.3f}"


def _conf(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else ""


def _event_row(event: Event) -> list[str]:
    onset, offset = round(event.onset, 3), round(event.offset, 3)
    return [
        event.file,
        event.label,
        event.mid,
        _ms(onset),
        _ms(offset),
        _ms(offset - onset),
        _conf(event.peak),
        _conf(event.mean),
        "; ".join(
            f"{label} ({mid}) {_conf(peak) or 'nan'}" for label, mid, peak in event.alternatives
        ),
    ]


_ALTERNATIVE = re.compile(r"(?P<label>.*?) \((?P<mid>[^()]*)\) (?P<peak>[-+0-9.eE]+|nan)(?:; |$)")


def _alternatives(value: object, path: Path, where: str) -> tuple[tuple[str, str, float], ...]:
    """Alternatives from a JSON list of ``{label, mid, peak}`` or a CSV cell."""
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, list):
        try:
            return tuple(
                (str(a["label"]), str(a.get("mid") or ""), _float(a.get("peak"), path, where))
                for a in value
            )
        except (KeyError, TypeError, AttributeError):
            raise ValueError(
                f"{path}, {where}: alternatives must be {{label, mid, peak}}"
            ) from None
    out, text, pos = [], str(value), 0
    while pos < len(text):
        match = _ALTERNATIVE.match(text, pos)
        if match is None:
            raise ValueError(
                f"{path}, {where}: alternatives {text[pos:]!r} are not 'label (mid) peak; ...'"
            )
        out.append((match["label"], match["mid"], _float(match["peak"], path, where)))
        pos = match.end()
    return tuple(out)


def write_events_csv(path: StrPath, events: Iterable[Event]) -> None:
    """Write events as CSV with a header of :data:`EVENT_COLUMNS` (RFC 4180 quoting)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EVENT_COLUMNS)
    writer.writerows(_event_row(event) for event in events)
    atomic_write_text(path, buffer.getvalue())


def write_events_json(
    path: StrPath, events: Iterable[Event], meta: Mapping[str, object] | None = None
) -> None:
    """Write ``{"meta": meta, "events": [event.to_dict(), ...]}`` as JSON."""
    write_json(path, {"meta": dict(meta or {}), "events": [e.to_dict() for e in events]})


def _check_field(value: str, what: str) -> str:
    if "\t" in value or "\n" in value or "\r" in value:
        raise ValueError(f"{what} {value!r} contains a tab or newline")
    return value


def write_events_tsv(path: StrPath, events: Iterable[Event], full_names: bool = False) -> None:
    """Write events in the DCASE format.

    Header ``filename<TAB>onset<TAB>offset<TAB>event_label``, then one line per event;
    ``filename`` is the base name of ``event.file`` (``full_names``: ``event.file`` as it is,
    as ``events.csv`` has it, so that files of one name in two folders stay apart), times in
    seconds with 3 decimals.
    """
    lines = ["\t".join(DCASE_HEADER)]
    for event in events:
        file = event.file if full_names else os.path.basename(event.file)
        name = _check_field(file, "file name")
        label = _check_field(event.label, "label")
        lines.append(f"{name}\t{_ms(event.onset)}\t{_ms(event.offset)}\t{label}")
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_audacity_labels(path: StrPath, events: Iterable[Event]) -> None:
    """Write an Audacity label track: ``onset<TAB>offset<TAB>label`` lines, 6 decimals."""
    lines = [
        f"{event.onset:.6f}\t{event.offset:.6f}\t{_check_field(event.label, 'label')}\n"
        for event in events
    ]
    atomic_write_text(path, "".join(lines))


def _float(value: object, path: Path, where: str) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{path}, {where}: {value!r} is not a number") from None


def read_events(path: StrPath) -> list[Event]:
    """Read events written by this module; the format follows the file name.

    ``.csv`` and ``.json`` round-trip every field (at the written precision). ``.tsv``
    (DCASE) holds only file name, times and label: ``mid`` is ``""``, ``peak`` and
    ``mean`` are NaN. ``.txt`` (Audacity labels) also lacks the file: it is ``""``.
    Raises :class:`ValueError` naming the file if it cannot be parsed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a JSON file ({exc})") from None
        rows = data.get("events") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a list of events or {{'events': [...]}}")
        return [_event_from_mapping(row, path, f"event {i}") for i, row in enumerate(rows)]
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        missing = set(EVENT_COLUMNS) - {"duration", "alternatives"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        return [_event_from_mapping(row, path, f"line {reader.line_num}") for row in reader]
    if suffix == ".tsv":
        lines = text.splitlines()
        if not lines or tuple(lines[0].split("\t")) != DCASE_HEADER:
            raise ValueError(f"{path}: expected the DCASE header {chr(9).join(DCASE_HEADER)!r}")
        events = []
        for number, line in enumerate(lines[1:], start=2):
            fields = line.split("\t")
            if len(fields) < 4 or fields[1] == "":  # blank line or a file without events
                continue
            where = f"line {number}"
            events.append(
                Event(
                    file=fields[0],
                    label=fields[3],
                    mid="",
                    onset=_float(fields[1], path, where),
                    offset=_float(fields[2], path, where),
                    peak=math.nan,
                    mean=math.nan,
                )
            )
        return events
    if suffix == ".txt":
        events = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.startswith("\\"):  # frequency lines start with "\"
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                raise ValueError(f"{path}, line {number}: not an Audacity label line")
            where = f"line {number}"
            events.append(
                Event(
                    file="",
                    label=fields[2] if len(fields) > 2 else "",
                    mid="",
                    onset=_float(fields[0], path, where),
                    offset=_float(fields[1], path, where),
                    peak=math.nan,
                    mean=math.nan,
                )
            )
        return events
    raise ValueError(f"{path}: unknown event file type {suffix!r} (csv, json, tsv or txt)")


def _event_from_mapping(row: object, path: Path, where: str) -> Event:
    if not isinstance(row, Mapping):
        raise ValueError(f"{path}, {where}: not an event object")
    try:
        return Event(
            file=str(row.get("file") or ""),
            label=str(row["label"]),
            mid=str(row.get("mid") or ""),
            onset=_float(row["onset"], path, where),
            offset=_float(row["offset"], path, where),
            peak=_float(row.get("peak"), path, where),
            mean=_float(row.get("mean"), path, where),
            alternatives=_alternatives(row.get("alternatives"), path, where),
        )
    except KeyError as exc:
        raise ValueError(f"{path}, {where}: missing field {exc}") from None


def write_events(
    directory: StrPath,
    stem: str,
    events: Iterable[Event],
    formats: Iterable[str] = EVENT_FORMATS,
    meta: Mapping[str, object] | None = None,
) -> dict[str, Path]:
    """Write ``events`` in each of ``formats`` as ``directory/<stem><suffix>``.

    Suffixes are in :data:`EVENT_SUFFIXES`; ``meta`` goes into the JSON file. The
    directory is created if needed. Returns ``{format: path}``.
    """
    events = list(events)
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in EVENT_SUFFIXES]
    if unknown:
        raise ValueError(f"unknown event format(s) {unknown}; choose from {EVENT_FORMATS}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for fmt in formats:
        path = directory / f"{stem}{EVENT_SUFFIXES[fmt]}"
        if fmt == "csv":
            write_events_csv(path, events)
        elif fmt == "json":
            write_events_json(path, events, meta)
        elif fmt == "tsv":
            write_events_tsv(path, events)
        else:
            write_audacity_labels(path, events)
        written[fmt] = path
    return written


# -- scores ----------------------------------------------------------------------------

_FLOAT16_MAX = float(np.finfo(np.float16).max)


def write_scores(
    path: StrPath,
    scores: np.ndarray,
    hop: float,
    labels: Sequence[Label],
    meta: Mapping[str, object] | None = None,
) -> None:
    """Save a ``(frames, classes)`` score matrix as a compressed ``.npz`` file.

    Arrays: ``scores`` (float16), ``hop`` (seconds), ``names`` and ``mids`` (unicode, no
    pickling) and ``meta`` (a JSON string).

    float16 has an 11-bit significand: for scores in [0, 1] the quantisation error is at
    most 2**-12 (about 2.44e-4, half the float16 spacing in [0.5, 1)); smaller scores are
    stored with a relative error of at most 2**-11. That is below any useful threshold
    step but can change the 4th decimal of a confidence recomputed from a stored file.
    Values beyond the float16 range (65504) raise :class:`ValueError`.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] != len(labels):
        raise ValueError(f"scores must have shape (frames, {len(labels)}), got {scores.shape}")
    if not (math.isfinite(hop) and hop > 0):
        raise ValueError(f"hop must be a positive number of seconds, got {hop!r}")
    if scores.dtype != np.float16 and scores.size:
        # fmax/fmin skip NaN and reduce without copying the (possibly hours-long) matrix
        flat = scores.reshape(-1)
        extreme = max(abs(float(np.fmax.reduce(flat))), abs(float(np.fmin.reduce(flat))))
        if extreme > _FLOAT16_MAX:
            raise ValueError("scores exceed the float16 range; store probabilities, not logits")
    meta_json = json.dumps(_jsonable(dict(meta or {})), ensure_ascii=False, allow_nan=False)
    with atomic_path(path) as temp, open(temp, "wb") as fh:
        # A file object, so numpy does not append ".npz" to the temporary name.
        np.savez_compressed(
            fh,
            scores=scores.astype(np.float16, copy=False),
            hop=np.float64(hop),
            names=np.array([lab.name for lab in labels], dtype=str),
            mids=np.array([lab.mid for lab in labels], dtype=str),
            meta=np.array(meta_json),
        )


def read_scores(path: StrPath) -> tuple[np.ndarray, float, list[Label], dict]:
    """Load a file written by :func:`write_scores`: ``(scores float32, hop, labels, meta)``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            scores = data["scores"].astype(np.float32)
            hop = float(data["hop"])
            names = [str(n) for n in data["names"]]
            mids = [str(m) for m in data["mids"]]
            meta = json.loads(str(data["meta"]))
    except KeyError as exc:
        raise ValueError(f"{path}: not an earmark scores file (missing {exc})") from None
    except (OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: cannot read scores ({exc})") from None
    if scores.ndim != 2 or scores.shape[1] != len(names) or len(names) != len(mids):
        raise ValueError(f"{path}: inconsistent scores file")
    labels = [
        Label(index=i, mid=m, name=n) for i, (m, n) in enumerate(zip(mids, names, strict=True))
    ]
    return scores, hop, labels, meta
