"""One event per sound: overlapping events of ontology-related classes joined into one.

AudioSet labels a sound at several levels at once: a police siren scores high as *Siren*,
*Emergency vehicle* and *Police car (siren)*, a child talking as *Speech* and *Child speech*.
Each class crossing its threshold becomes its own event, so one sound is reported three times.
:func:`join_related` turns such a cluster into one event:

* two events are of one sound when their intersection over union (``overlap="iou"``; or over
  the shorter event's length, ``overlap="shorter"``) is at least ``min_overlap`` and their
  classes are related in the ontology: one is an ancestor of the other, or they share a
  parent (a short sound inside a long one, a car horn during a siren, has a small
  intersection over union and stays apart);
* a cluster (linked pairs, transitively) becomes one event labelled with the most specific
  class among the confident ones (peak at least ``confident_share`` of the cluster's highest
  peak; deeper in the ontology is more specific, then the higher peak), with that class's own
  onset and offset (``span="label"``) or the union of the members' (``span="union"``); the
  other members are kept as :attr:`~earmark.events.Event.alternatives` ``(label, mid,
  peak)``, best first. The score matrix keeps every class.

Classes the ontology does not know (custom classes) are never joined. ``detect --every-class``
(``PostprocessOptions.join_related = False``) reports every class as before. The rule and the
span were chosen on the dev split of ``benchmarks/sounds.py`` (event F1 within 0.005 of the
best, then the most true sounds kept, then the fewest events per sound) and measured on test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from earmark.events import Event
from earmark.labels import Ontology

MIN_OVERLAP = 0.3
"""Intersection over union two events need to be one sound."""
CONFIDENT_SHARE = 0.5
"""A member may name the sound when its peak is at least this share of the cluster's best."""

__all__ = ["CONFIDENT_SHARE", "MIN_OVERLAP", "OVERLAPS", "join_related", "related"]


def related(a: str, b: str, ontology: Ontology) -> bool:
    """Whether classes ``a`` and ``b`` (mids) are one's ancestor or share a parent."""
    if a == b:
        return True
    if a not in ontology or b not in ontology:
        return False
    if a in ontology.ancestors(b) or b in ontology.ancestors(a):
        return True
    return bool(set(ontology.parents(a)) & set(ontology.parents(b)))


OVERLAPS = ("iou", "shorter")
"""How the overlap of two events is measured: over their union, or over the shorter one."""


def _overlap_share(x: Event, y: Event, overlap: str) -> float:
    """The overlap of two events' spans, as a share of their union or of the shorter one."""
    inter = min(x.offset, y.offset) - max(x.onset, y.onset)
    if inter <= 0:
        return 0.0
    if overlap == "iou":
        return inter / (max(x.offset, y.offset) - min(x.onset, y.onset))
    shorter = min(x.duration, y.duration)
    return inter / shorter if shorter > 0 else 1.0


def join_related(
    events: Sequence[Event],
    ontology: Ontology,
    min_overlap: float = MIN_OVERLAP,
    confident_share: float = CONFIDENT_SHARE,
    span: str = "label",
    overlap: str = "iou",
) -> list[Event]:
    """Events with each cluster of one sound's related classes joined into one event (see the
    module docstring); sorted by (file, onset, label). Events of one file only are joined."""
    if not 0.0 < min_overlap <= 1.0 or not 0.0 <= confident_share <= 1.0:
        raise ValueError("min_overlap must be in (0, 1] and confident_share in [0, 1]")
    if span not in ("label", "union"):
        raise ValueError(f"span must be 'label' or 'union', got {span!r}")
    if overlap not in OVERLAPS:
        raise ValueError(f"overlap must be one of {OVERLAPS}, got {overlap!r}")
    order = sorted(range(len(events)), key=lambda i: (events[i].file, events[i].onset))
    parent = list(range(len(events)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pair_cache: dict[tuple[str, str], bool] = {}
    for k, i in enumerate(order):  # sweep: only events that start before i ends can overlap
        x = events[i]
        for j in order[k + 1 :]:
            y = events[j]
            if y.file != x.file or y.onset >= x.offset:
                break
            if x.mid == y.mid or _overlap_share(x, y, overlap) < min_overlap:
                continue
            key = (x.mid, y.mid) if x.mid < y.mid else (y.mid, x.mid)
            if key not in pair_cache:
                pair_cache[key] = related(x.mid, y.mid, ontology)
            if pair_cache[key]:
                parent[root(j)] = root(i)

    clusters: dict[int, list[Event]] = {}
    for i in order:
        clusters.setdefault(root(i), []).append(events[i])
    out = [e for m in clusters.values() for e in _one_event(m, ontology, confident_share, span)]
    return sorted(out, key=lambda e: (e.file, e.onset, e.label))


def _one_event(
    members: list[Event], ontology: Ontology, confident_share: float, span: str
) -> list[Event]:
    """The event a cluster becomes, named by its most specific confident member; other events
    of that same class in the cluster (its earlier or later occurrences) stay events."""
    if len(members) == 1:
        return members
    best_peak = max(m.peak for m in members)

    def depth(e: Event) -> int:
        return ontology.depth(e.mid) if e.mid in ontology else -1

    confident = [m for m in members if m.peak >= confident_share * best_peak]
    chosen = max(confident, key=lambda m: (depth(m), m.peak))
    again = [m for m in members if m is not chosen and m.label == chosen.label]
    others = sorted(
        (m for m in members if m is not chosen and m.label != chosen.label), key=lambda m: -m.peak
    )
    seen = {chosen.label}
    alternatives = list(chosen.alternatives)
    for m in others:
        for label, mid, peak in ((m.label, m.mid, m.peak), *m.alternatives):
            if label not in seen:
                seen.add(label)
                alternatives.append((label, mid, peak))
    alternatives.sort(key=lambda a: -a[2])
    if span == "union":
        joined = dataclasses.replace(
            chosen,
            onset=min(m.onset for m in members),
            offset=max(m.offset for m in members),
            alternatives=tuple(alternatives),
        )
        return [joined]
    return [dataclasses.replace(chosen, alternatives=tuple(alternatives)), *again]
