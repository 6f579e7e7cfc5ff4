"""Sharper event boundaries from the signal: snap score-based onsets and offsets to energy.

Framewise scores come from 0.32 s frames whose receptive field (and the head's pooling) spans
more than a second, so an event found on the scores typically starts a few hundred
milliseconds before the sound does and ends after it. The signal itself is much sharper. For
each event this module

1. estimates the local background spectrum (a low percentile of each band over the few seconds
   around the event) and the event's spectrum (the median over the event);
2. keeps the bands where the event stands clearly above the background: the sound's own bands,
   which is what lets one event's boundary be found while other sounds go on in other bands;
3. follows, at 10 ms resolution, how far those bands rise above their background (weighted by
   how much each band belongs to the event) and moves the onset to the first, and the offset to
   the last, moment where that rise reaches a fraction of its level inside the event, searching
   only near the score-based boundaries.

Events whose sound does not stand out (no band above the background, e.g. a faint or very
broadband event in equal noise) keep their score-based boundaries. The gain was measured on the
SED benchmark (``benchmarks/sed``): see README, "Event boundaries".

:class:`BandEnvelope` computes the compact spectrogram this needs while the audio streams past
(64 mel bands every 10 ms, float16: 46 MB per hour of audio, kept on disk past 11 minutes so
memory stays flat); :func:`refine_events` moves the boundaries.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np
import scipy.fft
from scipy.ndimage import uniform_filter1d

from earmark.audio import SAMPLE_RATE
from earmark.events import Event
from earmark.mel import mel_filterbank

ENVELOPE_HOP = 320
"""Envelope hop in samples at 32 kHz (10 ms)."""
ENVELOPE_FFT = 1024
ENVELOPE_WINDOW = 640
"""Hann window of 20 ms: short enough to place an onset within a few tens of milliseconds."""
ENVELOPE_BANDS = 64
ENVELOPE_FMAX = 15000.0
_FLOOR_DB = -100.0
SPILL_BYTES = 8 << 20
"""Envelope bytes kept in memory before the rest goes to a temporary file (~11 min of audio)."""


@dataclass(frozen=True)
class RefineOptions:
    """Knobs of :func:`refine_events`.

    The defaults were chosen on the ``dev`` split of the SED benchmark, with the default
    post-processing (grid over level, search limits and band_db): the best setting, which also
    puts every event of the scaper regression soundscapes within 0.5 s and leaves an event in
    pure noise alone (dev event F1 with a 0.2 s collar: 0.114 micro, 0.120 macro; the test
    figures, with and without refinement, are in the README). Scores smear offsets less than
    onsets: the best offset search only moves offsets inwards.

    * ``refine``: move boundaries at all (``False`` keeps the score-based ones).
    * ``context``: seconds on each side of an event used to estimate its background.
    * ``background_percentile``: per-band percentile of the context around the event (not the
      event itself) taken as its background; with less than 0.5 s of context (an event filling
      the file) the event is left as it is.
    * ``band_db``: a band belongs to the event when its median level inside the event is this
      many dB above its median level in the context; ``min_bands`` such bands are needed to
      refine at all. Each band is weighted by its rise above the background.
    * ``level``: the boundary is where the event's bands reach this fraction of their level
      inside the event (90th percentile of the rise, in dB above background).
    * ``min_rise_db``: events rising less than this above the background are left as they are.
    * ``search_before`` / ``search_after``: how far (seconds) the onset may move earlier and
      the offset later; ``search_inside``: how far either may move into the event.
    * ``smoothing``: seconds of moving average on the 10 ms activity curve.
    """

    refine: bool = True
    context: float = 3.0
    background_percentile: float = 20.0
    band_db: float = 1.0
    min_bands: int = 3
    level: float = 0.5
    min_rise_db: float = 3.0
    search_before: float = 0.3
    search_after: float = 0.0
    search_inside: float = 1.0
    smoothing: float = 0.05

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad value."""
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"refine level must be in (0, 1), got {self.level}")
        for name in (
            "context",
            "search_before",
            "search_after",
            "search_inside",
            "smoothing",
            "min_rise_db",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"refine {name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.background_percentile < 100.0:
            raise ValueError("refine background_percentile must be in [0, 100)")
        if self.min_bands < 1:
            raise ValueError("refine min_bands must be at least 1")


class BandEnvelope:
    """Log mel-band energies (dB) of 32 kHz audio, computed chunk by chunk as audio streams.

    Frame ``k`` covers samples ``[k * hop - window / 2, k * hop + window / 2)`` (zero before the
    start), so its time is ``k * hop / 32000`` seconds. Use :meth:`tap` to compute it on the way
    through an iterator of chunks, or :meth:`of` for a whole array.

    Memory stays flat with the length of the audio: past :data:`SPILL_BYTES` (about 11 minutes
    of audio) the frames go to an anonymous temporary file, from which :meth:`frames` reads
    only the stretch asked for. :meth:`close` (or garbage collection) removes it.
    """

    def __init__(self) -> None:
        self.hop_seconds = ENVELOPE_HOP / SAMPLE_RATE
        self._window = np.hanning(ENVELOPE_WINDOW + 2)[1:-1].astype(np.float32)
        bank = mel_filterbank(ENVELOPE_BANDS, ENVELOPE_FFT, SAMPLE_RATE, 0.0, ENVELOPE_FMAX)
        self._bank = np.ascontiguousarray(bank.T)  # (bins, bands)
        self._pending = np.zeros(ENVELOPE_WINDOW // 2, dtype=np.float32)  # centred frames
        self._blocks: list[np.ndarray] = []
        self._held = 0  # bytes in _blocks
        self._spill: IO[bytes] | None = None
        self._n_samples = 0
        self._n_frames = 0
        self._db: np.ndarray | None = None  # all frames, when they are all in memory
        self._finished = False
        self.seconds = 0.0
        """Seconds spent computing the envelope (a stage of ``detect``'s timing)."""

    @classmethod
    def of(cls, waveform: np.ndarray) -> BandEnvelope:
        """The envelope of a whole mono 32 kHz waveform."""
        env = cls()
        env.update(waveform)
        return env.finish()

    @classmethod
    def from_levels(cls, db: np.ndarray) -> BandEnvelope:
        """An envelope from saved band levels (``(frames, 64)``, as :attr:`db` gives them)."""
        db = np.asarray(db, dtype=np.float16)
        if db.ndim != 2 or db.shape[1] != ENVELOPE_BANDS:
            raise ValueError(f"band levels must be (frames, {ENVELOPE_BANDS}), got {db.shape}")
        env = cls()
        env._db, env._n_frames, env._finished = db, len(db), True
        return env

    def tap(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Yield ``chunks`` unchanged, adding each to the envelope (finished at the end)."""
        for chunk in chunks:
            started = time.perf_counter()
            self.update(chunk)
            self.seconds += time.perf_counter() - started
            yield chunk
        started = time.perf_counter()
        self.finish()
        self.seconds += time.perf_counter() - started

    def update(self, chunk: np.ndarray) -> None:
        """Add the next samples (mono float, 32 kHz)."""
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self._n_samples += len(chunk)
        buf = np.concatenate([self._pending, chunk])
        n = 0 if len(buf) < ENVELOPE_WINDOW else 1 + (len(buf) - ENVELOPE_WINDOW) // ENVELOPE_HOP
        if n:
            frames = np.lib.stride_tricks.sliding_window_view(buf, ENVELOPE_WINDOW)[
                : n * ENVELOPE_HOP : ENVELOPE_HOP
            ]
            self._add(self._bands(frames))
        self._pending = buf[n * ENVELOPE_HOP :]

    def finish(self) -> BandEnvelope:
        """Flush the last frames (zero-padded at the end). Idempotent."""
        if self._finished:
            return self
        n_total = -(-self._n_samples // ENVELOPE_HOP)  # one frame per started hop
        if n_total > self._n_frames:
            tail = np.concatenate([self._pending, np.zeros(ENVELOPE_WINDOW, dtype=np.float32)])
            frames = np.lib.stride_tricks.sliding_window_view(tail, ENVELOPE_WINDOW)[
                : (n_total - self._n_frames) * ENVELOPE_HOP : ENVELOPE_HOP
            ]
            self._add(self._bands(frames))
        if self._spill is not None:
            self._flush()
        else:
            self._db = (
                np.concatenate(self._blocks)
                if self._blocks
                else np.zeros((0, ENVELOPE_BANDS), dtype=np.float16)
            )
        self._blocks, self._held = [], 0
        self._pending = np.zeros(0, dtype=np.float32)
        self._finished = True
        return self

    def drain(self) -> np.ndarray:
        """The frames computed since the last call, ``(n, 64)`` float16 dB, handed over and no
        longer kept: for an endless stream, whose caller keeps only the stretch it needs.
        (An envelope that is drained is never finished or read with :meth:`frames`.)"""
        if self._spill is not None or self._finished:
            raise RuntimeError("drain() is for an envelope that is only ever drained")
        blocks, self._blocks, self._held = self._blocks, [], 0
        if not blocks:
            return np.zeros((0, ENVELOPE_BANDS), dtype=np.float16)
        return np.concatenate(blocks)

    def __len__(self) -> int:
        return self._n_frames

    @property
    def spilled(self) -> bool:
        """Whether the frames are in a temporary file rather than in memory."""
        return self._spill is not None

    def frames(self, start: int, stop: int, bands_first: bool = False) -> np.ndarray:
        """Frames ``[start, stop)`` (clipped to the envelope) as float32 dB, ``(n, 64)``, or
        ``(64, n)`` (C-contiguous) with ``bands_first``."""
        if not self._finished:
            raise RuntimeError("BandEnvelope.finish() has not been called")
        start, stop = max(start, 0), min(stop, self._n_frames)
        shape = (ENVELOPE_BANDS, 0) if bands_first else (0, ENVELOPE_BANDS)
        if stop <= start:
            return np.zeros(shape, dtype=np.float32)
        if self._spill is None:
            assert self._db is not None
            rows = self._db[start:stop]
        else:
            row = ENVELOPE_BANDS * 2
            self._spill.seek(start * row)
            data = self._spill.read((stop - start) * row)
            rows = np.frombuffer(data, dtype=np.float16).reshape(-1, ENVELOPE_BANDS)
        if bands_first:  # transposed and converted in one pass
            return np.asarray(rows.T, dtype=np.float32, order="C")
        return rows.astype(np.float32)

    @property
    def db(self) -> np.ndarray:
        """All ``(frames, 64)`` band levels in dB, float16 (read back if spilled to disk)."""
        if not self._finished:
            raise RuntimeError("BandEnvelope.finish() has not been called")
        if self._db is not None:
            return self._db
        return self.frames(0, self._n_frames).astype(np.float16)

    def close(self) -> None:
        """Remove the temporary file, if any (the envelope cannot be read afterwards)."""
        if self._spill is not None:
            self._spill.close()

    def __del__(self) -> None:
        spill = getattr(self, "_spill", None)
        if spill is not None:
            spill.close()

    def _add(self, block: np.ndarray) -> None:
        self._blocks.append(block)
        self._n_frames += len(block)
        self._held += block.nbytes
        if self._held > SPILL_BYTES:
            if self._spill is None:
                # lives as long as the envelope; closed by close() or when collected
                self._spill = tempfile.TemporaryFile(prefix="earmark-envelope-")  # noqa: SIM115
            self._flush()

    def _flush(self) -> None:
        assert self._spill is not None
        self._spill.seek(0, os.SEEK_END)
        for block in self._blocks:
            self._spill.write(np.ascontiguousarray(block, dtype=np.float16).tobytes())
        self._spill.flush()
        self._blocks, self._held = [], 0

    def _bands(self, frames: np.ndarray) -> np.ndarray:
        # float32 FFT (scipy keeps single precision: twice as fast as numpy's float64 one)
        spectrum = scipy.fft.rfft(frames * self._window, n=ENVELOPE_FFT, axis=1)
        power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32) @ self._bank
        return np.maximum(10.0 * np.log10(power + 1e-10), _FLOOR_DB).astype(np.float16)


def refine_events(
    events: Sequence[Event],
    envelope: BandEnvelope,
    options: RefineOptions | None = None,
    duration: float | None = None,
) -> list[Event]:
    """Events of one file with onsets and offsets moved to where their sound starts and ends.

    Labels and confidences are kept and events stay sorted by onset, then label. An event whose
    sound does not stand out from its background keeps its boundaries. Same-label events that
    come to overlap are joined.
    """
    options = options or RefineOptions()
    if not len(events) or not len(envelope):
        return list(events)
    hop = envelope.hop_seconds
    end = duration if duration is not None else len(envelope) * hop
    refined = [_refine_one(ev, envelope, options, end) for ev in events]
    return join_overlaps(refined)


MIN_OUTSIDE = 0.5
"""Seconds of audio around an event (within ``context``) needed to estimate its background."""
LONG_EVENT = 30.0
"""Seconds; a longer event's onset and offset are refined each on its own 30 s stretch, so the
work and memory per event stay bounded (a TV on for an hour is one event)."""


def _refine_one(ev: Event, env: BandEnvelope, opt: RefineOptions, end: float) -> Event:
    hop = env.hop_seconds
    on, off = max(round(ev.onset / hop), 0), min(round(ev.offset / hop), len(env))
    if off - on < 3:
        return ev
    ctx, long = round(opt.context / hop), round(LONG_EVENT / hop)
    if off - on <= long:
        lo = max(0, on - ctx)
        found = _boundaries(env.frames(lo, off + ctx, True), on - lo, off - lo, opt, hop)
        if found is None:
            return ev
        new_on, new_off = found[0] + lo, found[1] + lo
    else:
        lo = max(0, on - ctx)
        head = _boundaries(
            env.frames(lo, on + long // 2, True), on - lo, on + long // 2 - lo, opt, hop
        )
        lo_tail = off - long // 2
        tail = _boundaries(env.frames(lo_tail, off + ctx, True), 0, off - lo_tail, opt, hop)
        new_on = on if head is None else head[0] + lo
        new_off = off if tail is None else tail[1] + lo_tail
    onset, offset = float(new_on * hop), float(min(new_off * hop, end))
    if offset - onset < 2 * opt.smoothing or (new_on, new_off) == (on, off):
        return ev
    return dataclasses.replace(ev, onset=round(onset, 3), offset=round(offset, 3))


def _boundaries(
    bands: np.ndarray, on: int, off: int, opt: RefineOptions, hop: float
) -> tuple[int, int] | None:
    """New ``(onset, offset)`` frame indices within ``bands`` (the envelope's ``(64, n)``
    stretch around an event, time contiguous: sorting and smoothing along time run several
    times faster than across) for an event at ``[on, off)``, or ``None`` when its sound does
    not stand out from the background."""
    # smooth each band over ``smoothing`` first: single 10 ms frames of noise fluctuate by
    # several dB (few FFT bins per low band), which would pass for a rise
    width = max(round(opt.smoothing / hop), 1)
    bands = uniform_filter1d(bands, width, axis=1, mode="nearest")
    outside = np.concatenate([bands[:, :on], bands[:, off:]], axis=1)
    if outside.shape[1] < MIN_OUTSIDE / hop:
        return None
    # a band is the event's when its typical level inside beats the typical level around it
    # (medians: robust to the background's own fluctuation); its weight is the rise above the
    # background's quiet moments
    outside.sort(axis=1)
    background, typical = sorted_percentiles(outside, (opt.background_percentile, 50.0))
    (inside,) = sorted_percentiles(np.sort(bands[:, on:off], axis=1), (50.0,))
    rise = inside - background
    weights = np.where(inside - typical > opt.band_db, rise, 0.0)
    if np.count_nonzero(weights) < opt.min_bands:
        return None
    activity = (weights / weights.sum()) @ (bands - background[:, None])
    level = np.percentile(activity[on:off], 90)
    if level < opt.min_rise_db:
        return None
    above = activity >= opt.level * level
    before, after = round(opt.search_before / hop), round(opt.search_after / hop)
    inward = round(opt.search_inside / hop)
    start, stop = max(on - before, 0), min(off, on + inward)
    hits = np.flatnonzero(above[start:stop])
    new_on = start + int(hits[0]) if len(hits) else on
    start, stop = max(new_on, off - inward), min(len(activity), off + after)
    hits = np.flatnonzero(above[start:stop])
    new_off = start + int(hits[-1]) + 1 if len(hits) else off
    return new_on, new_off


def sorted_percentiles(rows: np.ndarray, percents: Sequence[float]) -> list[np.ndarray]:
    """Percentiles of each row of ``rows``, already sorted along its last axis, as
    :func:`numpy.percentile`'s default (linear) method computes them, without its partition
    (a full sort of short rows is several times faster than partitioning them again)."""
    n = rows.shape[-1]
    out = []
    for q in percents:
        position = q / 100.0 * (n - 1)
        lo = int(np.floor(position))
        hi = min(lo + 1, n - 1)
        t = position - lo
        a, b = rows[..., lo], rows[..., hi]
        # numpy's _lerp: exact at both ends
        out.append(b - (b - a) * (1.0 - t) if t >= 0.5 else a + (b - a) * t)
    return out


def join_overlaps(events: list[Event]) -> list[Event]:
    """Join same-label events that overlap after refinement (max peak, duration-weighted mean)."""
    out: list[Event] = []
    last: dict[str, int] = {}
    for ev in sorted(events, key=lambda e: (e.onset, e.label)):
        k = last.get(ev.label)
        if k is not None and ev.onset <= out[k].offset:
            prev = out[k]
            a, b = prev.offset - prev.onset, ev.offset - ev.onset
            mean = (prev.mean * a + ev.mean * b) / max(a + b, 1e-9)
            out[k] = dataclasses.replace(
                prev, offset=max(prev.offset, ev.offset), peak=max(prev.peak, ev.peak), mean=mean
            )
            continue
        last[ev.label] = len(out)
        out.append(ev)
    return out
