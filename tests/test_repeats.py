"""``earmark repeats`` on a small series built from real recordings in the shared folder.

Five episodes of 1.5-2.5 minutes (speech over real background recordings, a real music excerpt
as intro and another as end credits) with the hard variations: intro at 0:00 and after cold
opens, MP3/AAC at 64 kbps, FLAC and WAV at 16-48 kHz, per-episode gain, speech over the start
and over the end of the intro music, a shortened intro, and one episode without an intro.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from earmark import cli
from earmark.evaluation.series import build_series
from earmark.outputs import read_events
from earmark.repeats import RepeatsResult, find_repeats, write_repeats


@pytest.fixture(scope="session")
def series(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list:
    out = tmp_path_factory.mktemp("series")
    return build_series(out, 5, shared_dir, seed=3, body_seconds=(50, 90), recap_at=4)


@pytest.fixture(scope="session")
def result(series: list) -> RepeatsResult:
    return find_repeats([p for p, _ in series], jobs=2)


def _occ(result: RepeatsResult, path: Path, kind: str):
    found = [o for o in result.occurrences(str(path)) if o.kind == kind]
    return found[0] if found else None


def test_series_has_every_variation(series: list) -> None:
    specs = [s for _, s in series]
    assert {s.fmt for s in specs} >= {"mp3", "m4a", "flac", "wav"}
    assert any(s.intro_start == 0.0 for s in specs)
    assert any(s.intro_start and s.intro_start > 10 for s in specs)
    assert {s.speech_over for s in specs} >= {"intro_start", "intro_end"}
    assert any(s.shortened for s in specs)
    assert any(s.intro_start is None for s in specs)
    assert len({s.sample_rate for s in specs}) >= 4
    assert sum(s.recap_end is not None for s in specs) == 1


def test_intros_found_with_boundaries(series: list, result: RepeatsResult) -> None:
    errors = []
    for path, spec in series:
        intro = _occ(result, path, "intro")
        if spec.intro_start is None:
            assert intro is None, f"{path.name}: false intro {intro}"
            continue
        assert intro is not None, f"{path.name}: intro not found"
        errors += [abs(intro.start - spec.intro_start), abs(intro.end - spec.intro_end)]
        # speech over an edge masks up to ~1 s of it; everything else is much closer
        assert abs(intro.start - spec.intro_start) < 1.5, (path.name, intro, spec)
        assert abs(intro.end - spec.intro_end) < 1.5, (path.name, intro, spec)
        assert 0.5 < intro.confidence <= 1.0
    assert float(np.mean(errors)) <= 0.5, errors


def test_shortened_intro_keeps_its_own_end(series: list, result: RepeatsResult) -> None:
    path, spec = next((p, s) for p, s in series if s.shortened)
    intro = _occ(result, path, "intro")
    assert intro is not None
    assert abs(intro.end - spec.intro_end) < 0.5
    full = [_occ(result, p, "intro") for p, s in series if s.intro_start is not None]
    assert max(o.duration for o in full if o) > intro.duration + 10


def test_episode_without_intro_is_reported_absent(series: list, result: RepeatsResult) -> None:
    intro = result.segment("intro")
    assert intro is not None
    lacking = [str(p) for p, s in series if s.intro_start is None]
    assert intro.missing == lacking
    assert set(intro.files) == {str(p) for p, s in series if s.intro_start is not None}


def test_outros_found_everywhere_and_no_false_segments(series: list, result: RepeatsResult) -> None:
    for path, spec in series:
        outro = _occ(result, path, "outro")
        assert outro is not None, path.name
        assert abs(outro.start - spec.outro_start) < 0.5
        assert abs(outro.end - spec.outro_end) < 0.5
    assert {s.kind for s in result.segments} == {"intro", "outro", "recap"}, [
        s.to_dict() for s in result.segments
    ]


def test_recap_of_previous_episode(series: list, result: RepeatsResult) -> None:
    k = next(i for i, (_, s) in enumerate(series) if s.recap_end is not None)
    (path, spec), (prev_path, _) = series[k], series[k - 1]
    recap = result.segment("recap")
    assert recap is not None and set(recap.files) == {str(path), str(prev_path)}
    here = _occ(result, path, "recap")
    assert here is not None
    assert abs(here.start - 0.0) < 0.5 and abs(here.end - spec.recap_end) < 0.5
    source = [o for o in recap.occurrences if o.file == str(prev_path)]
    # one recurring segment, one kind in every file: the repeated scene is part of the recap
    assert len(source) == 1 and source[0].kind == "recap"
    assert abs(source[0].start - spec.recap_from) < 0.5


def test_outputs(series: list, result: RepeatsResult, tmp_path: Path) -> None:
    written = write_repeats(result, tmp_path)
    rows = list(csv.DictReader(written["csv"].open()))
    absent = [r for r in rows if r["status"] == "absent"]
    assert [(Path(r["file"]).name, r["kind"]) for r in absent] == [
        (p.name, "intro") for p, s in series if s.intro_start is None
    ]
    events = read_events(written["events_csv"])
    assert sorted({e.label for e in events}) == ["Intro", "Outro", "Recap"]
    assert len(events) == len(result.occurrences())
    data = json.loads(written["json"].read_text())
    assert len(data["files"]) == len(series)
    for path, _ in series:
        text = (tmp_path / "files" / f"{path.name}.ffmeta").read_text()
        assert text.startswith(";FFMETADATA1\n")
        starts = [int(x.split("=")[1]) for x in text.splitlines() if x.startswith("START=")]
        ends = [int(x.split("=")[1]) for x in text.splitlines() if x.startswith("END=")]
        assert starts[0] == 0 and starts[1:] == ends[:-1]  # contiguous chapters
        assert "title=Outro" in text
        edl = (tmp_path / "files" / f"{path.name}.edl").read_text().splitlines()
        assert len(edl) == len(result.occurrences(str(path)))
        cmx = (tmp_path / "files" / f"{path.name}.cmx3600.edl").read_text()
        assert cmx.startswith(f"TITLE: {path.name}\nFCM: NON-DROP FRAME")


def test_cli_json_and_bad_file(series: list, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "broken.mp3"
    bad.write_text("this is not audio")
    files = [str(p) for p, _ in series[:3]] + [str(bad)]
    code = cli.main(["repeats", *files, "-o", str(tmp_path / "out"), "--json", "--quiet"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1  # one file failed, the others were still compared
    status = {Path(f["file"]).name: f for f in out["files"]}
    assert status["broken.mp3"]["status"] == "failed"
    assert "broken.mp3" in status["broken.mp3"]["error"]
    assert all(status[p.name]["status"] in ("ok", "partial") for p, _ in series[:3])
    assert any(s["kind"] == "outro" for s in out["segments"])
    assert (tmp_path / "out" / "repeats.csv").exists()


def test_unrelated_files_share_nothing(fixtures_dir: Path) -> None:
    files = [*sorted(fixtures_dir.glob("esc10_*.ogg"))[:4], fixtures_dir / "pyannote_sample.wav"]
    result = find_repeats(files, jobs=1)
    assert result.segments == []
    assert all(f.status in ("ok", "partial") for f in result.files)


def test_shared_silence_is_not_part_of_a_segment(shared_dir: Path) -> None:
    """Digital silence right after the shared music in both files does not extend the match."""
    from earmark.audio import load
    from earmark.repeats import find_repeats_in_fingerprints
    from earmark.repeats.fingerprint import FINGERPRINT_SAMPLE_RATE as SR
    from earmark.repeats.fingerprint import fingerprint_waveform

    music = load(shared_dir / "audio" / "music" / "moh" / "reno_project-system.wav", SR)
    theme = music[20 * SR : 45 * SR]
    rng = np.random.default_rng(1)
    speech = load(shared_dir / "audio" / "speech" / "asterisk" / "demo-instruct.wav", SR)

    def episode(before: float, body: np.ndarray) -> np.ndarray:
        noise = rng.normal(0, 0.003, int(before * SR)).astype(np.float32)
        return np.concatenate([noise, theme, np.zeros(3 * SR, np.float32), body])

    ep1 = episode(10.0, speech[: 15 * SR])
    ep2 = episode(31.0, rng.normal(0, 0.01, 15 * SR).astype(np.float32))
    segments, _ = find_repeats_in_fingerprints(
        [fingerprint_waveform(ep1, "a"), fingerprint_waveform(ep2, "b")]
    )
    assert len(segments) == 1
    a, b = segments[0].occurrences
    assert abs(a.start - 10.0) < 0.3 and abs(a.end - 35.0) < 0.3, a
    assert abs(b.start - 31.0) < 0.3 and abs(b.end - 56.0) < 0.3, b
