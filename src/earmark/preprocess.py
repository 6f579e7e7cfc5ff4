"""Optional preprocessing of the decoded audio before the model: high-pass, denoising, loudness.

The chain works on the stream of float32 mono 32 kHz chunks that :class:`earmark.audio.AudioReader`
yields, so memory stays bounded on long files, and is applied in this order:

1. ``highpass`` (Hz): 4th-order Butterworth high-pass (rumble, handling noise, DC).
2. ``denoise``: ``spectral-gate`` (bins below the noise estimate + 6 dB are attenuated by 15 dB,
   gate smoothed over time and frequency) or ``wiener`` (Wiener gain from the a-priori SNR,
   floor -15 dB). The noise spectrum of each 10 s chunk is estimated from its quiet frames
   (the 20th percentile of each bin, corrected to a mean) and smoothed from chunk to chunk.
   Chunks are processed with 1024 samples of context on each side (one chunk of look-ahead),
   so there are no seams where chunks meet.
3. ``normalize`` (LUFS): a gain that brings the integrated loudness (BS.1770) of the processed
   audio to the target. The loudness is measured in a first decoding pass over the file.

:class:`FileAnalysis` wires the chain between the decoder and the model in ``earmark detect`` and
measures the signal before (and, when the chain changes anything, after) processing with
:class:`earmark.signal_stats.LevelMeter`; the report shows both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter
from scipy.signal import butter, sosfilt, sosfilt_zi

from earmark.audio import SAMPLE_RATE, AudioReader
from earmark.signal_stats import SIGNAL_SUFFIX, LevelMeter, SignalStats, write_signal

DENOISE_METHODS = ("none", "spectral-gate", "wiener")
STFT_SIZE = 1024
STFT_HOP = 256
CONTEXT = STFT_SIZE
"""Samples of neighbouring chunks each chunk is processed with (multiple of the hop)."""
NOISE_PERCENTILE = 20.0
NOISE_BIAS = 1.0 / -math.log(1.0 - NOISE_PERCENTILE / 100.0)
"""The p-th percentile of exponentially distributed (periodogram) powers is -ln(1-p) x mean."""
GATE_DB = 6.0
REDUCTION_DB = 15.0
MAX_GAIN_DB = 40.0


@dataclass(frozen=True)
class PreprocessOptions:
    """What to do to the decoded audio before the model (default: nothing).

    * ``denoise``: ``"none"``, ``"spectral-gate"`` or ``"wiener"``.
    * ``normalize``: target integrated loudness in LUFS (e.g. -23), or ``None``.
    * ``highpass``: cut-off of a high-pass filter in Hz, or ``None``.
    """

    denoise: str = "none"
    normalize: float | None = None
    highpass: float | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad value."""
        if self.denoise not in DENOISE_METHODS:
            raise ValueError(f"denoise must be one of {', '.join(DENOISE_METHODS)}")
        if self.normalize is not None and not -70.0 <= self.normalize <= 0.0:
            raise ValueError(f"normalize target must be in [-70, 0] LUFS, got {self.normalize}")
        if self.highpass is not None and not 0.0 < self.highpass < SAMPLE_RATE / 2:
            raise ValueError(f"highpass must be in (0, {SAMPLE_RATE // 2}) Hz, got {self.highpass}")

    @property
    def active(self) -> bool:
        """Whether the chain changes the audio at all."""
        return self.denoise != "none" or self.normalize is not None or self.highpass is not None

    def describe(self) -> str:
        """One line for people, e.g. ``"high-pass 80 Hz, spectral-gate denoising"``."""
        steps = []
        if self.highpass is not None:
            steps.append(f"high-pass {self.highpass:g} Hz (Butterworth, 4th order)")
        if self.denoise != "none":
            steps.append(f"{self.denoise} denoising")
        if self.normalize is not None:
            steps.append(f"loudness normalised to {self.normalize:g} LUFS")
        return ", ".join(steps) if steps else "none"


