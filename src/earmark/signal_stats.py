"""Signal statistics of a recording, measured while it streams past: levels, noise, spectrum.

:class:`LevelMeter` sees the decoded audio (float32 mono at 32 kHz, the signal the model hears)
chunk by chunk, with memory that grows only by a compact summary per 100 ms block and per 32 ms
frame, and produces a :class:`SignalStats`:

* **levels**: sample peak (dBFS), RMS (dBFS) and integrated loudness (LUFS, ITU-R BS.1770-4:
  K-weighting, 400 ms blocks with 75 % overlap, absolute gate -70 LUFS, relative gate -10 LU) of
  the mono downmix;
* **noise floor and SNR**: the 10th percentile of the 100 ms block RMS levels (digital silence
  excluded) is the noise floor, the 95th percentile the active level, their difference the SNR;
* **DC offset**: the mean sample value;
* **clipping**: the share of samples piled up at the file's maximum level (a clipped signal's
  amplitude histogram has a spike at the clip level; resampling smears it by a few percent);
* **digital silence**: 100 ms blocks whose peak is below one 16-bit step (-90 dBFS);
* **bandwidth**: the mean power spectrum, the highest frequency with content, and how steeply the
  spectrum falls there (a codec or resampler cut-off is a cliff, natural roll-off is a slope);
* **log-mel spectrogram** (64 bands, 32 ms hop, float16) for pictures and for finding energy no
  class explains.

The block series and the spectrogram are saved next to the run's other per-file outputs by
:func:`write_signal`; the scalar summary goes into the run manifest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import scipy.fft
from scipy.signal import sosfilt

from earmark.constants import SAMPLE_RATE
from earmark.outputs import atomic_path

BLOCK_SECONDS = 0.1
"""Resolution of the level series (and the step of the 400 ms loudness blocks)."""
SPEC_FFT = 2048
SPEC_HOP = 1024
"""Spectrogram frames: 64 ms Hann windows every 32 ms."""
SPEC_BANDS = 64
SPEC_FMIN = 30.0
SPEC_FMAX = 16000.0
SILENCE_PEAK = 2.0**-15
"""A block whose peak stays below one 16-bit step is digital silence (-90.3 dBFS)."""
HIST_BINS = 4000
HIST_MAX = 2.0
FLOOR_DB = -120.0
SIGNAL_SUFFIX = ".signal.npz"


def db(power: np.ndarray | float, floor: float = FLOOR_DB) -> np.ndarray | float:
    """10 log10 of a power (mean square), floored at ``floor`` dB."""
    value = 10.0 * np.log10(np.maximum(np.asarray(power, dtype=np.float64), 1e-30))
    out = np.maximum(value, floor)
    return float(out) if np.ndim(out) == 0 else out


def k_weighting(sample_rate: int = SAMPLE_RATE) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two BS.1770 K-weighting biquads (high shelf, then high-pass) for ``sample_rate``.

    Designed from the analogue prototype parameters of BS.1770 (shelf +4 dB at 1682 Hz, Q 0.7072;
    high-pass at 38.1 Hz, Q 0.5003) with the bilinear transform, so that any rate works; at
    48 kHz they equal the coefficients printed in the standard to 1e-8.
    """
    gain_db, q_shelf, f_shelf = 3.999843853973347, 0.7071752369554196, 1681.974450955533
    q_hp, f_hp = 0.5003270373238773, 38.13547087602444
    k = math.tan(math.pi * f_shelf / sample_rate)
    vh = 10 ** (gain_db / 20)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q_shelf + k * k
    shelf_b = (
        np.array(
            [(vh + vb * k / q_shelf + k * k), 2 * (k * k - vh), (vh - vb * k / q_shelf + k * k)]
        )
        / a0
    )
    shelf_a = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q_shelf + k * k) / a0])
    k = math.tan(math.pi * f_hp / sample_rate)
    a0 = 1.0 + k / q_hp + k * k
    hp_b = np.array([1.0, -2.0, 1.0])
    hp_a = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q_hp + k * k) / a0])
    return [(shelf_b, shelf_a), (hp_b, hp_a)]


