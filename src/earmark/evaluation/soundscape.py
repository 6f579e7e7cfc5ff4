"""Strongly labelled soundscapes mixed from real recordings, for measuring detection quality.

A soundscape is a real background recording (looped or cropped to length) with real foreground
clips added at random times and random signal-to-noise ratios. Because we place the clips
ourselves, we know exactly when each sound starts and stops, which real recordings with human
labels rarely tell us that precisely.

Two details make the labels true rather than merely nominal:

* **Active part.** Clips are often padded with near-silence (ESC-10 clips are all 5 s long,
  whatever the sound). Each clip is trimmed to its *active part*: from the first to the last
  20 ms frame whose level is within ``threshold_db`` (default 40 dB) of the clip's loudest frame.
  The label covers exactly that part.
* **SNR over the active frames.** The level of an event is the RMS over its active frames only
  (a dog barking three times is measured on the barks, not on the pauses); the level of the
  background is the RMS of the background over the very same samples of the mix. The clip is
  scaled so that their ratio is the SNR drawn for it.

The mix is never clipped per event: if the sum exceeds full scale the whole mix is scaled down
(the gain is reported) so that every SNR stays as drawn.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
from scipy.io import wavfile

from earmark.audio import load as load_audio

__all__ = [
    "ForegroundClip",
    "SoundscapeEvent",
    "active_mask",
    "active_span",
    "make_soundscape",
    "rms_db",
    "write_soundscape",
]

_FRAME_S = 0.02  # frame length for the activity measure
_HOP_S = 0.01  # hop between frames
_FADE_S = 0.005  # fade at both ends of a placed clip, against clicks
_LOOP_XFADE_S = 0.05  # cross-fade where a looped background wraps around
_PEAK_LIMIT = 1.0  # the mix is scaled down only when its peak exceeds full scale ...
_PEAK_TARGET = 0.99  # ... and then to this peak


@dataclass(frozen=True)
class ForegroundClip:
    """A recording of one sound of class ``label``.

    ``onset_in_clip``/``offset_in_clip`` (seconds) restrict it to part of the file; the part used
    is then trimmed further to its active part.
    """

    path: Path
    label: str
    onset_in_clip: float | None = None
    offset_in_clip: float | None = None


@dataclass(frozen=True)
class SoundscapeEvent:
    """One event placed in a soundscape: the label times are those of the active part."""

    onset: float
    offset: float
    label: str
    source: str
    """Path of the foreground recording."""
    clip_onset: float
    """Start (s) of the part of the recording that was used, i.e. of its active part."""
    clip_offset: float
    """End (s) of the part of the recording that was used."""
    snr_db: float
    """SNR of the event against the background over the event's active frames."""
    gain_db: float
    """Gain applied to the recording (before any peak normalisation of the whole mix)."""


def rms_db(x: np.ndarray) -> float:
    """RMS level of ``x`` in dB relative to full scale (a full-scale sine is -3 dBFS)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return float("-inf")
    power = float(np.mean(x * x))
    return 10.0 * math.log10(power) if power > 0 else float("-inf")


def active_mask(
    x: np.ndarray,
    sample_rate: int,
    threshold_db: float = -40.0,
    frame_s: float = _FRAME_S,
    hop_s: float = _HOP_S,
) -> np.ndarray:
    """Samples that belong to an *active* frame: a frame within ``threshold_db`` of the loudest.

    Frames are ``frame_s`` long every ``hop_s``; a sample is active when any frame containing it
    is. An all-zero signal has no active samples.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    frame = max(1, round(frame_s * sample_rate))
    hop = max(1, round(hop_s * sample_rate))
    starts = np.arange(0, max(n - frame, 0) + 1, hop)
    if starts[-1] + frame < n:  # cover the tail with one more (partial) frame
        starts = np.append(starts, n - frame if n > frame else 0)
    cumulative = np.concatenate([[0.0], np.cumsum(x * x)])
    stops = np.minimum(starts + frame, n)
    power = (cumulative[stops] - cumulative[starts]) / (stops - starts)
    peak = power.max()
    if peak <= 0:
        return mask
    active = power >= peak * 10.0 ** (threshold_db / 10.0)
    # Mark [start, stop) of every active frame via a difference array.
    delta = np.zeros(n + 1, dtype=np.int64)
    np.add.at(delta, starts[active], 1)
    np.add.at(delta, stops[active], -1)
    mask[:] = np.cumsum(delta[:-1]) > 0
    return mask


