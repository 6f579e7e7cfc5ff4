"""Tests of earmark.audio on real recordings (shared fixtures) and on files made from them."""

from __future__ import annotations

import errno
import logging
import os
import pickle
import shutil
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import soxr

from earmark import audio
from earmark.audio import SAMPLE_RATE, AudioError, AudioReader, load, prepare_waveform, probe
from earmark.containers import HEADER_FORMATS

AUDIO_SUFFIXES = {".wav", ".ogg", ".opus", ".m4a", ".mp3", ".flac"}

# Fixtures whose exact native length soundfile (libsndfile) also knows.
SOUNDFILE_READABLE = {".wav", ".ogg", ".opus", ".flac"}


def _expected_len(n_native: int, sr: int, target: int = SAMPLE_RATE) -> int:
    """Length of a soxr resampling: n * target / sr rounded, halves up."""
    return (2 * n_native * target + sr) // (2 * sr)


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)


def _cut(src: Path, dst: Path, keep: float | int) -> Path:
    data = src.read_bytes()
    n = keep if isinstance(keep, int) else int(len(data) * keep)
    dst.write_bytes(data[:n])
    return dst


def _read_all(path: Path, **kwargs) -> tuple[np.ndarray, AudioReader]:
    with AudioReader(path, **kwargs) as reader:
        chunks = list(reader)
    y = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return y, reader


