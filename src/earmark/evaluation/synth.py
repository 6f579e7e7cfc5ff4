"""``earmark synth``: strongly labelled soundscapes mixed from your own recordings.

Foreground recordings (one subfolder per label, or a CSV of ``filename,label``) are mixed into
background recordings at random times and SNRs with
:func:`earmark.evaluation.soundscape.make_soundscape`.
For every soundscape the command writes ``soundscape_NNN.wav``, a DCASE TSV of its events
(same stem) and a JAMS annotation (``.jams``, scaper namespace), and for the whole set an
``index.json`` with the parameters, the seed and every event with its SNR. Every file is
written to a temporary name and renamed. The set is a deterministic function of the inputs and
``--seed``: soundscape ``i`` uses the seed sequence ``(seed, i)``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from earmark.outputs import atomic_write_text, write_json

if TYPE_CHECKING:
    from earmark.evaluation.soundscape import ForegroundClip, SoundscapeEvent

# The heavier modules (audio decoding, the pipeline with torch) are imported where used, so
# that ``earmark --help`` stays fast.

__all__ = [
    "SynthError",
    "add_parser",
    "find_backgrounds",
    "jams_document",
    "load_foregrounds",
    "parse_range",
    "synthesize",
]

INDEX_VERSION = 1


class SynthError(ValueError):
    """Unusable inputs or parameters for ``earmark synth`` (reported as a usage error)."""


def parse_range(text: str, kind: type = float, name: str = "range") -> tuple[Any, Any]:
    """``"3:8"`` -> ``(3, 8)``; a single value ``"5"`` -> ``(5, 5)``.

    Raises:
        SynthError: not ``LO:HI`` numbers of ``kind``, or ``HI < LO``.
    """
    parts = str(text).split(":")
    if len(parts) not in (1, 2):
        raise SynthError(f"--{name}: expected LO:HI, got {text!r}")
    try:
        values = [kind(p.strip()) for p in parts]
    except ValueError:
        raise SynthError(
            f"--{name}: expected LO:HI with {kind.__name__} values, got {text!r}"
        ) from None
    lo, hi = values[0], values[-1]
    if any(v != v or v in (float("inf"), float("-inf")) for v in (lo, hi)):
        raise SynthError(f"--{name}: values must be finite, got {text!r}")
    if hi < lo:
        raise SynthError(f"--{name}: the upper bound {hi} is below the lower bound {lo}")
    return lo, hi


def _audio_files(folder: Path) -> list[Path]:
    from earmark.inputs import AUDIO_EXTENSIONS

    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )


def _readable(paths: Sequence[Path], skipped: list[str]) -> list[Path]:
    """The files whose audio stream can be opened; the others go to ``skipped`` with a cause."""
    from earmark.audio import AudioError, probe

    ok = []
    for path in paths:
        try:
            probe(path)
        except AudioError as exc:
            skipped.append(f"{path}: {exc}")
            continue
        ok.append(path)
    return ok


def load_foregrounds(source: str | Path, skipped: list[str] | None = None) -> list[ForegroundClip]:
    """Foreground clips from a folder (one subfolder per label) or a ``filename,label`` CSV.

    In a folder, every audio file under ``<label>/`` (recursively) is a clip of that label; files
    directly in the folder are ignored. In a CSV (header optional), file names are relative to
    the CSV's folder. Files that cannot be opened are left out and described in ``skipped``.

    Raises:
        SynthError: the source is missing or empty, a CSV row is malformed or names a missing
            file, or a label has no readable audio.
    """
    from earmark.evaluation.soundscape import ForegroundClip

    skipped = skipped if skipped is not None else []
    source = Path(source)
    by_label: dict[str, list[Path]] = {}
    if source.is_dir():
        for sub in sorted(p for p in source.iterdir() if p.is_dir()):
            by_label[sub.name] = _audio_files(sub)
        if not by_label:
            raise SynthError(f"foreground folder {source} has no label subfolders")
    elif source.is_file():
        with open(source, newline="", encoding="utf-8-sig") as handle:
            rows = [r for r in csv.reader(handle) if r and any(c.strip() for c in r)]
        if rows and rows[0][0].strip().lower() in ("filename", "file", "path", "audio_filename"):
            rows = rows[1:]
        if not rows:
            raise SynthError(f"foreground list {source} has no rows")
        for n, row in enumerate(rows, start=1):
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise SynthError(f"{source}: row {n} must be filename,label, got {row}")
            path = source.parent / row[0].strip()
            if not path.is_file():
                raise SynthError(f"{source}: row {n}: no such file {path}")
            by_label.setdefault(row[1].strip(), []).append(path)
    else:
        raise SynthError(f"foreground folder or CSV not found: {source}")
    clips = []
    for label, paths in by_label.items():
        readable = _readable(paths, skipped)
        if not readable:
            raise SynthError(f"foreground label {label!r} has no readable audio ({source})")
        clips += [ForegroundClip(p, label) for p in readable]
    return sorted(clips, key=lambda c: (c.label, str(c.path)))


def find_backgrounds(folder: str | Path, skipped: list[str] | None = None) -> list[Path]:
    """Readable audio files under ``folder`` (recursively), sorted.

    Raises:
        SynthError: the folder is missing or holds no readable audio.
    """
    skipped = skipped if skipped is not None else []
    folder = Path(folder)
    if not folder.is_dir():
        raise SynthError(f"background folder not found: {folder}")
    found = _readable(_audio_files(folder), skipped)
    if not found:
        raise SynthError(f"background folder {folder} has no readable audio")
    return found


def jams_document(
    events: Sequence[SoundscapeEvent],
    duration: float,
    background: str,
    sandbox: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A minimal valid JAMS document (scaper namespace) describing one soundscape's events."""
    data = [
        {
            "time": round(e.onset, 6),
            "duration": round(e.offset - e.onset, 6),
            "value": {
                "label": e.label,
                "source_file": e.source,
                "source_time": round(e.clip_onset, 6),
                "event_time": round(e.onset, 6),
                "event_duration": round(e.offset - e.onset, 6),
                "snr": round(e.snr_db, 4),
                "role": "foreground",
                "pitch_shift": None,
                "time_stretch": None,
            },
            "confidence": 1.0,
        }
        for e in events
    ]
    metadata = {
        "curator": {"name": "", "email": ""},
        "annotator": {},
        "version": "",
        "corpus": "",
        "annotation_tools": "earmark synth",
        "annotation_rules": "",
        "validation": "",
        "data_source": "synthetic",
    }
    return {
        "annotations": [
            {
                "annotation_metadata": metadata,
                "namespace": "scaper",
                "data": data,
                "time": 0.0,
                "duration": duration,
                "sandbox": {"background": background, **(sandbox or {})},
            }
        ],
        "file_metadata": {
            "title": "",
            "artist": "",
            "release": "",
            "duration": duration,
            "identifiers": {},
            "jams_version": "0.3.4",
        },
        "sandbox": {},
    }


