"""Second pass: the series' intro and outro looked for in the files that lack them, at speeds
within ±5 % of the series (PAL/NTSC transfers, sped-up streams).

A file played ``r`` times faster than the rest of the series has its audio at ``t / r`` and its
frequencies multiplied by ``r``: neither its landmark hashes nor its sub-fingerprints match
the others'. For each file that lacks the intro (outro):

1. **Speed and offset from the spectral peaks** (no decoding): the file's peaks in the region
   where the segment can be are mapped to the series' time and frequency axes for each speed
   of a grid (0.95-1.05 in 0.5 % steps, then 0.1 % steps around the best), re-hashed, and
   matched against the hashes of the segment in up to 4 reference occurrences (the clearest);
   votes at one offset give the best (speed, offset). The median of the grid's votes is the
   chance level.
2. **Verification and boundaries on the audio**: when the best speed has clearly more votes
   than chance, the file is decoded again, resampled to the series' speed, fingerprinted, and
   its BER against the reference occurrences (averaged) is delimited as in the first pass.
   The occurrence found is reported with its speed; otherwise the best candidate's confidence
   is kept for the "not found" message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from earmark.repeats.align import (
    CHANCE_BER,
    aligned_ber,
    boundary_time,
    delimit,
    seconds_to_frames,
    time_to_frame,
)
from earmark.repeats.clusters import GAP_Z
from earmark.repeats.fingerprint import (
    FINGERPRINT_SAMPLE_RATE,
    HOP_SECONDS,
    FileFingerprint,
    fingerprint_waveform,
    landmark_hashes,
)
from earmark.repeats.results import Occurrence, RepeatOptions, Segment

__all__ = [
    "SPEED_GRID",
    "AudioLoader",
    "decode_for_speed",
    "match_strength",
    "recover_missing",
    "speed_votes",
]

SPEED_GRID = np.round(np.arange(0.95, 1.05001, 0.005), 4)
"""Speeds (file relative to the series) tried first; the best is refined in 0.1 % steps."""
MAX_REFS = 4
SECOND_PASS_BER = 0.45
VOTE_RATIO = 3.0  # best votes must exceed this many times the grid's median ...
MIN_VOTES = 10  # ... and this many

AudioLoader = Callable[[str], np.ndarray | None]
"""Returns the audio of a file at :data:`FINGERPRINT_SAMPLE_RATE` (None: not available)."""


def decode_for_speed(name: str) -> np.ndarray | None:
    """Decode a file again for the second pass (None if it is not a readable file)."""
    from earmark.audio import AudioError, load

    if not os.path.isfile(name):
        return None
    try:
        return load(name, FINGERPRINT_SAMPLE_RATE)
    except (AudioError, OSError, ValueError):
        return None


def match_strength(ber: float, partners: int) -> float:
    """Confidence of an occurrence: BER strength times support (see :class:`Occurrence`)."""
    strength = min(max((CHANCE_BER - ber) / 0.35, 0.0), 1.0)
    return strength * (1.0 - 0.5**partners)


def _reference(
    fps: Sequence[FileFingerprint], refs: list[tuple[int, int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the segment in the reference occurrences, with frames relative to its start."""
    hashes, rel = [], []
    for p, lo, hi in refs:
        i0, i1 = np.searchsorted(fps[p].hash_frames, [lo, hi])
        hashes.append(fps[p].hashes[i0:i1])
        rel.append(fps[p].hash_frames[i0:i1] - lo)
    h = np.concatenate(hashes) if hashes else np.zeros(0, np.uint32)
    r = np.concatenate(rel) if rel else np.zeros(0, np.int32)
    order = np.argsort(h, kind="stable")
    return h[order], r[order].astype(np.int64)


def _warped_hashes(fp: FileFingerprint, speed: float, lo: int, hi: int) -> tuple:
    """Hashes of the peaks of frames ``lo..hi`` of ``fp`` mapped to the series' axes."""
    sel = (fp.peak_frames >= lo) & (fp.peak_frames < hi)
    t = np.round(fp.peak_frames[sel] * speed).astype(np.int64)
    f = np.round(fp.peak_bins[sel] / speed).astype(np.int64)
    order = np.lexsort((f, t))
    return landmark_hashes(t[order], f[order])


