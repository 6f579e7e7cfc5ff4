"""Recurring segments across files: TV intros, end credits, recaps, jingles.

Method (see docs/repeats.md for the measurements behind each choice):

1. **Fingerprints** (:mod:`earmark.repeats.fingerprint`): landmark hashes and 32-bit
   sub-fingerprints every 32 ms for each file.
2. **Candidate pairs from an inverted index**: every landmark hash shared by two files votes
   for (file A, file B, time offset). Only pairs of files with many votes at one offset are
   looked at further; whole files are never compared pairwise.
3. **Alignment**: votes at one offset are grouped into time runs (seeds); the offset is refined
   to the frame, and the bit error rate (BER) of the aligned sub-fingerprints is computed
   around the seed: same audio ~0.1-0.3, unrelated audio 0.5.
4. **Boundaries**: the matched core is where the BER smoothed over 1 s stays below 0.35; each
   edge is then moved to where the evidence ends, by maximising a CUSUM of ``0.46 - BER``:
   frames that are only partly similar (music under speech) still count, frames at chance
   level stop the segment. Boundaries are thus at frame precision (32 ms), not at a grid.
5. **Clustering**: the two sides of every pair match are occurrences; overlapping occurrences
   in one file are merged, and matches link them into clusters (one recurring segment each).
   Each occurrence's boundaries come from its BER against all partners averaged (a partner
   with a shortened intro does not cut it), extended to landmarks shared just outside an edge,
   and moved to the partners' median edge when the gap is the same audio under other sound
   (speech over the edge) rather than chance level (a shortened segment).
6. **Kinds**: the largest cluster near the start of the episodes is the ``intro``, the largest
   near the end the ``outro``; a segment early in some files and in the body of others is a
   ``recap``; the rest is ``other``. Files of the series that lack the intro or outro are
   reported as such.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from earmark.audio import AudioError
from earmark.repeats.fingerprint import (
    HOP_SECONDS,
    WINDOW_SECONDS,
    FileFingerprint,
    InvertedIndex,
    bit_errors,
    fingerprint_file,
)
from earmark.repeats.results import (
    FileStatus,
    Occurrence,
    PairMatch,
    RepeatOptions,
    RepeatsResult,
    Segment,
)

__all__ = ["default_jobs", "find_repeats", "find_repeats_in_fingerprints"]

CHANCE_BER = 0.5


# ----------------------------------------------------------------------------- helpers
def _frames(seconds: float) -> int:
    return max(1, round(seconds / HOP_SECONDS))


def _time(frame: float) -> float:
    return frame * HOP_SECONDS + WINDOW_SECONDS / 2


def _boundary(frame: int, n_frames: int, duration: float) -> float:
    """Time of the boundary before ``frame`` (between two frames); file edges exact."""
    if frame <= 0:
        return 0.0
    if frame >= n_frames:
        return duration
    return min(_time(frame) - HOP_SECONDS / 2, duration)


def _frame(seconds: float) -> int:
    return round((seconds - WINDOW_SECONDS / 2) / HOP_SECONDS)


SILENCE_DB = -75.0
"""Frames quieter than this (dB re full scale) carry no evidence: two silent stretches do not
match (their sub-fingerprints are both all zeros)."""


def _aligned_ber(fa: FileFingerprint, fb: FileFingerprint, lo: int, hi: int, d: int) -> np.ndarray:
    """Bit error rate of frames ``lo..hi-1`` of A against ``lo+d..hi+d-1`` of B; frames where
    either side is silent count as chance (0.5)."""
    ber = bit_errors(fa.bits[lo:hi], fb.bits[lo + d : hi + d])
    silent = (fa.loudness[lo:hi] < SILENCE_DB) | (fb.loudness[lo + d : hi + d] < SILENCE_DB)
    ber[silent] = CHANCE_BER
    return ber


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of the runs of True in a boolean array."""
    if mask.size == 0:
        return []
    padded = np.r_[False, mask, False].astype(np.int8)
    change = np.flatnonzero(np.diff(padded))
    return list(zip(change[::2].tolist(), change[1::2].tolist(), strict=False))


def _close_gaps(mask: np.ndarray, gap: int) -> np.ndarray:
    """Fill runs of False up to ``gap`` long that lie between two runs of True."""
    out = mask.copy()
    runs = _runs(mask)
    for (_, stop), (start, _) in itertools.pairwise(runs):
        if start - stop <= gap:
            out[stop:start] = True
    return out


