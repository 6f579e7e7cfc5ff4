"""In-memory waveforms: samples scaled to float32, channels downmixed, soxr resampling, checks.

Scaling and downmix follow libsndfile/soundfile: integer samples are divided by ``2**(bits-1)``
(int16 / 32768, int32 / 2**31, 24-bit as int32, unsigned 8-bit as (x - 128) / 128), and
multi-channel audio becomes the mean of its channels, computed in float32. Rate conversion always
uses soxr with quality ``"HQ"``, never FFmpeg's resampler. Decoding files is :mod:`earmark.audio`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np
import soxr

from earmark.constants import SAMPLE_RATE
from earmark.containers import AudioError

if TYPE_CHECKING:  # pragma: no cover
    import av

__all__ = [
    "RESAMPLE_QUALITY",
    "downmix",
    "frame_to_mono",
    "nonfinite_reason",
    "prepare_waveform",
    "resample",
]

RESAMPLE_QUALITY = "HQ"
"""soxr quality used for every rate conversion."""

# FFmpeg sample formats (packed names) -> (offset, scale) so that float = (x - offset) * scale.
_INT_SCALING: dict[str, tuple[float, float]] = {
    "u8": (128.0, 2.0**-7),
    "s16": (0.0, 2.0**-15),
    "s32": (0.0, 2.0**-31),
    "s64": (0.0, 2.0**-63),
}
_FLOAT_FORMATS = frozenset({"flt", "dbl"})

# --------------------------------------------------------------------------------------------
# Sample conversion
# --------------------------------------------------------------------------------------------


def _to_float32(a: np.ndarray, packed_format: str) -> np.ndarray:
    """Scale samples of an FFmpeg sample format to float32 in [-1, 1]; always a new array."""
    if packed_format in _FLOAT_FORMATS:
        return a.astype(np.float32, copy=True)
    try:
        offset, scale = _INT_SCALING[packed_format]
    except KeyError:
        raise ValueError(f"unsupported sample format {packed_format!r}") from None
    out = a.astype(np.float32)
    if offset:
        out -= np.float32(offset)
    out *= np.float32(scale)
    return out


def downmix(channels_first: np.ndarray) -> np.ndarray:
    """Mean over channels of a (channels, samples) float32 array, as float32 mono."""
    if channels_first.shape[0] == 1:
        return np.ascontiguousarray(channels_first[0], dtype=np.float32)
    return np.ascontiguousarray(channels_first.mean(axis=0, dtype=np.float32))


_SAMPLE_DTYPES: dict[str, type[np.generic]] = {
    "u8": np.uint8,
    "s16": np.int16,
    "s32": np.int32,
    "s64": np.int64,
    "flt": np.float32,
    "dbl": np.float64,
}


def frame_to_mono(frame: av.AudioFrame) -> np.ndarray:
    """Decoded frame -> float32 mono samples at the frame's own rate.

    Reads the sample planes directly (planar: one per channel; packed: one interleaved).
    The downmix is the float32 mean over channels: summed in channel order, then divided by
    the channel count, like ``numpy.mean(x, axis=0)`` on a float32 (channels, samples) array.
    """
    fmt = frame.format
    packed = fmt.packed.name
    dtype = _SAMPLE_DTYPES.get(packed)
    if dtype is None:
        raise ValueError(f"unsupported sample format {fmt.name!r}")
    n = frame.samples
    planes = frame.planes
    channels = frame.layout.nb_channels or (len(planes) if fmt.is_planar else 1)
    # Planes support the buffer protocol; numpy's stubs for Python < 3.12 list only concrete
    # buffer types, hence the casts to memoryview.
    if fmt.is_planar:
        mono = _to_float32(np.frombuffer(cast(memoryview, planes[0]), dtype=dtype, count=n), packed)
        for plane in planes[1:channels]:
            mono += _to_float32(
                np.frombuffer(cast(memoryview, plane), dtype=dtype, count=n), packed
            )
        if channels > 1:
            mono /= np.float32(channels)
        return mono
    samples = _to_float32(
        np.frombuffer(cast(memoryview, planes[0]), dtype=dtype, count=n * channels), packed
    )
    if channels == 1:
        return samples
    mono = samples[0::channels].copy()
    for c in range(1, channels):
        mono += samples[c::channels]
    mono /= np.float32(channels)
    return mono


def nonfinite_reason(count: int, total: int, first_seconds: float) -> str:
    """Why samples are refused: how many of ``total`` are NaN/Inf and where the first one is."""
    if count >= total:
        return f"all {total} samples are non-finite (NaN/Inf)"
    return (
        f"contains non-finite samples (NaN/Inf): {count} of {total} samples, "
        f"the first at {first_seconds:.3f} s"
    )


def resample(x: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a mono signal with soxr (quality "HQ") in one shot; returns float32.

    The output has ``len(x) * target_sr / orig_sr`` samples (rounded, halves up) and no delay.
    Float64 input is resampled in float64 and then rounded to float32.
    """
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} and {target_sr}")
    x = np.asarray(x)
    if x.dtype != np.float64:
        x = x.astype(np.float32, copy=False)
    x = np.ascontiguousarray(x)
    if orig_sr == target_sr:
        return x.astype(np.float32, copy=True)
    if x.shape[0] == 0:
        return np.zeros((0, *x.shape[1:]), dtype=np.float32)
    y = soxr.resample(x, orig_sr, target_sr, quality=RESAMPLE_QUALITY)
    return np.asarray(y, dtype=np.float32)