def speed_votes(
    ref: tuple[np.ndarray, np.ndarray], fp: FileFingerprint, speed: float, lo: int, hi: int
) -> tuple[int, int]:
    """Votes at the best offset, and that offset (series frame of the segment's start in the
    file's warped time line), of the file's region ``lo..hi`` played at ``1 / speed``."""
    ref_h, ref_rel = ref
    h, frames = _warped_hashes(fp, speed, lo, hi)
    if h.size == 0 or ref_h.size == 0:
        return 0, 0
    a = np.searchsorted(ref_h, h, side="left")
    b = np.searchsorted(ref_h, h, side="right")
    n = np.minimum(b - a, 16)
    hit = n > 0
    if not hit.any():
        return 0, 0
    a, n, frames = a[hit], n[hit], frames[hit].astype(np.int64)
    rep = np.repeat(np.arange(a.size), n)
    within = np.arange(rep.size) - np.repeat(np.cumsum(n) - n, n)
    offsets = frames[rep] - ref_rel[a[rep] + within]
    values, counts = np.unique(offsets, return_counts=True)
    lo_i = np.searchsorted(values, values - 1)
    hi_i = np.searchsorted(values, values + 1, side="right")
    cum = np.r_[0, np.cumsum(counts)]
    smooth = cum[hi_i] - cum[lo_i]
    k = int(np.argmax(smooth))
    return int(smooth[k]), int(values[k])


def _region(kind: str, fp: FileFingerprint, length: int, opts: RepeatOptions) -> tuple[int, int]:
    """Frames of a file where an intro (outro) of ``length`` frames may be, with margins."""
    n = fp.n_frames
    margin = seconds_to_frames(15.0)
    if kind == "intro":
        reach = min(max(opts.intro_region * fp.duration, 0.0), opts.intro_max_start)
        return 0, min(n, seconds_to_frames(reach) + length + margin)
    reach = min(max(opts.outro_region * fp.duration, 0.0), opts.outro_max_tail)
    return max(0, n - seconds_to_frames(reach) - length - margin), n


def _verify(
    audio: np.ndarray,
    fps: Sequence[FileFingerprint],
    refs: list[tuple[int, int, int]],
    speed: float,
    offset: int,
    opts: RepeatOptions,
) -> tuple[tuple[float, float, float] | None, float]:
    """((start s, end s, core BER) or None, mean BER over the expected span) of the segment
    in the file at ``speed`` and ``offset``."""
    from earmark.audio import resample

    length = int(np.median([hi - lo for _, lo, hi in refs]))
    pad = seconds_to_frames(30.0)
    hop = round(HOP_SECONDS * FINGERPRINT_SAMPLE_RATE)
    g0 = max(0, offset - pad)  # in frames of the series' time line
    first = int(g0 * hop / speed)
    last = int((offset + length + pad) * hop / speed) + hop * 8
    piece = audio[first:last]
    if speed != 1.0:
        piece = resample(piece, FINGERPRINT_SAMPLE_RATE, round(FINGERPRINT_SAMPLE_RATE * speed))
    fy = fingerprint_waveform(piece, "<warped>")
    g0 = round(first * speed / hop)  # the piece's first frame on the series' time line
    seed = (offset - g0, offset - g0 + length)
    total = np.zeros(fy.n_frames, np.float32)
    count = np.zeros(fy.n_frames, np.int32)
    for p, lo, _ in refs:
        base = lo - seed[0]  # frame in p = frame in fy + base
        best = None
        for d in range(base - 3, base + 4):
            a, b = max(seed[0], 0, -d), min(seed[1], fy.n_frames, fps[p].n_frames - d)
            if b - a < seconds_to_frames(2.0):
                continue
            ber = float(aligned_ber(fy, fps[p], a, b, d).mean())
            if best is None or ber < best[0]:
                best = (ber, d)
        if best is None:
            continue
        d = best[1]
        a, b = max(0, -d), min(fy.n_frames, fps[p].n_frames - d)
        if b > a:
            total[a:b] += aligned_ber(fy, fps[p], a, b, d)
            count[a:b] += 1
    if not count.any():
        return None, CHANCE_BER
    avg = np.where(count > 0, total / np.maximum(count, 1), CHANCE_BER).astype(np.float32)
    seed_ber = float(avg[max(seed[0], 0) : max(seed[1], 1)].mean())
    # the place is already given by the references' votes and the curve is their average:
    # a core up to SECOND_PASS_BER (3 standard deviations below chance over 3 s) is enough
    relaxed = replace(opts, core_ber=max(opts.core_ber, SECOND_PASS_BER))
    got = delimit(avg, seed[0], seed[1], replace(relaxed, max_ber=relaxed.core_ber))
    if got is None:
        return None, seed_ber
    a, b, core = got
    if (b - a) * HOP_SECONDS < opts.min_duration:
        return None, seed_ber
    a, b = _towards_template(avg, a, b, seed)
    to_file = (g0 * hop) / FINGERPRINT_SAMPLE_RATE  # seconds of the series' time line
    start = (to_file + boundary_time(a, fy.n_frames, fy.duration)) / speed
    end = (to_file + boundary_time(b, fy.n_frames, fy.duration)) / speed
    return (start, end, core), seed_ber