# ----------------------------------------------------------------------------- matching
def _candidate_offsets(
    index: InvertedIndex, n_files: int, min_votes: int
) -> list[tuple[int, int, int, np.ndarray]]:
    """(file A, file B, offset in frames, frames in A of the agreeing hashes), best first."""
    fa, ta, fb, tb = index.shared_pairs()
    if fa.size == 0:
        return []
    dt = (tb - ta).astype(np.int64)
    pair = fa.astype(np.int64) * n_files + fb
    key = (pair << 22) + (dt + (1 << 21))
    order = np.argsort(key)
    key, ta_sorted = key[order], ta[order]
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
    # non-maximum suppression over +-8 frames of offset within a pair
    strong = strong[np.argsort(-smooth[strong], kind="stable")]
    taken: dict[int, list[int]] = {}
    out = []
    for u in strong.tolist():
        k = int(uniq[u])
        p, d = k >> 22, (k & ((1 << 22) - 1)) - (1 << 21)
        near = taken.setdefault(p, [])
        if any(abs(d - x) <= 8 for x in near):
            continue
        near.append(d)
        a = int(first[lo[u]])
        b = int(first[hi[u] - 1] + counts[hi[u] - 1])
        out.append((p // n_files, p % n_files, d, np.sort(ta_sorted[a:b])))
    return out


def _edge(ber: np.ndarray, level: float) -> int:
    """Number of leading frames of ``ber`` (ordered outward from a segment) that belong to it:
    the argmax of the cumulative sum of ``level - ber`` (0 if it never gets positive)."""
    if ber.size == 0:
        return 0
    csum = np.cumsum(level - ber)
    best = int(np.argmax(csum))
    return best + 1 if csum[best] > 0 else 0


def _delimit(
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

    smooth = ndimage.uniform_filter1d(ber, _frames(1.0), mode="nearest")
    core = _close_gaps(smooth < opts.core_ber, _frames(opts.max_gap))
    runs = _runs(core)
    if not runs:
        return None
    overlap = [min(b, seed_hi) - max(a, seed_lo) for a, b in runs]
    a, b = runs[int(np.argmax(overlap))]
    if max(overlap) <= 0 or (b - a) * HOP_SECONDS < min(opts.min_duration, 3.0):
        return None
    core_ber = float(ber[a:b].mean())
    if core_ber > opts.max_ber:
        return None
    margin = _frames(2.0)
    inner = min(b, a + margin)
    level = opts.edge_ber if edge_level is None else edge_level
    start = inner - _edge(ber[:inner][::-1], level)
    inner_end = max(a, b - margin)
    stop = inner_end + _edge(ber[inner_end:], level)
    return start, stop, core_ber


def _match_seed(
    fp_a: FileFingerprint,
    fp_b: FileFingerprint,
    offset: int,
    seed: tuple[int, int],
    opts: RepeatOptions,
) -> tuple[int, int, int, float] | None:
    """Verify and delimit a seed: (start frame in A, stop frame in A, offset, core BER)."""
    na, nb = fp_a.n_frames, fp_b.n_frames
    ext = _frames(45.0)
    s0, s1 = seed
    best = None
    for d in range(offset - 2, offset + 3):  # the offset to the frame, on the seed itself
        lo, hi = max(s0, 0, -d), min(s1, na, nb - d)
        if hi - lo < _frames(1.0):
            continue
        b = float(_aligned_ber(fp_a, fp_b, lo, hi, d).mean())
        if best is None or b < best[0]:
            best = (b, d)
    if best is None:
        return None
    d = best[1]
    lo, hi = max(s0 - ext, 0, -d), min(s1 + ext, na, nb - d)
    ber = _aligned_ber(fp_a, fp_b, lo, hi, d)
    got = _delimit(ber, s0 - lo, s1 - lo, opts)
    if got is None:
        return None
    start, stop, core_ber = got
    if (stop - start) * HOP_SECONDS < opts.min_duration:
        return None
    return lo + start, lo + stop, d, core_ber


def _refine(
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
    f0 = max(0, _frame(start) - _frames(20.0))
    f1 = min(nx, _frame(end) + _frames(20.0))
    if f1 - f0 < _frames(1.0):
        return None
    total = np.zeros(f1 - f0, np.float32)
    count = np.zeros(f1 - f0, np.int32)
    for p, d in partners:
        lo, hi = max(f0, -d), min(f1, fps[p].n_frames - d)
        if hi <= lo:
            continue
        total[lo - f0 : hi - f0] += _aligned_ber(fps[x], fps[p], lo, hi, d)
        count[lo - f0 : hi - f0] += 1
    avg = np.where(count > 0, total / np.maximum(count, 1), CHANCE_BER).astype(np.float32)
    got = _delimit(avg, _frame(start) - f0, _frame(end) - f0, opts)
    if got is None:
        return None
    a, b = f0 + got[0], f0 + got[1]
    a, b = _landmark_extent(fps, x, partners, a, b)
    return _boundary(a, nx, fps[x].duration), _boundary(b, nx, fps[x].duration)


def _landmark_extent(
    fps: list[FileFingerprint], x: int, partners: list[tuple[int, int]], a: int, b: int
) -> tuple[int, int]:
    """Extend ``[a, b)`` (frames of ``x``) to landmarks shared with the partners just outside.

    Speech over an edge of the music can push the BER of the masked stretch to chance level,
    but some of the music's spectral peaks still stand out: a landmark hash found at the same
    aligned time (+-1 frame) in ``x`` and in partners is music present in both, from its
    anchor to its target peak. Up to 8 s beyond each edge, the edge moves to the outermost
    landmark that is confirmed (by one partner, or by two when there are three or more) and
    has a second confirmed landmark outside the edge within 3 s on its inner side.
    """
    fx = fps[x]
    reach = _frames(8.0)
    need = 2 if len(partners) >= 3 else 1
    spans = []  # (anchor frame, target frame) of confirmed hashes of x
    for lo, hi in ((a - reach, a + _frames(3.0)), (b - _frames(3.0), b + reach)):
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
    window = _frames(3.0)
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


def _pair_matches(fps: list[FileFingerprint], opts: RepeatOptions) -> list[PairMatch]:
    index = InvertedIndex(fps)
    candidates = _candidate_offsets(index, len(fps), opts.min_votes)
    gap = _frames(8.0)
    found: dict[tuple[int, int], list[PairMatch]] = {}
    # per file: [start frame, stop frame, verified partners] of what is already matched; a seed
    # whose both sides are covered by max_partners verified matches is not examined again, so
    # the work grows with the number of files, not with the number of pairs of files
    covered: dict[int, list[list[int]]] = {}

    def saturated(file: int, lo: int, hi: int) -> bool:
        return any(
            c[2] >= opts.max_partners and _overlap(lo, hi, c[0], c[1]) > 0.5
            for c in covered.get(file, ())
        )

    def register(file: int, lo: int, hi: int) -> None:
        for c in covered.setdefault(file, []):
            if _overlap(lo, hi, c[0], c[1]) > 0.5:
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
                fa, fb, _time(a0), _time(a1), _time(a0 + d), _time(a1 + d), ber, int(run.size), d
            )
            _add_match(found.setdefault((fa, fb), []), m)
            register(fa, a0, a1)
            register(fb, a0 + d, a1 + d)
    return [m for ms in found.values() for m in ms]


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    """Overlap as a share of the shorter interval."""
    inter = min(a1, b1) - max(a0, b0)
    return max(inter, 0.0) / max(min(a1 - a0, b1 - b0), 1e-9)


def _score(m: PairMatch) -> float:
    return m.duration * (CHANCE_BER - m.ber)


def _add_match(kept: list[PairMatch], m: PairMatch) -> None:
    """Keep ``m`` unless a stronger match of the same pair covers it (and drop weaker ones)."""
    for i, k in enumerate(kept):
        same_a = _overlap(m.a_start, m.a_end, k.a_start, k.a_end) > 0.5
        same_b = _overlap(m.b_start, m.b_end, k.b_start, k.b_end) > 0.5
        if same_a or same_b:
            if _score(m) > _score(k):
                kept[i] = m
            return
    kept.append(m)


# ----------------------------------------------------------------------------- clustering
class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def _cluster(
    matches: list[PairMatch], fps: list[FileFingerprint], opts: RepeatOptions
) -> list[Segment]:
    names = [fp.path for fp in fps]
    durations = [fp.duration for fp in fps]
    # one node per side of each match; merge overlapping nodes in a file, link the two sides
    sides = []  # (file, start, end, match index)
    i: int | dict[str, Any]
    for i, m in enumerate(matches):
        sides.append((m.file_a, m.a_start, m.a_end, i))
        sides.append((m.file_b, m.b_start, m.b_end, i))
    uf = _UnionFind(len(sides))
    for i in range(0, len(sides), 2):
        uf.union(i, i + 1)
    by_file: dict[int, list[Any]] = {}  # of side indices; later, of occurrence infos
    for k, s in enumerate(sides):
        by_file.setdefault(s[0], []).append(k)
    node_uf = _UnionFind(len(sides))
    for ks in by_file.values():
        ks.sort(key=lambda k: sides[k][1])
        for x, kx in enumerate(ks):
            for ky in ks[x + 1 :]:
                if sides[ky][1] >= sides[kx][2]:
                    break
                if _overlap(sides[kx][1], sides[kx][2], sides[ky][1], sides[ky][2]) > 0.5:
                    uf.union(kx, ky)
                    node_uf.union(kx, ky)
    clusters: dict[int, dict[int, list[int]]] = {}
    for k in range(len(sides)):
        clusters.setdefault(uf.find(k), {}).setdefault(node_uf.find(k), []).append(k)

    segments = []
    for nodes in clusters.values():
        info: list[dict[str, Any]] = []
        for ks in nodes.values():
            file = sides[ks[0]][0]
            starts = np.array([sides[k][1] for k in ks])
            ends = np.array([sides[k][2] for k in ks])
            links: dict[int, int] = {}
            for k in ks:
                m = matches[sides[k][3]]
                if sides[k ^ 1][0] != file:
                    links[sides[k ^ 1][0]] = m.offset if k % 2 == 0 else -m.offset
            start, end = float(np.median(starts)), float(np.median(ends))
            refined = _refine(fps, file, sorted(links.items()), start, end, opts)
            if refined is not None:
                start, end = refined
            info.append(
                {
                    "file": file,
                    "start": start,
                    "end": end,
                    "links": links,
                    "starts": starts,
                    "ends": ends,
                    "bers": [matches[sides[k][3]].ber for k in ks],
                }
            )
        by_file = {}
        for i in info:
            by_file.setdefault(i["file"], []).append(i)
        edges = [_template_edges(fps, i, by_file) for i in info]
        occs = []
        for i, (start, end) in zip(info, edges, strict=True):
            if end - start < opts.min_duration:
                continue
            file, bers, partners = i["file"], i["bers"], sorted(i["links"])
            strength = min(max((CHANCE_BER - min(bers)) / 0.35, 0.0), 1.0)
            confidence = strength * (1.0 - 0.5 ** len(partners))
            occs.append(
                Occurrence(
                    file=names[file],
                    segment=-1,
                    kind="other",
                    start=max(start, 0.0),
                    end=min(end, durations[file]),
                    confidence=confidence,
                    ber=float(min(bers)),
                    shared_with=[names[p] for p in partners],
                    start_spread=float(np.subtract(*np.quantile(i["starts"], [0.75, 0.25]))),
                    end_spread=float(np.subtract(*np.quantile(i["ends"], [0.75, 0.25]))),
                )
            )
        if len(occs) < 2:
            continue
        occs.sort(key=lambda o: (names.index(o.file), o.start))
        segments.append(Segment(id=-1, kind="other", occurrences=occs, missing=[]))
    _classify(segments, names, durations, opts)
    return segments


def _template_edges(
    fps: list[FileFingerprint], occ: dict, by_file: dict[int, list[dict]]
) -> tuple[float, float]:
    """Move an edge of an occurrence out to where most partners put it, if the audio agrees.

    Speech over the start or end of the music in one file can hide that edge from every
    comparison of this file. The partners' own edges, mapped into this file, say where the
    segment should start and end (their median); if that is up to 6 s further out and the mean
    BER over the gap against the partners whose segment covers it is significantly below chance
    (``0.5 - 0.055 / sqrt(gap seconds)``, 3 standard deviations of unrelated audio), the gap is
    the same music under other sound and the edge moves. A shortened segment (chance-level BER
    in the gap) keeps its own edge.
    """
    x = occ["file"]
    nx = fps[x].n_frames
    s_x, e_x = _frame(occ["start"]), _frame(occ["end"])
    mapped = []  # (partner, offset, start, stop) in frames of x
    for p, d in occ["links"].items():
        best = None
        for c in by_file.get(p, ()):
            ps, pe = _frame(c["start"]) - d, _frame(c["end"]) - d
            ov = min(pe, e_x) - max(ps, s_x)
            if ov > 0 and (best is None or ov > best[0]):
                best = (ov, ps, pe)
        if best is not None:
            mapped.append((p, d, best[1], best[2]))
    start, end = occ["start"], occ["end"]
    if len(mapped) < 2:
        return start, end

    def gap_ber(lo: int, hi: int, users: list[tuple[int, int, int, int]]) -> float:
        total, count = 0.0, 0
        for p, d, _, _ in users:
            a, b = max(lo, 0, -d), min(hi, nx, fps[p].n_frames - d)
            if b > a:
                total += float(_aligned_ber(fps[x], fps[p], a, b, d).sum())
                count += b - a
        return total / count if count else CHANCE_BER

    template_start = int(np.median([m[2] for m in mapped]))
    template_end = int(np.median([m[3] for m in mapped]))
    lo_gap, hi_gap = _frames(1.0), _frames(6.0)
    gap = s_x - max(template_start, 0)
    if lo_gap <= gap <= hi_gap:
        users = [m for m in mapped if m[2] <= template_start + _frames(0.5)]
        level = CHANCE_BER - 0.055 / np.sqrt(gap * HOP_SECONDS)
        if users and gap_ber(s_x - gap, s_x, users) < level:
            start = _boundary(s_x - gap, nx, fps[x].duration)
    gap = min(template_end, nx) - e_x
    if lo_gap <= gap <= hi_gap:
        users = [m for m in mapped if m[3] >= template_end - _frames(0.5)]
        level = CHANCE_BER - 0.055 / np.sqrt(gap * HOP_SECONDS)
        if users and gap_ber(e_x, e_x + gap, users) < level:
            end = _boundary(e_x + gap, nx, fps[x].duration)
    return start, end


def _classify(
    segments: list[Segment], names: list[str], durations: list[float], opts: RepeatOptions
) -> None:
    dur = dict(zip(names, durations, strict=False))

    def early(o: Occurrence) -> bool:
        return o.start <= max(opts.intro_region * dur[o.file], 0.0) and o.start <= (
            opts.intro_max_start
        )

    def late(o: Occurrence) -> bool:
        tail = dur[o.file] - o.end
        return tail <= max(opts.outro_region * dur[o.file], 0.0) and tail <= opts.outro_max_tail

    def rank(s: Segment) -> tuple[int, float]:
        return (len(s.files), s.median_duration)

    intro_c = [s for s in segments if np.mean([early(o) for o in s.occurrences]) >= 0.75]
    outro_c = [s for s in segments if np.mean([late(o) for o in s.occurrences]) >= 0.75]
    intro = max(intro_c, key=rank, default=None)
    outro = max((s for s in outro_c if s is not intro), key=rank, default=None)
    for s in segments:
        if s is intro:
            s.kind = "intro"
        elif s is outro:
            s.kind = "outro"
        else:
            e = [early(o) for o in s.occurrences]
            s.kind = "recap" if any(e) and not all(e) else "other"
        for o in s.occurrences:
            o.kind = s.kind
            if s.kind == "recap" and not early(o):
                o.kind = "other"  # the scene that the recap repeats
    order = {"intro": 0, "outro": 1, "recap": 2, "other": 3}
    segments.sort(key=lambda s: (order[s.kind], -len(s.files), s.occurrences[0].start))
    for i, s in enumerate(segments, start=1):
        s.id = i
        for o in s.occurrences:
            o.segment = i
        present = set(s.files)
        s.missing = [n for n in names if n not in present] if s.kind in ("intro", "outro") else []


# ----------------------------------------------------------------------------- public API
def find_repeats_in_fingerprints(
    fingerprints: Sequence[FileFingerprint], options: RepeatOptions | None = None
) -> tuple[list[Segment], list[PairMatch]]:
    """Recurring segments among already fingerprinted files (see :func:`find_repeats`)."""
    opts = options or RepeatOptions()
    fps = list(fingerprints)
    matches = _pair_matches(fps, opts)
    return _cluster(matches, fps, opts), matches


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
