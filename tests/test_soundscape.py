"""Soundscapes mixed from real recordings: labels where the sound is, SNRs as requested."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from earmark.audio import load
from earmark.evaluation import load_reference
from earmark.evaluation.soundscape import (
    ForegroundClip,
    active_mask,
    active_span,
    make_soundscape,
    rms_db,
    write_soundscape,
)

SR = 32000
ESC_CLASSES = ("dog", "sneezing", "rooster", "crying_baby", "chainsaw", "clock_tick")


@pytest.fixture(scope="module")
def background(shared_dir: Path) -> np.ndarray:
    path = shared_dir / "audio/scaper/tests/data/audio/background/street"
    return load(path / "150993__saphe__street-scene-1.wav", sample_rate=SR)  # 45 s real street


@pytest.fixture(scope="module")
def clips(fixtures_dir: Path) -> list[ForegroundClip]:
    found = []
    for label in ESC_CLASSES:
        (path,) = fixtures_dir.glob(f"esc10_{label}_*.ogg")
        found.append(ForegroundClip(path, label))
    return found


def _frame_levels(x: np.ndarray, frame: int = 640, hop: int = 320) -> np.ndarray:
    """Independent frame-power measure for the checks (dB, one value per hop)."""
    n = max(1, 1 + (x.size - frame) // hop)
    return np.array([rms_db(x[i * hop : i * hop + frame]) for i in range(n)])


def _background_part(background: np.ndarray, info: dict, n: int, gain_db: float) -> np.ndarray:
    start = info["background_start_sample"]
    assert not info["background_looped"]
    scale = 10 ** ((gain_db + info["normalisation_gain_db"]) / 20)
    return background[start : start + n].astype(np.float64) * scale


def test_active_part_trims_padding(fixtures_dir: Path):
    # ESC-10 sneezing clip: a short sneeze in a 5 s clip padded with silence
    (path,) = fixtures_dir.glob("esc10_sneezing_*.ogg")
    x = load(path, sample_rate=SR)
    a, b = active_span(active_mask(x, SR))
    assert 0 < (b - a) / SR < 2.5 < x.size / SR
    levels = _frame_levels(x)
    loud = levels.max()
    assert rms_db(x[:a]) < loud - 40 if a > 0 else True
    assert rms_db(x[b:]) < loud - 40 if b < x.size else True
    assert active_mask(np.zeros(1000), SR).sum() == 0


def test_labels_fall_where_the_energy_is(background: np.ndarray, clips: list[ForegroundClip]):
    gain_db = -25.0  # quiet street, loud events: the events dominate inside their labels
    for seed in range(3):
        audio, events, info = make_soundscape(
            background, clips, duration=20.0, n_events=(3, 3), snr_db=(25.0, 25.0),
            rng=np.random.default_rng(seed), background_gain_db=gain_db, allow_overlap=False,
            return_info=True,
        )  # fmt: skip
        fg = audio - _background_part(background, info, audio.size, gain_db)
        labelled = np.zeros(audio.size, dtype=bool)
        for e in events:
            a, b = round(e.onset * SR), round(e.offset * SR)
            labelled[a:b] = True
            part = fg[a:b]
            assert 0 < e.offset - e.onset <= 5.01
            assert e.clip_offset - e.clip_onset == pytest.approx(e.offset - e.onset)
            # the label starts and ends on sound: first and last 30 ms within 43 dB of the peak
            peak = _frame_levels(part).max()
            edge = round(0.03 * SR)
            assert rms_db(part[:edge]) > peak - 43, (e, rms_db(part[:edge]), peak)
            assert rms_db(part[-edge:]) > peak - 43, (e, rms_db(part[-edge:]), peak)
        # nothing of any event lies outside the labels
        assert np.max(np.abs(fg[~labelled])) < 1e-6
        # and the mix is clearly louder inside each label than outside all of them
        rest = rms_db(audio[~labelled])
        for e in events:
            inside = rms_db(audio[round(e.onset * SR) : round(e.offset * SR)])
            assert inside > rest + 6, (e, inside, rest)


def test_snr_measured_on_the_mix(background: np.ndarray, clips: list[ForegroundClip]):
    checked = 0
    for seed in range(8):
        for snr_range in ((0.0, 0.0), (6.0, 20.0), (-3.0, 3.0)):
            audio, events, info = make_soundscape(
                background, clips, duration=12.0, n_events=(1, 1), snr_db=snr_range,
                rng=np.random.default_rng(seed), background_gain_db=-6.0, return_info=True,
            )  # fmt: skip
            (event,) = events
            assert snr_range[0] <= event.snr_db <= snr_range[1]
            bg = _background_part(background, info, audio.size, -6.0)
            a, b = round(event.onset * SR), round(event.offset * SR)
            fg = audio[a:b] - bg[a:b]
            # active frames of the event, measured independently on the mix minus background
            frame, hop = 640, 320
            levels = _frame_levels(fg, frame, hop)
            mask = np.zeros(fg.size, dtype=bool)
            for i in np.flatnonzero(levels >= levels.max() - 40):
                mask[i * hop : i * hop + frame] = True
            measured = rms_db(fg[mask]) - rms_db(bg[a:b][mask])
            assert measured == pytest.approx(event.snr_db, abs=0.5), (seed, event)
            checked += 1
    assert checked == 24


def test_deterministic_for_a_seed(background: np.ndarray, clips: list[ForegroundClip]):
    kwargs = dict(duration=15.0, n_events=(2, 5), snr_db=(0.0, 10.0))
    a1, e1 = make_soundscape(background, clips, rng=np.random.default_rng(42), **kwargs)
    a2, e2 = make_soundscape(background, clips, rng=np.random.default_rng(42), **kwargs)
    a3, e3 = make_soundscape(background, clips, rng=np.random.default_rng(43), **kwargs)
    assert a1.dtype == np.float32 and a1.size == 15 * SR
    np.testing.assert_array_equal(a1, a2)
    assert e1 == e2
    assert e1 != e3 or not np.array_equal(a1, a3)


def test_no_overlap_when_disallowed(background: np.ndarray, clips: list[ForegroundClip]):
    for seed in range(10):
        _, events = make_soundscape(
            background, clips, duration=25.0, n_events=(6, 8), snr_db=(0.0, 10.0),
            rng=np.random.default_rng(seed), allow_overlap=False, min_gap=0.5,
        )  # fmt: skip
        assert events == sorted(events, key=lambda e: e.onset)
        assert len(events) >= 3
        for first, second in itertools.pairwise(events):
            assert second.onset >= first.offset + 0.5 - 1e-6
        assert all(0 <= e.onset < e.offset <= 25.0 for e in events)


def test_same_label_events_apart_even_with_overlap(
    background: np.ndarray, clips: list[ForegroundClip]
):
    dog = [c for c in clips if c.label == "dog"]
    _, events = make_soundscape(
        background, dog, duration=10.0, n_events=(6, 6), snr_db=(0.0, 0.0),
        rng=np.random.default_rng(0), allow_overlap=True, min_gap=0.5,
    )  # fmt: skip
    spans = sorted((e.onset, e.offset) for e in events)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end + 0.5 - 1e-6


def test_short_background_is_looped_and_loud_mix_normalised(
    background: np.ndarray, clips: list[ForegroundClip]
):
    short = background[: 3 * SR]
    audio, _, info = make_soundscape(
        short, clips, duration=10.0, n_events=(2, 2), snr_db=(30.0, 30.0),
        rng=np.random.default_rng(1), background_gain_db=10.0, return_info=True,
    )  # fmt: skip
    assert info["background_looped"]
    assert audio.size == 10 * SR
    assert np.max(np.abs(audio)) <= 0.99 + 1e-6
    assert info["normalisation_gain_db"] < 0  # scaled down as a whole, not clipped


def test_write_soundscape(tmp_path: Path, background: np.ndarray, clips: list[ForegroundClip]):
    audio, events = make_soundscape(
        background, clips, duration=8.0, n_events=(2, 3), snr_db=(5.0, 5.0),
        rng=np.random.default_rng(3),
    )  # fmt: skip
    wav = tmp_path / "out" / "scape.wav"
    write_soundscape(wav, audio, events, SR)
    assert sorted(p.name for p in wav.parent.iterdir()) == ["scape.tsv", "scape.wav"]
    assert (
        wav.with_suffix(".tsv").read_text().splitlines()[0]
        == "filename\tonset\toffset\tevent_label"
    )
    back = load(wav, sample_rate=SR)
    np.testing.assert_allclose(back, audio, atol=1e-6)
    ref = load_reference(wav.with_suffix(".tsv"))
    assert [(r.file, r.label) for r in ref] == [("scape.wav", e.label) for e in events]
    assert [r.onset for r in ref] == pytest.approx([e.onset for e in events], abs=1e-4)
    write_soundscape(tmp_path / "pcm.wav", audio, events, SR, dtype="int16")
    assert np.max(np.abs(load(tmp_path / "pcm.wav", sample_rate=SR) - audio)) < 1e-4