def integrated_loudness(kweighted_block_ms: np.ndarray) -> float:
    """BS.1770 gated loudness (LUFS) from K-weighted mean squares of consecutive 100 ms blocks.

    400 ms gating blocks with 75 % overlap are the means of 4 consecutive 100 ms blocks. Returns
    ``-inf`` when no block passes the absolute gate (silence).
    """
    ms = np.asarray(kweighted_block_ms, dtype=np.float64)
    if ms.size < 4:
        blocks = np.array([ms.mean()]) if ms.size else np.zeros(0)
    else:
        blocks = np.convolve(ms, np.ones(4) / 4, mode="valid")
    loud = -0.691 + 10 * np.log10(np.maximum(blocks, 1e-30))
    gated = blocks[loud > -70.0]
    if gated.size == 0:
        return -math.inf
    relative = -0.691 + 10 * math.log10(gated.mean()) - 10.0
    gated = blocks[(loud > -70.0) & (loud > relative)]
    return float(-0.691 + 10 * math.log10(gated.mean()))


@dataclass
class SignalStats:
    """Levels and spectrum of one recording (see the module docstring for each measure).

    Levels are in dBFS (full scale = 1.0) and LUFS; ``-inf`` levels are stored as ``None`` in
    :meth:`summary`. Series: ``block_*`` every :data:`BLOCK_SECONDS`, ``mel_db`` every
    ``SPEC_HOP / 32000`` s.
    """

    duration: float
    sample_rate: int
    peak_dbfs: float
    rms_dbfs: float
    loudness_lufs: float
    noise_floor_dbfs: float
    active_level_dbfs: float
    snr_db: float
    dc_offset: float
    clip_level: float
    clipped_fraction: float
    full_scale_samples: int
    silence_seconds: float
    bandwidth_hz: float
    cutoff_drop_db: float
    noise_flatness: float
    block_rms_db: np.ndarray = field(repr=False)
    block_peak: np.ndarray = field(repr=False)
    block_dc: np.ndarray = field(repr=False)
    block_clipped: np.ndarray = field(repr=False)
    mel_db: np.ndarray = field(repr=False)
    spectrum_db: np.ndarray = field(repr=False)
    noise_spectrum_db: np.ndarray = field(repr=False)

    @property
    def block_seconds(self) -> float:
        """Seconds per block of the level series."""
        return BLOCK_SECONDS

    @property
    def mel_hop(self) -> float:
        """Seconds per spectrogram frame."""
        return SPEC_HOP / self.sample_rate

    @property
    def silent_blocks(self) -> np.ndarray:
        """Boolean mask of the blocks that are digital silence."""
        return self.block_peak < SILENCE_PEAK

    def summary(self) -> dict:
        """The scalar measures, JSON-ready (rounded; ``None`` for -inf)."""
        out = {}
        for key, value in asdict(self).items():
            if isinstance(value, np.ndarray):
                continue
            if isinstance(value, float):
                value = (
                    None
                    if not math.isfinite(value)
                    else round(value, 6 if "dc" in key or "fraction" in key else 2)
                )
            out[key] = value
        return out


