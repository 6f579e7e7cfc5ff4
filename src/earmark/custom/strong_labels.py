"""Recordings the user labelled with onsets and offsets, read and checked for training.

Accepted (``earmark train --labelled PATH``, repeatable):

* a **folder** of audio files with a label file beside each, same stem: Audacity label tracks
  (``x.txt``: ``onset offset label``), DCASE-style ``x.tsv``/``x.csv`` (``onset offset label``
  or with a header), Raven selection tables (``x.selections.txt`` or
  ``x.Table.1.selections.txt``) or JAMS (``x.jams``);
* a **DCASE TSV/CSV** with a file column (``filename onset offset event_label``), the audio
  files resolved next to it (or in an ``audio/`` folder beside it);
* a single **Raven selection table** or label file next to its audio file.

Every problem is collected and reported at once, naming the label file and line or event:
missing audio, unreadable files, offsets before onsets, classes that are not among the
training classes (with close names suggested), events past the end of the recording.
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from earmark.evaluation import RefEvent, load_reference

if TYPE_CHECKING:
    import numpy as np

LABEL_SUFFIXES = (".Table.1.selections.txt", ".selections.txt", ".txt", ".tsv", ".csv", ".jams")
"""Label files looked for beside an audio file, in this order."""
END_TOLERANCE = 0.05
"""Seconds an event may run past the end of its recording (rounding in label editors)."""
RAVEN_BEGIN = ("begin time (s)", "begin time", "start time (s)")
RAVEN_END = ("end time (s)", "end time", "stop time (s)")
RAVEN_LABEL = ("annotation", "label", "class", "species", "sound type", "common name", "type")


class StrongLabelError(ValueError):
    """Strongly labelled recordings that cannot be used; the message lists every problem."""


@dataclass
class LabelledRecording:
    """One recording and its labelled events."""

    audio: Path
    label_file: Path
    events: list[RefEvent]


def is_raven(path: Path) -> bool:
    """Whether ``path`` looks like a Raven selection table (header with Begin/End Time)."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            first = handle.readline().lower()
    except OSError:
        return False
    return "\t" in first and "selection" in first and "begin time" in first


