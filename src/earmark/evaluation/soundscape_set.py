"""The soundscape benchmark set: the shared data's real recordings mixed at known times.

:func:`build_set` builds it (``python -m benchmarks.sed.soundscapes`` in a source tree; the
tests build it too). Inputs come from the shared data folder (``$EARMARK_SHARED``):

* foregrounds: ESC-10 (folds 1-2 -> split ``dev``, folds 3-5 -> split ``test``), scaper's
  ``car_horn`` and ``human_voice`` clips, and an ambulance siren recording cut into four
  excerpts (two per split). No clip or excerpt is in both splits.
* backgrounds: ambient recordings (``audio/backgrounds/sounds``) and scaper's street scene.
  Each background is cut in half: ``dev`` soundscapes use the first half, ``test`` the second.

Backgrounds that themselves contain a target class make that class's labels wrong (a detector
that hears the cafe's chatter as speech is right, but the reference would call it an insertion).
For each such (background, class) pair the class is neither placed in that soundscape nor scored
in it: the index lists it under ``ignore_labels``; use :func:`ignored_by_file` with
:func:`earmark.evaluation.drop_labels`. The pairs (:data:`BACKGROUND_CONFLICTS`) were decided by
listening-by-numbers with the mn04 model over 10 s windows of every background (the class
scored > 0.2 somewhere) and by what the recording is:

==================  =========================  =============================================
background          ignored classes            evidence (max mapped score, % of windows)
==================  =========================  =============================================
cafe                human_voice                speech 0.89, 100 %
office              human_voice                speech 0.61, 8 %
subway-station      human_voice                speech 0.91, 91 % (announcements, crowd)
busy-street         human_voice, car_horn      speech 0.92, 100 %; horn 0.33, 3 %
traffic             human_voice                speech 0.49, 50 %
scaper street       human_voice                speech 0.35, 29 %
heavy/light rain,   rain                       rain 0.45-0.69, 89-100 %
rain-on-window
waves               sea_waves                  it is the sea (model: waves 0.21)
river, wind,        -                          no target class above 0.2
washing-machine
==================  =========================  =============================================

Conditions (``CONDITIONS``): ``clean`` (SNR 6-20 dB), ``noisy`` (0-6 dB), both with the
background at -40..-30 dBFS RMS, and ``household-low`` (0-10 dB over quiet indoor-like
backgrounds, the whole mix then scaled to -42..-38 dBFS RMS, like a flat with a TV on). 30-45 s
soundscapes with 3-8 events, overlaps allowed (never two events of the same class within 0.5 s).

Outputs: ``OUT/<split>/<condition>/<split>_<condition>_NN.wav`` (32 kHz mono float32) with a
DCASE TSV next to each, and ``OUT/index.json`` describing every soundscape (background and the
part of it used, levels, every event with its source clip and SNR, and the seeds). Building is
deterministic for a seed and idempotent: when ``index.json`` exists with the same parameters
and inputs, nothing is rebuilt.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from earmark.audio import load
from earmark.evaluation.references import RefEvent, load_reference
from earmark.evaluation.soundscape import ForegroundClip, make_soundscape, rms_db, write_soundscape

__all__ = [
    "BACKGROUNDS",
    "BACKGROUND_CONFLICTS",
    "CONDITIONS",
    "DEFAULT_SEED",
    "GENERATOR_VERSION",
    "SPLITS",
    "Condition",
    "build_set",
    "check_set",
    "foregrounds",
    "ignored_by_file",
    "load_index",
    "reference_events",
]

SAMPLE_RATE = 32000
# Bump when the way soundscapes are generated changes, so that existing sets are rebuilt.
GENERATOR_VERSION = 1
DEFAULT_SEED = 20240601
"""The master seed of the published set."""

SPLITS = {"dev": (1, 2), "test": (3, 4, 5)}  # ESC-10 folds


@dataclass(frozen=True)
class Condition:
    """How the soundscapes of one condition are drawn."""

    name: str
    snr_db: tuple[float, float]
    backgrounds: tuple[str, ...]
    background_dbfs: tuple[float, float] | None  # background RMS before mixing
    mix_dbfs: tuple[float, float] | None = None  # RMS of the final mix (None: leave as mixed)


# Backgrounds, by the names used below -> path relative to the shared folder.
BACKGROUNDS = {
    "cafe": "audio/backgrounds/sounds/places/cafe.mp3",
    "office": "audio/backgrounds/sounds/places/office.mp3",
    "subway-station": "audio/backgrounds/sounds/places/subway-station.mp3",
    "busy-street": "audio/backgrounds/sounds/urban/busy-street.mp3",
    "traffic": "audio/backgrounds/sounds/urban/traffic.mp3",
    "scaper-street": (
        "audio/scaper/tests/data/audio/background/street/150993__saphe__street-scene-1.wav"
    ),
    "river": "audio/backgrounds/sounds/nature/river.mp3",
    "wind": "audio/backgrounds/sounds/nature/wind.mp3",
    "waves": "audio/backgrounds/sounds/nature/waves.mp3",
    "heavy-rain": "audio/backgrounds/sounds/rain/heavy-rain.mp3",
    "light-rain": "audio/backgrounds/sounds/rain/light-rain.mp3",
    "rain-on-window": "audio/backgrounds/sounds/rain/rain-on-window.mp3",
    "washing-machine": "audio/backgrounds/sounds/things/washing-machine.mp3",
}

# (background -> classes it contains): neither placed nor scored over that background.
BACKGROUND_CONFLICTS: dict[str, tuple[str, ...]] = {
    "cafe": ("human_voice",),
    "office": ("human_voice",),
    "subway-station": ("human_voice",),
    "busy-street": ("human_voice", "car_horn"),
    "traffic": ("human_voice",),
    "scaper-street": ("human_voice",),
    "heavy-rain": ("rain",),
    "light-rain": ("rain",),
    "rain-on-window": ("rain",),
    "waves": ("sea_waves",),
}

_OUTDOOR_PUBLIC = (
    "cafe",
    "office",
    "subway-station",
    "busy-street",
    "traffic",
    "scaper-street",
    "river",
    "wind",
    "waves",
    "heavy-rain",
    "light-rain",
    "rain-on-window",
)
CONDITIONS = (
    Condition("clean", (6.0, 20.0), _OUTDOOR_PUBLIC, (-40.0, -30.0)),
    Condition("noisy", (0.0, 6.0), _OUTDOOR_PUBLIC, (-40.0, -30.0)),
    Condition(
        "household-low",
        (0.0, 10.0),
        ("office", "washing-machine", "light-rain", "rain-on-window", "wind"),
        (-40.0, -30.0),
        mix_dbfs=(-42.0, -38.0),
    ),
)

_SCAPER_FG = "audio/scaper/tests/data/audio/foreground"
# scaper clips and siren excerpts per split: (path relative to shared, label, start, end)
_OTHER_FOREGROUNDS: dict[str, list[tuple[str, str, float | None, float | None]]] = {
    "dev": [
        (f"{_SCAPER_FG}/car_horn/17-CAR-Rolls-Royce-Horn.wav", "car_horn", None, None),
        (
            f"{_SCAPER_FG}/human_voice/42-Human-Vocal-Voice-taxi-1_edit.wav",
            "human_voice",
            None,
            None,
        ),
        ("audio/backgrounds/sounds/urban/ambulance-siren.mp3", "siren", 0.0, 5.6),
        ("audio/backgrounds/sounds/urban/ambulance-siren.mp3", "siren", 5.6, 11.2),
    ],
    "test": [
        (f"{_SCAPER_FG}/car_horn/17-CAR-Rolls-Royce-Horn-2.wav", "car_horn", None, None),
        (
            f"{_SCAPER_FG}/human_voice/42-Human-Vocal-Voice-all-aboard_edit.wav",
            "human_voice",
            None,
            None,
        ),
        (
            f"{_SCAPER_FG}/human_voice/42-Human-Vocal-Voice-taxi-2_edit.wav",
            "human_voice",
            None,
            None,
        ),
        ("audio/backgrounds/sounds/urban/ambulance-siren.mp3", "siren", 11.3, 16.9),
        ("audio/backgrounds/sounds/urban/ambulance-siren.mp3", "siren", 16.9, 22.5),
    ],
}


def foregrounds(shared_dir: Path, split: str) -> list[ForegroundClip]:
    """The foreground clips of a split: its ESC-10 folds plus the scaper clips and siren parts."""
    esc = shared_dir / "audio" / "esc10"
    folds = {str(f) for f in SPLITS[split]}
    clips = []
    with open(esc / "esc10_meta.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["fold"] in folds:
                clips.append(ForegroundClip(esc / row["path"], row["esc50_category"]))
    for rel, label, start, end in _OTHER_FOREGROUNDS[split]:
        clips.append(ForegroundClip(shared_dir / rel, label, start, end))
    clips.sort(key=lambda c: (c.label, str(c.path), c.onset_in_clip or 0.0))
    return clips


def ignored_by_file(index: dict[str, Any]) -> dict[str, list[str]]:
    """``{soundscape file: labels not scored in it}`` from an index (see module docstring)."""
    return {e["file"]: list(e["ignore_labels"]) for e in index["soundscapes"] if e["ignore_labels"]}


def load_index(out_dir: str | Path) -> dict[str, Any]:
    """The ``index.json`` of a built set."""
    return json.loads((Path(out_dir) / "index.json").read_text(encoding="utf-8"))


def reference_events(
    out_dir: str | Path, split: str | None = None, condition: str | None = None
) -> list[RefEvent]:
    """Reference events of the set (read from its TSV files), optionally of one split/condition."""
    out_dir = Path(out_dir)
    events: list[RefEvent] = []
    for entry in load_index(out_dir)["soundscapes"]:
        if split not in (None, entry["split"]) or condition not in (None, entry["condition"]):
            continue
        events += load_reference(out_dir / Path(entry["file"]).with_suffix(".tsv"))
    return events


def _fingerprint(paths: Iterable[Path], shared_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(set(paths)):
        stat = path.stat()
        digest.update(f"{path.relative_to(shared_dir)}\0{stat.st_size}\n".encode())
    return digest.hexdigest()[:16]


def _parameters(
    shared_dir: Path,
    seed: int,
    per_condition: int,
    duration: tuple[float, float],
    n_events: tuple[int, int],
    min_gap: float,
) -> dict[str, Any]:
    inputs = [shared_dir / p for p in BACKGROUNDS.values()]
    for split in SPLITS:
        inputs += [Path(c.path) for c in foregrounds(shared_dir, split)]
    params = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "per_condition": per_condition,
        "duration": list(duration),
        "n_events": list(n_events),
        "min_gap": min_gap,
        "sample_rate": SAMPLE_RATE,
        "splits": {k: list(v) for k, v in SPLITS.items()},
        "conditions": [asdict(c) for c in CONDITIONS],
        "background_conflicts": {k: list(v) for k, v in BACKGROUND_CONFLICTS.items()},
        "inputs_fingerprint": _fingerprint(inputs, shared_dir),
    }
    return json.loads(json.dumps(params))  # as it reads back from index.json (lists, not tuples)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=False)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _rel(path: str | Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def build_set(
    shared_dir: str | Path,
    out_dir: str | Path,
    seed: int = DEFAULT_SEED,
    per_condition: int = 8,
    duration: tuple[float, float] = (30.0, 45.0),
    n_events: tuple[int, int] = (3, 8),
    min_gap: float = 0.5,
    force: bool = False,
    log: Callable[[str], object] | None = None,
) -> dict[str, Any]:
    """Build the benchmark soundscapes (see the module docstring) and return the index.

    Args:
        shared_dir: the shared data folder.
        out_dir: where to write; ``<split>/<condition>/*.wav|.tsv`` and ``index.json``.
        seed: master seed. Soundscape ``i`` of a split and condition uses the seed sequence
            ``(seed, split, condition, i)``, so it does not change when ``per_condition`` does.
        per_condition: soundscapes per condition and split.
        duration: range of soundscape lengths in seconds (whole seconds drawn uniformly).
        n_events: inclusive range of the number of events per soundscape.
        min_gap: minimum distance between two events of the same class (seconds).
        force: rebuild even when an index with the same parameters exists.
        log: called with progress messages (``None`` for silence).

    Returns:
        The index: ``{"params": {...}, "soundscapes": [...]}``.
    """
    shared_dir, out_dir = Path(shared_dir).resolve(), Path(out_dir)
    say = log or (lambda *_: None)
    params = _parameters(shared_dir, seed, per_condition, duration, n_events, min_gap)
    index_path = out_dir / "index.json"
    if index_path.exists() and not force:
        old = json.loads(index_path.read_text(encoding="utf-8"))
        files_ok = all((out_dir / e["file"]).exists() for e in old.get("soundscapes", []))
        if old.get("params") == params and files_ok:
            say(f"{index_path}: up to date ({len(old['soundscapes'])} soundscapes), nothing to do")
            return old

    entries: list[dict[str, Any]] = []
    bg_cache: dict[tuple[str, str], np.ndarray] = {}
    for split_no, split in enumerate(SPLITS):
        clips = foregrounds(shared_dir, split)
        for cond_no, cond in enumerate(CONDITIONS):
            folder = out_dir / split / cond.name
            wanted = set()
            # Backgrounds in a shuffled cycle, so each is used about equally often.
            order = np.random.default_rng([seed, split_no, cond_no]).permutation(
                len(cond.backgrounds)
            )
            for i in range(per_condition):
                entry_seed = [seed, split_no, cond_no, i]
                rng = np.random.default_rng(entry_seed)
                bg_name = cond.backgrounds[int(order[i % len(order)])]
                key = (bg_name, split)
                if key not in bg_cache:
                    full = load(shared_dir / BACKGROUNDS[bg_name], sample_rate=SAMPLE_RATE)
                    half = full.size // 2
                    bg_cache[key] = full[:half] if split == "dev" else full[half:]
                background = bg_cache[key]
                ignore = BACKGROUND_CONFLICTS.get(bg_name, ())
                usable = [c for c in clips if c.label not in ignore]

                length = float(rng.integers(int(duration[0]), int(duration[1]) + 1))
                bg_target = (
                    float(rng.uniform(*cond.background_dbfs)) if cond.background_dbfs else None
                )
                bg_gain = bg_target - rms_db(background) if bg_target is not None else 0.0
                audio, events, info = make_soundscape(
                    background,
                    usable,
                    duration=length,
                    n_events=n_events,
                    snr_db=cond.snr_db,
                    rng=rng,
                    sample_rate=SAMPLE_RATE,
                    allow_overlap=True,
                    background_gain_db=bg_gain,
                    min_gap=min_gap,
                    return_info=True,
                )
                mix_gain_db = 0.0
                if cond.mix_dbfs is not None:
                    target = float(rng.uniform(*cond.mix_dbfs))
                    mix_gain_db = target - rms_db(audio)
                    audio = (audio * 10.0 ** (mix_gain_db / 20.0)).astype(np.float32)
                    if np.max(np.abs(audio)) > 1.0:  # cannot happen at -40 dBFS; be safe
                        raise RuntimeError("household-low mix clips after level scaling")

                name = f"{split}_{cond.name}_{i:02d}.wav"
                wav = folder / name
                write_soundscape(wav, audio, events, SAMPLE_RATE)
                wanted |= {wav.name, wav.with_suffix(".tsv").name}
                total_gain = info["normalisation_gain_db"] + mix_gain_db
                entries.append(
                    {
                        "file": wav.relative_to(out_dir).as_posix(),
                        "split": split,
                        "condition": cond.name,
                        "seed": entry_seed,
                        "duration": length,
                        "background": bg_name,
                        "background_path": BACKGROUNDS[bg_name],
                        "background_part": "first half" if split == "dev" else "second half",
                        "background_start_s": round(info["background_start_s"], 4),
                        "background_looped": info["background_looped"],
                        "background_rms_dbfs": round(info["background_rms_dbfs"] + mix_gain_db, 2),
                        "mix_rms_dbfs": round(rms_db(audio), 2),
                        "mix_peak_dbfs": round(20 * math.log10(float(np.max(np.abs(audio)))), 2),
                        "normalisation_gain_db": round(info["normalisation_gain_db"], 3),
                        "level_gain_db": round(mix_gain_db, 3),
                        "ignore_labels": list(ignore),
                        "n_events_drawn": info["n_events_drawn"],
                        "events": [
                            {
                                "onset": round(e.onset, 4),
                                "offset": round(e.offset, 4),
                                "label": e.label,
                                "snr_db": round(e.snr_db, 2),
                                "gain_db": round(e.gain_db + total_gain, 2),
                                "source": _rel(e.source, shared_dir),
                                "clip_onset": round(e.clip_onset, 4),
                                "clip_offset": round(e.clip_offset, 4),
                            }
                            for e in events
                        ],
                    }
                )
                say(
                    f"{entries[-1]['file']}: {length:.0f} s, {bg_name}, {len(events)} events, "
                    f"mix {entries[-1]['mix_rms_dbfs']:.1f} dBFS"
                )
            for stale in folder.glob(f"{split}_{cond.name}_*"):
                if stale.name not in wanted and stale.suffix in (".wav", ".tsv"):
                    stale.unlink()

    index = {"params": params, "soundscapes": entries}
    _write_json(index_path, index)
    total = sum(e["duration"] for e in entries)
    say(f"wrote {len(entries)} soundscapes, {total / 60:.1f} min, index {index_path}")
    return index


def check_set(out_dir: str | Path) -> dict[str, dict[str, float]]:
    """Listen by numbers: per split/condition, levels inside and outside the labelled spans.

    Returns, per ``split/condition``: mean mix RMS (dBFS), mean RMS inside labelled spans minus
    RMS of the unlabelled rest of the same file (dB), the fraction of events whose own span is
    louder than the file's unlabelled part, and totals.
    """
    out_dir = Path(out_dir)
    index = load_index(out_dir)
    groups: dict[str, list[tuple[float, float, list[float]]]] = defaultdict(list)
    for entry in index["soundscapes"]:
        audio = load(out_dir / entry["file"], sample_rate=SAMPLE_RATE)
        labelled = np.zeros(audio.size, dtype=bool)
        spans = []
        for e in entry["events"]:
            a, b = round(e["onset"] * SAMPLE_RATE), round(e["offset"] * SAMPLE_RATE)
            labelled[a:b] = True
            spans.append((a, b))
        rest = rms_db(audio[~labelled]) if (~labelled).any() else float("nan")
        inside = rms_db(audio[labelled]) if labelled.any() else float("nan")
        louder = [rms_db(audio[a:b]) - rest for a, b in spans]
        groups[f"{entry['split']}/{entry['condition']}"].append(
            (rms_db(audio), inside - rest, louder)
        )
    report = {}
    for name, rows in sorted(groups.items()):
        louder = [d for _, _, ds in rows for d in ds]
        report[name] = {
            "files": len(rows),
            "events": len(louder),
            "mix_rms_dbfs": float(np.mean([r[0] for r in rows])),
            "inside_minus_outside_db": float(np.nanmean([r[1] for r in rows])),
            "events_louder_than_rest": float(np.mean([d > 0 for d in louder])) if louder else 0.0,
            "min_event_minus_rest_db": float(min(louder)) if louder else float("nan"),
        }
    return report
