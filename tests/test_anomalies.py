"""Each anomaly detector fires on a real recording made to have its problem, and only there.

The problem files are made from a real street recording (scaper's 44.1 kHz street scene):
clipped, attenuated by 40 dB, band-limited to 4 kHz, with 3 s of digital silence inserted, and
with a DC offset; they are written as 16-bit WAV at 44.1 kHz and decoded by earmark (resampled
to 32 kHz) like any input. Clean files: the street scene itself, speech (PANNs demo clip) and a
solo trumpet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, sosfiltfilt

from earmark.audio import _load_native, load, probe
from earmark.report.anomalies import detect_anomalies, runs
from earmark.signal_stats import LevelMeter, integrated_loudness, k_weighting

SIGNAL_KINDS = ("clipping", "low_level", "dc_offset", "digital_silence", "band_limited")


@pytest.fixture(scope="module")
def street(shared_dir: Path) -> tuple[np.ndarray, int]:
    path = (
        shared_dir
        / "audio/scaper/tests/data/audio/background/street/150993__saphe__street-scene-1.wav"
    )
    x, sr = _load_native(path)
    return x[: 20 * sr], sr


@pytest.fixture(scope="module")
def problem_files(street: tuple[np.ndarray, int], tmp_path_factory: pytest.TempPathFactory):
    x, sr = street
    out = tmp_path_factory.mktemp("problems")
    variants = {
        # 1 % of samples beyond full scale, clipped like an overdriven input
        "clipping": np.clip(x / np.percentile(np.abs(x), 99), -1.0, 1.0),
        "low_level": x * 10 ** (-40 / 20),
        "band_limited": sosfiltfilt(butter(10, 4000, fs=sr, output="sos"), x),
        "digital_silence": np.concatenate([x[: 8 * sr], np.zeros(3 * sr), x[8 * sr :]]),
        "dc_offset": x * 0.5 + 0.05,
    }
    paths = {}
    for kind, y in variants.items():
        paths[kind] = out / f"street_{kind}.wav"
        sf.write(paths[kind], y.astype(np.float32), sr, subtype="PCM_16")
    return paths


def _analyse(path: Path):
    y = load(path)
    stats = LevelMeter.of(y)
    entry = {
        "status": "ok",
        "duration": y.size / 32000,
        "audio": {"sample_rate": probe(path).sample_rate},
    }
    return stats, detect_anomalies(str(path), entry, stats, [])


@pytest.fixture(scope="module")
def clean_files(shared_dir: Path, street, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    x, sr = street
    path = tmp_path_factory.mktemp("clean") / "street.wav"
    sf.write(path, x.astype(np.float32), sr, subtype="PCM_16")
    fixtures = shared_dir / "audio" / "fixtures"
    return [path, fixtures / "panns_R9_ZSCveAHg_7s.wav", fixtures / "librosa_trumpet.ogg"]


@pytest.mark.parametrize("kind", SIGNAL_KINDS)
def test_detector_fires_on_its_problem_only(kind: str, problem_files: dict[str, Path]) -> None:
    _, found = _analyse(problem_files[kind])
    kinds = {a.kind for a in found}
    assert kind in kinds, f"{kind} not found in {problem_files[kind].name}: {kinds}"
    # no other signal-level detector fires on a file made with one problem
    assert kinds & set(SIGNAL_KINDS) == {kind}
    anomaly = next(a for a in found if a.kind == kind)
    assert anomaly.detail and anomaly.why and anomaly.file == str(problem_files[kind])


def test_detectors_quiet_on_clean_files(clean_files: list[Path]) -> None:
    for path in clean_files:
        _, found = _analyse(path)
        assert not {a.kind for a in found} & set(SIGNAL_KINDS), (path.name, found)


def test_where_the_problems_are(problem_files: dict[str, Path]) -> None:
    _, found = _analyse(problem_files["digital_silence"])
    (silence,) = [a for a in found if a.kind == "digital_silence"]
    assert len(silence.regions) == 1
    start, end = silence.regions[0]
    assert start == pytest.approx(8.0, abs=0.15) and end == pytest.approx(11.0, abs=0.15)
    stats, found = _analyse(problem_files["clipping"])
    (clip,) = [a for a in found if a.kind == "clipping"]
    assert clip.regions and stats.clipped_fraction > 1e-3
    assert 20 * np.log10(stats.clip_level) == pytest.approx(0.0, abs=0.5)  # clipped at full scale
    stats, _ = _analyse(problem_files["low_level"])
    clean_stats = LevelMeter.of(load(problem_files["dc_offset"]))
    assert stats.loudness_lufs < -60
    assert clean_stats.dc_offset == pytest.approx(0.05, abs=2e-3)
    stats, _ = _analyse(problem_files["band_limited"])
    assert 4000 <= stats.bandwidth_hz <= 6000


def test_noise_detectors(shared_dir: Path) -> None:
    rain = shared_dir / "audio/backgrounds/sounds/rain/heavy-rain.mp3"
    _, found = _analyse(rain)
    assert {"low_snr", "broadband_noise"} <= {a.kind for a in found}
    speech = shared_dir / "audio/fixtures/panns_R9_ZSCveAHg_7s.wav"
    _, found = _analyse(speech)
    assert not {"low_snr", "broadband_noise"} & {a.kind for a in found}


def test_loudness_matches_bs1770() -> None:
    # BS.1770: a 997 Hz sine at 0 dBFS in one channel reads -3.01 LUFS
    t = np.arange(32000 * 5) / 32000
    stats = LevelMeter.of(np.sin(2 * np.pi * 997 * t).astype(np.float32))
    assert stats.loudness_lufs == pytest.approx(-3.01, abs=0.05)
    assert stats.clipped_fraction == 0.0  # a full-scale tone is not clipping
    (b1, a1), (_, a2) = k_weighting(48000)
    assert b1 == pytest.approx([1.53512485958697, -2.69169618940638, 1.19839281085285])
    assert a1 == pytest.approx([1.0, -1.69065929318241, 0.73248077421585])
    assert a2 == pytest.approx([1.0, -1.99004745483398, 0.99007225036621])
    assert integrated_loudness(np.zeros(20)) == -np.inf


def test_streaming_equals_whole(shared_dir: Path) -> None:
    y = load(shared_dir / "audio/fixtures/panns_R9_ZSCveAHg_7s.wav")
    whole = LevelMeter.of(y)
    meter = LevelMeter()
    for chunk in np.array_split(y, 7):
        meter.update(chunk)
    streamed = meter.finish()
    assert streamed.summary() == whole.summary()
    assert streamed.mel_db.shape == whole.mel_db.shape
    np.testing.assert_allclose(
        streamed.mel_db.astype(np.float32), whole.mel_db.astype(np.float32), atol=0.05
    )


def test_runs() -> None:
    mask = np.array([0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1], dtype=bool)
    assert runs(mask, 0.5) == [(0.5, 1.5), (2.0, 2.5), (4.0, 5.5)]
    assert runs(mask, 0.5, gap=0.5) == [(0.5, 2.5), (4.0, 5.5)]
    assert runs(mask, 0.5, min_seconds=1.5) == [(4.0, 5.5)]
