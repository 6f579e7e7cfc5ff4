"""``earmark listen`` on real audio: streaming scores, the event tracker against ``detect``'s
post-processing, the live detector against ``detect``, and the command on a live stream that
FFmpeg serves at real-time pace, cut and started again mid-way."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from needs import missing
from test_listen_sinks import Broker, Receiver, Subscriber

from earmark.audio import load
from earmark.boundaries import BandEnvelope, RefineOptions, refine_events
from earmark.events import Event, PostprocessOptions, scores_to_events
from earmark.listen.detector import LiveDetector
from earmark.listen.listener import ClipWriter, Listener
from earmark.listen.live_events import LiveEvent
from earmark.listen.options import LiveOptions
from earmark.listen.sources import parse_source, redact
from earmark.listen.tracker import EventTracker
from earmark.pipeline import DetectOptions, process_file
from earmark.scoring import DEFAULT_MARGIN_FRAMES, ScoringOptions
from earmark.sounds import join_related
from earmark.tagger import Tagger, load_model

SR = 32000
RESTART = 62 * 0.32
"""Where the stream returns in the scene (19.84 s): on detect's frame grid, so that frames
after the return cover the same audio as detect's."""
SOUNDS = ("dog", "chainsaw", "crying_baby", "rooster", "helicopter", "sneezing")


@pytest.fixture(scope="module")
def tagger(model_dir: Path) -> Tagger:
    return load_model(threads=1)