def active_span(mask: np.ndarray) -> tuple[int, int]:
    """``(first, last + 1)`` sample indices of the active samples; ``(0, 0)`` if there are none."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return 0, 0
    return int(idx[0]), int(idx[-1]) + 1


@dataclass
class _Prepared:
    clip: ForegroundClip
    audio: np.ndarray  # active part only, faded at both ends
    mask: np.ndarray  # active samples within it
    clip_onset: float  # seconds in the source recording


def _prepare(
    clip: ForegroundClip,
    audio: np.ndarray,
    sample_rate: int,
    threshold_db: float,
    max_samples: int,
    rng: np.random.Generator,
) -> _Prepared:
    start = 0 if clip.onset_in_clip is None else max(0, round(clip.onset_in_clip * sample_rate))
    stop = audio.size if clip.offset_in_clip is None else round(clip.offset_in_clip * sample_rate)
    stop = min(stop, audio.size)
    part = audio[start:stop]
    a, b = active_span(active_mask(part, sample_rate, threshold_db))
    if b <= a:
        raise ValueError(f"foreground {clip.path} has no sound in the requested part")
    if b - a > max_samples:  # longer than the soundscape: take a random window, trim again
        a += int(rng.integers(0, b - a - max_samples + 1))
        window = part[a : a + max_samples]
        a2, b2 = active_span(active_mask(window, sample_rate, threshold_db))
        a, b = a + a2, a + b2
    part = np.array(part[a:b], dtype=np.float64)
    fade = min(round(_FADE_S * sample_rate), part.size // 2)
    if fade > 0:
        ramp = np.sin(0.5 * np.pi * (np.arange(fade) + 0.5) / fade) ** 2
        part[:fade] *= ramp
        part[-fade:] *= ramp[::-1]
    mask = active_mask(part, sample_rate, threshold_db)
    return _Prepared(clip, part, mask, (start + a) / sample_rate)


def _loop_to_length(x: np.ndarray, n: int, start: int, sample_rate: int) -> np.ndarray:
    """``x`` rotated to begin at ``start`` and repeated to ``n`` samples with cross-fades."""
    x = np.roll(np.asarray(x, dtype=np.float64), -start)
    fade = min(round(_LOOP_XFADE_S * sample_rate), x.size // 4)
    out = np.zeros(n + x.size, dtype=np.float64)
    if fade > 0:
        t = (np.arange(fade) + 0.5) / fade
        fade_in, fade_out = np.sin(0.5 * np.pi * t), np.cos(0.5 * np.pi * t)  # equal power
    pos, first = 0, True
    while pos < n:
        piece = x.copy()
        if fade > 0:
            if not first:
                piece[:fade] *= fade_in
            piece[-fade:] *= fade_out
        out[pos : pos + piece.size] += piece
        pos += x.size - fade
        first = False
    return out[:n]


def _background_segment(
    background: np.ndarray, n: int, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, int, bool]:
    if background.size == 0:
        raise ValueError("the background recording is empty")
    if background.size >= n:
        start = int(rng.integers(0, background.size - n + 1))
        return np.asarray(background[start : start + n], dtype=np.float64), start, False
    start = int(rng.integers(0, background.size))
    return _loop_to_length(background, n, start, sample_rate), start, True


def _place_without_overlap(
    lengths: list[int], n: int, gap: int, rng: np.random.Generator
) -> list[int | None]:
    """Start samples for events in the given order, none overlapping, at least ``gap`` apart.

    Events that do not fit are dropped (``None``), last ones first. The free time is split at
    uniformly random points, then events are laid out in a random order.
    """
    keep = len(lengths)
    while keep > 0 and sum(lengths[:keep]) + gap * (keep - 1) > n:
        keep -= 1
    starts: list[int | None] = [None] * len(lengths)
    if keep == 0:
        return starts
    free = n - sum(lengths[:keep]) - gap * (keep - 1)
    cuts = np.sort(rng.integers(0, free + 1, size=keep))
    order = rng.permutation(keep)
    pos = 0
    for k, i in enumerate(order.tolist()):
        extra = int(cuts[k]) - (int(cuts[k - 1]) if k else 0)
        pos += extra
        starts[i] = pos
        pos += lengths[i] + gap
    return starts


def _place_with_overlap(
    lengths: list[int],
    labels: list[str],
    n: int,
    gap: int,
    rng: np.random.Generator,
    tries: int = 200,
) -> list[int | None]:
    """Uniformly random starts; events of the same label stay ``gap`` apart (else dropped)."""
    starts: list[int | None] = []
    taken: dict[str, list[tuple[int, int]]] = {}
    for length, label in zip(lengths, labels, strict=True):
        chosen = None
        for _ in range(tries):
            s = int(rng.integers(0, n - length + 1))
            spans = taken.get(label, [])
            if all(s + length + gap <= a or b + gap <= s for a, b in spans):
                chosen = s
                break
        if chosen is not None:
            taken.setdefault(label, []).append((chosen, chosen + length))
        starts.append(chosen)
    return starts


def _pick_clips(
    foregrounds: Sequence[ForegroundClip], count: int, rng: np.random.Generator
) -> list[ForegroundClip]:
    """Pick a label uniformly, then one of its clips, preferring clips not used yet."""
    by_label: dict[str, list[ForegroundClip]] = {}
    for clip in foregrounds:
        by_label.setdefault(clip.label, []).append(clip)
    labels = sorted(by_label)
    used: set[int] = set()
    picked = []
    for _ in range(count):
        label = labels[int(rng.integers(0, len(labels)))]
        candidates = by_label[label]
        fresh = [c for c in candidates if id(c) not in used] or candidates
        clip = fresh[int(rng.integers(0, len(fresh)))]
        used.add(id(clip))
        picked.append(clip)
    return picked


@overload
def make_soundscape(
    background: np.ndarray | Path | str,
    foregrounds: Sequence[ForegroundClip],
    duration: float,
    n_events: tuple[int, int],
    snr_db: tuple[float, float],
    rng: np.random.Generator,
    sample_rate: int = ...,
    allow_overlap: bool = ...,
    background_gain_db: float = ...,
    min_gap: float = ...,
    threshold_db: float = ...,
    *,
    return_info: Literal[False] = ...,
    clip_audio: dict[Path, np.ndarray] | None = ...,
) -> tuple[np.ndarray, list[SoundscapeEvent]]: ...


@overload
def make_soundscape(
    background: np.ndarray | Path | str,
    foregrounds: Sequence[ForegroundClip],
    duration: float,
    n_events: tuple[int, int],
    snr_db: tuple[float, float],
    rng: np.random.Generator,
    sample_rate: int = ...,
    allow_overlap: bool = ...,
    background_gain_db: float = ...,
    min_gap: float = ...,
    threshold_db: float = ...,
    *,
    return_info: Literal[True],
    clip_audio: dict[Path, np.ndarray] | None = ...,
) -> tuple[np.ndarray, list[SoundscapeEvent], dict[str, Any]]: ...


def make_soundscape(
    background: np.ndarray | Path | str,
    foregrounds: Sequence[ForegroundClip],
    duration: float,
    n_events: tuple[int, int],
    snr_db: tuple[float, float],
    rng: np.random.Generator,
    sample_rate: int = 32000,
    allow_overlap: bool = True,
    background_gain_db: float = 0.0,
    min_gap: float = 0.5,
    threshold_db: float = -40.0,
    *,
    return_info: bool = False,
    clip_audio: dict[Path, np.ndarray] | None = None,
) -> (
    tuple[np.ndarray, list[SoundscapeEvent]]
    | tuple[np.ndarray, list[SoundscapeEvent], dict[str, Any]]
):
    """Mix foreground clips into a background at random times and SNRs.

    Args:
        background: the background signal (mono, at ``sample_rate``) or a path to load. It is
            cropped at a random point, or looped (from a random point, with 50 ms cross-fades)
            when shorter than ``duration``.
        foregrounds: clips to draw events from. For each event a label is drawn uniformly among
            the labels present, then a clip of that label (clips not used yet in this soundscape
            first).
        duration: length of the soundscape in seconds.
        n_events: inclusive range of the number of events to draw.
        snr_db: range of the SNR (uniform, dB) of each event against the background.
        rng: the random generator; the result is a deterministic function of its state and the
            other arguments.
        sample_rate: sample rate of the output and of ``background`` when it is an array.
        allow_overlap: when False, no two events overlap and consecutive events are at least
            ``min_gap`` apart. When True, events may overlap, except that events of the same
            label stay at least ``min_gap`` apart (so each reference event is a distinct sound).
        background_gain_db: gain applied to the background before mixing.
        min_gap: see ``allow_overlap`` (seconds).
        threshold_db: level below a clip's loudest frame under which frames count as silence.
        return_info: also return a dict describing the mix (background start and looping,
            levels, the peak-normalisation gain, events drawn and placed).
        clip_audio: decoded foreground recordings (mono, at ``sample_rate``) by path; a clip
            not in it is loaded and added, so one dict shared by many calls decodes each
            recording once.

    Returns:
        ``(audio, events)`` (float32 mono at ``sample_rate``, events sorted by onset), plus
        ``info`` when ``return_info`` is True. Events that did not fit are dropped; ``info``
        tells how many were drawn.
    """
    if duration <= 0:
        raise ValueError("duration must be > 0")
    lo, hi = int(n_events[0]), int(n_events[1])
    if lo < 0 or hi < lo:
        raise ValueError(f"bad n_events range {n_events}")
    if hi > 0 and not foregrounds:
        raise ValueError("no foreground clips to draw events from")
    if snr_db[1] < snr_db[0]:
        raise ValueError(f"bad snr_db range {snr_db}")

    n = round(duration * sample_rate)
    if isinstance(background, (str, Path)):
        background = load_audio(background, sample_rate=sample_rate)
    background = np.asarray(background, dtype=np.float64)
    if background.ndim != 1:
        raise ValueError("background must be mono (1-D)")
    bg, bg_start, looped = _background_segment(background, n, sample_rate, rng)
    bg *= 10.0 ** (background_gain_db / 20.0)
    bg_power = float(np.mean(bg * bg))
    if bg_power <= 0:
        raise ValueError("the background is digital silence: SNR is undefined")

    count = int(rng.integers(lo, hi + 1))
    clips = _pick_clips(foregrounds, count, rng)
    cache: dict[Path, np.ndarray] = {} if clip_audio is None else clip_audio
    prepared = []
    for clip in clips:
        path = Path(clip.path)
        if path not in cache:
            cache[path] = np.asarray(load_audio(path, sample_rate=sample_rate), dtype=np.float64)
        prepared.append(_prepare(clip, cache[path], sample_rate, threshold_db, n, rng))
    snrs = rng.uniform(snr_db[0], snr_db[1], size=len(prepared))

    lengths = [p.audio.size for p in prepared]
    gap = round(min_gap * sample_rate)
    if allow_overlap:
        starts = _place_with_overlap(lengths, [p.clip.label for p in prepared], n, gap, rng)
    else:
        starts = _place_without_overlap(lengths, n, gap, rng)

    mix = bg.copy()
    events: list[SoundscapeEvent] = []
    for p, start, snr in zip(prepared, starts, snrs.tolist(), strict=True):
        if start is None:
            continue
        span = slice(start, start + p.audio.size)
        fg_power = float(np.mean(p.audio[p.mask] ** 2))
        local = bg[span][p.mask]
        local_power = float(np.mean(local * local))
        if local_power <= 0:  # digital silence under the event: fall back on the whole background
            local_power = bg_power
        gain = math.sqrt(local_power / fg_power) * 10.0 ** (snr / 20.0)
        mix[span] += gain * p.audio
        events.append(
            SoundscapeEvent(
                onset=start / sample_rate,
                offset=(start + p.audio.size) / sample_rate,
                label=p.clip.label,
                source=str(p.clip.path),
                clip_onset=p.clip_onset,
                clip_offset=p.clip_onset + p.audio.size / sample_rate,
                snr_db=float(snr),
                gain_db=20.0 * math.log10(gain),
            )
        )
    events.sort(key=lambda e: (e.onset, e.label))

    peak = float(np.max(np.abs(mix)))
    norm_gain = 1.0
    if peak > _PEAK_LIMIT:
        norm_gain = _PEAK_TARGET / peak
        mix *= norm_gain
    audio = mix.astype(np.float32)
    if not return_info:
        return audio, events
    info = {
        "background_start_s": bg_start / sample_rate,
        "background_start_sample": bg_start,
        "background_looped": looped,
        "background_rms_dbfs": rms_db(bg * norm_gain),
        "normalisation_gain_db": 20.0 * math.log10(norm_gain),
        "mix_rms_dbfs": rms_db(audio),
        "mix_peak_dbfs": 20.0 * math.log10(max(float(np.max(np.abs(audio))), 1e-12)),
        "n_events_drawn": count,
        "n_events_placed": len(events),
    }
    return audio, events, info


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_soundscape(
    path_wav: str | Path,
    audio: np.ndarray,
    events: Sequence[Any],
    sample_rate: int,
    dtype: Literal["float32", "int16"] = "float32",
) -> None:
    """Write a soundscape as WAV plus a DCASE TSV of its events next to it (same stem, ``.tsv``).

    The TSV has the header ``filename onset offset event_label`` (tab separated) with the WAV's
    file name in the first column. Both files are written to a temporary name then renamed, so a
    reader never sees a half-written file.

    Args:
        path_wav: output WAV path.
        audio: mono signal in [-1, 1].
        events: objects with ``onset``, ``offset`` and ``label``.
        sample_rate: sample rate of ``audio``.
        dtype: WAV sample format: 32-bit float or 16-bit PCM.
    """
    path_wav = Path(path_wav)
    x = np.asarray(audio)
    if x.ndim != 1:
        raise ValueError("audio must be mono (1-D)")
    if dtype == "float32":
        data = x.astype(np.float32)
    elif dtype == "int16":
        data = np.round(np.clip(x.astype(np.float64), -1.0, 1.0) * 32767.0).astype(np.int16)
    else:
        raise ValueError(f"unsupported dtype {dtype!r}")
    _atomic_write(path_wav, lambda handle: wavfile.write(handle, int(sample_rate), data))

    lines = ["filename\tonset\toffset\tevent_label"]
    for e in sorted(events, key=lambda e: (e.onset, e.offset, e.label)):
        lines.append(f"{path_wav.name}\t{e.onset:.4f}\t{e.offset:.4f}\t{e.label}")
    text = "\n".join(lines) + "\n"
    _atomic_write(path_wav.with_suffix(".tsv"), lambda handle: handle.write(text.encode()))
