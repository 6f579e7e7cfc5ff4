"""Boundary refinement on real recordings: the envelope, the snapping, and what it leaves alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from earmark.audio import SAMPLE_RATE, load
from earmark.boundaries import BandEnvelope, RefineOptions, refine_events, sorted_percentiles
from earmark.events import Event

SR = SAMPLE_RATE
RAIN = "heavy-rain.mp3"


@pytest.fixture(scope="module")
def saw(shared_dir: Path) -> np.ndarray:
    """4.5 s of steady chainsaw (ESC-10; level within 3 dB over 0.25-4.75 s of the clip)."""
    clip = load(shared_dir / "audio" / "esc10" / "008 - Chainsaw" / "1-64398-B.ogg")
    return clip[SR // 4 : round(4.75 * SR)]


@pytest.fixture(scope="module")
def office(shared_dir: Path) -> np.ndarray:
    return load(shared_dir / "audio" / "backgrounds" / "sounds" / "places" / "office.mp3")[
        : 12 * SR
    ]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def _mix(background: np.ndarray, event: np.ndarray, at: float, snr_db: float) -> np.ndarray:
    out = background.copy()
    start = round(at * SR)
    part = out[start : start + len(event)]
    gain = _rms(part) / _rms(event) * 10 ** (snr_db / 20)
    out[start : start + len(event)] += gain * event[: len(part)]
    return out


def test_envelope_streamed_in_odd_chunks_equals_whole(office: np.ndarray) -> None:
    whole = BandEnvelope.of(office).db
    env = BandEnvelope()
    rng = np.random.default_rng(0)
    pos = 0
    while pos < len(office):
        step = int(rng.integers(1, 40000))
        env.update(office[pos : pos + step])
        pos += step
    env.finish()
    assert whole.shape == (-(-len(office) // 320), 64)
    assert whole.dtype == np.float16
    np.testing.assert_allclose(env.db.astype(np.float32), whole.astype(np.float32), atol=0.05)


def test_envelope_tap_passes_chunks_through(office: np.ndarray) -> None:
    chunks = [office[i : i + 32000] for i in range(0, len(office), 32000)]
    env = BandEnvelope()
    passed = list(env.tap(iter(chunks)))
    assert all(a is b for a, b in zip(passed, chunks, strict=True))
    assert len(env.db) == -(-len(office) // 320)
    with pytest.raises(RuntimeError, match="finish"):
        _ = BandEnvelope().db


def test_envelope_places_an_onset_to_the_frame(saw: np.ndarray) -> None:
    silence_then_saw = np.concatenate([np.zeros(round(1.234 * SR), np.float32), saw[:SR]])
    db = BandEnvelope.of(silence_then_saw).db.astype(np.float32)
    loudness = db.max(axis=1)
    first = int(np.flatnonzero(loudness > loudness.max() - 30)[0])
    assert abs(first * 0.01 - 1.234) <= 0.02


@pytest.mark.parametrize("snr_db", [0.0, 10.0])
def test_refine_snaps_smeared_boundaries_to_the_sound(
    saw: np.ndarray, office: np.ndarray, snr_db: float
) -> None:
    """Score-based boundaries are typically early at onset and late at offset by 0.3-0.6 s."""
    at, length = 4.37, 2.5
    mix = _mix(office, saw[: round(length * SR)], at, snr_db)
    smeared = Event("f.wav", "Chainsaw", "/m/01j4z9", at - 0.55, at + length + 0.45, 0.8, 0.5)
    (refined,) = refine_events([smeared], BandEnvelope.of(mix), duration=len(mix) / SR)
    assert abs(refined.onset - at) <= 0.1, refined
    assert abs(refined.offset - (at + length)) <= 0.2, refined
    assert (refined.label, refined.peak, refined.mean) == ("Chainsaw", 0.8, 0.5)
    assert isinstance(refined.onset, float) and isinstance(refined.offset, float)


def test_refine_leaves_an_event_that_does_not_stand_out(office: np.ndarray) -> None:
    """A stretch of steady noise with nothing in it: no band rises above the background."""
    noise = np.random.default_rng(3).normal(0, 0.01, 12 * SR).astype(np.float32)
    ev = Event("f.wav", "White noise", "/m/07q6cd_", 3.0, 6.0, 0.6, 0.4)
    assert refine_events([ev], BandEnvelope.of(noise)) == [ev]


def test_refine_in_fluctuating_noise_stays_within_the_search_limits(shared_dir: Path) -> None:
    """Rain fluctuates by a few dB from one 10 ms frame to the next, so an event that is
    nothing but rain may move, but never further than the search limits allow."""
    rain = load(shared_dir / "audio" / "backgrounds" / "sounds" / "rain" / RAIN)[: 12 * SR]
    ev = Event("f.wav", "Rain", "/m/06mb1", 3.0, 6.0, 0.6, 0.4)
    opts = RefineOptions()
    (moved,) = refine_events([ev], BandEnvelope.of(rain), opts)
    assert ev.onset - opts.search_before - 0.011 <= moved.onset <= ev.onset + opts.search_inside
    assert ev.offset - opts.search_inside <= moved.offset <= ev.offset + opts.search_after + 0.011


def test_refine_moves_boundaries_only_within_the_search_limits(
    saw: np.ndarray, office: np.ndarray
) -> None:
    at = 5.0
    env = BandEnvelope.of(_mix(office, saw[: 2 * SR], at, 10.0))
    opts = RefineOptions(search_before=0.5, search_inside=1.5)
    early = Event("f.wav", "Chainsaw", "/m/01j4z9", at - 1.0, at + 2.0, 0.8, 0.5)
    (refined,) = refine_events([early], env, opts)
    assert abs(refined.onset - at) <= 0.1  # moved inwards by 1 s: within search_inside
    late = dataclasses.replace(early, onset=at + 1.0)
    (refined,) = refine_events([late], env, opts)
    assert refined.onset == pytest.approx(at + 0.5, abs=0.011)  # stops at search_before


def test_refined_same_label_events_that_meet_are_joined(saw: np.ndarray) -> None:
    sound = np.concatenate(
        [np.zeros(2 * SR, np.float32), saw[: 3 * SR], np.zeros(2 * SR, np.float32)]
    )
    sound += np.random.default_rng(1).normal(0, 1e-4, len(sound)).astype(np.float32)
    a = Event("f.wav", "Chainsaw", "/m/01j4z9", 1.6, 3.6, 0.9, 0.6)
    b = Event("f.wav", "Chainsaw", "/m/01j4z9", 3.9, 5.3, 0.7, 0.4)
    joined = refine_events([a, b], BandEnvelope.of(sound))
    assert len(joined) == 1
    assert joined[0].peak == 0.9
    assert 0.4 < joined[0].mean < 0.6
    assert abs(joined[0].onset - 2.0) <= 0.1


def test_options_are_validated() -> None:
    RefineOptions().validate()
    for bad in ({"level": 1.0}, {"search_before": -1.0}, {"min_bands": 0}):
        with pytest.raises(ValueError, match="refine"):
            dataclasses.replace(RefineOptions(), **bad).validate()


def test_envelope_spilled_to_disk_reads_back_the_same(
    office: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past SPILL_BYTES the frames go to a temporary file; reading them back changes nothing."""
    import earmark.boundaries as boundaries

    in_memory = BandEnvelope.of(office)
    monkeypatch.setattr(boundaries, "SPILL_BYTES", 20_000)  # about 1.5 s of frames
    env = BandEnvelope()
    for start in range(0, len(office), SR):
        env.update(office[start : start + SR])
    env.finish()
    assert env.spilled and not in_memory.spilled
    np.testing.assert_array_equal(env.db, in_memory.db)
    np.testing.assert_array_equal(env.frames(250, 700), in_memory.frames(250, 700))
    env.close()


