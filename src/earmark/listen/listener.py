"""Listening to several sources at once: one thread per source, reconnection, clips, health.

:class:`Listener` runs a :class:`.detector.LiveDetector` per source in its own thread (the
network and FFmpeg release the GIL, so sources proceed side by side). When a source drops,
the events it had open end where the audio stopped, the gap is recorded, and the source is
opened again after a backoff that doubles up to :data:`MAX_BACKOFF` (reset once audio flows
again); stream time goes on across the gap, so times of one source never repeat and no event is
reported twice. Every event goes to the sink as a :class:`.live_events.LiveEvent`.

Wall-clock times: a sample's UTC time is the time its audio arrived, taken on the monotonic
clock (the earliest arrival seen since the source was opened, so buffering delays do not shift
it) and read through the system clock when the event is emitted: a clock that jumps moves the
times of later events with it, never the order or spacing of stream times. For a file read
faster than real time, UTC times say when it was read, not when it was recorded.
"""

from __future__ import annotations

import logging
import threading
import time
import wave
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from earmark.backends import resolve_backend
from earmark.constants import FRAME_HOP, SAMPLE_RATE
from earmark.listen.detector import LiveDetector
from earmark.listen.live_events import LiveEvent, utc_iso
from earmark.listen.options import LiveOptions
from earmark.listen.sources import Source, SourceError, open_audio
from earmark.listen.tracker import TrackedEvent, TrackerUpdate
from earmark.pipeline import DetectOptions

log = logging.getLogger("earmark.listen")

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0
"""Seconds: the longest wait between two attempts to open a source."""
STABLE_SECONDS = 10.0
"""Audio a connection must deliver before the backoff starts again from its first value."""
CLIP_BUFFER_SECONDS = 120.0
"""Audio kept per source for clips: a clip is cut from the last this many seconds."""
LATENCIES_KEPT = 10000


class EventSink(Protocol):
    """Where events go (see :mod:`.sinks`)."""

    def emit(self, event: LiveEvent) -> None:
        """Deliver (or queue) one event."""
        ...


@dataclass
class SourceStatus:
    """What a source is doing (health endpoint, metrics, the console)."""

    name: str
    up: bool = False
    ended: bool = False
    reconnects: int = 0
    audio_seconds: float = 0.0
    """Stream time: seconds of audio decoded plus the gaps between connections."""
    lag_seconds: float = 0.0
    """How far processing is behind the audio's arrival (0 when keeping up)."""
    events: Counter[str] = field(default_factory=Counter)
    gaps: list[tuple[float, float]] = field(default_factory=list)
    """``(stream time, seconds)`` of every gap."""
    last_error: str | None = None
    failed: bool = False
    """Stopped for good on an error (a file that cannot be read, an unexpected failure)."""
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCIES_KEPT))
    """Seconds from each event's end in the stream to its emission."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary."""
        lat = np.array(self.latencies) if self.latencies else None
        return {
            "name": self.name,
            "up": self.up,
            "ended": self.ended,
            "reconnects": self.reconnects,
            "audio_seconds": round(self.audio_seconds, 3),
            "lag_seconds": round(self.lag_seconds, 3),
            "events": dict(self.events),
            "gaps": [[round(a, 3), round(b, 3)] for a, b in self.gaps],
            "last_error": self.last_error,
            "failed": self.failed,
            "latency_p50": None if lat is None else round(float(np.percentile(lat, 50)), 3),
            "latency_p95": None if lat is None else round(float(np.percentile(lat, 95)), 3),
        }


