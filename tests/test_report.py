"""The analysis report: built from a real run over several files, one of them corrupt."""

from __future__ import annotations

import json
import re
from html import escape as html_escape
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from chromium import dump_dom, screenshot

from earmark import cli
from earmark.audio import _load_native
from earmark.events import Event
from earmark.outputs import read_events
from earmark.report import build_report, dataset_rows, timestamp
from earmark.report.plots import MAX_PAGES, pages

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def run_dir(shared_dir: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``earmark detect --report`` over speech, a soundscape, 25 s of rain and a corrupt file."""
    inputs = tmp_path_factory.mktemp("inputs")
    fixtures = shared_dir / "audio" / "fixtures"
    rain, sr = _load_native(shared_dir / "audio/backgrounds/sounds/rain/heavy-rain.mp3")
    sf.write(inputs / "rain.flac", rain[: 25 * sr], sr)
    good = (fixtures / "scaper_soundscape_20200501_22050.wav").read_bytes()
    (inputs / "soundscape.wav").write_bytes(good)
    # a real file whose header is destroyed: it cannot be decoded
    (inputs / "corrupt.wav").write_bytes(b"\0" * 64 + good[64:4096])
    (inputs / "speech.wav").write_bytes((fixtures / "panns_R9_ZSCveAHg_7s.wav").read_bytes())
    out = tmp_path_factory.mktemp("run")
    code = cli.main(["detect", str(inputs), "-o", str(out), "--report", "-q"])
    assert code == cli.EXIT_FILES_FAILED  # the corrupt file fails, the others are written
    return out


def test_report_files_written(run_dir: Path) -> None:
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    # method from the manifest
    sha = manifest["model"]["checkpoint_sha256"]
    for text in (html, md):
        assert sha in text and "mn04_as" in text and "0.432" in text
        assert f"earmark detect --config {run_dir.resolve() / 'config.yaml'}" in text
        assert "soxr" in text and "local scoring" in text
    # self-contained: nothing loaded from elsewhere, pictures embedded
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html
    ok_files = [f for f in manifest["files"] if f["status"] == "ok"]
    # one picture per file: spectrogram, events, scores and level on one time axis
    assert html.count("data:image/png;base64,") == len(ok_files)


def test_report_has_every_event(run_dir: Path) -> None:
    events = read_events(run_dir / "events.json")
    assert events
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    for e in events:
        row = f"| {e.label} | {timestamp(e.onset)} | {timestamp(e.offset)} |"
        assert row in md, row
        assert f"<td>{timestamp(e.onset)}</td><td>{timestamp(e.offset)}</td>" in html
    report = build_report(run_dir)
    assert sorted(report.events, key=lambda e: (e.file, e.onset, e.label)) == sorted(
        events, key=lambda e: (e.file, e.onset, e.label)
    )
    totals = {label: n for label, n, _ in report.class_totals()}
    assert sum(totals.values()) == len(events)


def test_failed_file_in_report(run_dir: Path) -> None:
    report = build_report(run_dir)
    (failed,) = [f for f in report.files if f.status == "failed"]
    assert failed.path.endswith("corrupt.wav")
    error = failed.entry["error"]
    assert error and "corrupt.wav" in error
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert f"**Failed:** {error}" in md
    assert "decode_failed" in {a.kind for a in report.anomalies}
    assert "Failed:" in html and "corrupt.wav" in html


def test_dataset_levels_and_run_anomalies(run_dir: Path) -> None:
    report = build_report(run_dir)
    by_name = {Path(f.path).name: f for f in report.files}
    rain = by_name["rain.flac"]
    signal = rain.entry["audio"]["signal"]
    assert -40 < signal["loudness_lufs"] < -10 and signal["noise_floor_dbfs"] < signal["peak_dbfs"]
    kinds = {a.kind for a in rain.anomalies}
    # heavy rain is broadband noise, and the model hears rain through the whole file
    assert {"broadband_noise", "background"} <= kinds
    background = next(a for a in rain.anomalies if a.kind == "background")
    assert "Rain" in background.detail
    speech = by_name["speech.wav"]
    assert not {a.kind for a in speech.anomalies} & {"clipping", "low_level", "band_limited"}
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "Sound present through most of the file" in md and "Why these make" in md
    # each kind's explanation is written once, however many rows it has
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    for a in report.anomalies:
        assert md.count(a.why) == 1 and html.count(html_escape(a.why)) == 1, a.kind


def test_reproduce_line_repeats_the_run_from_elsewhere(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report's "Reproduce" command works as written, from any folder."""
    import shlex

    line = json.loads((run_dir / "manifest.json").read_text())["reproduce"]
    assert line in (run_dir / "report.md").read_text(encoding="utf-8")
    argv = shlex.split(line.replace("<new-out>", str(tmp_path / "again")))
    monkeypatch.chdir(tmp_path)
    assert argv[:2] == ["earmark", "detect"]
    assert cli.main([*argv[1:], "-q"]) == cli.EXIT_FILES_FAILED  # the corrupt file again
    before = sorted((e.file, e.label, e.onset) for e in read_events(run_dir / "events.json"))
    again = sorted(
        (e.file, e.label, e.onset) for e in read_events(tmp_path / "again" / "events.json")
    )
    assert [(Path(f).name, la, t) for f, la, t in again] == [
        (Path(f).name, la, t) for f, la, t in before
    ]


def test_unknown_sound_needs_loud_unexplained_audio(run_dir: Path) -> None:
    from earmark.report.anomalies import unknown

    report = build_report(run_dir)
    scape = next(f for f in report.files if f.path.endswith("soundscape.wav"))
    assert scape.signal is not None and scape.scores is not None
    # with the model's real scores, the loud siren (2-7 s) is explained
    found = unknown(scape.path, scape.signal, scape.scores, scape.hop, scape.names)
    assert not any(a < 6.0 and b > 3.0 for r in found for a, b in r.regions)
    # the same audio with every class silenced is loud and unexplained there
    muted = np.zeros_like(scape.scores)
    (anomaly,) = unknown(scape.path, scape.signal, muted, scape.hop, scape.names)
    assert any(a <= 3.0 and b >= 6.0 for a, b in anomaly.regions), anomaly.regions


def test_report_command_json(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = cli.main(["report", str(run_dir), "-o", str(tmp_path), "--json", "--no-pictures"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert Path(out["html"]).is_file() and Path(out["markdown"]).is_file()
    assert any(a["kind"] == "decode_failed" for a in out["anomalies"])
    assert cli.main(["report", str(tmp_path / "nothing")]) == cli.EXIT_USAGE


def test_timeline_renders_in_chromium(run_dir: Path, tmp_path: Path) -> None:
    """Without pictures the script draws each file's timeline; with pictures the figure's
    event lanes are the timeline (one per file, not two)."""
    assert cli.main(["report", str(run_dir), "-o", str(tmp_path), "--no-pictures", "-q"]) == 0
    dom = dump_dom(tmp_path / "report.html")
    report = build_report(run_dir)
    drawn = len(re.findall(r'<rect class="event"', dom))
    assert drawn == len(report.events) > 0
    rendered = [int(n) for n in re.findall(r'data-rendered="(\d+)"', dom)]
    assert sum(rendered) == len(report.events)
    page = run_dir / "report.html"
    assert "class='timeline'" not in page.read_text(encoding="utf-8")
    import matplotlib.image

    png = screenshot(page, ARTIFACTS / "report.png", width=1280, height=6000)
    pixels = matplotlib.image.imread(png)[..., :3]
    assert pixels.shape[0] == 6000 and pixels.std() > 0.05  # not a blank page
    # the files' sections further down: timelines (drawn by the script) and pictures
    colourful = np.ptp(pixels[3000:], axis=2) > 0.2  # saturated pixels: event bars, spectrogram
    assert colourful.mean() > 0.02


def test_long_files_get_pages() -> None:
    events = [Event("f", "Speech", "/m/09x0r", t, t + 2.0, 0.5, 0.4) for t in range(0, 3600, 7)]
    events += [Event("f", "Dog", "/m/0bt9lr", 1805.0 + t, 1806.0 + t, 0.9, 0.8) for t in range(50)]
    spans, left_out = pages(3600.0, events)
    assert len(spans) == MAX_PAGES and left_out == 60 - MAX_PAGES
    assert (1800.0, 1860.0) in spans  # the busiest minute is drawn
    assert spans == sorted(spans)
    assert pages(100.0, events) == ([(0.0, 60.0), (60.0, 100.0)], 0)


def test_timestamp() -> None:
    assert timestamp(0) == "0:00:00.000"
    assert timestamp(3725.0126) == "1:02:05.013"
    assert timestamp(59.9999) == "0:01:00.000"


def test_report_of_a_run_without_levels_measures_them(
    shared_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    """``detect`` without ``--report`` skips the level meter (speed); ``earmark report`` then
    decodes the files again, measures them and keeps the levels for next time."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    speech = shared_dir / "audio" / "fixtures" / "panns_R9_ZSCveAHg_7s.wav"
    (inputs / "speech.wav").write_bytes(speech.read_bytes())
    assert cli.main(["detect", str(inputs), "-o", str(out), "-q"]) == cli.EXIT_OK
    manifest = json.loads((out / "manifest.json").read_text())
    assert "signal_file" not in manifest["files"][0]["audio"]
    assert not list(out.rglob("*.signal.npz"))
    report = build_report(out)
    (file_report,) = report.files
    assert file_report.signal is not None and file_report.signal.duration == pytest.approx(
        7, abs=0.1
    )
    assert len(list(out.rglob("*.signal.npz"))) == 1
    # the data table shows what the report measured
    (row,) = dataset_rows(report)
    assert row["lufs"] is not None and row["noise_floor"] < row["peak"]
    assert row["snr"] == pytest.approx(file_report.signal.snr_db, abs=0.01)


def test_report_never_imports_torch(run_dir: Path) -> None:
    """The API image renders reports and has no torch: building one must not import it."""
    import subprocess
    import sys

    code = (
        "import sys; from earmark.report import write_report; "
        f"write_report({str(run_dir)!r}); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr[-2000:]


def test_hostile_label_does_not_break_the_scripts(run_dir: Path, tmp_path: Path) -> None:
    """A class name like ``<!--<script>`` (custom classes can be named anything) stays data."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    data = json.loads((copy / "events.json").read_text())
    for event in data["events"][:3]:
        event["label"] = "<!--<script>"
    data["events"][3]["label"] = "</script><b>x"
    (copy / "events.json").write_text(json.dumps(data))
    assert cli.main(["report", str(copy), "--no-pictures", "-q"]) == 0
    html = (copy / "report.html").read_text(encoding="utf-8")
    script = html.split("<script id='timeline-data' type='application/json'>")[1]
    assert "<" not in script.split("</script>")[0]
    dom = dump_dom(copy / "report.html")
    rendered = [int(n) for n in re.findall(r'data-rendered="(\d+)"', dom)]
    assert sum(rendered) == len(data["events"])  # every timeline was drawn: the scripts ran
