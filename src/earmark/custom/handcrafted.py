"""Hand-made clip features: the classic baseline that learned embeddings are compared with.

Per 2048-sample frame (hop 512) of the signal at 22.05 kHz: 20 MFCCs (40 mel bands, log power
in dB, orthonormal DCT-II), 12 chroma bins (STFT magnitude folded onto pitch classes, each frame
scaled to a maximum of 1), spectral centroid, bandwidth and 85 % roll-off (in kHz), zero-crossing
rate and RMS level (dB). A clip is described by the mean and standard deviation of each over
its frames: 74 numbers. These are the features of the classic ESC-50 baselines (MFCC and
friends + a shallow classifier), written here with numpy/scipy.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dct
from scipy.signal import get_window

from earmark.mel import mel_filterbank

SAMPLE_RATE = 22050
N_FFT = 2048
HOP = 512
N_MELS = 40
N_MFCC = 20
ROLLOFF = 0.85
_EPS = 1e-10

FEATURE_NAMES: list[str] = (
    [f"mfcc{i}" for i in range(N_MFCC)]
    + [f"chroma{i}" for i in range(12)]
    + ["centroid_khz", "bandwidth_khz", "rolloff_khz", "zcr", "rms_db"]
)
"""Names of the per-frame features; a clip vector holds their means, then their deviations."""


def _frames(x: np.ndarray) -> np.ndarray:
    """``(frames, N_FFT)`` frames centred every HOP samples (signal zero-padded at both ends)."""
    padded = np.pad(x, (N_FFT // 2, N_FFT // 2))
    n = 1 + max(0, (len(padded) - N_FFT) // HOP)
    return np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n]


def _chroma_map(freqs: np.ndarray) -> np.ndarray:
    """``(12, bins)`` 0/1 matrix assigning each bin above 40 Hz to its nearest pitch class."""
    out = np.zeros((12, len(freqs)), dtype=np.float32)
    ok = freqs > 40.0
    midi = 69.0 + 12.0 * np.log2(freqs[ok] / 440.0)
    pitch_class = np.round(midi).astype(int) % 12
    out[pitch_class, np.flatnonzero(ok)] = 1.0
    return out


_FREQS = np.arange(N_FFT // 2 + 1) * SAMPLE_RATE / N_FFT
_MEL = mel_filterbank(N_MELS, N_FFT, SAMPLE_RATE, 0.0, SAMPLE_RATE / 2).astype(np.float64)
_CHROMA = _chroma_map(_FREQS)
_WINDOW = get_window("hann", N_FFT, fftbins=True)


def frame_features(audio: np.ndarray) -> np.ndarray:
    """Per-frame features ``(frames, 37)`` of a mono signal at :data:`SAMPLE_RATE` Hz."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError("expected a non-empty mono signal")
    frames = _frames(x)
    spec = np.abs(np.fft.rfft(frames * _WINDOW, axis=1))  # (T, bins) magnitude
    power = spec**2
    mel_db = 10.0 * np.log10(power @ _MEL.T + _EPS)
    mfcc = dct(mel_db, type=2, norm="ortho", axis=1)[:, :N_MFCC]
    chroma = spec @ _CHROMA.T
    chroma /= np.maximum(chroma.max(axis=1, keepdims=True), _EPS)
    total = spec.sum(axis=1) + _EPS
    centroid = (spec @ _FREQS) / total
    bandwidth = np.sqrt((spec * (_FREQS[None, :] - centroid[:, None]) ** 2).sum(axis=1) / total)
    cumulative = np.cumsum(power, axis=1)
    rolloff_bin = (cumulative < ROLLOFF * cumulative[:, -1:]).sum(axis=1)
    rolloff = _FREQS[np.minimum(rolloff_bin, len(_FREQS) - 1)]
    signs = np.signbit(frames)
    zcr = np.mean(signs[:, 1:] != signs[:, :-1], axis=1)
    rms_db = 10.0 * np.log10(np.mean(frames**2, axis=1) + _EPS)
    scalar = np.stack(
        [centroid / 1000.0, bandwidth / 1000.0, rolloff / 1000.0, zcr, rms_db], axis=1
    )
    return np.concatenate([mfcc, chroma, scalar], axis=1).astype(np.float32)


def clip_features(audio: np.ndarray) -> np.ndarray:
    """The 74-value clip vector: mean and standard deviation of :func:`frame_features`."""
    feats = frame_features(audio)
    return np.concatenate([feats.mean(axis=0), feats.std(axis=0)]).astype(np.float32)


class HandcraftedBackbone:
    """Duck-types :class:`earmark.custom.embeddings.Backbone` so the same cache and loops serve
    both."""

    key = "handcrafted-v1"
    name = "handcrafted (MFCC, chroma, spectral, ZCR, RMS)"
    dim = 2 * len(FEATURE_NAMES)

    def clip_embedding(self, audio_32k: np.ndarray) -> np.ndarray:
        """Clip features of a 32 kHz signal (resampled to 22.05 kHz first)."""
        from earmark.audio import resample

        return clip_features(resample(audio_32k, 32000, SAMPLE_RATE))

    def frame_embeddings(self, audio_32k: np.ndarray) -> np.ndarray:  # pragma: no cover
        """Not used: the baseline is a clip classifier."""
        raise NotImplementedError("hand-made features are computed per clip only")
