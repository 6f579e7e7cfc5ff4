"""What the review page shows and plays of a detection: a WAV snippet with pre/post roll and
a mel spectrogram picture of the same stretch."""

from __future__ import annotations

import io
import threading
import wave
from collections import OrderedDict
from pathlib import Path

import numpy as np

from earmark.mel import mel_filterbank

SAMPLE_RATE = 16000
"""Snippets and spectrograms are made at 16 kHz: enough to hear and see, small to send."""
ROLL = 1.0
"""Seconds of audio before and after an event in its snippet (pre/post roll)."""
MAX_SECONDS = 120.0
"""Longest stretch the page may ask for."""
N_FFT, HOP, N_MELS = 512, 160, 80


class MediaError(ValueError):
    """A stretch of audio that cannot be cut (unreadable file, bad times)."""


class AudioCache:
    """The last few decoded recordings (16 kHz mono), so that paging through the queue of one
    long file decodes it once."""

    def __init__(self, size: int = 3) -> None:
        self.size = size
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str) -> np.ndarray:
        """The decoded audio of ``path``.

        Raises:
            MediaError: the file cannot be decoded (its name and the cause).
        """
        from earmark.audio import AudioError, load

        with self._lock:
            if path in self._items:
                self._items.move_to_end(path)
                return self._items[path]
        try:
            audio = load(path, SAMPLE_RATE)
        except (AudioError, OSError) as exc:
            raise MediaError(f"{path}: cannot be decoded ({exc})") from None
        with self._lock:
            self._items[path] = audio
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return audio

    def cut(self, path: str, start: float, end: float) -> np.ndarray:
        """Samples of ``path`` from ``start`` to ``end`` seconds (clipped to the file)."""
        if not (0 <= start < end) or end - start > MAX_SECONDS:
            raise MediaError(f"bad stretch {start:.3f}-{end:.3f} s of {Path(path).name}")
        audio = self.get(path)
        return audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]


def wav_bytes(samples: np.ndarray) -> bytes:
    """16-bit PCM mono WAV of float samples in [-1, 1]."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


def mel_db(samples: np.ndarray) -> np.ndarray:
    """Log-mel spectrogram in dB, shape ``(N_MELS, frames)`` (low frequencies first)."""
    if len(samples) < N_FFT:
        samples = np.pad(samples, (0, N_FFT - len(samples)))
    frames = 1 + (len(samples) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(samples[idx] * np.hanning(N_FFT), axis=1)) ** 2
    mel = mel_filterbank(N_MELS, N_FFT, SAMPLE_RATE, 50.0, SAMPLE_RATE / 2) @ spec.T
    return 10.0 * np.log10(np.maximum(mel, 1e-10))


def spectrogram_png(samples: np.ndarray, height: int = 160) -> bytes:
    """A PNG picture of the log-mel spectrogram (time left to right, 60 dB of range)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import image

    db = mel_db(samples)
    top = float(db.max()) if db.size else 0.0
    scaled = np.clip((db - (top - 60.0)) / 60.0, 0.0, 1.0)[::-1]
    rows = np.linspace(0, scaled.shape[0] - 1, height).round().astype(int)
    out = io.BytesIO()
    image.imsave(out, scaled[rows], cmap="magma", vmin=0.0, vmax=1.0, format="png")
    return out.getvalue()