def synthesize(
    foregrounds: Sequence[ForegroundClip],
    backgrounds: Sequence[Path],
    out_dir: str | Path,
    n: int = 10,
    duration: float = 30.0,
    n_events: tuple[int, int] = (3, 8),
    snr_db: tuple[float, float] = (0.0, 10.0),
    allow_overlap: bool = True,
    seed: int = 0,
    sample_rate: int = 32000,
    log: Any = None,
) -> dict[str, Any]:
    """Build ``n`` soundscapes into ``out_dir`` and return the index (also ``index.json``).

    Soundscape ``i`` draws its background uniformly from ``backgrounds`` and everything else
    (see :func:`earmark.evaluation.soundscape.make_soundscape`) from
    ``np.random.SeedSequence([seed, i])``.

    Raises:
        SynthError: bad parameters. Decoding errors surface as :class:`earmark.audio.AudioError`.
    """
    from earmark.evaluation.soundscape import make_soundscape, write_soundscape

    if n < 1:
        raise SynthError(f"--n must be >= 1, got {n}")
    if not duration > 0:
        raise SynthError(f"--duration must be > 0, got {duration}")
    if n_events[0] < 0:
        raise SynthError(f"--events must be >= 0, got {n_events[0]}:{n_events[1]}")
    if sample_rate < 8000:
        raise SynthError(f"--sample-rate must be >= 8000, got {sample_rate}")
    if not foregrounds and n_events[1] > 0:
        raise SynthError("no foreground clips")
    if not backgrounds:
        raise SynthError("no background recordings")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(n - 1)))
    entries = []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, i]))
        background = Path(backgrounds[int(rng.integers(0, len(backgrounds)))])
        audio, events, info = make_soundscape(
            background,
            foregrounds,
            duration,
            n_events,
            snr_db,
            rng,
            sample_rate=sample_rate,
            allow_overlap=allow_overlap,
            return_info=True,
        )
        wav = out_dir / f"soundscape_{i:0{width}d}.wav"
        write_soundscape(wav, audio, events, sample_rate)
        doc = jams_document(events, duration, str(background), {"earmark": info})
        atomic_write_text(wav.with_suffix(".jams"), json.dumps(doc, indent=1) + "\n")
        entries.append(
            {
                "file": wav.name,
                "annotation": wav.with_suffix(".tsv").name,
                "jams": wav.with_suffix(".jams").name,
                "background": str(background),
                **info,
                "events": [dataclasses.asdict(e) for e in events],
            }
        )
        if log is not None:
            log(f"{wav.name}: {len(events)} events over {background.name}")
    labels = sorted({c.label for c in foregrounds})
    index = {
        "version": INDEX_VERSION,
        "generator": "earmark synth",
        "parameters": {
            "n": n,
            "duration": duration,
            "events": list(n_events),
            "snr_db": list(snr_db),
            "allow_overlap": allow_overlap,
            "seed": seed,
            "sample_rate": sample_rate,
        },
        "seed": seed,
        "labels": labels,
        "foregrounds": [{"path": str(c.path), "label": c.label} for c in foregrounds],
        "backgrounds": [str(p) for p in backgrounds],
        "soundscapes": entries,
    }
    write_json(out_dir / "index.json", index)
    return index