class LevelMeter:
    """Measure :class:`SignalStats` of float32 mono 32 kHz audio fed chunk by chunk.

    Use :meth:`tap` around an iterator of chunks (the chunks pass through unchanged), or
    :meth:`update` then :meth:`finish`; :meth:`of` measures a whole array.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, spectrogram: bool = True) -> None:
        self.sample_rate = sample_rate
        self.block = round(BLOCK_SECONDS * sample_rate)
        self._spectrogram = spectrogram
        self._sos = np.array([np.concatenate([b, a]) for b, a in k_weighting(sample_rate)])
        self._zi: np.ndarray | None = None
        self._pending = np.zeros(0, dtype=np.float32)
        self._spec_pending = np.zeros(SPEC_FFT // 2, dtype=np.float32)  # centred frames
        self._window = np.hanning(SPEC_FFT + 1)[:-1].astype(np.float32)
        self._power_scale = np.float32(2.0 / (self._window.astype(np.float64) ** 2).sum())
        from earmark.mel import mel_filterbank

        self._bank = np.ascontiguousarray(
            mel_filterbank(SPEC_BANDS, SPEC_FFT, sample_rate, SPEC_FMIN, SPEC_FMAX).T
        )
        self._power_sum = np.zeros(SPEC_FFT // 2 + 1)
        self._n_frames = 0
        self._n_power = 0
        self._mel: list[np.ndarray] = []
        self._hist = np.zeros(HIST_BINS + 1, dtype=np.int64)
        self._rms: list[np.ndarray] = []
        self._kms: list[np.ndarray] = []
        self._peak: list[np.ndarray] = []
        self._dc: list[np.ndarray] = []
        self._n = 0
        self._sum = 0.0
        self._sumsq = 0.0
        self._full_scale = 0
        self._result: SignalStats | None = None

    @classmethod
    def of(cls, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> SignalStats:
        """Statistics of a whole mono waveform."""
        meter = cls(sample_rate)
        meter.update(waveform)
        return meter.finish()

    def finish_stream(self, chunks: Iterable[np.ndarray]) -> SignalStats:
        """Measure every chunk of ``chunks`` (e.g. an AudioReader) and finish."""
        for chunk in chunks:
            self.update(chunk)
        return self.finish()

    def tap(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Yield ``chunks`` unchanged, measuring each (finished at the end)."""
        for chunk in chunks:
            self.update(chunk)
            yield chunk
        self.finish()

    def update(self, chunk: np.ndarray) -> None:
        """Add the next samples."""
        x = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return
        self._n += x.size
        self._sum += float(x.sum(dtype=np.float64))
        self._sumsq += float(np.dot(x, x))
        ax = np.abs(x)
        self._full_scale += int(np.count_nonzero(ax >= 0.999))
        ax *= HIST_BINS / HIST_MAX
        idx = np.minimum(ax, HIST_BINS).astype(np.int32)
        self._hist += np.bincount(idx, minlength=HIST_BINS + 1)
        self._blocks(x)
        if self._spectrogram:
            self._frames(x)

    def _kweight(self, x: np.ndarray) -> np.ndarray:
        if self._zi is None:
            self._zi = np.zeros((2, 2))
        y, self._zi = sosfilt(self._sos, x, zi=self._zi)
        return y

    def _blocks(self, x: np.ndarray) -> None:
        buf = np.concatenate([self._pending, x])
        n = buf.size // self.block
        if n:
            blocks = buf[: n * self.block].reshape(n, self.block)
            self._add_blocks(blocks)
        self._pending = buf[n * self.block :]

    def _add_blocks(self, blocks: np.ndarray) -> None:
        dc = blocks.mean(axis=1, dtype=np.float64)
        ms = np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64) / blocks.shape[1]
        self._rms.append(np.maximum(ms - dc**2, 0.0))  # AC level: the DC offset is reported apart
        weighted = self._kweight(blocks.reshape(-1)).reshape(blocks.shape)
        self._kms.append(np.einsum("ij,ij->i", weighted, weighted) / blocks.shape[1])
        self._peak.append(np.maximum(blocks.max(axis=1), -blocks.min(axis=1)))
        self._dc.append(dc)

    def _frames(self, x: np.ndarray, padding: bool = False) -> None:
        buf = np.concatenate([self._spec_pending, x])
        n = 0 if buf.size < SPEC_FFT else 1 + (buf.size - SPEC_FFT) // SPEC_HOP
        if n:
            frames = np.lib.stride_tricks.sliding_window_view(buf, SPEC_FFT)[
                : n * SPEC_HOP : SPEC_HOP
            ]
            spec = scipy.fft.rfft(frames * self._window, axis=1)
            power = spec.real**2
            power += spec.imag**2
            power *= self._power_scale
            # the mean spectrum skips frames that hang over either end (the zeros make a click)
            first = 1 if self._n_frames == 0 else 0
            if not padding and n > first:
                self._power_sum += power[first:].sum(axis=0)
                self._n_power += n - first
            self._n_frames += n
            self._mel.append(cast(np.ndarray, db(power @ self._bank)).astype(np.float16))
        self._spec_pending = buf[n * SPEC_HOP :]

    def finish(self) -> SignalStats:
        """Flush the last partial block and frames and compute the statistics. Idempotent."""
        if self._result is not None:
            return self._result
        if self._pending.size:
            self._add_blocks(self._pending[None, :])
            self._pending = np.zeros(0, dtype=np.float32)
        if self._spectrogram and self._n:
            # frames are centred: pad the end so every started hop gets a frame
            expected = -(-self._n // SPEC_HOP)
            missing = expected - self._n_frames
            if missing > 0:
                self._frames(np.zeros(SPEC_FFT // 2 + SPEC_HOP, dtype=np.float32), padding=True)
                # keep exactly one frame per started hop
                mel = np.concatenate(self._mel) if self._mel else np.zeros((0, SPEC_BANDS))
                self._mel = [mel[:expected].astype(np.float16, copy=False)]
        self._result = self._compute()
        return self._result

    def _compute(self) -> SignalStats:
        cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0)  # noqa: E731
        ms, kms, peak, dc = cat(self._rms), cat(self._kms), cat(self._peak), cat(self._dc)
        rms_db = np.asarray(db(ms), dtype=np.float32)
        n = max(self._n, 1)
        silent = peak < SILENCE_PEAK
        audible = rms_db[~silent] if (~silent).any() else rms_db
        noise = float(np.percentile(audible, 10)) if audible.size else FLOOR_DB
        active = float(np.percentile(audible, 95)) if audible.size else FLOOR_DB
        max_abs = float(peak.max()) if peak.size else 0.0
        clip_level, clipped_fraction, block_clipped = self._clipping(max_abs, peak)
        # one concatenation, no further copies: for hours of audio this is tens of MB
        mel = cat(self._mel).reshape(-1, SPEC_BANDS).astype(np.float16, copy=False)
        self._mel = [mel]
        spectrum = db(self._power_sum / max(self._n_power, 1))
        bandwidth, drop = bandwidth_of(np.asarray(spectrum), self.sample_rate)
        noise_spec, flatness = _noise_spectrum(mel)
        return SignalStats(
            duration=self._n / self.sample_rate,
            sample_rate=self.sample_rate,
            peak_dbfs=20 * math.log10(max_abs) if max_abs > 0 else -math.inf,
            rms_dbfs=float(db(self._sumsq / n)) if self._sumsq > 0 else -math.inf,
            loudness_lufs=integrated_loudness(kms),
            noise_floor_dbfs=noise,
            active_level_dbfs=active,
            snr_db=active - noise,
            dc_offset=self._sum / n,
            clip_level=clip_level,
            clipped_fraction=clipped_fraction,
            full_scale_samples=self._full_scale,
            silence_seconds=float(silent.sum() * BLOCK_SECONDS),
            bandwidth_hz=bandwidth,
            cutoff_drop_db=drop,
            noise_flatness=flatness,
            block_rms_db=rms_db,
            block_peak=peak.astype(np.float32),
            block_dc=dc.astype(np.float32),
            block_clipped=block_clipped,
            mel_db=mel,
            spectrum_db=np.asarray(spectrum, dtype=np.float32),
            noise_spectrum_db=noise_spec,
        )

    def _clipping(self, max_abs: float, peak: np.ndarray) -> tuple[float, float, np.ndarray]:
        """Clip level, the share of samples piled up at it, and the blocks that reach it.

        A clipped recording piles samples up at one level: its amplitude histogram has a spike
        there. Two shapes are recognised:

        * at the maximum (clipped audio that was not resampled): the top 0.05 %-of-full-scale
          bin holds 10x the mean of the ten bins below it. A sine's histogram also rises
          towards its peak, but only ~2.5x over that distance.
        * below the maximum (resampling to 32 kHz smears the plateau and overshoots it): a
          local peak of the histogram in bins 1 % of the maximum wide, at least 2.5x the
          median of the bins 3-8 % below and 2x the mean of the bins 2-6 % above. Natural
          audio and tones thin out (or rise) monotonically towards their peak.

        In both cases the spike must hold at least 0.1 % of all samples above its baseline.
        """
        no_clip = (0.0, 0.0, np.zeros(peak.shape, dtype=bool))
        if max_abs <= 0 or self._n == 0:
            return no_clip
        scale = HIST_BINS / HIST_MAX
        cum = np.concatenate([[0], np.cumsum(self._hist)])

        def count(lo: float, hi: float) -> float:
            a = min(max(round(lo * scale), 0), HIST_BINS + 1)
            b = min(max(round(hi * scale), 0), HIST_BINS + 1)
            return float(cum[b] - cum[a])

        top = min(int(max_abs * scale), HIST_BINS)
        at_max = float(self._hist[top])
        below = float(self._hist[max(top - 10, 0) : top].mean()) if top else 0.0
        if at_max >= 10 * max(below, 1.0) and (at_max - below) / self._n >= 1e-3:
            return max_abs, at_max / self._n, peak >= max_abs * (1 - 1e-3)
        width = 0.01 * max_abs
        edges = np.arange(0.0, max_abs + width / 2, width)
        bins = np.array([count(a, a + width) for a in edges])
        best = (0.0, 0.0)
        for i in range(8, len(bins) - 6):
            if edges[i] < 0.5 * max_abs or bins[i] < bins[i - 1] or bins[i] < bins[i + 1]:
                continue
            base = float(np.median(bins[i - 8 : i - 2]))
            above = float(bins[i + 2 : i + 6].mean())
            if bins[i] >= 2.5 * max(base, 1.0) and bins[i] >= 2 * max(above, 1.0):
                excess = (bins[i - 1 : i + 2] - base).clip(0).sum() / self._n
                if excess >= 1e-3 and excess > best[1]:
                    best = (float(edges[i] + width / 2), float(excess))
        if best[1] == 0.0:
            return no_clip
        level, fraction = best
        return level, fraction, peak >= level * 0.98


def bandwidth_of(spectrum_db: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[float, float]:
    """Highest frequency with content, and the drop (dB) across it.

    The spectrum (dB per bin of a :data:`SPEC_FFT`-point FFT) is smoothed over 250 Hz; content
    is what lies within 70 dB of its maximum (above 100 Hz). The drop compares the 1 kHz below
    that edge with the 1-3 kHz above it: a codec or resampler cut-off drops 30 dB or more, a
    natural roll-off much less. When content reaches the top of the band, the drop is 0.
    """
    spec = np.asarray(spectrum_db, dtype=np.float64)
    hz_per_bin = sample_rate / SPEC_FFT
    width = max(1, round(250 / hz_per_bin))
    padded = np.pad(spec, (width // 2, width - 1 - width // 2), mode="edge")
    smooth = np.convolve(padded, np.ones(width) / width, mode="valid")
    lo = int(100 / hz_per_bin)
    if smooth.size <= lo + 1:
        return 0.0, 0.0
    top = float(smooth[lo:].max())
    content = np.nonzero(smooth[lo:] >= top - 60.0)[0]
    if content.size == 0:
        return 0.0, 0.0
    edge = lo + int(content[-1])
    nyquist_bin = spec.size - 1
    edge = min(edge + width // 2, nyquist_bin)
    bandwidth = edge * hz_per_bin
    below = smooth[max(lo, edge - int(1000 / hz_per_bin)) : edge]
    above = smooth[edge + int(1000 / hz_per_bin) : edge + int(3000 / hz_per_bin)]
    if above.size == 0 or below.size == 0:
        return float(bandwidth), 0.0
    return float(bandwidth), float(np.median(below) - np.median(above))


def _noise_spectrum(mel: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-band noise floor (10th percentile over time, dB) and its spectral flatness (0-1)."""
    if mel.shape[0] == 0:
        return np.full(SPEC_BANDS, FLOOR_DB, dtype=np.float32), 0.0
    # band by band: a float32 copy of one band at a time keeps memory flat for long files
    floor = np.array(
        [np.percentile(mel[:, b].astype(np.float32), 10) for b in range(mel.shape[1])],
        dtype=np.float32,
    )
    power = 10 ** (floor.astype(np.float64) / 10)
    flatness = float(np.exp(np.mean(np.log(power))) / max(np.mean(power), 1e-30))
    return floor, flatness


def mel_band_edges(sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Centre frequencies (Hz) of the spectrogram's mel bands."""
    from earmark.mel import mel_filterbank

    bank = mel_filterbank(SPEC_BANDS, SPEC_FFT, sample_rate, SPEC_FMIN, SPEC_FMAX)
    freqs = np.arange(bank.shape[1]) * sample_rate / SPEC_FFT
    return (bank * freqs).sum(axis=1) / np.maximum(bank.sum(axis=1), 1e-9)


def write_signal(path: str | Path, stats: SignalStats) -> None:
    """Save the series, spectra and summary of ``stats`` as a compressed ``.npz`` (atomically)."""
    with atomic_path(path) as temp, open(temp, "wb") as fh:
        np.savez_compressed(
            fh,
            summary=np.array(json.dumps(stats.summary())),
            block_rms_db=stats.block_rms_db.astype(np.float16),
            block_peak=stats.block_peak.astype(np.float32),
            block_dc=stats.block_dc.astype(np.float32),
            block_clipped=stats.block_clipped,
            mel_db=np.asarray(stats.mel_db, dtype=np.float16),
            spectrum_db=stats.spectrum_db,
            noise_spectrum_db=stats.noise_spectrum_db,
        )


def read_signal(path: str | Path) -> SignalStats:
    """Load a file written by :func:`write_signal`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            summary = json.loads(str(data["summary"]))
            arrays = {
                k: data[k]
                for k in (
                    "block_rms_db",
                    "block_peak",
                    "block_dc",
                    "block_clipped",
                    "mel_db",
                    "spectrum_db",
                    "noise_spectrum_db",
                )
            }
    except KeyError as exc:
        raise ValueError(f"{path}: not an earmark signal file (missing {exc})") from None
    for key, value in summary.items():
        if value is None:
            summary[key] = -math.inf
    arrays["block_rms_db"] = arrays["block_rms_db"].astype(np.float32)
    return SignalStats(**summary, **arrays)
