"""Robust audio fingerprints for finding the same audio in different files.

Two complementary fingerprints are computed from one short-time spectrum of the audio
(decoded and resampled by :mod:`earmark.audio` to 8 kHz mono, so any format and sample rate
gives the same representation; frames of 128 ms every 32 ms):

* **Landmarks** (spectral-peak pairs, after Wang 2003): prominent local maxima of the log
  spectrum, each paired with a few later peaks nearby; a pair is hashed to a 22-bit integer
  from (anchor frequency, frequency difference, time difference). Peaks are where the energy
  of one source dominates, so they survive gain changes, lossy codecs and other sounds added
  on top (speech over music): a share of the hashes of the music still appears. Hashes go into
  an :class:`InvertedIndex` so that the files sharing audio, and the time offset between them,
  are found without comparing whole files pairwise.
* **Sub-fingerprints** (32 bits per frame, after Haitsma & Kalker 2002): the signs of the
  time derivative of energy differences between 33 adjacent bands (250-3600 Hz, log-spaced).
  Two aligned frames of the same audio differ in few bits, unrelated audio in about half of
  them, so the bit error rate along an alignment gives a dense, frame-by-frame similarity
  curve: this is what locates the start and end of a shared segment.

All times are in frames of :data:`HOP_SECONDS`; frame ``i`` is centred at
``i * HOP_SECONDS + WINDOW_SECONDS / 2``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from earmark.audio import AudioReader

__all__ = [
    "FINGERPRINT_SAMPLE_RATE",
    "HOP_SECONDS",
    "FileFingerprint",
    "InvertedIndex",
    "bit_errors",
    "fingerprint_file",
    "fingerprint_waveform",
    "frame_time",
    "landmark_hashes",
]

FINGERPRINT_SAMPLE_RATE = 8000
"""Audio is analysed at this rate (Hz): content up to 4 kHz."""

N_FFT = 1024
HOP = 256
HOP_SECONDS = HOP / FINGERPRINT_SAMPLE_RATE
"""Seconds between two fingerprint frames (32 ms)."""
WINDOW_SECONDS = N_FFT / FINGERPRINT_SAMPLE_RATE

# Landmarks
PEAK_FMIN_HZ = 150.0
PEAK_FMAX_HZ = 3800.0
PEAK_TIME_RADIUS = 6  # frames (+-192 ms): a peak is the maximum of this neighbourhood...
PEAK_FREQ_RADIUS = 10  # bins (+-78 Hz)
PEAK_MIN_PROMINENCE = 2.3  # ... and this much (natural log power, ~10 dB) above the frame mean
PEAKS_PER_SECOND = 24  # at most, the most prominent ones
FAN_OUT = 5  # targets per anchor
TARGET_MAX_DT = 63  # frames (2 s)
TARGET_MAX_DF = 63  # bins (490 Hz), either way
_BLOCK_FRAMES = 4096

# Sub-fingerprints
SUB_BANDS = 33
SUB_FMIN_HZ = 250.0
SUB_FMAX_HZ = 3600.0
SUB_SMOOTH_FRAMES = 3  # band energies summed over 3 frames (~200 ms) before the derivative


def frame_time(frame: np.ndarray | float) -> np.ndarray | float:
    """Centre time in seconds of fingerprint frame(s) ``frame``."""
    return (
        np.asarray(frame) * HOP_SECONDS + WINDOW_SECONDS / 2
        if np.ndim(frame)
        else (float(frame) * HOP_SECONDS + WINDOW_SECONDS / 2)
    )


@dataclass
class FileFingerprint:
    """Fingerprints of one file.

    Attributes:
        path: the file (or a name for an array).
        duration: seconds of audio decoded.
        bits: ``(frames,)`` uint32 sub-fingerprints.
        loudness: ``(frames,)`` float32 frame energy in dB (relative to full scale), for
            silence checks.
        hashes: ``(n,)`` uint32 landmark hashes.
        hash_frames: ``(n,)`` int32 frame of each hash's anchor peak.
        warnings: problems met while decoding (the audio was still usable).
        peak_frames, peak_bins: ``(m,)`` int32 frame and FFT bin of the spectral peaks the
            hashes are made of (re-hashed at other speeds by :mod:`earmark.repeats.speed`).
    """

    path: str
    duration: float
    bits: np.ndarray
    loudness: np.ndarray
    hashes: np.ndarray
    hash_frames: np.ndarray
    warnings: list[str] = field(default_factory=list)
    peak_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    peak_bins: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    @property
    def n_frames(self) -> int:
        """Number of fingerprint frames."""
        return int(self.bits.shape[0])


def _band_matrix(n_bins: int) -> np.ndarray:
    """(n_bins, SUB_BANDS) 0/1 matrix summing FFT bins into log-spaced bands."""
    freqs = np.arange(n_bins) * FINGERPRINT_SAMPLE_RATE / N_FFT
    edges = np.geomspace(SUB_FMIN_HZ, SUB_FMAX_HZ, SUB_BANDS + 1)
    matrix = np.zeros((n_bins, SUB_BANDS), dtype=np.float32)
    for b in range(SUB_BANDS):
        matrix[(freqs >= edges[b]) & (freqs < edges[b + 1]), b] = 1.0
    return matrix


_WINDOW = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
_BANDS = _band_matrix(N_FFT // 2 + 1)
_PEAK_BIN_LO = int(np.ceil(PEAK_FMIN_HZ * N_FFT / FINGERPRINT_SAMPLE_RATE))
_PEAK_BIN_HI = int(PEAK_FMAX_HZ * N_FFT / FINGERPRINT_SAMPLE_RATE)


def _power_block(x: np.ndarray, first: int, last: int) -> np.ndarray:
    """Power spectrum of frames ``first..last-1`` of ``x`` (zero-padded at the end)."""
    import scipy.fft  # here, not at import: `earmark --help` should not load scipy

    start = first * HOP
    stop = (last - 1) * HOP + N_FFT
    seg = x[start:stop]
    if seg.size < stop - start:
        seg = np.concatenate([seg, np.zeros(stop - start - seg.size, np.float32)])
    frames = np.lib.stride_tricks.sliding_window_view(seg, N_FFT)[::HOP]
    spec = scipy.fft.rfft(frames * _WINDOW, axis=1)
    return (spec.real**2 + spec.imag**2).astype(np.float32)


def _peaks(logp: np.ndarray, first: int, keep: slice) -> tuple[np.ndarray, np.ndarray]:
    """Prominent local maxima (frame, bin) of a log-power block; frames offset by ``first``."""
    from scipy import ndimage

    band = logp[:, _PEAK_BIN_LO:_PEAK_BIN_HI]
    prominence = band - band.mean(axis=1, keepdims=True)
    # Candidates: maxima along frequency (+-1 bin) that stand out of their frame ...
    mid = band[:, 1:-1]
    cand = (mid > band[:, :-2]) & (mid >= band[:, 2:]) & (prominence[:, 1:-1] > PEAK_MIN_PROMINENCE)
    cand[: keep.start] = False
    cand[keep.stop :] = False
    t, f = np.nonzero(cand)
    f = f + 1
    if t.size == 0:
        return t.astype(np.int32), f.astype(np.int32)
    # ... that are also the maximum of their time-frequency neighbourhood (checked only at the
    # candidates: a full 2-D maximum filter costs several times more).
    tmax = ndimage.maximum_filter1d(band, 2 * PEAK_TIME_RADIUS + 1, axis=0, mode="nearest")
    padded = np.pad(tmax, ((0, 0), (PEAK_FREQ_RADIUS, PEAK_FREQ_RADIUS)), constant_values=-np.inf)
    cols = f[:, None] + np.arange(2 * PEAK_FREQ_RADIUS + 1)[None, :]
    is_peak = band[t, f] >= padded[t[:, None], cols].max(axis=1)
    t, f = t[is_peak], f[is_peak]
    if t.size == 0:
        return t.astype(np.int32), f.astype(np.int32)
    # Density limit: the most prominent peaks of each second.
    strength = prominence[t, f]
    per = max(1, round(1.0 / HOP_SECONDS))
    second = t // per
    order = np.lexsort((-strength, second))
    t, f, second = t[order], f[order], second[order]
    starts = np.r_[0, np.flatnonzero(np.diff(second)) + 1]
    rank = np.arange(t.size) - np.repeat(starts, np.diff(np.r_[starts, t.size]))
    sel = rank < PEAKS_PER_SECOND
    t, f = t[sel], f[sel]
    order = np.lexsort((f, t))
    return (t[order] + first).astype(np.int32), (f[order] + _PEAK_BIN_LO).astype(np.int32)


def landmark_hashes(t: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hashes and anchor frames of peak pairs: each peak (frame ``t``, bin ``f``, sorted by
    frame then bin) with its next FAN_OUT neighbours; hashes sorted by anchor frame."""
    n = t.size
    if n < 2:
        return np.zeros(0, np.uint32), np.zeros(0, np.int32)
    anchors, targets = [], []
    taken = np.zeros(n, dtype=np.int32)
    idx = np.arange(n)
    k = 1
    while True:
        j = idx + k
        inside = j < n
        if not inside.any():
            break
        a = idx[inside]
        b = j[inside]
        dt = t[b] - t[a]
        alive = dt <= TARGET_MAX_DT
        if not alive.any():
            break
        ok = alive & (dt > 0) & (np.abs(f[b] - f[a]) <= TARGET_MAX_DF) & (taken[a] < FAN_OUT)
        anchors.append(a[ok])
        targets.append(b[ok])
        np.add.at(taken, a[ok], 1)
        k += 1
        if k > 400:
            break
    a = np.concatenate(anchors)
    b = np.concatenate(targets)
    f1 = f[a] >> 1  # 8 bits (15.6 Hz steps)
    df = (f[b] - f[a] + TARGET_MAX_DF) >> 1  # 7 bits
    dt = t[b] - t[a]  # 6 bits
    hashes = (f1.astype(np.uint32) << 13) | (df.astype(np.uint32) << 6) | dt.astype(np.uint32)
    order = np.argsort(t[a], kind="stable")
    return hashes[order], t[a][order].astype(np.int32)


