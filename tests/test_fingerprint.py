"""Fingerprints on real music: invariance to gain, sample rate and lossy coding; the index."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from earmark.audio import AudioError, load, resample
from earmark.repeats.fingerprint import (
    FINGERPRINT_SAMPLE_RATE,
    HOP_SECONDS,
    InvertedIndex,
    bit_errors,
    fingerprint_file,
    fingerprint_waveform,
)

SR = FINGERPRINT_SAMPLE_RATE


@pytest.fixture(scope="module")
def music(shared_dir: Path) -> np.ndarray:
    path = shared_dir / "audio" / "music" / "moh" / "macroform-robot_dity.wav"
    return load(path, SR)[: 60 * SR]


def _encode_mp3(path: Path, x: np.ndarray, rate: int) -> None:
    y = resample(x, SR, rate)
    container = av.open(str(path), "w", format="mp3")
    stream = container.add_stream("libmp3lame", rate=rate, layout="mono")
    stream.bit_rate = 64_000
    frame = av.AudioFrame.from_ndarray(
        (np.clip(y, -1, 1) * 32767).astype(np.int16)[None], format="s16", layout="mono"
    )
    frame.sample_rate = rate
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()


def test_same_audio_few_bit_errors_unrelated_half(music: np.ndarray, tmp_path: Path) -> None:
    ref = fingerprint_waveform(music[: 30 * SR])
    path = tmp_path / "quiet_44k.mp3"
    _encode_mp3(path, music[: 30 * SR] * 0.25, 44100)  # -12 dB, 44.1 kHz, MP3 64 kbps
    coded = fingerprint_file(path)
    n = min(ref.n_frames, coded.n_frames) - 40
    # MP3 encoder delay: find the best lag within +-5 frames
    bers = [
        float(bit_errors(ref.bits[20 : 20 + n - 10], coded.bits[20 + d : 20 + d + n - 10]).mean())
        for d in range(-5, 6)
    ]
    assert min(bers) < 0.2
    other = fingerprint_waveform(music[30 * SR : 60 * SR])
    m = min(ref.n_frames, other.n_frames)
    assert 0.45 < float(bit_errors(ref.bits[:m], other.bits[:m]).mean()) < 0.55


def test_landmarks_survive_gain_and_speech(music: np.ndarray, shared_dir: Path) -> None:
    speech = load(shared_dir / "audio" / "speech" / "asterisk" / "demo-instruct.wav", SR)
    piece = music[10 * SR : 30 * SR].copy()
    mixed = piece * 0.3
    mixed[: speech.size] += speech[: piece.size] / np.sqrt(np.mean(speech**2)) * 0.05
    a = fingerprint_waveform(piece)
    quiet = fingerprint_waveform(piece * 0.1)  # -20 dB
    assert _aligned(a, quiet) > 0.9 * a.hashes.size
    b = fingerprint_waveform(mixed)  # speech louder than the music throughout
    other = load(shared_dir / "audio" / "music" / "moh" / "macroform-cold_day.wav", SR)
    unrelated = fingerprint_waveform(other[10 * SR : 30 * SR])
    shared = _aligned(a, b)
    assert shared > 0.05 * a.hashes.size
    assert shared > 10 * max(_aligned(a, unrelated), 1)


def _aligned(a, b) -> int:
    """Hashes of ``a`` found in ``b`` at the same time (+-1 frame)."""
    key_b = {
        (int(h), int(t) + d)
        for h, t in zip(b.hashes, b.hash_frames, strict=False)
        for d in (-1, 0, 1)
    }
    return sum((int(h), int(t)) in key_b for h, t in zip(a.hashes, a.hash_frames, strict=False))


def test_index_finds_offset(music: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    theme = music[5 * SR : 25 * SR]
    ep1 = np.concatenate([rng.normal(0, 0.01, 7 * SR), theme, rng.normal(0, 0.01, 5 * SR)])
    ep2 = np.concatenate([rng.normal(0, 0.01, 31 * SR), theme * 0.5, rng.normal(0, 0.01, SR)])
    index = InvertedIndex([fingerprint_waveform(ep1), fingerprint_waveform(ep2)])
    fa, ta, fb, tb = index.shared_pairs()
    assert fa.size > 100 and np.all(fa < fb)
    offsets, counts = np.unique(tb - ta, return_counts=True)
    best = offsets[np.argmax(counts)] * HOP_SECONDS
    assert abs(best - 24.0) < 2 * HOP_SECONDS
    assert counts.max() > 20 * np.sort(counts)[-10]  # one offset dominates


def test_bad_files_raise_audio_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav"):
        fingerprint_file(empty)
    text = tmp_path / "notes.mp3"
    text.write_text("not audio at all")
    with pytest.raises(AudioError, match=r"notes\.mp3"):
        fingerprint_file(text)


def test_streamed_file_equals_whole_waveform(shared_dir: Path) -> None:
    """Fingerprinting while decoding (blocks of ~2 min) gives exactly the one-shot result."""
    path = shared_dir / "audio" / "music" / "moh" / "macroform-cold_day.wav"  # 244 s
    streamed = fingerprint_file(path)
    whole = fingerprint_waveform(load(path, SR))
    assert streamed.n_frames > 3 * 4096 / 2
    for name in ("bits", "hashes", "hash_frames", "loudness"):
        assert np.array_equal(getattr(streamed, name), getattr(whole, name)), name
    assert abs(streamed.duration - 244.3) < 0.1
