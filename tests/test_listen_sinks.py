"""The sinks of ``earmark listen`` against real things on loopback: stdout, files in a folder, an
HTTP receiver that fails on purpose, a crashed process, and a Mosquitto broker that is stopped
and started again."""

from __future__ import annotations

import csv
import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from needs import missing

from earmark.listen.delivery import safe_file_part
from earmark.listen.files import RotatingFileSink, StreamSink
from earmark.listen.live_events import LiveEvent, utc_iso
from earmark.listen.sinks import FanOut, sink_from_spec, sinks_from_specs
from earmark.listen.webhook import WebhookSink

KITCHEN = safe_file_part("Kitchen Mic")
SRC = Path(__file__).resolve().parents[1] / "src"
DAY = 1_704_067_200.0  # 2024-01-01T00:00:00Z
FAST = {"backoff_start": 0.02, "backoff_max": 0.2, "timeout": 2.0}


def event(
    n: int, source: str = "Kitchen Mic", label: str = "Dog", kind: str = "ended"
) -> LiveEvent:
    """Event number ``n`` of a source: a second long, one every 10 s of stream."""
    onset = 10.0 * n + 0.25
    ended = kind == "ended"
    return LiveEvent(
        source=source,
        label=label,
        mid=f"/m/{label.lower()[:4]}",
        kind=kind,
        stream_onset=onset,
        stream_offset=onset + 1.5 if ended else None,
        onset_utc=utc_iso(DAY + onset),
        offset_utc=utc_iso(DAY + onset + 1.5) if ended else None,
        peak=0.8123456,
        mean=0.51234 if ended else None,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` every 20 ms until it holds or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- stdout and files -------------------------------------------------------------------------


def test_jsonl_on_stdout_one_flushed_line_per_event(capsys: pytest.CaptureFixture[str]) -> None:
    sink = sink_from_spec("jsonl:-")
    events = [event(0, kind="started"), event(0), event(1, label="Speech")]
    for item in events:
        sink.emit(item)
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [e.to_dict() for e in events]
    assert json.loads(lines[0])["id"] == json.loads(lines[1])["id"]  # started and ended: one id
    only_ended = sink_from_spec("jsonl:-?events=ended")
    for item in events:
        only_ended.emit(item)
    assert [json.loads(x)["kind"] for x in capsys.readouterr().out.splitlines()] == ["ended"] * 2
    sink.close(1)
    assert sink.stats() == {"delivered": 3, "failed_attempts": 0, "pending": 0, "dropped": 0}


def test_csv_files_rotate_daily_with_a_header_each(tmp_path: Path) -> None:
    now = [DAY + 3600]
    sink = sink_from_spec(f"file:{tmp_path}?format=csv", clock=lambda: now[0])
    sink.emit(event(0, kind="started"))  # files hold ended events only by default
    sink.emit(event(0))
    sink.emit(event(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{KITCHEN}_2024-01-01_001.csv.part"]
    now[0] += 86400  # the next UTC day
    sink.emit(event(2))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        f"{KITCHEN}_2024-01-01_001.csv",
        f"{KITCHEN}_2024-01-02_001.csv.part",
    ]
    sink.close(1)
    first, second = sorted(tmp_path.glob("*.csv"))
    rows = [list(csv.DictReader(p.open(encoding="utf-8"))) for p in (first, second)]
    assert [len(r) for r in rows] == [2, 1]
    assert first.read_text(encoding="utf-8").startswith("id,source,label,mid,kind,stream_onset,")
    assert rows[0][1]["id"] == event(1).id
    assert rows[0][1]["stream_onset"] == "10.25" and rows[0][1]["stream_offset"] == "11.75"
    assert rows[1][0]["onset_utc"] == event(2).onset_utc and rows[1][0]["clip"] == ""
    assert sink.stats()["files_completed"] == 2 and sink.stats()["delivered"] == 3


def test_files_rotate_by_size_and_keep_every_line_in_order(tmp_path: Path) -> None:
    sink = sink_from_spec(f"file:{tmp_path}?format=jsonl&rotate=none&max_size=1kB")
    for n in range(12):
        sink.emit(event(n))
    sink.close(1)
    files = sorted(tmp_path.iterdir())
    assert len(files) >= 3 and not [p for p in files if p.name.endswith(".part")]
    assert all(p.stat().st_size <= 1024 for p in files)
    ids = [json.loads(line)["id"] for p in files for line in p.read_text().splitlines()]
    assert ids == [event(n).id for n in range(12)]
    # a restart never appends to a completed file: it starts the next number
    again = RotatingFileSink(tmp_path, "jsonl", daily=False)
    again.emit(event(20))
    again.close(1)
    assert len(list(tmp_path.iterdir())) == len(files) + 1


def test_dcase_tsv_and_odd_source_names(tmp_path: Path) -> None:
    sources = ["rtsp://user@cam:554/live 1", "../../etc/passwd", "cam/1", "cam:1", "Garage"]
    sink = sink_from_spec(f"file:{tmp_path}/out?format=tsv", clock=lambda: DAY)
    for n, source in enumerate(sources):
        sink.emit(event(n, source=source, kind="started"))
        sink.emit(event(n, source=source, label="Car alarm"))
    sink.close(1)
    files = sorted((tmp_path / "out").iterdir())
    assert list(tmp_path.iterdir()) == [tmp_path / "out"]  # nothing escaped the folder
    assert len(files) == len(sources)  # cam/1 and cam:1 are kept apart
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+_2024-01-01_001\.tsv", p.name) for p in files)
    assert (tmp_path / "out" / "Garage_2024-01-01_001.tsv").exists()  # a safe name is kept
    rows = []
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "filename\tonset\toffset\tevent_label"
        rows += [line.split("\t") for line in lines[1:]]
    expected = [
        [s, f"{10 * n + 0.25:.3f}", f"{10 * n + 1.75:.3f}", "Car alarm"]
        for n, s in enumerate(sources)
    ]
    assert sorted(rows) == sorted(expected)


def test_a_part_file_left_by_a_crash_is_completed(tmp_path: Path) -> None:
    part = tmp_path / "Garage_2024-01-01_001.csv.part"
    part.write_text("id,source\nabc,Garage\ndef,Gar", encoding="utf-8")  # the last line torn
    sink = RotatingFileSink(tmp_path, "csv", clock=lambda: DAY)
    assert not part.exists()
    assert (tmp_path / "Garage_2024-01-01_001.csv").read_text() == "id,source\nabc,Garage\n"
    sink.emit(event(1, source="Garage"))
    sink.close(1)
    assert (tmp_path / "Garage_2024-01-01_002.csv").exists()


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("", "expected one of"),
        ("carrier-pigeon:home", "unknown kind"),
        ("jsonl:/tmp/x", "stdout only"),
        ("file:", "folder is missing"),
        ("file:out?format=xml", "format='xml'"),
        ("file:out?rotate=hourly", "rotate='hourly'"),
        ("file:out?max_size=lots", "not a size"),
        ("file:out?colour=red", "unknown option colour"),
        ("file:out?format=tsv&events=all", "ended events only"),
        ("webhook:ftp://host/x", "http:// or https://"),
        ("webhook:https://host/x#token_env=NO_SUCH_VARIABLE_HERE", "is not set"),
        ("webhook:https://host/x#header=NoColon", "Name:Value"),
        ("mqtt:///prefix", "host is missing"),
        ("mqtt://host:99999/x", "port"),
        ("mqtt://host/a/+/b", "wildcard"),
        ("mqtt://host/x?qos=3", "qos must be 0, 1 or 2"),
        ("mqtt://host/x?events=some", "events='some'"),
    ],
)
def test_wrong_specs_say_what_is_wrong(spec: str, complaint: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError) as error:
        sink_from_spec(spec.replace("out", str(tmp_path / "out")), state_dir=tmp_path, env={})
    assert complaint in str(error.value)
    assert "sink" in str(error.value) or spec == ""


def test_specs_build_the_sinks_they_name(tmp_path: Path) -> None:
    mqtt = sink_from_spec("mqtts://ann:s3cret@broker.local/home/earmark?qos=2&client_id=den")
    assert (mqtt.host, mqtt.port, mqtt.prefix, mqtt.qos) == (
        "broker.local",
        8883,
        "home/earmark",
        2,
    )  # type: ignore[attr-defined]
    assert (mqtt.username, mqtt.password) == ("ann", "s3cret")  # type: ignore[attr-defined]
    assert "s3cret" not in mqtt.name and mqtt.name == "mqtts://broker.local:8883/home/earmark"
    assert mqtt.topic(event(0, source="Front Door", label="Dog barking, bark")) == (  # type: ignore[attr-defined]
        "home/earmark/front_door/dog_barking_bark"
    )
    mqtt.close(1)
    hook = sink_from_spec(
        "https://user:pw@example.invalid/hook?key=1#token_env=TOKEN&header=X-Site:den",
        state_dir=tmp_path,
        env={"TOKEN": "t0k"},
    )
    assert isinstance(hook, WebhookSink) and hook.name == "webhook:https://example.invalid/hook"
    assert hook.headers["Authorization"] == "Bearer t0k" and hook.headers["X-Site"] == "den"
    assert hook.headers["User-Agent"].startswith("earmark/")
    hook.close(1)
    both = sinks_from_specs(["jsonl:-", f"file:{tmp_path}/files"])
    assert isinstance(both, FanOut) and len(both.sinks) == 2


class BrokenSink:
    """A sink that breaks the contract: it raises."""

    name = "broken"

    def emit(self, event: LiveEvent) -> None:
        raise RuntimeError("disk on fire")

    def close(self, timeout: float = 10.0) -> None:
        raise RuntimeError("still on fire")

    def stats(self) -> dict[str, object]:
        return {"delivered": 0, "failed_attempts": 0, "pending": 0, "dropped": 0}


def test_fan_out_keeps_the_others_going(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    files = RotatingFileSink(tmp_path, "jsonl", clock=lambda: DAY)
    fan = FanOut([BrokenSink(), StreamSink(), files])
    for n in range(3):
        fan.emit(event(n))
    fan.close(2)
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert len((tmp_path / f"{KITCHEN}_2024-01-01_001.jsonl").read_text().splitlines()) == 3
    stats = fan.stats()
    assert stats["delivered"] == 6 and stats["errors"] == 4 and stats["dropped"] == 0
    assert stats["sinks"]["broken"]["errors"] == 4  # type: ignore[index]


# -- webhook ----------------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on loopback that plays a script of failures, then accepts; it keeps
    each event once by its Idempotency-Key, in the order they first arrived."""

    def __init__(self, script: list[Any] | None = None, port: int = 0) -> None:
        self.script = list(script or [])
        self.reject: set[str] = set()
        self.requests: list[tuple[float, str, str]] = []  # (time, key, outcome)
        self.events: dict[str, dict[str, Any]] = {}
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers["Idempotency-Key"]
                with receiver.lock:
                    action = receiver.script.pop(0) if receiver.script else "ok"
                    if f"{body['id']}:{body['kind']}" in receiver.reject:
                        action = 400
                    receiver.requests.append((time.monotonic(), key, str(action)))
                    receiver.headers.append(dict(self.headers))
                if action == "close":
                    self.close_connection = True  # hang up without an answer
                    return
                if action == "slow":
                    time.sleep(0.6)  # past the sink's timeout
                if isinstance(action, (int, tuple)):
                    status, extra = action if isinstance(action, tuple) else (action, {})
                    self.send_response(status)
                    for name, value in extra.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "4")
                    self.end_headers()
                    self.wfile.write(b"nope")
                    return
                with receiver.lock:
                    receiver.events.setdefault(key, body)
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


def keys(events: list[LiveEvent]) -> list[str]:
    return [f"{e.id}:{e.kind}" for e in events]


def test_webhook_retries_until_every_event_arrives_once_in_order(
    receiver: Receiver, tmp_path: Path
) -> None:
    receiver.script = [503, "close", (429, {"Retry-After": "1"}), 503, "slow", (502, {})]
    sink = WebhookSink(receiver.url, tmp_path, **{**FAST, "timeout": 0.3})
    sent = [event(0, kind="started"), event(0), *[event(n, label="Speech") for n in range(1, 9)]]
    started = time.monotonic()
    for item in sent:
        sink.emit(item)
    assert time.monotonic() - started < 0.5  # emit never waits for the network
    sink.close(15)
    assert list(receiver.events) == keys(sent)  # each once, none missing, in order
    assert [receiver.events[k] for k in keys(sent)] == [e.to_dict() for e in sent]
    after_429 = next(i for i, (_, _, o) in enumerate(receiver.requests) if o.startswith("(429"))
    gap = receiver.requests[after_429 + 1][0] - receiver.requests[after_429][0]
    assert gap >= 0.95  # Retry-After: 1 honoured (the backoff alone is at most 0.2 s)
    first = receiver.headers[0]
    assert first["Content-Type"] == "application/json"
    assert first["User-Agent"].startswith("earmark/")
    assert first["X-Earmark-Event-Id"] == sent[0].id
    stats = sink.stats()
    assert stats["delivered"] == 10 and stats["failed_attempts"] == 6
    assert stats["pending"] == 0 and stats["dropped"] == 0
    assert sink.spool_path.stat().st_size == 0


def test_webhook_dead_letters_a_refused_event(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sent = [event(n) for n in range(4)]
    receiver.reject = {keys(sent)[1]}
    sink = WebhookSink(receiver.url, tmp_path, **FAST)
    with caplog.at_level(logging.ERROR, logger="earmark.listen.webhook"):
        for item in sent:
            sink.emit(item)
        sink.close(10)
    assert list(receiver.events) == keys([sent[0], *sent[2:]])
    assert [o for _, _, o in receiver.requests] == ["ok", "400", "ok", "ok"]  # no retry of a 400
    dead = [json.loads(line) for line in sink.dead_letter_path.read_text().splitlines()]
    assert len(dead) == 1 and dead[0]["status"] == 400 and dead[0]["event"] == sent[1].to_dict()
    assert "HTTP 400" in caplog.text
    assert sink.stats()["dead_lettered"] == 1 and sink.stats()["delivered"] == 3


def test_webhook_spool_limit_drops_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens
    sink = WebhookSink(url, tmp_path, **FAST, spool_max_bytes=2000)
    with caplog.at_level(logging.ERROR, logger="earmark.listen.webhook"):
        for n in range(20):
            sink.emit(event(n))
    stats = sink.stats()
    assert stats["dropped"] > 0 and stats["pending"] + stats["dropped"] == 20
    assert "is full" in caplog.text
    assert sink.spool_path.stat().st_size <= 2000
    sink.close(0.5)


CRASHING_WRITER = """
import sys, time
from earmark.listen.webhook import WebhookSink
from earmark.listen.live_events import LiveEvent
sink = WebhookSink(sys.argv[1], sys.argv[2], backoff_start=0.05, backoff_max=0.1)
for line in sys.stdin:
    if not line.strip():
        break
    sink.emit(LiveEvent(**__import__("json").loads(line)))
print("spooled", flush=True)
time.sleep(60)
"""


def test_webhook_replays_its_spool_after_a_crash(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    sent = [event(n) for n in range(6)]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER, url, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdin is not None and child.stdout is not None
    for item in sent[:4]:
        fields = {k: v for k, v in item.to_dict().items() if k not in ("id", "duration")}
        child.stdin.write(json.dumps(fields) + "\n")
    child.stdin.write("\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "spooled"
    time.sleep(0.3)  # a few failed tries against the closed port
    child.send_signal(signal.SIGKILL)  # the crash: no close, no flush
    child.wait(5)
    spool = next(tmp_path.glob("webhook-*.spool.jsonl"))
    assert len(spool.read_text().splitlines()) == 4
    receiver = Receiver(port=port)
    try:
        sink = WebhookSink(url, tmp_path, **FAST)
        assert sink.stats()["replayed"] == 4
        for item in sent[4:]:
            sink.emit(item)
        sink.close(10)
    finally:
        receiver.stop()
    assert list(receiver.events) == keys(sent)  # the replayed ones first, then the new
    assert sink.stats()["delivered"] == 6 and spool.stat().st_size == 0


# -- MQTT -------------------------------------------------------------------------------------


class Broker:
    """A Mosquitto broker of the test on a loopback port (anonymous or with a password file),
    persisting its sessions so that a restart keeps the subscriber's queue."""

    def __init__(self, folder: Path, password_file: Path | None = None) -> None:
        program = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.access(program, os.X_OK):
            missing("mosquitto is not installed (tools/system-deps.sh installs it)")
        self.program = program
        self.port = free_port()
        self.folder = folder
        auth = f"password_file {password_file}" if password_file else "allow_anonymous true"
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n{auth}\n"
            f"persistence true\npersistence_location {folder}/\n"
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            f"log_dest file {folder}/mosquitto.log\n"
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen([self.program, "-c", str(self.config)])
        for _ in range(250):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(tmp_path)
    yield running
    running.stop()


class Subscriber:
    """A paho client that keeps every message under ``topic`` (QoS 1, a persistent session)."""

    def __init__(
        self, port: int, topic: str, auth: tuple[str, str] | None = None, name: str = "sub"
    ) -> None:
        import paho.mqtt.client as paho

        self.messages: list[tuple[str, bytes, bool]] = []
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"test-{name}-{port}",
            clean_session=False,
        )
        if auth:
            self.client.username_pw_set(*auth)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, m.payload, m.retain)
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def of(self, topic_end: str) -> list[bytes]:
        return [payload for topic, payload, _ in self.messages if topic.endswith(topic_end)]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p, _ in self.messages if not t.endswith("/status")]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mqtt_topics_payloads_and_status(broker: Broker) -> None:
    subscriber = Subscriber(broker.port, "test/#")
    sink = sink_from_spec(f"mqtt://127.0.0.1:{broker.port}/test", sources=["Front Door"])
    assert wait_until(lambda: subscriber.of("front_door/status") == [b"online"])
    sent = [
        event(0, source="Front Door", label="Dog barking, bark", kind="started"),
        event(0, source="Front Door", label="Dog barking, bark"),
        event(1, source="Front Door", label="Speech"),
    ]
    for item in sent:
        sink.emit(item)
    assert wait_until(lambda: len(subscriber.events()) == 3)
    assert [(t, json.loads(p), r) for t, p, r in subscriber.messages[1:]] == [
        ("test/front_door/dog_barking_bark", sent[0].to_dict(), False),
        ("test/front_door/dog_barking_bark", sent[1].to_dict(), False),
        ("test/front_door/speech", sent[2].to_dict(), False),
    ]
    sink.close(5)
    assert wait_until(lambda: subscriber.of("front_door/status") == [b"online", b"offline"])
    assert sink.stats()["delivered"] == 3 and sink.stats()["pending"] == 0
    subscriber.stop()
    late = Subscriber(broker.port, "test/#", name="late")  # a newcomer: only the status kept
    kept = [("test/front_door/status", b"offline", True)]
    assert wait_until(lambda: late.messages == kept)
    time.sleep(0.2)
    assert late.messages == kept  # and no event was retained
    late.stop()


def test_mqtt_queues_while_the_broker_is_down(broker: Broker) -> None:
    subscriber = Subscriber(broker.port, "restart/#")
    sink = sink_from_spec(f"mqtt://127.0.0.1:{broker.port}/restart?reconnect_max=1")
    sent = [event(n, source="Yard", label="Bird") for n in range(7)]
    for item in sent[:2]:
        sink.emit(item)
    assert wait_until(lambda: len(subscriber.events()) == 2)
    broker.stop()
    assert wait_until(lambda: sink.stats()["failed_attempts"] >= 1)  # it saw the loss
    for item in sent[2:]:
        sink.emit(item)
    time.sleep(0.5)
    assert sink.stats()["pending"] == 5 and len(subscriber.events()) == 2
    broker.start()
    assert wait_until(lambda: len({e["id"] for e in subscriber.events()}) == 7, timeout=15)
    # QoS 1 is at least once (the restarted broker may send one again): a reader keeps the
    # first copy of each id, and then has every event, in order
    assert list(dict.fromkeys(e["id"] for e in subscriber.events())) == [e.id for e in sent]
    assert wait_until(lambda: sink.stats()["delivered"] == 7), sink.stats()
    assert sink.stats()["dropped"] == 0 and sink.stats()["pending"] == 0
    sink.close(5)
    subscriber.stop()


def test_mqtt_last_will_and_passwords(tmp_path: Path) -> None:
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        missing("mosquitto_passwd is not installed (package mosquitto)")
    password_file = tmp_path / "passwords"
    subprocess.run([passwd, "-b", "-c", str(password_file), "ann", "s3cret"], check=True)
    broker = Broker(tmp_path, password_file)
    try:
        subscriber = Subscriber(broker.port, "pw/#", auth=("ann", "s3cret"))
        wrong = sink_from_spec(f"mqtt://ann:wrong@127.0.0.1:{broker.port}/pw", sources=["a"])
        assert wait_until(lambda: wrong.stats()["failed_attempts"] >= 1)
        assert wrong.stats()["connects"] == 0
        wrong.close(0.5)
        # a process that dies: the broker publishes its Last Will, offline
        code = (
            "import sys, time; from earmark.listen.sinks import sink_from_spec\n"
            f"s = sink_from_spec('mqtt://ann:s3cret@127.0.0.1:{broker.port}/pw', sources=['Den'])\n"
            "time.sleep(60)\n"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(SRC)}
        )
        assert wait_until(lambda: subscriber.of("den/status") == [b"online"])
        child.send_signal(signal.SIGKILL)
        child.wait(5)
        assert wait_until(lambda: subscriber.of("den/status") == [b"online", b"offline"])
        subscriber.stop()
    finally:
        broker.stop()
