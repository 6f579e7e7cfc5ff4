"""Recurring segments across files: TV intros, end credits, recaps, jingles.

Method (see docs/repeats.md for the measurements behind each choice):

1. **Fingerprints** (:mod:`earmark.repeats.fingerprint`): landmark hashes (and their spectral
   peaks) and 32-bit sub-fingerprints every 32 ms for each file.
2. **Candidate pairs from inverted indexes**: every landmark hash shared by two files votes
   for (file A, file B, time offset). Files are compared with the ``window`` files before and
   after them in the input order, one bounded index per block of files, so the cost grows
   linearly with the series; at most ``top_offsets`` offsets per pair with many votes are
   looked at further; whole files are never compared pairwise.
3. **Alignment** (:mod:`earmark.repeats.align`): votes at one offset are grouped into time
   runs (seeds); the offset is refined to the frame, and the bit error rate (BER) of the
   aligned sub-fingerprints is computed around the seed: same audio ~0.1-0.3 in the clear,
   ~0.40-0.46 under a louder ambient bed, unrelated audio 0.5.
4. **Boundaries**: the matched core is where the BER smoothed over 1 s stays below 0.42; each
   edge is then moved to where the evidence ends, by maximising a CUSUM of ``0.46 - BER``.
5. **Clustering** (:mod:`earmark.repeats.clusters`): the two sides of every pair match are
   occurrences, linked into clusters; every occurrence is then compared with the clearest
   occurrences of its cluster (offsets from a common time line), and its boundaries come from
   its BER against all of them averaged, extended to landmarks two partners confirm, and
   moved to the partners' median edge when a permutation test says the gap is their audio.
6. **Kinds**: one per segment, the same in every file (see
   :func:`earmark.repeats.clusters.assign_kinds`); snippets of a few seconds are ``other``.
7. **Second pass** (:mod:`earmark.repeats.speed`): the intro and outro are looked for in the
   files lacking them, at speeds 0.95-1.05; the speed found is reported; for files still
   lacking them the best candidate's confidence is kept.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from earmark.audio import AudioError
from earmark.repeats.align import (
    CHANCE_BER,
    aligned_ber,
    delimit,
    frame_to_time,
    overlap_share,
    seconds_to_frames,
)
from earmark.repeats.clusters import cluster_matches
from earmark.repeats.fingerprint import (
    HOP_SECONDS,
    FileFingerprint,
    InvertedIndex,
    fingerprint_file,
)
from earmark.repeats.results import (
    FileStatus,
    PairMatch,
    RepeatOptions,
    RepeatsResult,
    Segment,
)
from earmark.repeats.speed import AudioLoader, recover_missing

__all__ = ["default_jobs", "find_repeats", "find_repeats_in_fingerprints", "pair_matches"]


# ----------------------------------------------------------------------------- matching
def _candidate_offsets(
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    n_files: int,
    min_votes: int,
    top: int,
) -> list[tuple[int, int, int, np.ndarray]]:
    """(file A, file B, offset in frames, frames in A of the agreeing hashes) from the shared
    hashes ``(file_a, frame_a, file_b, frame_b)``: at most ``top`` offsets per pair of files
    (the most voted, at least ``min_votes``, +-8 frames apart), best first."""
    fa, ta, fb, tb = pairs
    if fa.size == 0:
        return []
    dt = (tb - ta).astype(np.int64)
    pair = fa.astype(np.int64) * n_files + fb
    key = (pair << 22) + (dt + (1 << 21))
    order = np.argsort(key)
    key, ta_sorted = key[order], ta[order]
    del order, dt, pair
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    uniq = key[first]
    counts = np.diff(np.r_[first, key.size])
    # votes at dt-1, dt, dt+1 (jitter of peak times by one frame)
    lo = np.searchsorted(uniq, uniq - 1)
    hi = np.searchsorted(uniq, uniq + 1, side="right")
    cum = np.r_[0, np.cumsum(counts)]
    smooth = cum[hi] - cum[lo]
    strong = np.flatnonzero(smooth >= min_votes)
    if strong.size == 0:
        return []
    # the 4 * top most voted offsets of each pair (vectorised), then non-maximum suppression
    # over +-8 frames among them: the work per pair is bounded, however self-similar the audio
    pair_of = uniq[strong] >> 22
    order = np.lexsort((-smooth[strong], pair_of))
    strong, pair_of = strong[order], pair_of[order]
    starts = np.r_[0, np.flatnonzero(np.diff(pair_of)) + 1]
    rank = np.arange(strong.size) - np.repeat(starts, np.diff(np.r_[starts, strong.size]))
    strong = strong[rank < 4 * top]
    strong = strong[np.argsort(-smooth[strong], kind="stable")]
    taken: dict[int, list[int]] = {}
    out = []
    for u in strong.tolist():
        k = int(uniq[u])
        p, d = k >> 22, (k & ((1 << 22) - 1)) - (1 << 21)
        near = taken.setdefault(p, [])
        if len(near) >= top or any(abs(d - x) <= 8 for x in near):
            continue
        near.append(d)
        a = int(first[lo[u]])
        b = int(first[hi[u] - 1] + counts[hi[u] - 1])
        out.append((p // n_files, p % n_files, d, np.sort(ta_sorted[a:b])))
    return out


BLOCK_FILES = 8
"""Files whose pairs are collected from one inverted index at a time (bounds the memory)."""


def _windowed_candidates(
    fps: list[FileFingerprint], opts: RepeatOptions
) -> list[tuple[int, int, int, np.ndarray]]:
    """Candidates of every pair of files at most ``opts.window`` apart in the input order.

    The files are taken in blocks of :data:`BLOCK_FILES`; each block's inverted index also
    holds the ``window`` files before it, and only pairs whose later file is in the block are
    kept: every pair is counted once, the index and the shared hashes in memory stay bounded by
    a block, and the work grows linearly with the number of files."""
    n = len(fps)
    window = max(1, opts.window)
    out = []
    for b0 in range(0, n, BLOCK_FILES):
        b1 = min(n, b0 + BLOCK_FILES)
        lo = max(0, b0 - window)
        index = InvertedIndex(fps[lo:b1])
        fa, ta, fb, tb = index.shared_pairs(min_file_b=b0 - lo, max_file_gap=window)
        del index
        pairs = (fa + lo, ta, fb + lo, tb)
        del fa, fb
        out += _candidate_offsets(pairs, n, opts.min_votes, opts.top_offsets)
        del pairs
    out.sort(key=lambda c: -c[3].size)
    return out


def _match_seed(
    fp_a: FileFingerprint,
    fp_b: FileFingerprint,
    offset: int,
    seed: tuple[int, int],
    opts: RepeatOptions,
) -> tuple[int, int, int, float] | None:
    """Verify and delimit a seed: (start frame in A, stop frame in A, offset, core BER)."""
    na, nb = fp_a.n_frames, fp_b.n_frames
    ext = seconds_to_frames(45.0)
    s0, s1 = seed
    best = None
    for d in range(offset - 2, offset + 3):  # the offset to the frame, on the seed itself
        lo, hi = max(s0, 0, -d), min(s1, na, nb - d)
        if hi - lo < seconds_to_frames(1.0):
            continue
        b = float(aligned_ber(fp_a, fp_b, lo, hi, d).mean())
        if best is None or b < best[0]:
            best = (b, d)
    if best is None:
        return None
    d = best[1]
    lo, hi = max(s0 - ext, 0, -d), min(s1 + ext, na, nb - d)
    ber = aligned_ber(fp_a, fp_b, lo, hi, d)
    got = delimit(ber, s0 - lo, s1 - lo, opts)
    if got is None:
        return None
    start, stop, core_ber = got
    if (stop - start) * HOP_SECONDS < opts.min_duration:
        return None
    return lo + start, lo + stop, d, core_ber


def pair_matches(fps: list[FileFingerprint], opts: RepeatOptions) -> list[PairMatch]:
    candidates = _windowed_candidates(fps, opts)
    gap = seconds_to_frames(8.0)
    found: dict[tuple[int, int], list[PairMatch]] = {}
    # per file: [start frame, stop frame, verified partners] of what is already matched; a seed
    # whose both sides are covered by max_partners verified matches is not examined again, so
    # the work grows with the number of files, not with the number of pairs of files
    covered: dict[int, list[list[int]]] = {}

    def saturated(file: int, lo: int, hi: int) -> bool:
        return any(
            c[2] >= opts.max_partners and overlap_share(lo, hi, c[0], c[1]) > 0.5
            for c in covered.get(file, ())
        )

    def register(file: int, lo: int, hi: int) -> None:
        for c in covered.setdefault(file, []):
            if overlap_share(lo, hi, c[0], c[1]) > 0.5:
                c[2] += 1
                return
        covered[file].append([lo, hi, 1])

    for fa, fb, offset, frames in candidates:  # strongest first
        if fa == fb:
            continue
        split = np.flatnonzero(np.diff(frames) > gap) + 1
        for run in np.split(frames, split):
            if run.size < opts.min_votes:
                continue
            s0, s1 = int(run[0]), int(run[-1]) + 1
            if saturated(fa, s0, s1) and saturated(fb, s0 + offset, s1 + offset):
                continue
            got = _match_seed(fps[fa], fps[fb], offset, (s0, s1), opts)
            if got is None:
                continue
            a0, a1, d, ber = got
            m = PairMatch(
                fa,
                fb,
                frame_to_time(a0),
                frame_to_time(a1),
                frame_to_time(a0 + d),
                frame_to_time(a1 + d),
                ber,
                int(run.size),
                d,
            )
            _add_match(found.setdefault((fa, fb), []), m)
            register(fa, a0, a1)
            register(fb, a0 + d, a1 + d)
    return [m for ms in found.values() for m in ms]


def _score(m: PairMatch) -> float:
    return m.duration * (CHANCE_BER - m.ber)


def _add_match(kept: list[PairMatch], m: PairMatch) -> None:
    """Keep ``m`` unless a stronger match of the same pair covers it (and drop weaker ones)."""
    for i, k in enumerate(kept):
        same_a = overlap_share(m.a_start, m.a_end, k.a_start, k.a_end) > 0.5
        same_b = overlap_share(m.b_start, m.b_end, k.b_start, k.b_end) > 0.5
        if same_a or same_b:
            if _score(m) > _score(k):
                kept[i] = m
            return
    kept.append(m)


# ----------------------------------------------------------------------------- public API
def find_repeats_in_fingerprints(
    fingerprints: Sequence[FileFingerprint],
    options: RepeatOptions | None = None,
    loader: AudioLoader | None = None,
) -> tuple[list[Segment], list[PairMatch]]:
    """Recurring segments among already fingerprinted files (see :func:`find_repeats`).

    ``loader(name)`` gives a file's audio again for the speed pass (default: decode the file
    if ``name`` is one; files that cannot be re-read are only searched at the series' speed).
    """
    opts = options or RepeatOptions()
    fps = list(fingerprints)
    matches = pair_matches(fps, opts)
    segments = cluster_matches(matches, fps, opts)
    if opts.find_speed:
        recover_missing(segments, fps, opts, loader)
    return segments, matches


def _fingerprint_one(name: str) -> tuple[FileStatus, FileFingerprint | None]:
    """Fingerprint one file; a bad file gives a failed status, never an exception."""
    t = time.perf_counter()
    try:
        fp = fingerprint_file(name)
    except (AudioError, OSError, ValueError, MemoryError) as exc:
        text = str(exc) or type(exc).__name__
        error = text if name in text else f"{name}: {text}"
        return FileStatus(name, "failed", error=error, seconds=time.perf_counter() - t), None
    if fp.n_frames < 2:
        return FileStatus(name, "failed", error=f"{name}: too short to fingerprint"), None
    status = FileStatus(
        name,
        "partial" if fp.warnings else "ok",
        duration=fp.duration,
        warnings=[w if name in w else f"{name}: {w}" for w in fp.warnings],
        seconds=time.perf_counter() - t,
    )
    return status, fp


def default_jobs() -> int:
    """Files fingerprinted in parallel by default: one per core, at most 4."""
    return max(1, min(os.cpu_count() or 1, 4))


def find_repeats(
    files: Sequence[str | os.PathLike[str]],
    options: RepeatOptions | None = None,
    progress: Callable[[str, int, int, float], None] | None = None,
    jobs: int | None = None,
) -> RepeatsResult:
    """Find the segments that recur across ``files`` (episodes of one series, any format).

    Files are decoded and fingerprinted in ``jobs`` processes (default: one per core, at most
    4). A file that cannot be decoded is reported in :attr:`RepeatsResult.files` with its
    error; the others are still compared. ``progress(file, done, total, seconds_of_audio)`` is
    called after each file is fingerprinted.
    """
    opts = options or RepeatOptions()
    names = [os.fspath(f) for f in files]
    jobs = max(1, min(jobs or default_jobs(), len(names) or 1))
    t0 = time.perf_counter()
    results: dict[int, tuple[FileStatus, FileFingerprint | None]] = {}
    if jobs == 1:
        for i, name in enumerate(names):
            results[i] = _fingerprint_one(name)
            if progress is not None:
                progress(name, i + 1, len(names), results[i][0].duration)
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(jobs) as pool:
            futures = {pool.submit(_fingerprint_one, n): i for i, n in enumerate(names)}
            for done, future in enumerate(as_completed(futures), start=1):
                i = futures[future]
                results[i] = future.result()
                if progress is not None:
                    progress(names[i], done, len(names), results[i][0].duration)
    statuses = [results[i][0] for i in range(len(names))]
    fps = [fp for i in range(len(names)) if (fp := results[i][1]) is not None]
    t1 = time.perf_counter()
    segments, matches = find_repeats_in_fingerprints(fps, opts) if len(fps) >= 2 else ([], [])
    t2 = time.perf_counter()
    for status in statuses:
        mine = [o for seg in segments for o in seg.occurrences if o.file == status.file]
        # the longest occurrence gives the most precise speed
        status.speed = max(mine, key=lambda o: o.duration).speed if mine else None
    audio = sum(s.duration for s in statuses)
    timings = {
        "fingerprint_seconds": t1 - t0,
        "match_seconds": t2 - t1,
        "total_seconds": t2 - t0,
        "audio_seconds": audio,
        "realtime_factor": audio / (t2 - t0) if t2 > t0 else math.inf,
        "jobs": float(jobs),
    }
    return RepeatsResult(statuses, segments, matches, timings, opts)