def read_raven(path: str | Path, file: str | None = None) -> list[RefEvent]:
    """Events of a Raven selection table (one event per selection number; the label is the
    first of its annotation-like columns present)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0]]

    def column(names: Sequence[str]) -> int | None:
        return next((header.index(n) for n in names if n in header), None)

    begin, end, label = column(RAVEN_BEGIN), column(RAVEN_END), column(RAVEN_LABEL)
    selection = column(("selection",))
    if begin is None or end is None:
        raise StrongLabelError(f"{path}: Raven table without Begin/End Time columns")
    if label is None:
        raise StrongLabelError(
            f"{path}: Raven table without a label column (one of {', '.join(RAVEN_LABEL)})"
        )
    seen: set[str] = set()
    events = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if max(begin, end, label) >= len(row):
            raise StrongLabelError(f"{path}:{n}: too few columns")
        key = row[selection].strip() if selection is not None else str(n)
        if key in seen:  # the same selection in another view (Waveform / Spectrogram)
            continue
        seen.add(key)
        try:
            events.append(
                RefEvent(file or path.name, float(row[begin]), float(row[end]), row[label].strip())
            )
        except ValueError as exc:
            raise StrongLabelError(f"{path}:{n}: {exc}") from None
    return events


def read_label_file(path: str | Path, file: str | None = None) -> list[RefEvent]:
    """Events of any accepted label file (format recognised from its content)."""
    path = Path(path)
    try:
        if is_raven(path):
            return read_raven(path, file)
        return load_reference(path, file=file)
    except StrongLabelError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StrongLabelError(f"{path}: cannot read labels ({exc})") from None


def _audio_extensions() -> frozenset[str]:
    from earmark.inputs import AUDIO_EXTENSIONS

    return AUDIO_EXTENSIONS


def _label_file_for(audio: Path) -> Path | None:
    for suffix in LABEL_SUFFIXES:
        candidate = audio.with_name(audio.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def find_labelled_recordings(source: str | Path) -> list[LabelledRecording]:
    """The labelled recordings in ``source`` (a folder, or a label file); see the module doc.

    Raises:
        StrongLabelError: nothing found, or a label file names audio that does not exist.
    """
    audio: Path | None
    source = Path(source).expanduser()
    if source.is_dir():
        audio_ext = _audio_extensions()
        found = []
        for audio in sorted(p for p in source.rglob("*") if p.suffix.lower() in audio_ext):
            label_file = _label_file_for(audio)
            if label_file is not None:
                found.append(
                    LabelledRecording(audio, label_file, read_label_file(label_file, audio.name))
                )
        if not found:
            raise StrongLabelError(
                f"{source}: no audio file with a label file beside it (same name, one of "
                f"{', '.join(LABEL_SUFFIXES)})"
            )
        return found
    if not source.is_file():
        raise StrongLabelError(f"{source}: no such label file or folder")
    events = read_label_file(source)
    by_file: dict[str, list[RefEvent]] = {}
    for e in events:
        by_file.setdefault(e.file, []).append(e)
    problems: list[str] = []
    found = []
    for name, evs in by_file.items():
        audio = _resolve_audio(source, name)
        if audio is None:
            problems.append(f"{source}: audio file {name!r} not found next to the label file")
            continue
        found.append(LabelledRecording(audio, source, evs))
    if problems:
        raise StrongLabelError("\n".join(problems))
    if not found:
        raise StrongLabelError(f"{source}: no labelled events")
    return found


def _resolve_audio(label_file: Path, name: str) -> Path | None:
    base = label_file.parent
    candidates = [base / name, base / "audio" / name]
    if not Path(name).suffix:  # label files named after the audio's stem
        candidates += [
            base / f"{name}{ext}"
            for ext in sorted(_audio_extensions())
            if (base / f"{name}{ext}").exists()
        ]
    return next((c for c in candidates if c.is_file()), None)


def check_recordings(
    recordings: Sequence[LabelledRecording],
    classes: Sequence[str],
    durations: dict[Path, float],
) -> None:
    """Raise :class:`StrongLabelError` listing every unknown class and every event outside its
    recording (``durations``: seconds per audio path)."""
    known = {c.lower(): c for c in classes}
    problems = []
    for rec in recordings:
        duration = durations.get(rec.audio)
        for e in rec.events:
            where = f"{rec.label_file}: {e.label!r} {e.onset:.3f}-{e.offset:.3f} s"
            if e.label.lower() not in known:
                close = difflib.get_close_matches(e.label, list(classes), n=3, cutoff=0.6)
                hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
                problems.append(
                    f"{where}: unknown class; the training classes are {', '.join(classes)}{hint}"
                )
            if e.offset <= e.onset:
                problems.append(f"{where}: the event has no length")
            if e.onset < 0:
                problems.append(f"{where}: negative onset")
            if duration is not None and e.offset > duration + END_TOLERANCE:
                problems.append(f"{where}: past the end of {rec.audio.name} ({duration:.3f} s)")
    if problems:
        shown = problems[:20]
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise StrongLabelError(
            f"{len(problems)} problem(s) in the labelled recordings:\n" + "\n".join(shown) + more
        )


def load_labelled(
    sources: Sequence[str | Path], classes: Sequence[str]
) -> list[tuple[LabelledRecording, np.ndarray]]:
    """Find, decode (32 kHz mono) and check every labelled recording of ``sources``.

    Raises:
        StrongLabelError: every problem found, at once (see :func:`check_recordings`).
    """
    from earmark.audio import AudioError
    from earmark.audio import load as load_audio

    found = [rec for source in sources for rec in find_labelled_recordings(source)]
    audios, durations, problems = {}, {}, []
    for rec in found:
        if rec.audio in audios:
            continue
        try:
            audios[rec.audio] = load_audio(rec.audio, 32000)
        except AudioError as exc:
            problems.append(f"{rec.label_file}: its audio cannot be read ({exc})")
            continue
        durations[rec.audio] = len(audios[rec.audio]) / 32000
    if problems:
        raise StrongLabelError("\n".join(problems))
    check_recordings(found, classes, durations)
    return [(rec, audios[rec.audio]) for rec in found]


def canonical_label(label: str, classes: Sequence[str]) -> str:
    """The training class a label names (case-insensitive)."""
    return {c.lower(): c for c in classes}[label.lower()]


def load_reviewed(
    run_dirs: Sequence[str | Path], classes: Sequence[str]
) -> tuple[list[tuple[LabelledRecording, np.ndarray]], list[str]]:
    """The stretches of audio a reviewer vouched for in runs reviewed with ``earmark review``
    (``RUN_DIR/reviews/regions.tsv``), cut out (32 kHz mono) with the reviewed positives of
    ``labels.tsv`` inside them as events; everything else in a stretch (the rejected
    detections among it) is a negative. Events of classes that are not among ``classes`` are
    left out; the notes say which.

    Raises:
        StrongLabelError: a run without reviews, or audio that cannot be read, naming them.
    """
    from earmark.audio import AudioError
    from earmark.audio import load as load_audio

    found: list[tuple[LabelledRecording, np.ndarray]] = []
    problems: list[str] = []
    skipped: dict[str, int] = {}
    for run_dir in run_dirs:
        folder = Path(run_dir).expanduser() / "reviews"
        regions_file, labels_file = folder / "regions.tsv", folder / "labels.tsv"
        if not regions_file.is_file() or not labels_file.is_file():
            problems.append(
                f"{run_dir}: no reviews (no {regions_file.name} in {folder}); review the run "
                f"first: earmark review {run_dir}"
            )
            continue
        positives = read_label_file(labels_file)
        try:
            rows = list(csv.reader(io.StringIO(regions_file.read_text("utf-8")), delimiter="\t"))
            regions = [(r[0], float(r[1]), float(r[2])) for r in rows[1:] if r]
        except (OSError, ValueError, IndexError) as exc:
            problems.append(f"{regions_file}: unreadable ({exc})")
            continue
        audios: dict[str, np.ndarray] = {}
        for n, (file, start, end) in enumerate(regions, start=2):
            if file not in audios:
                try:
                    audios[file] = load_audio(file, 32000)
                except (AudioError, OSError) as exc:
                    problems.append(f"{regions_file}:{n}: audio {file} cannot be read ({exc})")
                    continue
            audio = audios[file][int(start * 32000) : int(end * 32000)]
            events = []
            for e in positives:
                if e.file != file or e.offset <= start or e.onset >= end:
                    continue
                if e.label.lower() not in {c.lower() for c in classes}:
                    skipped[e.label] = skipped.get(e.label, 0) + 1
                    continue
                events.append(
                    RefEvent(
                        file,
                        max(0.0, e.onset - start),
                        min(e.offset, end) - start,
                        canonical_label(e.label, classes),
                    )
                )
            if len(audio) >= 16000:  # half a second at least
                found.append((LabelledRecording(Path(file), regions_file, events), audio))
    if problems:
        raise StrongLabelError("\n".join(problems))
    notes = [
        f"{n} reviewed event(s) of {label!r} left out: not one of the training classes "
        f"({', '.join(classes)}); add clips of it to the dataset to learn it"
        for label, n in sorted(skipped.items())
    ]
    return found, notes
