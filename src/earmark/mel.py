"""The mel scale and triangular mel filters (numpy only: usable where torch is not installed).

:mod:`earmark.features` builds the model's front end from these with its own constants; the
boundary envelope, the report's level meter and the hand-made features use them with theirs.
"""

from __future__ import annotations

from typing import cast

import numpy as np


def mel_scale(freq: np.ndarray | float) -> np.ndarray | float:
    """Kaldi's mel scale: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(np.asarray(freq, dtype=np.float64) / 700.0)


def mel_filterbank(
    n_mels: int, n_fft: int, sample_rate: int, f_min: float, f_max: float
) -> np.ndarray:
    """Kaldi-style triangular mel filters, shape ``(n_mels, n_fft // 2 + 1)``.

    Triangles are linear in the mel domain with peak 1; the Nyquist bin gets weight 0.
    """
    n_bins = n_fft // 2
    bin_mels = cast(np.ndarray, mel_scale(np.arange(n_bins) * (sample_rate / n_fft)))
    edges = np.linspace(mel_scale(f_min), mel_scale(f_max), n_mels + 2)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_mels[None, :] - left) / (centre - left)
    falling = (right - bin_mels[None, :]) / (right - centre)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    return np.concatenate([weights, np.zeros((n_mels, 1))], axis=1).astype(np.float32)
