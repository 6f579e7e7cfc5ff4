"""One live source's audio -> events: streaming scores, custom classes, the tracker, a level gate.

:class:`LiveDetector` is what ``earmark listen`` runs per source: push 32 kHz mono samples as
they arrive, get the events they settled. The scores come from
:class:`earmark.scoring.StreamScorer` (blocks of ``block_frames``, ``lookahead_frames`` of
context after each), the band levels for boundary refinement from a drained
:class:`earmark.boundaries.BandEnvelope`, and the events from :class:`.tracker.EventTracker`
with ``detect``'s own post-processing options. Custom classes (``DetectOptions.classes``) are
computed by the same provider as ``detect --classes`` on a short window of recent frames; their
head's temporal context delays every column by :data:`CUSTOM_CONTEXT_FRAMES`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from earmark.boundaries import BandEnvelope
from earmark.constants import FRAME_HOP, SAMPLE_RATE
from earmark.events import Event
from earmark.extensions import class_provider
from earmark.listen.options import LiveOptions
from earmark.listen.tracker import EventTracker, TrackedEvent, TrackerUpdate
from earmark.pipeline import DetectOptions
from earmark.scoring import FrameScores

SAMPLES_PER_FRAME = round(FRAME_HOP * SAMPLE_RATE)
CUSTOM_CONTEXT_FRAMES = 8
"""Frames of context a custom head gets on each side of a frame (its convolutions reach 6)."""
SILENCE_DB = -120.0


class LiveDetector:
    """Events of one stream, as its samples arrive (see the module docstring)."""

    def __init__(
        self, tagger: Any, options: DetectOptions, live: LiveOptions, name: str = ""
    ) -> None:
        live.validate()
        options.validate()
        self.tagger, self.options, self.live, self.name = tagger, options, live, name
        scoring = options.scoring
        self.provider = class_provider() if options.classes else None
        labels, post = list(tagger.labels), options.postprocess
        context = 0
        if self.provider is not None:
            scoring = dataclasses.replace(scoring, embeddings=True, features=True)
            labels, post = self.provider.check(tagger, options)
            context = CUSTOM_CONTEXT_FRAMES
        self.labels, self.postprocess, self.context = labels, post, context
        self.scorer = tagger.scorer(dataclasses.replace(scoring, dtype="float32")).stream(
            live.block_frames, live.lookahead_frames
        )
        self.envelope = BandEnvelope() if options.boundaries.refine else None
        self.tracker = EventTracker(
            labels,
            post,
            refine_options=options.boundaries,
            join=tagger.ontology if post.join_related else None,
            ontology=tagger.ontology,
            context_frames=context,
            max_window=live.max_event,
            name=name,
        )
        self._held: FrameScores | None = None  # recent frames the custom head reads
        self._held0 = 0  # stream frame of the first held frame
        self._levels: list[float] = []  # dBFS of every 0.32 s frame not yet past the tracker
        self._levels0 = 0
        self._pending = np.zeros(0, dtype=np.float32)

    @property
    def seconds(self) -> float:
        """Seconds of audio pushed."""
        return self.scorer.samples_seen / SAMPLE_RATE

    def push(self, samples: np.ndarray) -> TrackerUpdate:
        """Add samples (32 kHz mono float32); the events they settled."""
        samples = np.asarray(samples, dtype=np.float32)
        self._measure(samples)
        env = None
        if self.envelope is not None:
            self.envelope.update(samples)
            env = self.envelope.drain()
        block = self.scorer.push(samples)
        if block is None:
            return self._gate(self.tracker.add(self.tracker.frames, self._empty(), env))
        frames = FrameScores(block.scores, FRAME_HOP, 0.0, block.embeddings, {}, block.features)
        return self._gate(self._feed(frames, env, final=False))

    def finish(self) -> TrackerUpdate:
        """The stream ended: score what is left and end every open event."""
        self._measure(np.zeros(0, dtype=np.float32), final=True)
        block = self.scorer.finish()
        env = self.envelope.drain() if self.envelope is not None else None
        frames = None
        if block is not None:
            frames = FrameScores(block.scores, FRAME_HOP, 0.0, block.embeddings, {}, block.features)
        if frames is not None or self.provider is not None:
            update = self._feed(frames, env, final=True)
        else:
            update = self.tracker.add(self.tracker.frames, self._empty(), env)
        last = self.tracker.finish(self.seconds)
        return self._gate(TrackerUpdate(update.ended + last.ended, update.started + last.started))

    # ------------------------------------------------------------------ internals
    def _empty(self) -> np.ndarray:
        return np.zeros((0, len(self.labels)), dtype=np.float32)

    def _feed(
        self, frames: FrameScores | None, env: np.ndarray | None, final: bool
    ) -> TrackerUpdate:
        """Frames to the tracker: directly, or through the custom head on a window around
        them (held back until the head's context after them has arrived)."""
        if self.provider is None:
            assert frames is not None
            return self.tracker.add(self.tracker.frames, frames.scores, env)
        if frames is not None:
            self._held = frames if self._held is None else _concat([self._held, frames])
        held, fed = self._held, self.tracker.frames
        if held is None:
            return self.tracker.add(fed, self._empty(), env)
        done = self._held0 + held.n_frames - (0 if final else self.context)
        if done <= fed:
            return self.tracker.add(fed, self._empty(), env)
        scored, _ = self.provider.apply(self.tagger, held, self.options, None)
        rows = np.asarray(scored.scores[fed - self._held0 : done - self._held0], np.float32)
        update = self.tracker.add(fed, rows, env)
        keep = max(done - 2 * self.context, self._held0)  # the head's context before what is next
        self._held = _slice(held, keep - self._held0)
        self._held0 = keep
        return update

    def _measure(self, samples: np.ndarray, final: bool = False) -> None:
        """Level (dBFS) of each complete 0.32 s frame, for the gate."""
        if self.live.level_gate_db is None:
            return
        data = np.concatenate([self._pending, samples])
        n = len(data) // SAMPLES_PER_FRAME
        if final and len(data) > n * SAMPLES_PER_FRAME:
            data = np.concatenate([data, np.zeros(SAMPLES_PER_FRAME, dtype=np.float32)])
            n += 1
        if n:
            frames = data[: n * SAMPLES_PER_FRAME].reshape(n, SAMPLES_PER_FRAME)
            rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
            self._levels += (20 * np.log10(np.maximum(rms, 1e-6))).tolist()
        self._pending = data[n * SAMPLES_PER_FRAME :]

    def _loudest(self, ev: Event) -> float:
        first = int(ev.onset / FRAME_HOP) - self._levels0
        last = math.ceil(ev.offset / FRAME_HOP) - self._levels0
        part = self._levels[max(first, 0) : max(last, first + 1)]
        return max(part) if part else SILENCE_DB

    def _gate(self, update: TrackerUpdate) -> TrackerUpdate:
        """Drop events under the level gate; forget levels the tracker is done with."""
        gate = self.live.level_gate_db
        if gate is None:
            return update if self.live.started else TrackerUpdate(update.ended, [])

        def loud(items: list[TrackedEvent]) -> list[TrackedEvent]:
            return [t for t in items if self._loudest(t.event) >= gate]

        out = TrackerUpdate(loud(update.ended), loud(update.started) if self.live.started else [])
        keep_from = self.tracker.frames - self.tracker.window_frames - 1
        drop = keep_from - self._levels0
        if drop > 0:
            del self._levels[:drop]
            self._levels0 += drop
        return out


def _concat(parts: list[FrameScores]) -> FrameScores:
    if len(parts) == 1:
        return parts[0]

    def cat(name: str) -> np.ndarray | None:
        arrays = [getattr(p, name) for p in parts]
        return None if any(a is None for a in arrays) else np.concatenate(arrays)

    scores = cat("scores")
    assert scores is not None
    return FrameScores(scores, FRAME_HOP, 0.0, cat("embeddings"), {}, cat("features"))


def _slice(frames: FrameScores, start: int) -> FrameScores:
    def cut(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[start:]

    return FrameScores(
        frames.scores[start:], FRAME_HOP, 0.0, cut(frames.embeddings), {}, cut(frames.features)
    )