def _encode(
    x: np.ndarray,
    sr: int,
    path: Path,
    codec: str,
    container_format: str | None = None,
    rate: int | None = None,
    video: str | None = None,
) -> Path:
    """Encode mono float audio (and optionally a tiny video stream) with PyAV."""
    rate = rate or sr
    if rate != sr:
        x = soxr.resample(x, sr, rate, quality="HQ").astype(np.float32)
    out = av.open(str(path), "w", format=container_format)
    try:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        vstream = None
        if video:
            vstream = out.add_stream(video, rate=5)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
        fmt = stream.codec_context.codec.audio_formats[0].name
        converter = av.AudioResampler(  # format conversion only: the rate does not change
            format=fmt, layout="mono", rate=rate, frame_size=stream.codec_context.frame_size or None
        )
        hop = 4000
        for start in range(0, len(x), hop):
            block = np.ascontiguousarray(x[start : start + hop], dtype=np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(block, format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for converted in converter.resample(frame):
                out.mux(stream.encode(converted))
        for converted in converter.resample(None):
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
        if vstream is not None:
            for k in range(10):
                image = np.full((48, 64, 3), 20 * k, np.uint8)
                vframe = av.VideoFrame.from_ndarray(image, format="rgb24")
                vframe.pts = k
                out.mux(vstream.encode(vframe))
            out.mux(vstream.encode(None))
    finally:
        out.close()
    return path


# --------------------------------------------------------------------------------------------
# Real files load
# --------------------------------------------------------------------------------------------


def test_every_fixture_loads(fixtures_dir: Path) -> None:
    files = _audio_files(fixtures_dir)
    assert len(files) >= 20
    suffixes = {p.suffix for p in files}
    assert {".ogg", ".opus", ".m4a", ".wav", ".WAV"} <= suffixes
    for path in files:
        info = probe(path)
        y, reader = _read_all(path)
        assert y.dtype == np.float32 and y.ndim == 1, path
        assert np.isfinite(y).all(), path
        assert np.abs(y).max() > 0, path
        assert reader.warnings == [], (path, reader.warnings)
        assert reader.samples_read == y.size
        if path.suffix.lower() in SOUNDFILE_READABLE:
            ref = sf.info(str(path))
            assert info.sample_rate == ref.samplerate
            assert info.channels == ref.channels
            assert y.size == _expected_len(ref.frames, ref.samplerate), path
        else:
            assert info.duration is not None
            assert abs(y.size / SAMPLE_RATE - info.duration) < 0.05, path


@pytest.mark.slow
def test_background_mp3s_load(shared_dir: Path) -> None:
    files = _audio_files(shared_dir / "audio" / "backgrounds" / "sounds")
    assert len(files) >= 15 and all(p.suffix == ".mp3" for p in files)
    for path in files:
        info = probe(path)
        assert info.codec.startswith("mp3")
        y, reader = _read_all(path, chunk_seconds=60.0)
        assert reader.warnings == [], (path, reader.warnings)
        assert np.isfinite(y).all() and np.abs(y).max() > 0
        assert abs(y.size / SAMPLE_RATE - info.duration) < 0.01, path


def test_probe_describes_the_stream(fixtures_dir: Path) -> None:
    info = probe(fixtures_dir / "pyannote_sample.wav")
    assert info == audio.AudioInfo(
        path=str(fixtures_dir / "pyannote_sample.wav"),
        container="wav",
        codec="pcm_s16le",
        sample_rate=16000,
        channels=1,
        duration=30.0,
        sample_format="s16",
        bit_rate=256000,
    )
    stereo = probe(fixtures_dir / "fmt_stereo_24bit.WAV")
    assert (stereo.channels, stereo.codec, stereo.sample_rate) == (2, "pcm_s24le", 16000)
    ogg = probe(fixtures_dir / "esc10_dog_1-100032-A.ogg")
    assert (ogg.container, ogg.codec, ogg.sample_rate) == ("ogg", "vorbis", 44100)
    assert ogg.duration == pytest.approx(5.001, abs=1e-3)
    m4a = probe(fixtures_dir / "fmt_testing.m4a")
    assert m4a.codec == "aac" and "mp4" in m4a.container


def test_matches_golden_soxr_waveform(golden_dir: Path) -> None:
    """The 44.1 kHz 24-bit golden file, resampled by python-soxr HQ in the reference run."""
    golden = np.load(golden_dir / "metro_station-paris__soxr_hq.npz")
    assert "soxr" in str(golden["resampler"])
    y = load(golden_dir / "audio" / "metro_station-paris.wav")
    assert y.shape == golden["waveform"].shape
    assert np.abs(y - golden["waveform"]).max() <= 1e-6
    for name in ("speech", "music", "typing"):  # 32 kHz files: no resampling at all
        ref = np.load(golden_dir / f"{name}.npz")["waveform"]
        np.testing.assert_array_equal(load(golden_dir / "audio" / f"{name}.wav"), ref)


# --------------------------------------------------------------------------------------------
# Exact samples and timing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "esc10_rain_1-17367-A.ogg",
        "fmt_stereo_16bit.wav",
        "fmt_bus.opus",
        "fmt_testing.m4a",
        "scaper_soundscape_20200501_22050.wav",
        "librosa_trumpet.ogg",
    ],
)
@pytest.mark.parametrize("chunk_seconds", [0.37, 2.0, 30.0])
def test_stream_equals_one_shot(fixtures_dir: Path, name: str, chunk_seconds: float) -> None:
    path = fixtures_dir / name
    x, sr = audio._load_native(path)
    one_shot = soxr.resample(x, sr, SAMPLE_RATE, quality="HQ")
    assert one_shot.size == _expected_len(x.size, sr)
    with AudioReader(path, chunk_seconds=chunk_seconds) as reader:
        chunks = list(reader)
    sizes = [c.size for c in chunks]
    assert all(s == reader.chunk_samples for s in sizes[:-1])
    assert 0 < sizes[-1] <= reader.chunk_samples
    streamed = np.concatenate(chunks)
    assert streamed.dtype == np.float32
    assert streamed.size == one_shot.size == reader.samples_read
    assert np.abs(streamed - one_shot).max() <= 1e-6


