"""Framewise scores of an endless stream -> finished events, post-processed as ``detect`` does.

:class:`EventTracker` keeps a short window of recent scores (and band levels, for boundary
refinement) and runs ``detect``'s own post-processing (:func:`earmark.events.scores_to_events`,
:func:`earmark.boundaries.refine_events`, then the join of related classes) on it every time
frames arrive. An event is final once no frame that could still change it is missing: the
median filter needs half its kernel after the event's end, a following run within the merge
gap would extend it, and a custom head's temporal context reaches further (``context_frames``).
Final events are emitted once; events of one class or of related classes that overlap in
time are emitted together, so refining and joining them gives what ``detect`` gives. The
window then moves past what was emitted.
A started notice (:attr:`TrackerUpdate.started`) names the class whose scores fired; the event
may end under a related class that took it in as an alternative (one event per sound).

Where it can differ from ``detect`` on the same audio (the scores themselves aside, see
:class:`earmark.scoring.StreamScorer`):

* boundary refinement estimates the background from the audio before an event and what has
  arrived after it (``detect`` uses up to ``RefineOptions.context`` seconds on both sides);
* an event longer than ``max_window`` seconds is ended there and, if the sound goes on,
  reported again from that point (memory stays bounded on a source that never falls silent);
* a class whose score hovers between its off and on thresholds for longer than the window's
  margin before it fires gets a later onset (``detect`` extends the event back over the hover).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from earmark.boundaries import ENVELOPE_BANDS, ENVELOPE_HOP, BandEnvelope, RefineOptions
from earmark.boundaries import refine_events as refine
from earmark.constants import FRAME_HOP, SAMPLE_RATE
from earmark.events import (
    Event,
    PostprocessOptions,
    effective_thresholds,
    median_kernel_frames,
    scores_to_events,
)
from earmark.labels import Label, Ontology
from earmark.sounds import MIN_OVERLAP, join_related, related

MAX_WINDOW_SECONDS = 600.0
"""The longest event reported as one (longer ones are cut there and go on as a new event)."""
ENVELOPE_SECONDS = ENVELOPE_HOP / SAMPLE_RATE


@dataclass(frozen=True)
class TrackedEvent:
    """An event of the stream (times in seconds of the stream) and the frame its scores first
    fired in, which identifies it from its started notice to its end."""

    event: Event
    onset_frame: int
    truncated: bool = False
    """Ended at ``max_window`` (or at the end of the stream) while its sound went on."""


@dataclass
class TrackerUpdate:
    """What one batch of frames settled."""

    ended: list[TrackedEvent]
    started: list[TrackedEvent]


class EventTracker:
    """Post-processes the scores of a stream as they arrive (see the module docstring).

    ``labels`` name the score columns; ``postprocess`` and ``refine_options`` are ``detect``'s
    options (``None`` keeps score-based boundaries); ``join`` is the ontology whose related
    classes become one event per sound (:func:`earmark.sounds.join_related`; ``None``: every
    class is reported); ``context_frames`` is how far a custom head's temporal context
    reaches; ``ontology`` is needed when ``postprocess`` groups or selects by category.
    """

    def __init__(
        self,
        labels: Sequence[Label],
        postprocess: PostprocessOptions,
        *,
        refine_options: RefineOptions | None = None,
        join: Ontology | None = None,
        ontology: Ontology | None = None,
        context_frames: int = 0,
        hop: float = FRAME_HOP,
        max_window: float = MAX_WINDOW_SECONDS,
        name: str = "",
    ) -> None:
        postprocess.validate()
        self.labels, self.post, self.ontology = list(labels), postprocess, ontology
        self.refine_options = refine_options if refine_options and refine_options.refine else None
        self.join, self.hop, self.name = join, hop, name
        medians = [postprocess.median_filter, *postprocess.median_filters.values()]
        self.kernel = max(median_kernel_frames(v, hop) for v in medians)
        self.gap_frames = math.floor(postprocess.merge_gap / hop + 1e-9)
        self.onset_settle = self.kernel // 2 + 1 + context_frames
        """Frames after a frame before its median-filtered (and head) output is final."""
        self.settle = self.onset_settle + self.gap_frames + 1
        """Frames after an event's end before nothing can extend or merge it."""
        self.max_frames = max(int(max_window / hop), 4 * self.settle)
        self._scores = np.zeros((0, len(self.labels)), dtype=np.float32)
        self._w0 = 0  # stream frame of the window's first row
        self._env = np.zeros((0, ENVELOPE_BANDS), dtype=np.float16)
        self._env0 = 0  # stream envelope frame of its first row
        self._emitted_until: dict[str, int] = {}  # mid -> end frame of its last emitted event
        self._columns: dict[str, int] = {}  # mid -> score column, when outputs are columns
        self._on = np.zeros(len(self.labels), dtype=np.float32)
        if postprocess.group_by is None:
            on = effective_thresholds(postprocess, self.labels, ontology)
            self._columns = {lab.mid: i for i, lab in enumerate(self.labels)}
            self._on = np.array([on[lab.name] for lab in self.labels], dtype=np.float32)
        self._noticed: set[tuple[str, int]] = set()

    @property
    def frames(self) -> int:
        """Frames received so far."""
        return self._w0 + len(self._scores)

    @property
    def window_frames(self) -> int:
        """Frames held (memory: this many rows of scores)."""
        return len(self._scores)

    def add(
        self, start: int, scores: np.ndarray, envelope: np.ndarray | None = None
    ) -> TrackerUpdate:
        """Frames ``start ..`` (they must follow the last ones) and the band levels computed
        since the last call; the events this settled."""
        if start != self.frames:
            raise ValueError(f"frames must follow each other: got {start}, expected {self.frames}")
        if envelope is not None and len(envelope):
            self._env = np.concatenate([self._env, envelope.astype(np.float16)])
        if not len(scores):  # no new frame: nothing can have settled
            return TrackerUpdate([], [])
        self._scores = np.concatenate([self._scores, np.asarray(scores, dtype=np.float32)])
        return self._update(final=False)

    def finish(self, duration: float | None = None) -> TrackerUpdate:
        """The stream ended (after ``duration`` seconds): every event still open ends."""
        return self._update(final=True, duration=duration)

    # ------------------------------------------------------------------ internals
    def _update(self, final: bool, duration: float | None = None) -> TrackerUpdate:
        hop, w0, total = self.hop, self._w0, self.frames
        if not len(self._scores):
            return TrackerUpdate([], [])
        window_duration = None if duration is None else max(duration - w0 * hop, 0.0)
        raw = scores_to_events(
            self._scores,
            hop,
            self.labels,
            self.post,
            file=self.name,
            duration=window_duration,
            ontology=self.ontology,
        )
        spans = []
        for ev in raw:
            first, end = w0 + round(ev.onset / hop), w0 + round(ev.offset / hop)
            if end <= self._emitted_until.get(ev.mid, -1):
                continue  # emitted in an earlier update
            if w0 > 0 and first < w0 + self.kernel:
                # The median filter mirrors the window's first frames: a run found there is
                # an artefact (a real one was seen, and kept, before the window moved on).
                continue
            spans.append((first, end, ev))
        frontier = total if final else total - self.settle
        forced = not final and total - w0 > self.max_frames
        if forced:  # a sound that never stops: what is open ends at the frontier
            spans = [(s, min(e, frontier), self._cut(ev, frontier)) for s, e, ev in spans]
        ended: list[TrackedEvent] = []
        pending: list[tuple[int, int, Event]] = []
        for cluster in _clusters(spans, self.join):
            if max(e for _, e, _ in cluster) <= frontier:
                ended += self._finish_cluster(cluster, truncated=forced)
            else:
                pending += cluster
        started = []
        for first, _, ev in pending:
            if (ev.mid, first) not in self._noticed and self._confirmed(ev.mid, first):
                self._noticed.add((ev.mid, first))
                shifted = replace(ev, onset=ev.onset + w0 * hop, offset=total * hop)
                started.append(TrackedEvent(shifted, first))
        self._trim(frontier if forced else frontier - self.kernel - 2, pending)
        return TrackerUpdate(ended, started)

    def _confirmed(self, mid: str, first: int) -> bool:
        """Whether a pending event of ``mid`` starting at ``first`` is sure to be reported: one
        of its frames whose median-filtered score can no longer change is above the on
        threshold (later frames could still make a run that is only a blip at the edge go
        away)."""
        settled = self.frames - self.onset_settle  # frames before this are final
        if first >= settled:
            return False
        column = self._columns.get(mid)
        if column is None:  # a grouped output: wait until a kernel of it is final
            return first + self.kernel <= settled
        half = self.kernel // 2
        lo = max(first - half - self._w0, 0)
        hi = settled + half - self._w0
        above = (self._scores[lo:hi, column] >= self._on[column]).astype(np.int32)
        if len(above) < self.kernel:
            return bool(above.all()) and first + self.kernel <= settled
        votes = np.convolve(above, np.ones(self.kernel, dtype=np.int32), mode="valid")
        return bool((votes > half).any())

    def _cut(self, ev: Event, frontier: int) -> Event:
        end = (frontier - self._w0) * self.hop
        return replace(ev, offset=min(ev.offset, end)) if ev.offset > end else ev

    def _finish_cluster(
        self, cluster: list[tuple[int, int, Event]], truncated: bool
    ) -> list[TrackedEvent]:
        shift = self._w0 * self.hop
        events = [replace(e, onset=e.onset + shift, offset=e.offset + shift) for _, _, e in cluster]
        if self.refine_options is not None and len(self._env):
            at = self._env0 * ENVELOPE_SECONDS  # the envelope's first frame, in stream time
            local = [replace(e, onset=e.onset - at, offset=e.offset - at) for e in events]
            local = refine(local, BandEnvelope.from_levels(self._env), self.refine_options)
            events = [replace(e, onset=e.onset + at, offset=e.offset + at) for e in local]
        if self.join is not None and len(events) > 1:
            events = join_related(events, self.join)
        for first, end, ev in cluster:
            self._emitted_until[ev.mid] = max(self._emitted_until.get(ev.mid, -1), end)
            self._noticed.discard((ev.mid, first))
        out = []
        hop = self.hop
        for ev in events:  # the frame its scores first fired in (the started notice's key)
            same = [
                first
                for first, end, raw in cluster
                if raw.mid == ev.mid and first * hop < ev.offset and end * hop > ev.onset
            ]
            out.append(TrackedEvent(ev, min(same) if same else round(ev.onset / hop), truncated))
        return out

    def _trim(self, keep: int, pending: list[tuple[int, int, Event]]) -> None:
        """Drop the frames before ``keep``, or before what the pending events still need."""
        if pending:
            keep = min(keep, min(s for s, _, _ in pending) - self.kernel - 2)
        keep = min(max(keep, self._w0), self.frames)
        drop = keep - self._w0
        if drop > 0:
            self._scores = self._scores[drop:]
            self._w0 = keep
        context = self.refine_options.context if self.refine_options else 0.0
        env_keep = max(int((keep * self.hop - context - 1.0) / ENVELOPE_SECONDS), self._env0)
        if env_keep > self._env0:
            self._env = self._env[env_keep - self._env0 :]
            self._env0 = env_keep


def _clusters(
    spans: list[tuple[int, int, Event]], ontology: Ontology | None
) -> list[list[tuple[int, int, Event]]]:
    """Spans that overlap (or touch) in time and are of one class or of related classes,
    transitively: what boundary refinement and the join of one sound's classes may merge."""
    order = sorted(range(len(spans)), key=lambda i: spans[i][:2])
    parent = list(range(len(spans)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for k, i in enumerate(order):
        _, end, ev = spans[i]
        for j in order[k + 1 :]:
            other_first, _, other = spans[j]
            if other_first > end:
                break
            if ev.mid == other.mid:  # refinement joins same-class events that come to overlap
                parent[root(j)] = root(i)
            elif ontology is not None and related(ev.mid, other.mid, ontology):
                # joined only when their intersection over union reaches MIN_OVERLAP, which is
                # at most the shorter's length over the longer's: open ones only grow
                a, b = end - spans[i][0], spans[j][1] - other_first
                if min(a, b) >= MIN_OVERLAP * max(a, b):
                    parent[root(j)] = root(i)
    groups: dict[int, list[tuple[int, int, Event]]] = {}
    for i in order:
        groups.setdefault(root(i), []).append(spans[i])
    return list(groups.values())
