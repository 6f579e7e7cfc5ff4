"""Aligned comparison of two fingerprinted files: bit error curves, matched stretches, edges."""

from __future__ import annotations

import itertools

import numpy as np

from earmark.repeats.fingerprint import HOP_SECONDS, WINDOW_SECONDS, FileFingerprint, bit_errors
from earmark.repeats.results import RepeatOptions

__all__ = [
    "CHANCE_BER",
    "SILENCE_DB",
    "aligned_ber",
    "boundary_time",
    "close_gaps",
    "cusum_edge",
    "delimit",
    "frame_to_time",
    "landmark_extent",
    "overlap_share",
    "refine_occurrence",
    "seconds_to_frames",
    "time_to_frame",
    "true_runs",
]

CHANCE_BER = 0.5


# ----------------------------------------------------------------------------- helpers
def seconds_to_frames(seconds: float) -> int:
    return max(1, round(seconds / HOP_SECONDS))


def frame_to_time(frame: float) -> float:
    return frame * HOP_SECONDS + WINDOW_SECONDS / 2


def boundary_time(frame: int, n_frames: int, duration: float) -> float:
    """Time of the boundary before ``frame`` (between two frames); file edges exact."""
    if frame <= 0:
        return 0.0
    if frame >= n_frames:
        return duration
    return min(frame_to_time(frame) - HOP_SECONDS / 2, duration)


def time_to_frame(seconds: float) -> int:
    return round((seconds - WINDOW_SECONDS / 2) / HOP_SECONDS)


SILENCE_DB = -75.0
"""Frames quieter than this (dB re full scale) carry no evidence: two silent stretches do not
match (their sub-fingerprints are both all zeros)."""


