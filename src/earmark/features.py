"""Log-mel front end of the EfficientAT models: 32 kHz waveform -> normalised log-mel frames.

Every constant here was measured against the official EfficientAT code (see the project notes);
changing any of them breaks reproduction of the official logits:

* pre-emphasis ``y[n] = x[n+1] - 0.97 x[n]`` (the output is one sample shorter);
* STFT with n_fft 1024, hop 320 (10 ms), a *symmetric* Hann window of 800 samples zero-padded to
  1024, ``center=True`` with reflect padding, power spectrum ``re^2 + im^2``;
* 128 Kaldi-style triangular mel filters (``mel(f) = 1127 ln(1 + f / 700)``) between 0 and 15 kHz,
  peak 1, no area normalisation, weight 0 on the Nyquist bin;
* ``log(mel + 1e-5)``, then ``(x + 4.5) / 5``.

For ``L`` input samples there are ``1 + (L - 1) // 320`` frames; frame ``k`` is centred on sample
``320 k`` (of the pre-emphasised signal) and so describes audio time ``k * 0.01`` s.
"""

from __future__ import annotations

import numpy as np
import torch

from earmark.constants import SAMPLE_RATE
from earmark.mel import mel_filterbank as _mel_filterbank

N_FFT = 1024
HOP_LENGTH = 320
WIN_LENGTH = 800
N_MELS = 128
F_MIN = 0.0
F_MAX = 15000.0
PREEMPHASIS = 0.97
LOG_OFFSET = 1e-5
NORM_SHIFT = 4.5
NORM_SCALE = 5.0


def mel_filterbank(
    n_mels: int = N_MELS,
    n_fft: int = N_FFT,
    sample_rate: int = SAMPLE_RATE,
    f_min: float = F_MIN,
    f_max: float = F_MAX,
) -> np.ndarray:
    """The model's mel filters (:func:`earmark.mel.mel_filterbank` with this front end's
    constants as defaults), shape ``(n_mels, n_fft // 2 + 1)``."""
    return _mel_filterbank(n_mels, n_fft, sample_rate, f_min, f_max)


def n_frames(n_samples: int) -> int:
    """Number of log-mel frames for ``n_samples`` input samples at 32 kHz."""
    return 1 + (n_samples - 1) // HOP_LENGTH if n_samples > 1 else 0


class LogMel(torch.nn.Module):
    """The EfficientAT front end: ``(batch, samples)`` -> ``(batch, 1, 128, frames)``."""

    # buffers registered in __init__
    window: torch.Tensor
    mel_basis: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(WIN_LENGTH, periodic=False), False)
        self.register_buffer("mel_basis", torch.from_numpy(mel_filterbank()), False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel of a batch of float waveforms in [-1, 1] at 32 kHz."""
        if waveform.dim() == 1:
            waveform = waveform[None]
        emphasised = waveform[:, 1:] - PREEMPHASIS * waveform[:, :-1]
        half = N_FFT // 2  # center=True: reflect-pad half a window on each side
        mode = "reflect" if emphasised.shape[-1] > half else "constant"  # see logmel_segment
        padded = torch.nn.functional.pad(emphasised[:, None], (half, half), mode=mode)
        return self.from_padded(padded[:, 0])

    def from_padded(self, padded: torch.Tensor, n_out: int | None = None) -> torch.Tensor:
        """Log-mel of an already padded, pre-emphasised signal (frame k starts at 320 k)."""
        spec = torch.stft(
            padded,
            n_fft=N_FFT,
            hop_length=HOP_LENGTH,
            win_length=WIN_LENGTH,
            window=self.window,
            center=False,
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        if n_out is not None:
            spec = spec[..., :n_out]
        power = spec.real.square() + spec.imag.square()
        logmel = torch.log(torch.matmul(self.mel_basis, power) + LOG_OFFSET)
        return ((logmel + NORM_SHIFT) / NORM_SCALE)[:, None]


def logmel_segment(
    front_end: LogMel,
    samples: torch.Tensor,
    first_frame: int,
    n_out: int,
    offset: int,
) -> torch.Tensor:
    """Log-mel frames ``first_frame .. first_frame + n_out`` of a long signal, from a slice of it.

    ``samples`` holds the signal from absolute sample ``offset`` on. Frames whose analysis window
    lies fully inside the slice are computed exactly as a whole-file pass would compute them; at the
    true start of the file (``offset == 0``) reflect padding reproduces the official edge frames,
    and likewise at the end when the slice reaches the end of the file. Returns
    ``(1, 1, 128, n_out)``.
    """
    half = N_FFT // 2
    # frame k needs emphasised samples [320k - 512, 320k + 512), i.e. raw samples up to 320k + 513
    start = first_frame * HOP_LENGTH - half
    lo = max(start, 0) - offset
    hi = (first_frame + n_out - 1) * HOP_LENGTH + half + 1 - offset
    if lo < 0:
        raise ValueError("slice does not reach back far enough for the requested frames")
    piece = samples[lo : min(hi, samples.shape[-1])]
    emphasised = piece[1:] - PREEMPHASIS * piece[:-1]
    pad_left = half - (first_frame * HOP_LENGTH - (lo + offset))
    need_right = hi - lo - 1 - emphasised.shape[-1]
    padded = emphasised[None, None]
    if pad_left > 0 or need_right > 0:
        # reflect padding as the official front end; a signal shorter than the padding
        # (under 16 ms) cannot be reflected and is zero-padded instead
        pads = (max(pad_left, 0), max(need_right, 0))
        mode = "reflect" if max(pads) < emphasised.shape[-1] else "constant"
        padded = torch.nn.functional.pad(padded, pads, mode=mode)
    return front_end.from_padded(padded[0], n_out)