class ClipWriter:
    """Saves each event's audio with pre- and post-roll as a WAV file (16-bit, 32 kHz), once
    the post-roll has arrived; a clip is written to a temporary name, then renamed."""

    def __init__(self, folder: Path, pre_roll: float, post_roll: float) -> None:
        self.folder, self.pre, self.post = folder, pre_roll, post_roll
        folder.mkdir(parents=True, exist_ok=True)

    def path_for(self, source: str, event: LiveEvent) -> Path:
        """Where the clip of ``event`` goes."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in source)[:64]
        label = "".join(c if c.isalnum() else "_" for c in event.label)[:40]
        return self.folder / safe / f"{event.onset_utc.replace(':', '')}_{label}_{event.id[:8]}.wav"

    def write(self, path: Path, audio: np.ndarray) -> None:
        """Write ``audio`` (float32 mono 32 kHz) to ``path`` atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(path.name + ".part")
        pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
        with wave.open(str(temp), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(pcm.tobytes())
        temp.replace(path)


class _Recent:
    """The last seconds of a source's audio (for clips), addressed by connection time."""

    def __init__(self, seconds: float) -> None:
        self.capacity = int(seconds * SAMPLE_RATE)
        self.parts: deque[np.ndarray] = deque()
        self.start = 0  # sample index of the first kept sample
        self.end = 0

    def add(self, samples: np.ndarray) -> None:
        self.parts.append(samples)
        self.end += len(samples)
        while self.parts and self.end - self.start - len(self.parts[0]) >= self.capacity:
            self.start += len(self.parts.popleft())

    def cut(self, a: float, b: float) -> np.ndarray:
        lo, hi = max(int(a * SAMPLE_RATE), self.start), min(int(b * SAMPLE_RATE), self.end)
        if hi <= lo or not self.parts:
            return np.zeros(0, dtype=np.float32)
        joined = np.concatenate(self.parts)
        return joined[lo - self.start : hi - self.start]


class Listener:
    """Listens to ``sources`` until they end (files) or :meth:`stop` is called."""

    def __init__(
        self,
        tagger: Any,
        sources: Sequence[Source],
        options: DetectOptions,
        live: LiveOptions,
        sink: EventSink,
        *,
        clips: ClipWriter | None = None,
        realtime: bool = False,
        opener: Callable[[Source, bool], Any] = open_audio,
    ) -> None:
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"two sources share the name {dup[0]!r}: name them (NAME=SOURCE)")
        live.validate()
        options.validate()
        self.tagger, self.sources, self.options, self.live = tagger, list(sources), options, live
        self.sink, self.clips, self.realtime, self.opener = sink, clips, realtime, opener
        self.status = {s.name: SourceStatus(s.name) for s in sources}
        self._stop = threading.Event()
        self._lock = threading.Lock()  # around the sink
        self._setup_lock = threading.Lock()
        # PyTorch's network holds its squeeze-excitation window as state: one source at a
        # time then; ONNX Runtime's graph is stateless and its sessions run side by side.
        shared = resolve_backend(options.scoring.backend) == "torch"
        self._net_lock: threading.Lock | _NoLock = threading.Lock() if shared else _NoLock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start one thread per source."""
        for source in self.sources:
            thread = threading.Thread(
                target=self._run_source, args=(source,), name=f"listen:{source.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every source to end; ``True`` if they all did."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            thread.join(left)
        return not any(t.is_alive() for t in self._threads)

    def stop(self) -> None:
        """Stop listening: open events end where the audio stopped, and are emitted."""
        self._stop.set()

    def healthy(self) -> bool:
        """Every source is delivering audio, or ended as a file does."""
        return all(s.up or s.ended for s in self.status.values())

    # ------------------------------------------------------------------ one source
    def _run_source(self, source: Source) -> None:
        """One source's loop; whatever goes wrong is reported as its last error, never as a
        traceback."""
        status = self.status[source.name]
        try:
            self._listen(source, status)
        except Exception as exc:  # a thread must not die with a traceback
            status.up, status.ended, status.failed = False, True, True
            status.last_error = f"stopped: {type(exc).__name__}: {exc}"
            log.error("%s: %s", source.name, status.last_error)

    def _listen(self, source: Source, status: SourceStatus) -> None:
        offset = 0.0  # stream time at which this connection's audio starts
        backoff = FIRST_BACKOFF
        while not self._stop.is_set():
            with self._setup_lock:  # the first one exports and caches the network's graph
                detector = LiveDetector(self.tagger, self.options, self.live, source.name)
            recent = _Recent(CLIP_BUFFER_SECONDS) if self.clips else None
            anchor = [float("inf")]  # monotonic time of this connection's first sample
            pending_clips: list[tuple[float, float, Path]] = []
            try:
                for chunk in self.opener(source, self.realtime):
                    now = time.monotonic()
                    status.up, status.last_error = True, None
                    with self._net_lock:
                        update = detector.push(chunk)
                    seconds = detector.seconds
                    anchor[0] = min(anchor[0], now - seconds + len(chunk) / SAMPLE_RATE)
                    status.audio_seconds = offset + seconds
                    status.lag_seconds = max(time.monotonic() - anchor[0] - seconds, 0.0)
                    if recent is not None:
                        recent.add(chunk)
                    self._emit(source, status, update, offset, anchor[0], pending_clips, recent)
                    if seconds >= STABLE_SECONDS:
                        backoff = FIRST_BACKOFF
                    if self._stop.is_set():
                        break
                error = None
            except SourceError as exc:
                error = str(exc)
                if not source.endless:  # a file that cannot be read will not get better
                    status.last_error, status.failed = error, True
                    log.error("%s: %s", source.name, error)
            with self._net_lock:
                update = detector.finish()
            self._emit(source, status, update, offset, anchor[0], pending_clips, recent, True)
            status.up = False
            if not source.endless or self._stop.is_set():
                status.ended = True
                return
            status.reconnects += 1
            status.last_error = error or "the stream ended"
            dropped = time.monotonic()
            log.warning(
                "%s: %s; opening it again in %.0f s", source.name, status.last_error, backoff
            )
            self._stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            gap = time.monotonic() - dropped
            status.gaps.append((offset + detector.seconds, gap))
            offset += detector.seconds + gap

    def _emit(
        self,
        source: Source,
        status: SourceStatus,
        update: TrackerUpdate,
        offset: float,
        anchor: float,
        pending_clips: list[tuple[float, float, Path]],
        recent: _Recent | None,
        final: bool = False,
    ) -> None:
        wall = time.time() - time.monotonic()  # monotonic -> system clock, read now

        def utc(t: float) -> str:
            return utc_iso((anchor if anchor != float("inf") else time.monotonic()) + t + wall)

        for kind, items in (("started", update.started), ("ended", update.ended)):
            for tracked in items:
                event = self._live_event(source, tracked, kind, offset, utc)
                if kind == "ended" and self.clips is not None and recent is not None:
                    path = self.clips.path_for(source.name, event)
                    event = _with_clip(event, str(path))
                    ev = tracked.event
                    pending_clips.append(
                        (ev.onset - self.clips.pre, ev.offset + self.clips.post, path)
                    )
                if kind == "ended":
                    status.events[event.label] += 1
                    if anchor != float("inf"):
                        status.latencies.append(time.monotonic() - anchor - tracked.event.offset)
                with self._lock:
                    self.sink.emit(event)
        if recent is not None and self.clips is not None:
            heard = recent.end / SAMPLE_RATE
            for item in list(pending_clips):
                a, b, path = item
                if b <= heard or final:
                    try:
                        self.clips.write(path, recent.cut(a, b))
                    except OSError as exc:
                        log.warning("%s: clip %s not written: %s", source.name, path, exc)
                    pending_clips.remove(item)

    def _live_event(
        self,
        source: Source,
        tracked: TrackedEvent,
        kind: str,
        offset: float,
        utc: Callable[[float], str],
    ) -> LiveEvent:
        ev = tracked.event
        ended = kind == "ended"
        return LiveEvent(
            source=source.name,
            label=ev.label,
            mid=ev.mid,
            kind=kind,
            stream_onset=offset + ev.onset,
            stream_offset=offset + ev.offset if ended else None,
            onset_utc=utc(ev.onset),
            offset_utc=utc(ev.offset) if ended else None,
            peak=float(ev.peak),
            mean=float(ev.mean) if ended else None,
            key_onset=offset + tracked.onset_frame * FRAME_HOP,
        )


def _with_clip(event: LiveEvent, path: str) -> LiveEvent:
    return replace(event, clip=path)


class _NoLock:
    """A lock that is never held (sources that need not wait for each other)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
