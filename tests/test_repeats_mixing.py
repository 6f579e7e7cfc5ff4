"""``earmark repeats`` when the theme shares the air (issue 15), on real recordings.

Five short episodes built by ``benchmarks/repeats_mixing.py`` from the shared folder: the same
20 s theme at 6 or 3 dB over a different real ambient bed in each (not ducked), dialogue over
6 s of it in some, one episode played 4.3 % faster (PAL), one without intro, 8 s outros, and
recurring 3-6 s snippets (a repeated line, an alarm, a siren sting) that are not intros.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from earmark import cli
from earmark.evaluation.series_mixing import build_mixing_series
from earmark.repeats import RepeatsResult, find_repeats, find_repeats_in_fingerprints


@pytest.fixture(scope="module")
def series(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list:
    out = tmp_path_factory.mktemp("mixing")
    return build_mixing_series(
        out, shared_dir, 2, seed=7, levels=(6.0, 3.0), pal_at=2, body_seconds=(45.0, 70.0)
    )


@pytest.fixture(scope="module")
def result(series: list) -> RepeatsResult:
    return find_repeats([p for p, _ in series], jobs=2)


def _kind(result: RepeatsResult, path: Path, kind: str):
    return next((o for o in result.occurrences(str(path)) if o.kind == kind), None)


def test_plan_has_the_hard_conditions(series: list) -> None:
    specs = [s for _, s in series]
    assert {s.snr_db for s in specs} == {6.0, 3.0, None}
    assert len({s.bed for s in specs}) == len(specs)  # a different bed in every episode
    assert any(s.speech_over for s in specs)
    assert sum(s.speed != 1.0 for s in specs) == 1
    assert any(s.intro_start is None for s in specs)
    assert all(s.snippets for s in specs)


def test_intros_found_under_the_bed_with_their_boundaries(series: list, result) -> None:
    errors = []
    for path, spec in series:
        intro = _kind(result, path, "intro")
        if spec.intro_start is None:
            assert intro is None, f"{path.name}: false intro {intro}"
            continue
        assert intro is not None, f"{path.name} ({spec.snr_db} dB): intro not found"
        errors += [abs(intro.start - spec.intro_start), abs(intro.end - spec.intro_end)]
        assert abs(intro.start - spec.intro_start) < 1.5, (path.name, intro, spec)
        assert abs(intro.end - spec.intro_end) < 1.5, (path.name, intro, spec)
    assert float(np.mean(errors)) <= 0.5, errors


def test_outros_found_and_no_false_segments(series: list, result) -> None:
    for path, spec in series:
        outro = _kind(result, path, "outro")
        assert outro is not None, path.name
        assert abs(outro.start - spec.outro_start) < 1.0 and abs(outro.end - spec.outro_end) < 1.0
    for path, spec in series:
        planted = [(spec.intro_start, spec.intro_end), (spec.outro_start, spec.outro_end)]
        planted += [(a, b) for _, a, b in spec.snippets]
        for o in result.occurrences(str(path)):
            assert any(a is not None and min(o.end, b) > max(o.start, a) for a, b in planted), o


def test_sped_up_episode_found_and_its_speed_reported(series: list, result) -> None:
    path, spec = next((p, s) for p, s in series if s.speed != 1.0)
    status = next(f for f in result.files if f.file == str(path))
    assert status.speed is not None and abs(status.speed - spec.speed) < 0.004, status
    intro = _kind(result, path, "intro")
    assert intro is not None and abs(intro.speed - spec.speed) < 0.004
    assert abs(intro.start - spec.intro_start) < 1.0 and abs(intro.end - spec.intro_end) < 1.0
    others = [f.speed for f in result.files if f.file != str(path) and f.speed is not None]
    assert others and all(v == 1.0 for v in others)
    assert result.summary()["other_speed"] == {str(path): round(status.speed, 4)}


def test_snippets_are_never_intro_or_outro_and_kinds_are_consistent(series: list, result) -> None:
    for path, spec in series:
        for name, a, b in spec.snippets:
            for o in result.occurrences(str(path)):
                if min(o.end, b) > max(o.start, a):
                    assert o.kind not in ("intro", "outro"), (path.name, name, o)
    for s in result.segments:
        assert {o.kind for o in s.occurrences} == {s.kind}


def test_missing_intro_is_said_with_the_best_candidate(series: list, result, capsys) -> None:
    path = next(p for p, s in series if s.intro_start is None)
    lacking = result.not_found(str(path))
    assert [k for k, _ in lacking] == ["intro"]
    confidence = lacking[0][1]
    assert confidence is not None and 0.0 <= confidence < 0.2
    assert result.summary()["no_intro"] == [str(path)]
    from earmark.repeats.cli import summary_text

    text = summary_text(result)
    assert f"{path}: " in text
    line = next(x for x in text.splitlines() if x.startswith(f"{path}: "))
    assert f"no intro found (best candidate confidence {confidence:.2f})" in line
    assert "segment 1 (intro): 4 of 5 files" in text


def test_cli_prints_what_was_not_found(series: list, tmp_path: Path, capsys) -> None:
    files = [str(p) for p, _ in series]
    code = cli.main(["repeats", *files, "-o", str(tmp_path / "out"), "-j", "1"])
    out = capsys.readouterr().out
    assert code == 0
    negative = next(p for p, s in series if s.intro_start is None)
    assert f"{negative}: " in out and "no intro found (best candidate confidence" in out
    pal = next(p for p, s in series if s.speed != 1.0)
    assert "speed x1.04" in next(x for x in out.splitlines() if x.startswith(f"{pal}: "))
    rows = list(csv.DictReader((tmp_path / "out" / "repeats.csv").open()))
    absent = [r for r in rows if r["status"] == "absent"]
    assert [(r["file"], r["kind"]) for r in absent] == [(str(negative), "intro")]
    assert 0.0 <= float(absent[0]["confidence"]) < 0.2
    data = json.loads((tmp_path / "out" / "repeats.json").read_text())
    entry = next(f for f in data["files"] if f["file"] == str(negative))
    assert [n["kind"] for n in entry["not_found"]] == ["intro"]
    assert data["summary"]["no_intro"] == [str(negative)]
    assert list(data["summary"]["other_speed"]) == [str(pal)]


def test_recurring_sound_effect_at_the_start_is_not_an_intro(shared_dir: Path) -> None:
    """A 6 s siren sting opening four files is ``other`` (so the files have no intro); the
    same files with a 20 s theme in its place get an intro."""
    from earmark.audio import load
    from earmark.repeats.fingerprint import FINGERPRINT_SAMPLE_RATE as SR
    from earmark.repeats.fingerprint import fingerprint_waveform

    sounds = shared_dir / "audio" / "backgrounds" / "sounds"
    siren = load(sounds / "urban" / "ambulance-siren.mp3", SR)[8 * SR : 14 * SR]
    theme = load(shared_dir / "audio" / "music" / "moh" / "reno_project-system.wav", SR)
    theme = theme[20 * SR : 40 * SR]
    speech = sorted((shared_dir / "audio" / "speech" / "asterisk").glob("*.wav"))
    rng = np.random.default_rng(5)

    def body(seconds: float) -> np.ndarray:
        parts = [np.zeros(0, np.float32)]
        while sum(p.size for p in parts) < seconds * SR:
            clip = load(speech[int(rng.integers(len(speech)))], SR)
            parts.append(clip * float(rng.uniform(0.5, 1.5)))
        x = np.concatenate(parts)[: int(seconds * SR)]
        return x + rng.normal(0, 0.003, x.size).astype(np.float32)

    def series(opening: np.ndarray) -> list:
        return [
            fingerprint_waveform(np.concatenate([body(float(2 + 3 * i)), opening, body(40.0)]), n)
            for i, n in enumerate("abcd")
        ]

    segments, _ = find_repeats_in_fingerprints(series(siren))
    sting = [s for s in segments if min(o.start for o in s.occurrences) < 25.0]
    assert sting, "the recurring sting should still be reported"
    assert all(s.kind == "other" for s in segments), [s.to_dict() for s in segments]
    segments, _ = find_repeats_in_fingerprints(series(theme))
    assert segments[0].kind == "intro" and len(segments[0].files) == 4
    assert all(s.kind == "other" for s in segments[1:])  # prompts re-used by the bodies