def _sub_fingerprints(bands: np.ndarray) -> np.ndarray:
    """32-bit sub-fingerprints from (frames, 33) band energies."""
    from scipy import ndimage

    if SUB_SMOOTH_FRAMES > 1:
        bands = ndimage.uniform_filter1d(bands, SUB_SMOOTH_FRAMES, axis=0, mode="nearest")
    e = np.log(bands + 1e-10)
    d = e[:, :-1] - e[:, 1:]  # (frames, 32)
    bits = np.zeros(d.shape, dtype=bool)
    bits[1:] = (d[1:] - d[:-1]) > 0
    weights = (np.uint32(1) << np.arange(32, dtype=np.uint32)).astype(np.uint32)
    return (bits.astype(np.uint32) * weights).sum(axis=1, dtype=np.uint64).astype(np.uint32)


class _Builder:
    """Fingerprints computed block by block as audio arrives: memory stays bounded by a block
    (~2 min of audio) plus the compact results, whatever the length of the file."""

    def __init__(self) -> None:
        self.buf = np.zeros(0, np.float32)
        self.buf_start = 0  # sample index of buf[0]
        self.total = 0  # samples fed
        self.next = 0  # first frame not processed yet
        self.bands: list[np.ndarray] = []
        self.loud: list[np.ndarray] = []
        self.peak_t: list[np.ndarray] = []
        self.peak_f: list[np.ndarray] = []

    def feed(self, x: np.ndarray) -> None:
        self.buf = np.concatenate([self.buf, np.asarray(x, np.float32)])
        self.total += int(np.asarray(x).size)
        margin = PEAK_TIME_RADIUS
        while self.total >= (self.next + _BLOCK_FRAMES + margin - 1) * HOP + N_FFT:
            last = self.next + _BLOCK_FRAMES
            self._block(self.next, last, last + margin)
            self.next = last
            drop = max(0, (self.next - margin) * HOP - self.buf_start)
            self.buf = self.buf[drop:]
            self.buf_start += drop

    def _block(self, first: int, last: int, hi: int) -> None:
        lo = max(0, first - PEAK_TIME_RADIUS)
        start = lo * HOP - self.buf_start
        stop = (hi - 1) * HOP + N_FFT - self.buf_start
        power = _power_block(self.buf[start:stop], 0, hi - lo)
        core = slice(first - lo, first - lo + (last - first))
        self.bands.append(power[core] @ _BANDS)
        energy = power[core].sum(axis=1) / (N_FFT * 0.375 * N_FFT)
        self.loud.append((10 * np.log10(energy + 1e-12)).astype(np.float32))
        t, f = _peaks(np.log(power + 1e-10), lo, core)
        self.peak_t.append(t)
        self.peak_f.append(f)

    def finish(self, name: str) -> FileFingerprint:
        n = self.total
        n_frames = 1 + (n - N_FFT) // HOP if n >= N_FFT else (1 if n else 0)
        while self.next < n_frames:
            last = min(self.next + _BLOCK_FRAMES, n_frames)
            self._block(self.next, last, min(n_frames, last + PEAK_TIME_RADIUS))
            self.next = last
        bands = np.concatenate(self.bands) if self.bands else np.zeros((0, SUB_BANDS), np.float32)
        t = np.concatenate(self.peak_t) if self.peak_t else np.zeros(0, np.int32)
        f = np.concatenate(self.peak_f) if self.peak_f else np.zeros(0, np.int32)
        hashes, hash_frames = landmark_hashes(t, f)
        return FileFingerprint(
            path=name,
            duration=n / FINGERPRINT_SAMPLE_RATE,
            bits=_sub_fingerprints(bands) if n_frames else np.zeros(0, np.uint32),
            loudness=np.concatenate(self.loud) if self.loud else np.zeros(0, np.float32),
            hashes=hashes,
            hash_frames=hash_frames,
            peak_frames=t.astype(np.int32),
            peak_bins=f.astype(np.int32),
        )