# ---------------------------------------------------------------------------- the steps
def highpass(chunks: Iterable[np.ndarray], cutoff: float) -> Iterator[np.ndarray]:
    """4th-order Butterworth high-pass over a stream of chunks (filter state carried across)."""
    sos = butter(4, cutoff, btype="highpass", fs=SAMPLE_RATE, output="sos")
    zi = None
    for chunk in chunks:
        x = np.asarray(chunk, dtype=np.float64)
        if zi is None:
            zi = sosfilt_zi(sos) * (x[0] if x.size else 0.0)
        y, zi = sosfilt(sos, x, zi=zi)
        yield y.astype(np.float32)


def _stft(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    n = 1 + (x.size - STFT_SIZE) // STFT_HOP
    frames = np.lib.stride_tricks.sliding_window_view(x, STFT_SIZE)[: n * STFT_HOP : STFT_HOP]
    return np.fft.rfft(frames * window, axis=1)


def _istft(spec: np.ndarray, window: np.ndarray, length: int) -> np.ndarray:
    frames = np.fft.irfft(spec, n=STFT_SIZE, axis=1) * window
    out = np.zeros(length)
    norm = np.zeros(length)
    for i, frame in enumerate(frames):
        start = i * STFT_HOP
        out[start : start + STFT_SIZE] += frame
        norm[start : start + STFT_SIZE] += window**2
    return out / np.maximum(norm, 1e-8)


class Denoiser:
    """Spectral gating or Wiener filtering of a chunk stream, with a smoothed noise estimate."""

    def __init__(self, method: str) -> None:
        if method not in ("spectral-gate", "wiener"):
            raise ValueError(f"unknown denoise method {method!r}")
        self.method = method
        self.window = np.hanning(STFT_SIZE + 1)[:-1]
        self.noise: np.ndarray | None = None

    def _gains(self, power: np.ndarray) -> np.ndarray:
        estimate = np.percentile(power, NOISE_PERCENTILE, axis=0) * NOISE_BIAS
        estimate = np.maximum(estimate, 1e-20)
        self.noise = estimate if self.noise is None else np.sqrt(self.noise * estimate)
        noise = self.noise[None, :]
        floor = 10 ** (-REDUCTION_DB / 20)
        smooth = uniform_filter(power, size=(3, 3), mode="nearest")
        if self.method == "spectral-gate":
            open_ = (smooth > noise * 10 ** (GATE_DB / 10)).astype(np.float64)
            gate = uniform_filter(open_, size=(5, 5), mode="nearest")
            return floor + (1.0 - floor) * gate
        snr = np.maximum(smooth / noise - 1.0, 0.0)
        return np.maximum(snr / (1.0 + snr), floor)

    def process(self, segment: np.ndarray, start: int, length: int) -> np.ndarray:
        """Denoise ``segment`` and return its samples ``[start, start + length)``."""
        pad_end = (-(segment.size - STFT_SIZE)) % STFT_HOP if segment.size > STFT_SIZE else 0
        x = np.concatenate([segment.astype(np.float64), np.zeros(pad_end)])
        if x.size < STFT_SIZE:
            x = np.concatenate([x, np.zeros(STFT_SIZE - x.size)])
        spec = _stft(x, self.window)
        gains = self._gains(np.abs(spec) ** 2)
        y = _istft(spec * gains, self.window, x.size)
        return y[start : start + length].astype(np.float32)

    def stream(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Denoise a stream of chunks; each chunk is processed once the next one is known."""
        previous_tail = np.zeros(CONTEXT, dtype=np.float32)
        current: np.ndarray | None = None
        for chunk in chunks:
            chunk = np.asarray(chunk, dtype=np.float32)
            if current is not None:
                yield self._one(previous_tail, current, chunk[:CONTEXT])
                previous_tail = np.concatenate([previous_tail, current])[-CONTEXT:]
            current = chunk
        if current is not None:
            yield self._one(previous_tail, current, np.zeros(CONTEXT, dtype=np.float32))

    def _one(self, left: np.ndarray, current: np.ndarray, right: np.ndarray) -> np.ndarray:
        right = np.concatenate([right, np.zeros(CONTEXT - right.size, dtype=np.float32)])
        segment = np.concatenate([left, current, right])
        return self.process(segment, left.size, current.size)


def gain(chunks: Iterable[np.ndarray], db: float) -> Iterator[np.ndarray]:
    """Multiply every chunk by ``db`` decibels."""
    factor = np.float32(10 ** (db / 20))
    for chunk in chunks:
        yield np.asarray(chunk, dtype=np.float32) * factor


def apply(
    chunks: Iterable[np.ndarray], options: PreprocessOptions, gain_db: float = 0.0
) -> Iterator[np.ndarray]:
    """The chain (high-pass, denoise, then ``gain_db``) over a stream of 32 kHz mono chunks."""
    stream: Iterable[np.ndarray] = chunks
    if options.highpass is not None:
        stream = highpass(stream, options.highpass)
    if options.denoise != "none":
        stream = Denoiser(options.denoise).stream(stream)
    if gain_db:
        stream = gain(stream, gain_db)
    yield from stream


def preprocess_waveform(
    waveform: np.ndarray, options: PreprocessOptions, chunk_seconds: float = 10.0
) -> np.ndarray:
    """Apply the whole chain, normalisation included, to a mono 32 kHz array."""
    options.validate()
    step = max(STFT_HOP, round(chunk_seconds * SAMPLE_RATE) // STFT_HOP * STFT_HOP)

    def chunks() -> Iterator[np.ndarray]:
        for start in range(0, waveform.size, step):
            yield np.asarray(waveform[start : start + step], dtype=np.float32)

    gain_db = 0.0
    if options.normalize is not None:
        meter = LevelMeter(spectrogram=False)
        for piece in apply(chunks(), options):
            meter.update(piece)
        gain_db = normalisation_gain(meter.finish().loudness_lufs, options.normalize)
    pieces = list(apply(chunks(), options, gain_db))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def normalisation_gain(loudness: float, target: float) -> float:
    """Gain in dB from ``loudness`` to ``target`` LUFS (0 for silence; at most +-40 dB)."""
    if not math.isfinite(loudness):
        return 0.0
    return float(np.clip(target - loudness, -MAX_GAIN_DB, MAX_GAIN_DB))


# ---------------------------------------------------------------------------- in the pipeline
class FileAnalysis:
    """Signal statistics and preprocessing of one file between the decoder and the model.

    ``wrap`` is given the decoder's chunks and returns what the model should see: the chunks are
    measured as decoded (:attr:`before`), passed through the preprocessing chain, and measured
    again when the chain changes them (:attr:`after`). With ``normalize``, ``open_again`` is
    called to decode the file a first time and measure its loudness after the rest of the chain.
    """

    def __init__(
        self,
        options: PreprocessOptions,
        open_again: Callable[[], AudioReader] | None = None,
    ) -> None:
        self.options = options
        self.open_again = open_again
        self.gain_db = 0.0
        self._before = LevelMeter()
        self._after = LevelMeter(spectrogram=False) if options.active else None

    def wrap(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Measure, preprocess and measure again; yields what the model sees."""
        if self.options.normalize is not None and self.open_again is not None:
            meter = LevelMeter(spectrogram=False)
            with self.open_again() as reader:
                for piece in apply(reader, self.options):
                    meter.update(piece)
            self.gain_db = normalisation_gain(meter.finish().loudness_lufs, self.options.normalize)
        stream = apply(self._before.tap(chunks), self.options, self.gain_db)
        if self._after is not None:
            stream = self._after.tap(stream)
        yield from stream

    @property
    def before(self) -> SignalStats:
        """Statistics of the decoded audio."""
        return self._before.finish()

    @property
    def after(self) -> SignalStats | None:
        """Statistics of the preprocessed audio (``None`` without preprocessing)."""
        return self._after.finish() if self._after is not None else None

    def manifest_entry(self) -> dict:
        """Scalar levels for the run manifest."""
        entry: dict = {"signal": self.before.summary()}
        if self.after is not None:
            entry["preprocess"] = {
                **asdict(self.options),
                "gain_db": round(self.gain_db, 2),
                "signal_after": self.after.summary(),
            }
        return entry

    def write(self, stem: Path) -> Path:
        """Save the decoded audio's series and spectrogram as ``<stem>.signal.npz``."""
        path = stem.parent / f"{stem.name}{SIGNAL_SUFFIX}"
        write_signal(path, self.before)
        return path