# ---------------------------------------------------------------------------- command line
def cmd_synth(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``earmark synth``: build the soundscapes; exit 2 on unusable inputs or parameters."""
    from earmark.audio import AudioError

    skipped: list[str] = []
    try:
        n_events = parse_range(args.events, int, "events")
        snr = parse_range(args.snr, float, "snr")
        foregrounds = load_foregrounds(args.foreground, skipped)
        backgrounds = find_backgrounds(args.background, skipped)
        for line in skipped:
            print(f"earmark: skipped unreadable {line}", file=sys.stderr)
        log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr))
        index = synthesize(
            foregrounds,
            backgrounds,
            args.output,
            n=args.n,
            duration=args.duration,
            n_events=n_events,
            snr_db=snr,
            allow_overlap=not args.no_overlap,
            seed=args.seed,
            sample_rate=args.sample_rate,
            log=log,
        )
    except (SynthError, AudioError) as exc:
        print(f"earmark: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # e.g. a clip with no sound in it
        print(f"earmark: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        n_ev = sum(len(e["events"]) for e in index["soundscapes"])
        print(
            f"{len(index['soundscapes'])} soundscape(s), {n_ev} events, "
            f"{len(index['labels'])} labels -> {args.output}"
        )
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``earmark synth`` on the sub-command parsers of the main parser."""
    p = subparsers.add_parser(
        "synth",
        help="mix labelled soundscapes from foreground and background recordings",
        description="Build strongly labelled soundscapes: foreground recordings mixed into "
        "background recordings at random times and SNRs. Writes WAV, DCASE TSV and JAMS per "
        "soundscape, and index.json for the set.",
    )
    p.add_argument(
        "--foreground",
        required=True,
        help="folder with one subfolder per label, or a CSV filename,label",
    )
    p.add_argument("--background", required=True, help="folder of background recordings")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--n", type=int, default=10, help="number of soundscapes (default 10)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds (default 30)")
    p.add_argument("--events", default="3:8", help="events per soundscape, LO:HI (default 3:8)")
    p.add_argument("--snr", default="0:10", help="event SNR range in dB, LO:HI (default 0:10)")
    p.add_argument("--no-overlap", action="store_true", help="events never overlap")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--sample-rate", type=int, default=32000, help="Hz (default 32000)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.set_defaults(func=cmd_synth)
    return p