def fingerprint_waveform(x: np.ndarray, name: str = "<array>") -> FileFingerprint:
    """Fingerprints of a mono float32 waveform at :data:`FINGERPRINT_SAMPLE_RATE`."""
    builder = _Builder()
    builder.feed(np.ascontiguousarray(x, dtype=np.float32))
    return builder.finish(name)


def fingerprint_file(path: str | os.PathLike[str]) -> FileFingerprint:
    """Decode any audio/video file (via :mod:`earmark.audio`) and fingerprint it as it is
    decoded (memory does not grow with the length of the file).

    Raises:
        earmark.audio.AudioError: the file cannot be decoded (names the file and the cause).
    """
    builder = _Builder()
    with AudioReader(path, sample_rate=FINGERPRINT_SAMPLE_RATE, chunk_seconds=30.0) as reader:
        for chunk in reader:
            builder.feed(chunk)
        warnings = list(reader.warnings)
    fp = builder.finish(os.fspath(path))
    fp.warnings = warnings
    return fp


def bit_errors(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame share of differing bits (0..1) between two equal-length sub-fingerprint runs."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.float32) / 32.0


class InvertedIndex:
    """Landmark hashes of many files, for finding which files share audio and at what offset.

    Entries are kept sorted by hash (numpy arrays, no per-hash Python objects), so building
    and querying costs O(n log n) in the number of hashes, whatever the number of files.
    """

    def __init__(self, fingerprints: list[FileFingerprint]) -> None:
        hashes = [fp.hashes for fp in fingerprints]
        frames = [fp.hash_frames for fp in fingerprints]
        files = [np.full(h.size, i, np.int32) for i, h in enumerate(hashes)]
        h = np.concatenate(hashes) if hashes else np.zeros(0, np.uint32)
        order = np.argsort(h, kind="stable")
        self.hashes = h[order]
        self.frames = (np.concatenate(frames) if frames else np.zeros(0, np.int32))[order]
        self.files = (np.concatenate(files) if files else np.zeros(0, np.int32))[order]
        self.n_files = len(fingerprints)

    def shared_pairs(
        self,
        max_bucket: int | None = None,
        max_neighbours: int | None = 16,
        min_file_b: int = 0,
        max_file_gap: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Pairs of entries with equal hashes in two different files.

        Hashes found more than ``max_bucket`` times in all (stationary tones, silence) are
        skipped: they place nothing. Within a hash, entries are in file order and each is
        paired with its next ``max_neighbours`` entries only (None: with all): a theme shared
        by all ``n`` files of a series then gives each file votes with its neighbours in the
        series, ``O(n)`` pairs instead of ``O(n^2)``, which is all that clustering needs.
        Only pairs with ``file_b >= min_file_b`` and ``file_b - file_a <= max_file_gap`` are
        returned (filtered as they are formed: memory holds only those).
        Returns ``(file_a, frame_a, file_b, frame_b)`` with ``file_a < file_b``.
        """
        h = self.hashes
        if h.size == 0:
            empty = np.zeros(0, np.int32)
            return empty, empty, empty, empty
        if max_bucket is None:
            max_bucket = 4 * self.n_files + 16
        starts = np.r_[0, np.flatnonzero(np.diff(h)) + 1]
        sizes = np.diff(np.r_[starts, h.size])
        keep_bucket = (sizes >= 2) & (sizes <= max_bucket)
        keep = np.repeat(keep_bucket, sizes)
        files, frames = self.files[keep], self.frames[keep]
        bucket = np.repeat(np.arange(starts.size), sizes)[keep]
        out_fa, out_ta, out_fb, out_tb = [], [], [], []
        idx = np.arange(files.size)
        k = 1
        while idx.size:
            j = idx + k
            valid = j < files.size
            idx, j = idx[valid], j[valid]
            same = bucket[j] == bucket[idx]
            idx, j = idx[same], j[same]
            if idx.size == 0:
                break
            fa, fb = files[idx], files[j]
            diff = fa != fb
            swap = fa > fb
            a_file = np.where(swap, fb, fa)
            b_file = np.where(swap, fa, fb)
            diff &= b_file >= min_file_b
            if max_file_gap is not None:
                diff &= b_file - a_file <= max_file_gap
            a_file, b_file = a_file[diff], b_file[diff]
            a_t = np.where(swap, frames[j], frames[idx])[diff]
            b_t = np.where(swap, frames[idx], frames[j])[diff]
            out_fa.append(a_file)
            out_fb.append(b_file)
            out_ta.append(a_t)
            out_tb.append(b_t)
            k += 1
            if max_neighbours is not None and k > max_neighbours:
                break
        if not out_fa:
            empty = np.zeros(0, np.int32)
            return empty, empty, empty, empty
        return (
            np.concatenate(out_fa),
            np.concatenate(out_ta),
            np.concatenate(out_fb),
            np.concatenate(out_tb),
        )