@pytest.mark.parametrize("sr", [8000, 11025, 22050, 32000, 44100, 48000, 96000, 192000])
def test_sample_rates_and_exact_length(tmp_path: Path, sr: int) -> None:
    rng = np.random.default_rng(sr)
    n = int(1.5 * sr) + 17  # not a whole number of output samples
    x = (rng.standard_normal((n, 2)) * 0.2).astype(np.float32)
    path = tmp_path / f"noise_{sr}.wav"
    sf.write(path, x, sr, subtype="FLOAT")
    y = load(path)
    assert y.size == _expected_len(n, sr)
    mono = x.mean(axis=1)
    expected = mono if sr == SAMPLE_RATE else soxr.resample(mono, sr, SAMPLE_RATE, quality="HQ")
    assert np.abs(y - expected).max() <= 1e-6


@pytest.mark.parametrize(
    ("suffix", "subtype", "channels"),
    [
        (".wav", "PCM_U8", 1),
        (".wav", "PCM_16", 2),
        (".wav", "PCM_24", 2),
        (".wav", "PCM_32", 6),
        (".wav", "FLOAT", 3),
        (".wav", "DOUBLE", 2),
        (".flac", "PCM_16", 2),
        (".flac", "PCM_24", 1),
    ],
)
def test_sample_scaling_matches_soundfile(
    tmp_path: Path, suffix: str, subtype: str, channels: int
) -> None:
    rng = np.random.default_rng(channels)
    sr = 32000  # native rate = output rate: the public load() must equal soundfile exactly
    x = np.clip(rng.standard_normal((sr, channels)) * 0.3, -1, 1)
    x[:10] = [[-1.0] * channels] * 5 + [[1.0 - 2**-23] * channels] * 5  # extremes
    path = tmp_path / f"scaled_{subtype}_{channels}{suffix}"
    sf.write(path, x, sr, subtype=subtype)
    ref = sf.read(path, dtype="float32", always_2d=True)[0].mean(axis=1)
    y = load(path)
    np.testing.assert_array_equal(y, ref)


def test_fixture_scaling_matches_soundfile(fixtures_dir: Path) -> None:
    names = [
        "fmt_mono_int24.wav",
        "fmt_mono_int32.wav",
        "fmt_mono_float64.wav",
        "fmt_stereo_16bit.wav",
        "fmt_stereo_24bit.WAV",
        "scaper_soundscape_20200501_22050.wav",
        "pyannote_sample.wav",
    ]
    for name in names:
        x, sr = audio._load_native(fixtures_dir / name)
        ref, ref_sr = sf.read(fixtures_dir / name, dtype="float32", always_2d=True)
        assert sr == ref_sr
        np.testing.assert_array_equal(x, ref.mean(axis=1), err_msg=name)


def test_odd_path_names(tmp_path: Path, fixtures_dir: Path) -> None:
    """FFmpeg must not read "name:rest" as a protocol; pathlib and str paths both work."""
    path = tmp_path / "file:with colon?#%.wav"
    shutil.copy(fixtures_dir / "fmt_stereo_16bit.wav", path)
    expected = load(fixtures_dir / "fmt_stereo_16bit.wav")
    np.testing.assert_array_equal(load(path), expected)
    np.testing.assert_array_equal(load(str(path)), expected)