def _towards_template(avg: np.ndarray, a: int, b: int, seed: tuple[int, int]) -> tuple[int, int]:
    """Move the edges ``a``/``b`` out to the references' (``seed``) when the gap (1-8 s) is
    their audio: its mean BER is :data:`GAP_Z` standard deviations below that of windows of
    the same length outside the segment (as :func:`earmark.repeats.clusters.template_edges`
    does in the first pass)."""
    outside = np.r_[avg[: max(seed[0] - seconds_to_frames(1.0), 0)], avg[seed[1] + 31 :]]

    def moves(lo: int, hi: int) -> bool:
        n = hi - lo
        if not seconds_to_frames(1.0) <= n <= seconds_to_frames(8.0) or outside.size < 8 * n:
            return False
        windows = outside[: outside.size // n * n].reshape(-1, n).mean(axis=1)
        spread = max(float(windows.std()), 0.004)
        return float(avg[lo:hi].mean()) < float(windows.mean()) - GAP_Z * spread

    if seed[0] < a and moves(max(seed[0], 0), a):
        a = max(seed[0], 0)
    if b < seed[1] and moves(b, min(seed[1], avg.size)):
        b = min(seed[1], avg.size)
    return a, b


def _ber_at(
    fps: Sequence[FileFingerprint], x: int, refs: list[tuple[int, int, int]], offset: int
) -> float:
    """Mean BER of file ``x`` at series speed against the references placed at ``offset``."""
    bers = []
    for p, lo, hi in refs:
        d = lo - offset
        a, b = max(offset, 0, -d), min(offset + hi - lo, fps[x].n_frames, fps[p].n_frames - d)
        if b - a >= seconds_to_frames(2.0):
            bers.append(float(aligned_ber(fps[x], fps[p], a, b, d).mean()))
    return float(np.mean(bers)) if bers else CHANCE_BER


def recover_missing(
    segments: list[Segment],
    fps: Sequence[FileFingerprint],
    opts: RepeatOptions,
    loader: AudioLoader | None = None,
) -> dict[str, float]:
    """Look for each intro/outro in the files that lack it (see the module docstring); adds
    what is found to the segments (``speed`` set), fills :attr:`Segment.candidates` with the
    best candidate's confidence of the files still lacking it; returns the speed found per
    file name (1.0 for files whose segments matched at the series' speed)."""
    names = [fp.path for fp in fps]
    index = {n: i for i, n in enumerate(names)}
    speeds: dict[str, float] = {}
    for s in segments:
        for o in s.occurrences:
            speeds.setdefault(o.file, o.speed)
    load = loader or decode_for_speed
    audio_cache: dict[int, np.ndarray | None] = {}
    for s in segments:
        if s.kind not in ("intro", "outro") or not s.missing:
            continue
        clear = sorted(s.occurrences, key=lambda o: o.ber)[:MAX_REFS]
        refs = [(index[o.file], time_to_frame(o.start), time_to_frame(o.end)) for o in clear]
        ref = _reference(fps, refs)
        length = int(np.median([hi - lo for _, lo, hi in refs]))
        still = []
        for name in s.missing:
            x = index[name]
            lo, hi = _region(s.kind, fps[x], length, opts)
            grid = SPEED_GRID.tolist()
            votes = [speed_votes(ref, fps[x], r, lo, hi) for r in grid]
            best = int(np.argmax([v for v, _ in votes]))
            chance = float(np.median([v for v, _ in votes]))
            speed = grid[best]
            fine = [speed + k * 0.001 for k in range(-4, 5)]
            fine_votes = [speed_votes(ref, fps[x], r, lo, hi) for r in fine]
            k = int(np.argmax([v for v, _ in fine_votes]))
            if fine_votes[k][0] >= votes[best][0]:
                speed, votes[best] = round(fine[k], 4), fine_votes[k]
            n_votes, offset = votes[best]
            if abs(speed - 1.0) <= 0.002:  # within the precision of the peaks: the series' speed
                speed, (n_votes, offset) = 1.0, max(votes[best], votes[grid.index(1.0)])
            found, seed_ber = None, _ber_at(fps, x, refs, votes[grid.index(1.0)][1])
            if n_votes >= max(MIN_VOTES, VOTE_RATIO * chance):
                if x not in audio_cache:
                    audio_cache[x] = load(name)
                audio = audio_cache[x]
                if audio is not None:
                    found, ber = _verify(audio, fps, refs, speed, offset, opts)
                    seed_ber = min(seed_ber, ber)
            if found is None:
                s.candidates[name] = round(match_strength(seed_ber, len(refs)), 3)
                still.append(name)
                continue
            start, end, core = found
            s.occurrences.append(
                Occurrence(
                    file=name,
                    segment=s.id,
                    kind=s.kind,
                    start=max(start, 0.0),
                    end=min(end, fps[x].duration),
                    confidence=match_strength(core, len(refs)),
                    ber=core,
                    shared_with=[names[p] for p, _, _ in refs],
                    speed=float(speed),
                )
            )
            speeds.setdefault(name, float(speed))
        s.missing = still
        s.occurrences.sort(key=lambda o: (index[o.file], o.start))
    return speeds