def aligned_ber(fa: FileFingerprint, fb: FileFingerprint, lo: int, hi: int, d: int) -> np.ndarray:
    """Bit error rate of frames ``lo..hi-1`` of A against ``lo+d..hi+d-1`` of B; frames where
    either side is silent count as chance (0.5)."""
    ber = bit_errors(fa.bits[lo:hi], fb.bits[lo + d : hi + d])
    silent = (fa.loudness[lo:hi] < SILENCE_DB) | (fb.loudness[lo + d : hi + d] < SILENCE_DB)
    ber[silent] = CHANCE_BER
    return ber


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of the runs of True in a boolean array."""
    if mask.size == 0:
        return []
    padded = np.r_[False, mask, False].astype(np.int8)
    change = np.flatnonzero(np.diff(padded))
    return list(zip(change[::2].tolist(), change[1::2].tolist(), strict=False))


def close_gaps(mask: np.ndarray, gap: int) -> np.ndarray:
    """Fill runs of False up to ``gap`` long that lie between two runs of True."""
    out = mask.copy()
    runs = true_runs(mask)
    for (_, stop), (start, _) in itertools.pairwise(runs):
        if start - stop <= gap:
            out[stop:start] = True
    return out


def cusum_edge(ber: np.ndarray, level: float) -> int:
    """Number of leading frames of ``ber`` (ordered outward from a segment) that belong to it:
    the argmax of the cumulative sum of ``level - ber`` (0 if it never gets positive)."""
    if ber.size == 0:
        return 0
    csum = np.cumsum(level - ber)
    best = int(np.argmax(csum))
    return best + 1 if csum[best] > 0 else 0


def delimit(
    ber: np.ndarray,
    seed_lo: int,
    seed_hi: int,
    opts: RepeatOptions,
    edge_level: float | None = None,
) -> tuple[int, int, float] | None:
    """Find the matched stretch of a BER curve around ``[seed_lo, seed_hi)``.

    The core is where the BER smoothed over 1 s is below ``core_ber`` (gaps up to
    ``max_gap`` bridged); each edge then moves outward while a CUSUM of ``edge_ber - BER``
    keeps growing. Returns ``(start, stop, core BER)`` in frames of ``ber``, or None.
    """
    from scipy import ndimage  # imported here: `earmark --help` should not load scipy

    smooth = ndimage.uniform_filter1d(ber, seconds_to_frames(1.0), mode="nearest")
    core = close_gaps(smooth < opts.core_ber, seconds_to_frames(opts.max_gap))
    runs = true_runs(core)
    if not runs:
        return None
    overlap = [min(b, seed_hi) - max(a, seed_lo) for a, b in runs]
    a, b = runs[int(np.argmax(overlap))]
    # the core must be at least 3 s of frames below core_ber, bridged gaps not counted: a 2 s
    # coincidence (a repeated sound effect) is not stretched into a segment by its neighbours
    strong = int(np.count_nonzero(smooth[a:b] < opts.core_ber))
    if max(overlap) <= 0 or strong * HOP_SECONDS < min(opts.min_duration, 3.0):
        return None
    core_ber = float(ber[a:b].mean())
    if core_ber > opts.max_ber:
        return None
    margin = seconds_to_frames(2.0)
    inner = min(b, a + margin)
    level = opts.edge_ber if edge_level is None else edge_level
    start = inner - cusum_edge(ber[:inner][::-1], level)
    inner_end = max(a, b - margin)
    stop = inner_end + cusum_edge(ber[inner_end:], level)
    return start, stop, core_ber


def refine_occurrence(
    fps: list[FileFingerprint],
    x: int,
    partners: list[tuple[int, int]],
    start: float,
    end: float,
    opts: RepeatOptions,
) -> tuple[float, float] | None:
    """Boundaries of an occurrence in file ``x`` from its BER against all partners at once.

    ``partners`` are ``(file, offset)`` with partner frame = x frame + offset. Averaging the
    partners' curves frame by frame lowers the noise, so edges masked by speech in ``x`` are
    still found, while a partner with a shortened segment only dilutes the average.
    """
    nx = fps[x].n_frames
    f0 = max(0, time_to_frame(start) - seconds_to_frames(20.0))
    f1 = min(nx, time_to_frame(end) + seconds_to_frames(20.0))
    if f1 - f0 < seconds_to_frames(1.0):
        return None
    total = np.zeros(f1 - f0, np.float32)
    count = np.zeros(f1 - f0, np.int32)
    for p, d in partners:
        lo, hi = max(f0, -d), min(f1, fps[p].n_frames - d)
        if hi <= lo:
            continue
        total[lo - f0 : hi - f0] += aligned_ber(fps[x], fps[p], lo, hi, d)
        count[lo - f0 : hi - f0] += 1
    avg = np.where(count > 0, total / np.maximum(count, 1), CHANCE_BER).astype(np.float32)
    got = delimit(avg, time_to_frame(start) - f0, time_to_frame(end) - f0, opts)
    if got is None:
        return None
    a, b = f0 + got[0], f0 + got[1]
    a, b = landmark_extent(fps, x, partners, a, b)
    return boundary_time(a, nx, fps[x].duration), boundary_time(b, nx, fps[x].duration)


def landmark_extent(
    fps: list[FileFingerprint], x: int, partners: list[tuple[int, int]], a: int, b: int
) -> tuple[int, int]:
    """Extend ``[a, b)`` (frames of ``x``) to landmarks shared with the partners just outside.

    Speech over an edge of the music can push the BER of the masked stretch to chance level,
    but some of the music's spectral peaks still stand out: a landmark hash found at the same
    aligned time (+-1 frame) in ``x`` and in partners is music present in both, from its
    anchor to its target peak. Up to 8 s beyond each edge, the edge moves to the outermost
    landmark that is confirmed (by two partners; by the only one when there is one) and
    has a second confirmed landmark outside the edge within 3 s on its inner side.
    """
    fx = fps[x]
    reach = seconds_to_frames(8.0)
    need = 1 if len(partners) == 1 else 2
    spans = []  # (anchor frame, target frame) of confirmed hashes of x
    for lo, hi in (
        (a - reach, a + seconds_to_frames(3.0)),
        (b - seconds_to_frames(3.0), b + reach),
    ):
        i0, i1 = np.searchsorted(fx.hash_frames, [lo, hi])  # hash_frames are sorted
        hashes = fx.hashes[i0:i1].astype(np.int64)
        frames = fx.hash_frames[i0:i1].astype(np.int64)
        if hashes.size == 0:
            continue
        votes = np.zeros(hashes.size, np.int32)
        keys = (hashes << 24) + frames
        for p, d in partners:
            fp = fps[p]
            i0, i1 = np.searchsorted(fp.hash_frames, [lo + d - 1, hi + d + 1])
            pkeys = np.sort((fp.hashes[i0:i1].astype(np.int64) << 24) + fp.hash_frames[i0:i1] - d)
            if pkeys.size == 0:
                continue
            hit = np.zeros(hashes.size, bool)
            for jitter in (-1, 0, 1):
                pos = np.minimum(np.searchsorted(pkeys, keys + jitter), pkeys.size - 1)
                hit |= pkeys[pos] == keys + jitter
            votes += hit
        ok = votes >= need
        spans += list(
            zip(frames[ok].tolist(), (frames[ok] + (hashes[ok] & 63)).tolist(), strict=False)
        )
    if len(spans) < 2:
        return a, b
    anchors = np.array(sorted(s[0] for s in spans))
    targets = np.array(sorted(s[1] for s in spans))
    window = seconds_to_frames(3.0)
    # start: outermost anchor before a with another confirmed anchor within 3 s after it
    # outermost confirmed landmark outside the edge with another one outside the edge within
    # 3 s on its inner side (a single random coincidence does not move an edge)
    for t in anchors[anchors < a]:
        if np.count_nonzero((anchors > t) & (anchors <= t + window) & (anchors < a)) >= 1:
            a = int(t)
            break
    for t in targets[targets > b][::-1]:
        if np.count_nonzero((targets < t) & (targets >= t - window) & (targets > b)) >= 1:
            b = int(t) + 1
            break
    return a, b


def overlap_share(a0: float, a1: float, b0: float, b1: float) -> float:
    """Overlap as a share of the shorter interval."""
    inter = min(a1, b1) - max(a0, b0)
    return max(inter, 0.0) / max(min(a1 - a0, b1 - b0), 1e-9)