# --------------------------------------------------------------------------------------------
# Video containers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "container_format", "codec", "rate", "video"),
    [
        (".mp4", "mp4", "aac", 44100, "mpeg4"),
        (".mkv", "matroska", "libopus", 48000, "mpeg4"),
        (".webm", "webm", "libopus", 48000, "libvpx"),
    ],
)
def test_audio_track_of_video_files(
    tmp_path: Path,
    fixtures_dir: Path,
    suffix: str,
    container_format: str,
    codec: str,
    rate: int,
    video: str,
) -> None:
    source = fixtures_dir / "esc10_rooster_1-26806-A.ogg"
    x, sr = audio._load_native(source)
    path = _encode(x, sr, tmp_path / f"clip{suffix}", codec, container_format, rate, video)
    with av.open(str(path)) as check:
        assert {s.type for s in check.streams} == {"audio", "video"}
    info = probe(path)
    assert info.sample_rate == rate and info.channels == 1
    y, reader = _read_all(path)
    assert reader.warnings == []
    original = load(source)
    assert abs(y.size - original.size) <= 0.025 * SAMPLE_RATE
    # The lossy copy must still be the same sound at the same time (no offset).
    n = min(y.size, original.size)
    env_y = np.sqrt(np.mean(y[: n // 320 * 320].reshape(-1, 320) ** 2, axis=1))
    env_x = np.sqrt(np.mean(original[: n // 320 * 320].reshape(-1, 320) ** 2, axis=1))
    assert np.corrcoef(env_y, env_x)[0, 1] > 0.95


def test_mpeg_ts_gets_the_full_probe(tmp_path: Path, fixtures_dir: Path) -> None:
    """MPEG-TS lists no streams in a header, so it is not opened with the quick probe."""
    source = fixtures_dir / "esc10_rooster_1-26806-A.ogg"
    x, sr = audio._load_native(source)
    path = _encode(x, sr, tmp_path / "clip.ts", "aac", "mpegts", 48000, "mpeg4")
    assert "mpegts" not in HEADER_FORMATS
    info = probe(path)
    assert info.container == "mpegts" and info.sample_rate == 48000 and info.channels == 1
    y, reader = _read_all(path)
    assert reader.warnings == []
    # the AAC encoder's priming is not trimmed in MPEG-TS (no edit list): 1024 samples longer
    assert abs(y.size - load(source).size) <= 0.04 * SAMPLE_RATE


def test_video_without_audio_stream(tmp_path: Path) -> None:
    path = tmp_path / "silent_film.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 25 * k, np.uint8), "rgb24")
            frame.pts = k
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    for call in (probe, load, AudioReader):
        with pytest.raises(AudioError, match="no audio stream") as excinfo:
            call(path)
        assert excinfo.value.path == str(path)
        assert "video" in excinfo.value.reason


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def _expect_error(path: Path | str, *phrases: str) -> AudioError:
    with pytest.raises(AudioError) as excinfo:
        load(path)
    error = excinfo.value
    assert error.path == str(path)
    assert str(error) == f"{path}: {error.reason}"
    for phrase in phrases:
        assert phrase in error.reason, (phrase, error.reason)
    return error


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.wav"
    _expect_error(path, "file not found")
    with pytest.raises(AudioError, match="file not found"):
        probe(path)


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "recordings.wav"
    folder.mkdir()
    _expect_error(folder, "is a directory")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp3"
    path.touch()
    _expect_error(path, "empty file (0 bytes)")


def test_text_named_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("onset,offset,label\n0.5,1.2,dog\n" * 20)
    _expect_error(path, "not an audio file", "text")


def test_binary_garbage(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp3"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    _expect_error(path, "not an audio file")


def test_zero_length_audio(tmp_path: Path) -> None:
    path = tmp_path / "nothing.wav"
    sf.write(path, np.zeros(0, np.float32), 16000, subtype="PCM_16")
    assert probe(path).duration == 0.0
    _expect_error(path, "zero-length audio")
    with AudioReader(path) as reader, pytest.raises(AudioError, match="zero-length"):
        list(reader)


def test_all_nan(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    sf.write(path, np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    _expect_error(path, "all 16000 samples are non-finite (NaN/Inf)")


def test_some_non_finite(tmp_path: Path) -> None:
    sr = 16000
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (3 * sr, 2)).astype(np.float32)
    x[int(1.25 * sr), 1] = np.nan
    x[int(2.5 * sr), 0] = np.inf
    x[int(2.5 * sr) + 1, 0] = -np.inf
    path = tmp_path / "spikes.wav"
    sf.write(path, x, sr, subtype="FLOAT")
    _expect_error(path, "3 of 48000 samples", "first at 1.250 s")


def test_permission_denied(tmp_path: Path, fixtures_dir: Path, monkeypatch) -> None:
    path = tmp_path / "locked.wav"
    shutil.copy(fixtures_dir / "fmt_stereo_16bit.wav", path)
    path.chmod(0)
    try:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # root may read anything: make opening fail the way it does for other users
            def denied(file, *args, **kwargs):
                raise PermissionError(errno.EACCES, "Permission denied", str(file))

            monkeypatch.setattr(audio, "open", denied, raising=False)
            monkeypatch.setattr(audio.av, "open", denied)
        _expect_error(path, "permission denied")
    finally:
        path.chmod(0o644)


def test_error_pickles_and_formats() -> None:
    error = AudioError("a/b.wav", "file not found")
    assert str(error) == "a/b.wav: file not found"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.reason, str(copy)) == (error.path, error.reason, str(error))


# --------------------------------------------------------------------------------------------
# Truncated and corrupt files
# --------------------------------------------------------------------------------------------


def test_truncated_mp3(tmp_path: Path, shared_dir: Path) -> None:
    source = shared_dir / "audio" / "backgrounds" / "sounds" / "things" / "clock.mp3"
    path = _cut(source, tmp_path / "clock_cut.mp3", 0.5)
    declared = probe(path).duration
    assert declared == pytest.approx(15.94, abs=0.01)  # the Xing header still says the full length
    y, reader = _read_all(path)
    assert 6.0 < y.size / SAMPLE_RATE < 10.0
    assert any(
        w.startswith("truncated: decoded") and "15.94 s declared" in w for w in reader.warnings
    )
    full = load(source)
    keep = y.size - SAMPLE_RATE // 5  # the resampler's end differs; the rest is identical
    assert np.abs(y[:keep] - full[:keep]).max() <= 1e-6


def test_truncated_wav(tmp_path: Path, fixtures_dir: Path, caplog) -> None:
    source = fixtures_dir / "pyannote_sample.wav"  # 30 s, 16 kHz, int16 mono
    data_start = source.read_bytes()[:4096].find(b"data") + 8
    path = _cut(source, tmp_path / "cut.wav", data_start + 2 * 16000 * 12 + 1)  # 12 s + 1 byte
    assert probe(path).duration == 30.0  # what the header declares
    y, reader = _read_all(path)
    assert reader.warnings == ["truncated: decoded 12.00 s of 30.00 s declared"]
    x, sr = audio._load_native(path)
    assert sr == 16000
    ref = sf.read(source, dtype="float32")[0]
    np.testing.assert_array_equal(x, ref[: 16000 * 12])
    assert y.size == 12 * SAMPLE_RATE
    with caplog.at_level(logging.WARNING, logger="earmark.audio"):
        assert load(path).size == y.size  # load() returns the readable part and logs why
    assert "truncated: decoded 12.00 s of 30.00 s declared" in caplog.text


def test_wav_header_without_data(tmp_path: Path, fixtures_dir: Path) -> None:
    source = fixtures_dir / "pyannote_sample.wav"
    data_start = source.read_bytes()[:4096].find(b"data") + 8
    error = _expect_error(_cut(source, tmp_path / "header_only.wav", data_start), "no audio")
    assert error.reason == (
        "no audio could be decoded: truncated: decoded 0.00 s of 30.00 s declared"
    )
    _expect_error(_cut(source, tmp_path / "cut_header.wav", 40), "truncated or corrupt WAV")


def _flac_metadata_end(data: bytes) -> int:
    assert data[:4] == b"fLaC"
    pos = 4
    while True:
        last, length = data[pos] & 0x80, int.from_bytes(data[pos + 1 : pos + 4], "big")
        pos += 4 + length
        if last:
            return pos


def test_truncated_flac_without_any_frame(tmp_path: Path, fixtures_dir: Path) -> None:
    x, sr = sf.read(fixtures_dir / "pyannote_sample.wav", dtype="int16")
    full = tmp_path / "speech.flac"
    sf.write(full, x, sr, subtype="PCM_16")
    path = _cut(full, tmp_path / "headers_only.flac", _flac_metadata_end(full.read_bytes()) + 40)
    error = _expect_error(path, "no audio could be decoded", "truncated")
    assert "30.00 s declared" in error.reason


def test_truncated_flac(tmp_path: Path, fixtures_dir: Path) -> None:
    x, sr = sf.read(fixtures_dir / "pyannote_sample.wav", dtype="int16")
    full = tmp_path / "speech.flac"
    sf.write(full, x, sr, subtype="PCM_16")
    path = _cut(full, tmp_path / "speech_cut.flac", 0.5)
    y, reader = _read_all(path)
    assert 10.0 < y.size / SAMPLE_RATE < 20.0
    assert any(
        w.startswith("truncated: decoded") and "30.00 s declared" in w for w in reader.warnings
    )


def test_truncated_ogg(tmp_path: Path, fixtures_dir: Path) -> None:
    path = _cut(fixtures_dir / "esc10_rain_1-17367-A.ogg", tmp_path / "rain_cut.ogg", 0.6)
    y, reader = _read_all(path)
    assert 1.0 < y.size / SAMPLE_RATE < 4.0
    assert len(reader.warnings) == 1 and reader.warnings[0].startswith("truncated:")
    assert "Ogg" in reader.warnings[0]


def _corrupt_middle(src: Path, dst: Path, n_bytes: int, seed: int = 0) -> Path:
    data = bytearray(src.read_bytes())
    middle = len(data) // 2
    data[middle : middle + n_bytes] = (
        np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
    )
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize(
    ("relative", "n_bytes"),
    [
        ("audio/backgrounds/sounds/things/clock.mp3", 1000),
        ("audio/backgrounds/sounds/nature/wind.mp3", 3000),
        ("audio/fixtures/esc10_rain_1-17367-A.ogg", 3000),
    ],
)
def test_corrupt_data_in_the_middle(
    tmp_path: Path, shared_dir: Path, relative: str, n_bytes: int
) -> None:
    source = shared_dir / relative
    path = _corrupt_middle(source, tmp_path / ("bad_" + source.name), n_bytes)
    y, reader = _read_all(path)
    assert reader.warnings, "the damage must be reported"
    assert any(w.startswith(("decode error", "gap at")) for w in reader.warnings)
    full = load(source)
    # Silence fills the lost stretch, so the timing after it stays close to the original.
    assert abs(y.size - full.size) < 0.2 * SAMPLE_RATE
    before = int(0.4 * full.size)  # well before the damage: identical samples
    assert np.abs(y[:before] - full[:before]).max() <= 1e-6


def test_sample_rate_change_inside_file(tmp_path: Path, shared_dir: Path) -> None:
    sounds = shared_dir / "audio" / "backgrounds" / "sounds"
    first, second = sounds / "things" / "clock.mp3", sounds / "animals" / "dog-barking.mp3"
    assert (probe(first).sample_rate, probe(second).sample_rate) == (44100, 24000)
    path = tmp_path / "joined.mp3"
    path.write_bytes(first.read_bytes() + second.read_bytes())
    y, reader = _read_all(path)
    assert any("sample rate changes from 44100 Hz to 24000 Hz" in w for w in reader.warnings)
    # Byte-joined MP3s keep the second file's info frame and encoder delay: about 0.1 s more.
    expected = load(first).size + load(second).size
    assert abs(y.size - expected) < 0.2 * SAMPLE_RATE


# --------------------------------------------------------------------------------------------
# Memory and reader behaviour
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_long_file_memory_stays_flat(tmp_path: Path) -> None:
    sr, channels, minutes = 44100, 2, 20
    path = tmp_path / "twenty_minutes.wav"
    rng = np.random.default_rng(7)
    block = (rng.standard_normal((60 * sr, channels)) * 3000).astype(np.int16)
    with sf.SoundFile(path, "w", sr, channels, "PCM_16") as f:
        for _ in range(minutes):
            f.write(block)
    n_out = _expected_len(minutes * 60 * sr, sr)
    whole_output_bytes = n_out * 4  # 153.6 MB as one float32 array

    tracemalloc.start()
    try:
        with AudioReader(path, chunk_seconds=30.0) as reader:
            sizes = [chunk.size for chunk in reader]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(sizes) == n_out == reader.samples_read
    assert max(sizes) == reader.chunk_samples == 30 * SAMPLE_RATE
    assert len(sizes) == minutes * 2
    assert peak < 40e6, f"peak {peak / 1e6:.1f} MB"
    assert peak < whole_output_bytes / 4


def test_reader_is_single_use_and_closes(fixtures_dir: Path) -> None:
    reader = AudioReader(fixtures_dir / "esc10_dog_1-100032-A.ogg", chunk_seconds=1.0)
    with reader:
        first = next(iter(reader))
        assert first.size == SAMPLE_RATE == reader.samples_read
        with pytest.raises(RuntimeError):
            iter(reader)
    assert reader._container is None
    with pytest.raises(ValueError):
        AudioReader(fixtures_dir / "esc10_dog_1-100032-A.ogg", chunk_seconds=0)


def test_resample_matches_soxr() -> None:
    x = np.random.default_rng(2).standard_normal(44100 * 2 + 1).astype(np.float32)
    y = audio.resample(x, 44100)
    np.testing.assert_array_equal(y, soxr.resample(x, 44100, SAMPLE_RATE, quality="HQ"))
    assert y.dtype == np.float32 and y.size == _expected_len(x.size, 44100)
    np.testing.assert_array_equal(audio.resample(x, SAMPLE_RATE), x)
    assert audio.resample(x[:0], 44100).size == 0


# --------------------------------------------------------------------------------------------
# Arrays from the Python API
# --------------------------------------------------------------------------------------------


def test_prepare_waveform_int_and_layouts() -> None:
    rng = np.random.default_rng(3)
    pcm = rng.integers(-32768, 32767, (2, 44100), dtype=np.int16)
    expected = soxr.resample(
        (pcm.astype(np.float32) / 32768).mean(axis=0), 44100, SAMPLE_RATE, quality="HQ"
    )
    for layout in (pcm, pcm.T):  # (channels, samples) and (samples, channels)
        y = prepare_waveform(layout, 44100)
        assert y.dtype == np.float32 and y.ndim == 1
        np.testing.assert_array_equal(y, expected)
    int32 = np.array([-(2**31), 0, 2**30], dtype=np.int32)
    np.testing.assert_array_equal(prepare_waveform(int32, SAMPLE_RATE), [-1.0, 0.0, 0.5])
    uint8 = np.array([0, 128, 192], dtype=np.uint8)
    np.testing.assert_array_equal(prepare_waveform(uint8, SAMPLE_RATE), [-1.0, 0.0, 0.5])


def test_prepare_waveform_float64_and_resampling() -> None:
    x = np.random.default_rng(4).uniform(-1, 1, 16000)
    y = prepare_waveform(x, 16000)
    assert y.dtype == np.float32 and y.size == 32000
    expected = soxr.resample(x.astype(np.float32), 16000, SAMPLE_RATE, quality="HQ")
    np.testing.assert_allclose(y, expected, atol=1e-6)
    np.testing.assert_array_equal(prepare_waveform(x, SAMPLE_RATE), x.astype(np.float32))


def test_prepare_waveform_rejects_bad_arrays() -> None:
    with pytest.raises(AudioError, match="empty waveform") as excinfo:
        prepare_waveform(np.zeros(0), 16000, name="clip")
    assert str(excinfo.value).startswith("clip: ")
    x = np.zeros(32000, np.float32)
    x[16000:16010] = np.nan
    with pytest.raises(AudioError, match=r"10 of 32000 samples, the first at 0\.500 s"):
        prepare_waveform(x, 32000)
    with pytest.raises(AudioError, match="all 5 samples are non-finite"):
        prepare_waveform(np.full(5, np.inf), 32000)
    with pytest.raises(AudioError, match="shape"):
        prepare_waveform(np.zeros((2, 3, 4)), 32000)
    with pytest.raises(AudioError, match="dtype"):
        prepare_waveform(np.zeros(10, dtype=bool), 32000)
    with pytest.raises(ValueError):
        prepare_waveform(np.zeros(10), 0)