def test_long_event_boundaries_are_refined_on_their_own_stretches(saw: np.ndarray) -> None:
    """An event longer than LONG_EVENT (a TV on for an hour) is refined at both ends."""
    from earmark.boundaries import LONG_EVENT

    rng = np.random.default_rng(5)
    quiet = rng.normal(0, 1e-3, 10 * SR).astype(np.float32)
    long_sound = np.tile(saw, 9)[: 40 * SR]  # 40 s of chainsaw
    signal = np.concatenate([quiet, long_sound, quiet])
    assert LONG_EVENT < 40
    ev = Event("f.wav", "Chainsaw", "/m/01j4z9", 9.75, 50.5, 0.8, 0.5)  # both ends off
    (refined,) = refine_events([ev], BandEnvelope.of(signal))
    assert abs(refined.onset - 10.0) <= 0.1
    assert abs(refined.offset - 50.0) <= 0.1


@pytest.mark.parametrize("n", [1, 2, 5, 300, 701])
def test_sorted_percentiles_equal_numpy(n: int) -> None:
    rows = np.random.default_rng(n).normal(size=(64, n)).astype(np.float32)
    ours = sorted_percentiles(np.sort(rows, axis=1), (0.0, 20.0, 33.3, 50.0, 90.0, 100.0))
    for q, got in zip((0.0, 20.0, 33.3, 50.0, 90.0, 100.0), ours, strict=True):
        assert np.array_equal(got, np.percentile(rows, q, axis=1)), q


@pytest.mark.parametrize("spill", [False, True])
def test_envelope_frames_bands_first_is_the_transpose(
    saw: np.ndarray, spill: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if spill:  # frames read back from the temporary file
        monkeypatch.setattr("earmark.boundaries.SPILL_BYTES", 4096)
    env = BandEnvelope.of(saw)
    assert env.spilled == spill
    assert np.array_equal(env.frames(10, 200, bands_first=True), env.frames(10, 200).T)
    assert env.frames(10, 200, bands_first=True).flags.c_contiguous
    assert env.frames(300, 300, bands_first=True).shape == (64, 0)
