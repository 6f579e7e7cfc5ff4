"""Recurring segments from pair matches: clusters of occurrences, their boundaries, kinds."""

from __future__ import annotations

from typing import Any

import numpy as np

from earmark.repeats.align import (
    CHANCE_BER,
    aligned_ber,
    boundary_time,
    overlap_share,
    refine_occurrence,
    seconds_to_frames,
    time_to_frame,
)
from earmark.repeats.fingerprint import HOP_SECONDS, FileFingerprint
from earmark.repeats.results import Occurrence, PairMatch, RepeatOptions, Segment

__all__ = ["UnionFind", "assign_kinds", "cluster_matches", "template_edges"]


# ----------------------------------------------------------------------------- clustering
class UnionFind:
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


def cluster_matches(
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
    uf = UnionFind(len(sides))
    for i in range(0, len(sides), 2):
        uf.union(i, i + 1)
    by_file: dict[int, list[Any]] = {}  # of side indices; later, of occurrence infos
    for k, s in enumerate(sides):
        by_file.setdefault(s[0], []).append(k)
    node_uf = UnionFind(len(sides))
    for ks in by_file.values():
        ks.sort(key=lambda k: sides[k][1])
        for x, kx in enumerate(ks):
            for ky in ks[x + 1 :]:
                if sides[ky][1] >= sides[kx][2]:
                    break
                if overlap_share(sides[kx][1], sides[kx][2], sides[ky][1], sides[ky][2]) > 0.5:
                    uf.union(kx, ky)
                    node_uf.union(kx, ky)
    clusters: dict[int, dict[int, list[int]]] = {}
    for k in range(len(sides)):
        clusters.setdefault(uf.find(k), {}).setdefault(node_uf.find(k), []).append(k)

    segments = []
    for nodes in clusters.values():
        info: list[dict[str, Any]] = []
        positions = _positions(nodes, sides, matches, node_uf)
        # the clearest occurrences (lowest BER) are the indirect partners of the others: a
        # bounded number, so that the work per occurrence does not grow with the series
        clearest = sorted(nodes, key=lambda r: min(matches[sides[k][3]].ber for k in nodes[r]))
        pool = {r: nodes[r] for r in clearest[: 3 * MAX_INDIRECT]}
        for root, ks in nodes.items():
            file = sides[ks[0]][0]
            starts = np.array([sides[k][1] for k in ks])
            ends = np.array([sides[k][2] for k in ks])
            links: dict[int, int] = {}
            for k in ks:
                m = matches[sides[k][3]]
                if sides[k ^ 1][0] != file:
                    links[sides[k ^ 1][0]] = m.offset if k % 2 == 0 else -m.offset
            start, end = float(np.median(starts)), float(np.median(ends))
            _indirect_links(fps, file, links, root, pool, sides, positions, (start, end))
            refined = refine_occurrence(fps, file, sorted(links.items()), start, end, opts)
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
        edges = [template_edges(fps, i, by_file) for i in info]
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
    assign_kinds(segments, names, durations, opts)
    return segments


def _positions(
    nodes: dict[int, list[int]],
    sides: list[tuple[int, float, float, int]],
    matches: list[PairMatch],
    node_uf: UnionFind,
) -> dict[int, int]:
    """Frame position of every node (occurrence) of a cluster on one common time line.

    A match says frame ``f`` of its A side is frame ``f + offset`` of its B side; walking the
    matches from one node (breadth first) places every node: ``position[B] = position[A] +
    offset``, so two nodes that were never matched directly get their offset too.
    """
    adjacency: dict[int, list[tuple[int, int]]] = {}
    for ks in nodes.values():
        for k in ks:
            if k % 2:
                continue
            a, b = node_uf.find(k), node_uf.find(k + 1)
            d = matches[sides[k][3]].offset
            adjacency.setdefault(a, []).append((b, d))
            adjacency.setdefault(b, []).append((a, -d))
    positions: dict[int, int] = {}
    for start in nodes:
        if start in positions:
            continue
        positions[start] = 0
        queue = [start]
        while queue:
            here = queue.pop()
            for there, d in adjacency.get(here, ()):
                if there not in positions:
                    positions[there] = positions[here] + d
                    queue.append(there)
    return positions


MAX_INDIRECT = 12
"""Partners added to an occurrence through the cluster (beyond its direct matches)."""


def _indirect_links(
    fps: list[FileFingerprint],
    file: int,
    links: dict[int, int],
    root: int,
    nodes: dict[int, list[int]],
    sides: list[tuple[int, float, float, int]],
    positions: dict[int, int],
    extent: tuple[float, float],
) -> None:
    """Add to ``links`` the files of the cluster this occurrence was not matched with directly.

    Their offset comes from the common time line (:func:`_positions`), refined to the frame
    (+-2) on the occurrence, and kept only if the BER over it is significantly below chance
    (3 standard deviations of unrelated audio). A noisy occurrence matched with a single file
    thus gets the whole series as partners for its boundaries.
    """
    lo, hi = time_to_frame(extent[0]), time_to_frame(extent[1])
    if hi - lo < seconds_to_frames(2.0) or root not in positions:
        return
    seconds = (hi - lo) * HOP_SECONDS
    level = CHANCE_BER - 0.055 / np.sqrt(seconds)
    candidates = []
    for other, ks in nodes.items():
        p = sides[ks[0]][0]
        if p == file or p in links or other not in positions:
            continue
        d0 = positions[other] - positions[root]
        best = None
        for d in range(d0 - 2, d0 + 3):
            a, b = max(lo, 0, -d), min(hi, fps[file].n_frames, fps[p].n_frames - d)
            if b - a < seconds_to_frames(2.0):
                continue
            ber = float(aligned_ber(fps[file], fps[p], a, b, d).mean())
            if best is None or ber < best[0]:
                best = (ber, d)
        if best is not None and best[0] < level:
            candidates.append((best[0], p, best[1]))
    for _, p, d in sorted(candidates)[:MAX_INDIRECT]:
        links[p] = d


NULL_SPOTS = 24
"""Positions elsewhere in a file that give the chance level of a gap's BER."""
GAP_Z = 2.0
"""A gap is the partners' audio when its BER is this many standard deviations below chance."""


def template_edges(
    fps: list[FileFingerprint], occ: dict, by_file: dict[int, list[dict]]
) -> tuple[float, float]:
    """Move an edge of an occurrence out to where most partners put it, if the audio agrees.

    Speech over the start or end of the music in one file, or a louder bed under its quiet
    opening bars, can hide that edge from every comparison of this file. The partners' own
    edges, mapped into this file, say where the segment should start and end (their median);
    if that is 1-8 s further out and the mean BER over the gap against the partners whose
    segment covers it is :data:`GAP_Z` standard deviations below the BER of the same partner
    frames against :data:`NULL_SPOTS` stretches of this file elsewhere (a permutation test:
    it knows how far from 0.5 unrelated audio of these files goes), the gap is the same audio
    under other sound and the edge moves. A shortened segment (chance-level BER in the gap)
    keeps its own edge.
    """
    x = occ["file"]
    nx = fps[x].n_frames
    s_x, e_x = time_to_frame(occ["start"]), time_to_frame(occ["end"])
    mapped = []  # (partner, offset, start, stop) in frames of x
    for p, d in occ["links"].items():
        best = None
        for c in by_file.get(p, ()):
            ps, pe = time_to_frame(c["start"]) - d, time_to_frame(c["end"]) - d
            ov = min(pe, e_x) - max(ps, s_x)
            if ov > 0 and (best is None or ov > best[0]):
                best = (ov, ps, pe)
        if best is not None:
            mapped.append((p, d, best[1], best[2]))
    start, end = occ["start"], occ["end"]
    if len(mapped) < 2:
        return start, end

    def gap_ber(lo: int, hi: int, users: list[tuple[int, int, int, int]], at: int) -> float:
        """Mean BER of x's frames ``at..at+hi-lo`` against the users' frames of ``lo..hi``."""
        total, count = 0.0, 0
        for p, d, _, _ in users:
            shift = d + lo - at
            a, b = max(at, 0, -shift), min(at + hi - lo, nx, fps[p].n_frames - shift)
            if b > a:
                total += float(aligned_ber(fps[x], fps[p], a, b, shift).sum())
                count += b - a
        return total / count if count else CHANCE_BER

    def same_audio(lo: int, hi: int, users: list[tuple[int, int, int, int]]) -> bool:
        """Is the gap the partners' audio? Its BER against them, compared with the BER of the
        same partner frames against this file's frames elsewhere (>= 30 s away): a
        permutation test that knows how far from 0.5 unrelated audio of these files goes."""
        if not users:
            return False
        observed = gap_ber(lo, hi, users, lo)
        away = seconds_to_frames(30.0)
        spots = [
            q
            for q in np.linspace(0, max(nx - (hi - lo), 0), NULL_SPOTS + 2).astype(int).tolist()
            if q + (hi - lo) < s_x - away or q > e_x + away
        ]
        if len(spots) < 8:
            return observed < CHANCE_BER - 0.055 / np.sqrt((hi - lo) * HOP_SECONDS)
        null = np.array([gap_ber(lo, hi, users, q) for q in spots])
        return bool(observed < null.mean() - GAP_Z * max(float(null.std()), 0.004))

    template_start = int(np.median([m[2] for m in mapped]))
    template_end = int(np.median([m[3] for m in mapped]))
    lo_gap, hi_gap = seconds_to_frames(1.0), seconds_to_frames(8.0)
    gap = s_x - max(template_start, 0)
    if lo_gap <= gap <= hi_gap:
        users = [m for m in mapped if m[2] <= template_start + seconds_to_frames(0.5)]
        if same_audio(s_x - gap, s_x, users):
            start = boundary_time(s_x - gap, nx, fps[x].duration)
    gap = min(template_end, nx) - e_x
    if lo_gap <= gap <= hi_gap:
        users = [m for m in mapped if m[3] >= template_end - seconds_to_frames(0.5)]
        if same_audio(e_x, e_x + gap, users):
            end = boundary_time(e_x + gap, nx, fps[x].duration)
    return start, end


def assign_kinds(
    segments: list[Segment], names: list[str], durations: list[float], opts: RepeatOptions
) -> None:
    """One kind per recurring segment, the same in every file that has it.

    * ``intro``: of the segments that start early (first ``intro_region`` of the file, at most
      ``intro_max_start``) in at least 75 % of their occurrences, the one in most files;
    * ``outro``: likewise among those ending late (last ``outro_region``, ``outro_max_tail``);
    * ``recap``: early in some files, in the body of others (the recap and the scene it
      repeats are both labelled ``recap``);
    * ``other``: the rest.

    A segment can only be an intro, outro or recap if it lasts at least ``theme_min_duration``
    (median over its occurrences) and occurs at most once per file: a recurring snippet of a few
    seconds (a repeated line, a sound effect, a sting) is always ``other``.
    """
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

    def theme_like(s: Segment) -> bool:
        once = len(s.files) == len(s.occurrences)
        return once and s.median_duration >= opts.theme_min_duration

    themes = [s for s in segments if theme_like(s)]
    intro_c = [s for s in themes if np.mean([early(o) for o in s.occurrences]) >= 0.75]
    outro_c = [s for s in themes if np.mean([late(o) for o in s.occurrences]) >= 0.75]
    intro = max(intro_c, key=rank, default=None)
    outro = max((s for s in outro_c if s is not intro), key=rank, default=None)
    for s in segments:
        if s is intro:
            s.kind = "intro"
        elif s is outro:
            s.kind = "outro"
        else:
            e = [early(o) for o in s.occurrences]
            s.kind = "recap" if theme_like(s) and any(e) and not all(e) else "other"
        for o in s.occurrences:
            o.kind = s.kind
    order = {"intro": 0, "outro": 1, "recap": 2, "other": 3}
    segments.sort(key=lambda s: (order[s.kind], -len(s.files), s.occurrences[0].start))
    for i, s in enumerate(segments, start=1):
        s.id = i
        for o in s.occurrences:
            o.segment = i
        present = set(s.files)
        s.missing = [n for n in names if n not in present] if s.kind in ("intro", "outro") else []