def prepare_waveform(x: np.ndarray, sample_rate: int, name: str = "<array>") -> np.ndarray:
    """Turn an array given through the Python API into float32 mono at 32 kHz.

    Integer samples are scaled like soundfile does (int16 / 32768, int32 / 2**31, unsigned
    8-bit as (x - 128) / 128...), floats become float32, a 2-D array is averaged over its
    channel axis (the smaller one, so both (channels, samples) and (samples, channels) work),
    and the result is resampled with soxr HQ to :data:`SAMPLE_RATE`.

    Raises:
        AudioError: (with ``path == name``) for empty input, more than two dimensions, a
            non-numeric dtype, or NaN/Inf samples.
        ValueError: for a sample rate that is not positive.
    """
    if not np.isfinite(sample_rate) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
    a = np.asarray(x)
    if a.ndim == 0 or a.ndim > 2:
        raise AudioError(
            name,
            f"expected a 1-D waveform or a 2-D (channels, samples) array, got shape {a.shape}",
        )
    if a.size == 0:
        raise AudioError(name, f"empty waveform (shape {a.shape})")
    kind = a.dtype.kind
    if kind == "i":
        bits = a.dtype.itemsize * 8
        a = a.astype(np.float32) * np.float32(2.0 ** -(bits - 1))
    elif kind == "u":
        bits = a.dtype.itemsize * 8
        a = (a.astype(np.float32) - np.float32(2.0 ** (bits - 1))) * np.float32(2.0 ** -(bits - 1))
    elif kind == "f":
        a = a.astype(np.float32, copy=False)
    else:
        raise AudioError(name, f"unsupported sample dtype {a.dtype} (need integer or float)")
    if a.ndim == 2:
        channels_first = a if a.shape[0] <= a.shape[1] else a.T
        a = downmix(channels_first)
    finite = np.isfinite(a)
    if not finite.all():
        count = int(a.size - np.count_nonzero(finite))
        first = int(np.argmin(finite)) / float(sample_rate)
        raise AudioError(name, nonfinite_reason(count, a.size, first))
    rate = int(sample_rate) if float(sample_rate).is_integer() else sample_rate
    return resample(np.ascontiguousarray(a), rate, SAMPLE_RATE)
