"""Optional preprocessing (high-pass, denoising, loudness) on real recordings, and in a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from earmark import cli
from earmark.audio import load
from earmark.config import ConfigError, load_options
from earmark.preprocess import (
    Denoiser,
    PreprocessOptions,
    apply,
    normalisation_gain,
    preprocess_waveform,
)
from earmark.report import build_report, render_markdown
from earmark.signal_stats import LevelMeter


@pytest.fixture(scope="module")
def speech_in_rain(shared_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Speech (PANNs demo clip) over heavy rain at about 3 dB SNR, and the speech alone."""
    speech = load(shared_dir / "audio/fixtures/panns_R9_ZSCveAHg_7s.wav")
    rain = load(shared_dir / "audio/backgrounds/sounds/rain/heavy-rain.mp3")[: speech.size * 2]
    speech = np.concatenate([np.zeros(speech.size // 2, np.float32), speech])
    speech = np.concatenate([speech, np.zeros(rain.size - speech.size, np.float32)])
    gain = np.sqrt(np.mean(speech**2) / np.mean(rain**2)) * 10 ** (-3 / 20)
    return (speech + gain * rain).astype(np.float32), speech


@pytest.mark.parametrize("method", ["spectral-gate", "wiener"])
def test_denoise_lowers_noise_keeps_speech(method: str, speech_in_rain) -> None:
    mix, speech = speech_in_rain
    out = preprocess_waveform(mix, PreprocessOptions(denoise=method))
    assert out.shape == mix.shape and out.dtype == np.float32
    before, after = LevelMeter.of(mix), LevelMeter.of(out)
    assert after.noise_floor_dbfs < before.noise_floor_dbfs - 6.0
    assert after.snr_db > before.snr_db + 3.0
    # the speech stretch keeps most of its level
    active = np.abs(speech) > 0
    kept = 10 * np.log10(np.mean(out[active] ** 2) / np.mean(mix[active] ** 2))
    assert kept > -4.0
    # closer to the clean speech than the noisy input was
    assert np.mean((out - speech) ** 2) < np.mean((mix - speech) ** 2)


def test_denoise_has_no_seams_between_chunks(speech_in_rain) -> None:
    mix, _ = speech_in_rain
    step = 256 * 40  # chunks of 0.32 s: many boundaries
    chunks = [mix[i : i + step] for i in range(0, mix.size, step)]
    out = np.concatenate(list(Denoiser("wiener").stream(chunks)))
    assert out.size == mix.size
    jumps = np.abs(np.diff(out))
    at_edges = np.concatenate([jumps[b - 3 : b + 3] for b in range(step, mix.size - 3, step)])
    assert at_edges.max() <= 1.5 * np.percentile(jumps, 99.9)


def test_normalize_reaches_target(shared_dir: Path) -> None:
    quiet = load(shared_dir / "audio/fixtures/panns_R9_ZSCveAHg_7s.wav") * 10 ** (-30 / 20)
    out = preprocess_waveform(quiet, PreprocessOptions(normalize=-23.0))
    assert LevelMeter.of(out).loudness_lufs == pytest.approx(-23.0, abs=0.2)
    assert normalisation_gain(-np.inf, -23.0) == 0.0
    assert normalisation_gain(-90.0, -23.0) == 40.0  # gain is bounded


def test_highpass_removes_offset_and_rumble(shared_dir: Path) -> None:
    x = load(shared_dir / "audio/fixtures/panns_R9_ZSCveAHg_7s.wav")
    shifted = x + 0.05
    out = np.concatenate(list(apply(np.array_split(shifted, 3), PreprocessOptions(highpass=80.0))))
    assert abs(LevelMeter.of(shifted).dc_offset) > 0.04
    assert abs(LevelMeter.of(out[8000:]).dc_offset) < 1e-3
    # the voice band is untouched
    spec_in, spec_out = LevelMeter.of(x).spectrum_db, LevelMeter.of(out).spectrum_db
    band = slice(int(500 / 15.625), int(4000 / 15.625))
    assert np.abs(spec_in[band] - spec_out[band]).mean() < 0.5


def test_options_validate_and_config() -> None:
    with pytest.raises(ValueError, match="denoise"):
        PreprocessOptions(denoise="magic").validate()
    with pytest.raises(ValueError, match="highpass"):
        PreprocessOptions(highpass=20000).validate()
    options = load_options(overrides={"denoise": "wiener", "normalize": -20.0})
    assert options.preprocess == PreprocessOptions(denoise="wiener", normalize=-20.0)
    with pytest.raises(ConfigError):
        load_options(overrides={"preprocess": {"denoise": "loud"}})
    args = cli.build_parser().parse_args(
        ["detect", "x.wav", "--denoise", "spectral-gate", "--normalize"]
    )
    assert args.normalize == -23.0 and args.denoise == "spectral-gate"


def test_run_records_preprocessing(shared_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    source = shared_dir / "audio/fixtures/panns_R9_ZSCveAHg_7s.wav"
    out = tmp_path / "run"
    argv = [
        "detect",
        str(source),
        "-o",
        str(out),
        "-q",
        "--denoise",
        "wiener",
        "--normalize",
        "-20",
    ]
    argv += ["--highpass", "60"]
    assert cli.main(argv) == cli.EXIT_OK
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["preprocess"] == {
        "denoise": "wiener",
        "normalize": -20.0,
        "highpass": 60.0,
    }
    audio = manifest["files"][0]["audio"]
    pre = audio["preprocess"]
    assert pre["signal_after"]["loudness_lufs"] == pytest.approx(-20.0, abs=0.3)
    assert audio["signal"]["loudness_lufs"] == pytest.approx(-21.2, abs=0.3)  # as decoded
    assert pre["gain_db"] == pytest.approx(
        -20.0 - audio["signal"]["loudness_lufs"], abs=1.5
    )  # denoising lowers the level a little before the gain
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["preprocess"]["denoise"] == "wiener"
    md = render_markdown(build_report(out))
    assert "Levels before → after preprocessing" in md
    assert "wiener denoising" in md and "loudness normalised to -20.0 LUFS" in md