@pytest.fixture(scope="module")
def scene(shared_dir: Path, fixtures_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 s of a real cafe with six real ESC-10 sounds in it, one every 6 s."""
    cafe = load(shared_dir / "audio" / "backgrounds" / "sounds" / "places" / "cafe.mp3")
    x = cafe[: 40 * SR] * 0.5
    for i, name in enumerate(SOUNDS):
        clip = load(next(fixtures_dir.glob(f"esc10_{name}_*.ogg")))
        at = (3 + 6 * i) * SR
        x[at : at + len(clip)] += clip[: len(x) - at]
    import soundfile as sf

    path = tmp_path_factory.mktemp("listen") / "scene.wav"
    sf.write(path, x.astype(np.float32), SR, subtype="FLOAT")
    return path


def same(a: Event, b: Event, tolerance: float = 0.5) -> bool:
    return (
        a.label == b.label
        and abs(a.onset - b.onset) <= tolerance
        and abs(a.offset - b.offset) <= tolerance
    )


def test_stream_scorer_with_full_lookahead_equals_a_whole_file_pass(tagger, scene):
    x = load(scene)
    scorer = tagger.scorer(ScoringOptions())
    whole = scorer.score(x).scores
    stream = scorer.stream(block_frames=2, lookahead_frames=DEFAULT_MARGIN_FRAMES)
    parts = []
    for i in range(0, len(x), 1777):  # odd chunk sizes: blocks never line up with them
        block = stream.push(x[i : i + 1777])
        if block is not None:
            assert block.start == sum(len(p) for p in parts)
            parts.append(block.scores)
    block = stream.finish()
    parts.append(block.scores)
    streamed = np.concatenate(parts)
    assert streamed.shape == whole.shape
    # each frame sees the margin (7.68 s) on both sides, as in detect's blocks: the same
    # approximation of one pass over everything
    np.testing.assert_allclose(streamed, whole, atol=5e-3)
    # a short look-ahead gives scores sooner, and they are not those of a whole-file pass
    short = scorer.stream(block_frames=2, lookahead_frames=1)
    quick = [b.scores for i in range(0, len(x), SR) if (b := short.push(x[i : i + SR]))]
    quick.append(short.finish().scores)
    assert np.abs(np.concatenate(quick) - whole).max() > 0.01


def test_tracker_gives_detects_events_from_the_same_scores(tagger, scene):
    x = load(scene)
    frames = tagger.scorer(ScoringOptions()).score(x)
    post = PostprocessOptions()
    step = 3

    def batch(refine: RefineOptions) -> list[Event]:
        found = scores_to_events(
            frames.scores, frames.hop, tagger.labels, post, duration=frames.duration
        )
        if refine.refine:
            found = refine_events(found, BandEnvelope.of(x), refine, frames.duration)
        return join_related(found, tagger.ontology)

    def live(refine: RefineOptions) -> tuple[list, list]:
        tracker = EventTracker(tagger.labels, post, refine_options=refine, join=tagger.ontology)
        envelope = BandEnvelope()
        ended, started = [], []
        for i in range(0, frames.n_frames, step):
            envelope.update(x[i * 10240 : (i + step) * 10240])
            update = tracker.add(i, frames.scores[i : i + step], envelope.drain())
            ended += update.ended
            started += update.started
            if i == 60:
                assert ended  # events come as the stream goes, not at its end
        return ended + tracker.finish(frames.duration).ended, started

    def keys(events: list[Event]) -> list[tuple[str, float, float]]:
        return sorted((e.label, round(e.onset, 2), round(e.offset, 2)) for e in events)

    # score-based boundaries: exactly detect's events, each once
    expected = batch(RefineOptions(refine=False))
    ended, started = live(RefineOptions(refine=False))
    assert len(expected) > 20
    assert keys([t.event for t in ended]) == keys(expected)
    # refined on the signal: the background after an event is estimated from what has arrived
    # when it ends (detect reads 3 s after it), so boundaries may move a little
    expected = batch(RefineOptions())
    refined = [t.event for t in live(RefineOptions())[0]]
    matched = [e for e in expected if any(same(e, f) for f in refined)]
    assert len(matched) >= 0.9 * len(expected)
    assert abs(len(refined) - len(expected)) <= 0.1 * len(expected)

    # every started notice is followed by an ended event that covers it: the same class, or
    # a related class that took it in as an alternative (one event per sound)
    def ends(t):
        for u in ended:
            classes = {u.event.mid} | {mid for _, mid, _ in u.event.alternatives}
            if t.event.mid in classes and u.event.onset - 3.0 <= t.event.onset <= u.event.offset:
                return True
        return False

    assert len(started) > 10 and all(ends(t) for t in started)

    # memory: the window holds the open events, and an event never longer than max_window
    short = EventTracker(tagger.labels, post, max_window=10.0)
    pieces = []
    for i in range(0, frames.n_frames, step):
        pieces += short.add(i, frames.scores[i : i + step]).ended
        assert short.window_frames <= 10.0 / frames.hop + 2 * short.settle + step
    pieces += short.finish(frames.duration).ended
    assert all(t.event.duration <= 10.0 + 1e-6 for t in pieces)
    assert any(t.truncated for t in pieces)  # the cafe's murmur goes on for 40 s


def test_exact_live_detection_gives_detects_events(tagger, scene):
    expected = process_file(tagger, scene, None, DetectOptions()).events
    live = LiveDetector(
        tagger, DetectOptions(), LiveOptions(lookahead_frames=DEFAULT_MARGIN_FRAMES)
    )
    x = load(scene)
    found = []
    for i in range(0, len(x), 3200):
        found += [t.event for t in live.push(x[i : i + 3200]).ended]
    found += [t.event for t in live.finish().ended]
    assert len(expected) > 20
    assert len(found) == len(expected)
    assert all(any(same(e, f, 0.05) for f in found) for e in expected)
    dog = [f for f in found if f.label in ("Dog", "Bark", "Bow-wow", "Animal")]
    assert any(2.5 < f.onset < 5.0 for f in dog)  # the dog barks from 3 s


def test_level_gate_and_clips(tagger, scene, tmp_path):
    quiet = LiveDetector(tagger, DetectOptions(), LiveOptions(level_gate_db=-3.0))
    x = load(scene)
    ended = quiet.push(x).ended + quiet.finish().ended
    assert ended == []  # nothing in this scene reaches -3 dBFS
    loud = LiveDetector(tagger, DetectOptions(), LiveOptions(level_gate_db=-60.0))
    assert len(loud.push(x).ended + loud.finish().ended) > 10

    class Collect:
        def __init__(self) -> None:
            self.events: list[LiveEvent] = []

        def emit(self, event: LiveEvent) -> None:
            self.events.append(event)

    sink = Collect()
    clips = ClipWriter(tmp_path / "clips", 1.0, 1.0)
    listener = Listener(
        tagger, [parse_source(f"scene={scene}")], DetectOptions(), LiveOptions(), sink, clips=clips
    )
    listener.start()
    assert listener.wait(120)
    assert listener.status["scene"].ended and len(sink.events) > 10
    for event in sink.events[:5]:
        clip = Path(event.clip)
        assert clip.is_file() and clip.suffix == ".wav"
        seconds = len(load(clip)) / SR
        assert abs(seconds - (event.duration + 2.0)) < 0.6 or event.stream_onset < 1.0
    assert not list((tmp_path / "clips").rglob("*.part"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gopher://x/y", "unsupported stream scheme"),
        ("alsa:", "name the device"),
        ("follow:", "name the file"),
        ("", "empty source"),
    ],
)
def test_bad_sources_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_source(text)


def test_source_names_hide_passwords():
    src = parse_source("rtsp://admin:secret@10.0.0.5:554/stream1")
    assert src.name == "rtsp://admin@10.0.0.5:554/stream1" and "secret" in src.url
    assert parse_source("door=rtsp://admin:secret@cam/x").name == "door"
    assert redact("http://h/x?a=b") == "http://h/x?a=b"
    assert parse_source("follow:/tmp/a.wav").options == {"follow": "1"}


# ---------------------------------------------------------------------- a real live stream
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ffmpeg() -> Iterator[str]:
    path = shutil.which("ffmpeg")
    if path is None:
        missing("ffmpeg is not installed (tools/system-deps.sh installs it)")
    yield path


def serve(ffmpeg: str, audio: Path, port: int, start: float = 0.0) -> subprocess.Popen:
    """FFmpeg serving ``audio`` from ``start`` s at real-time pace over HTTP, as FLAC in Ogg
    (lossless, so the listener hears the samples ``detect`` reads)."""
    return subprocess.Popen(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-ss", str(start), "-i", str(audio),
         "-c:a", "flac", "-f", "ogg", "-listen", "1", f"http://127.0.0.1:{port}/live.ogg"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_listen_to_a_stream_that_drops_and_returns(tagger, scene, ffmpeg, tmp_path):
    """Events go to a file, a local webhook receiver and a Mosquitto broker at once. The stream
    is cut at 16 s of the scene (mid-way through the crying baby, 15-20 s) and
    served again from 19.84 s: events before the cut and after the return are detect's, shifted
    by the gap; none is reported twice; the health endpoint says when the source is down."""
    port, hport = free_port(), free_port()
    (tmp_path / "mqtt").mkdir()
    broker, receiver = Broker(tmp_path / "mqtt"), Receiver()
    subscriber = Subscriber(broker.port, "earmark/#")
    server = serve(ffmpeg, scene, port)
    out = tmp_path / "events"
    cmd = [sys.executable, "-m", "earmark", "listen", f"cam=http://127.0.0.1:{port}/live.ogg",
           "--exact", "--sink", f"file:{out}?format=jsonl", "--sink", f"webhook:{receiver.url}",
           "--sink", f"mqtt://127.0.0.1:{broker.port}/earmark", "--health-port", str(hport),
           "--json", "--threads", "1"]  # fmt: skip
    env = {**os.environ, "EARMARK_STATE_DIR": str(tmp_path / "state")}
    listener = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait for 16 s of audio
            time.sleep(0.5)
            try:
                code, body = health(hport)
            except OSError:
                continue
            if body["sources"][0]["audio_seconds"] >= 16.0:
                break
        server.terminate()
        server.wait(10)
        cut = time.monotonic()
        down = None
        while time.monotonic() - cut < 8 and down is None:
            code, body = health(hport)
            if code == 503:
                down = body
            time.sleep(0.2)
        assert down is not None and not down["sources"][0]["up"]
        server = serve(ffmpeg, scene, port, start=RESTART)
        while time.monotonic() - cut < 60:
            time.sleep(0.5)
            code, body = health(hport)
            if body["sources"][0]["reconnects"] >= 1 and code == 200:
                break
        assert code == 200
        server.wait(40)  # the rest of the scene, at real-time pace
        time.sleep(3)
        listener.send_signal(signal.SIGINT)
        stdout, stderr = listener.communicate(timeout=30)
        time.sleep(1.0)  # the broker's last deliveries to the subscriber
    finally:
        for proc in (server, listener):
            if proc.poll() is None:
                proc.kill()
        subscriber.stop()
        broker.stop()
        receiver.stop()
    assert listener.returncode == 0, stderr
    assert "Traceback" not in stderr
    summary = json.loads(stdout)["sources"][0]
    assert summary["reconnects"] >= 1 and summary["gaps"]
    lines = [
        json.loads(line) for f in sorted(out.glob("*.jsonl")) for line in f.read_text().splitlines()
    ]
    assert lines and all(e["source"] == "cam" and e["kind"] == "ended" for e in lines)
    ids = [e["id"] for e in lines]
    assert len(ids) == len(set(ids))  # nothing twice
    # the webhook and MQTT got the same events, each once (MQTT delivers at least once)
    assert list(receiver.events) == [f"{i}:ended" for i in ids]
    heard = [e["id"] for e in subscriber.events()]
    assert sorted(set(heard)) == sorted(ids)
    assert subscriber.of("/cam/status")[-1] == b"offline"

    # stream time -> scene time: before the cut as it is; after, minus the gap, plus 20 - cut
    heard_before = resumed = summary["gaps"][0][0]
    for at, gap in summary["gaps"]:  # failed attempts follow each other: one gap, in pieces
        if abs(at - resumed) > 0.01:
            break  # a later gap, after the second connection's audio
        resumed += gap
    expected = process_file(tagger, scene, None, DetectOptions()).events

    def scene_time(t: float) -> float:
        return t if t < heard_before else t - resumed + RESTART

    found = [
        Event(
            "",
            e["label"],
            e["mid"],
            scene_time(e["stream_onset"]),
            scene_time(e["stream_offset"]),
            e["peak"],
            e["mean"],
        )
        for e in lines
    ]
    # events well clear of the cut (the scores there need 7.7 s of context on each side)
    clear = [e for e in expected if e.offset < heard_before - 8.0 or e.onset > RESTART + 8.0]
    assert clear
    for e in clear:
        assert any(same(e, f) for f in found), f"missing {e.label} {e.onset:.2f}-{e.offset:.2f}"
    for a in found:
        for b in found:
            if a is not b and a.label == b.label:
                assert a.offset <= b.onset + 0.05 or b.offset <= a.onset + 0.05  # no overlaps


def test_bad_files_are_named_and_the_others_heard(scene, tmp_path):
    bad = tmp_path / "broken.mp3"
    bad.write_bytes(b"not audio at all")
    out = tmp_path / "events"
    done = subprocess.run(
        [sys.executable, "-m", "earmark", "listen", str(bad), str(tmp_path / "missing.wav"),
         f"good={scene}", "--sink", f"file:{out}?format=jsonl", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"{bad}: cannot open" in done.stderr, done.stderr
    assert "missing.wav: cannot open" in done.stderr
    summary = {s["name"]: s for s in json.loads(done.stdout)["sources"]}
    assert summary["good"]["ended"] and summary["good"]["last_error"] is None
    assert sum(summary["good"]["events"].values()) > 10
    lines = [json.loads(x) for f in out.glob("*.jsonl") for x in f.read_text().splitlines()]
    assert {e["source"] for e in lines} == {"good"}
    usage = subprocess.run(
        [sys.executable, "-m", "earmark", "listen", "gopher://x/y"], capture_output=True, text=True
    )
    assert usage.returncode == 2 and "unsupported stream scheme" in usage.stderr
    assert "Traceback" not in usage.stderr
