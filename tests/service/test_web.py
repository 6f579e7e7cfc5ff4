"""Embedded mode (SQLite, local worker, no Redis/PostgreSQL) and the web page in Chromium."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from chromium import chromium_page
from servers import Server, stop, wait_job

pytestmark = pytest.mark.slow


def embedded_env(storage: Path, model_dir: Path, **extra: str) -> dict[str, str]:
    """Environment of ``earmark serve`` in embedded mode: no broker, no database, open on
    loopback, one worker thread; ``extra`` adds or overrides ``EARMARK_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARMARK_")}
    env.update(
        EARMARK_STORAGE_DIR=str(storage),
        EARMARK_MODEL_DIR=str(model_dir),
        EARMARK_CACHE_DIR=os.environ["EARMARK_CACHE_DIR"],  # the session's (conftest)
        EARMARK_AUTH="none",
        EARMARK_WORKER_THREADS="1",
        EARMARK_LOG_LEVEL="warning",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def embedded(model_dir: Path, tmp_path_factory, artifacts: Path):
    """``earmark serve`` with no broker and no database configured, open on loopback."""
    env = embedded_env(tmp_path_factory.mktemp("embedded"), model_dir)
    server = Server(env, [], artifacts / "embedded.log")
    try:
        yield server
    finally:
        stop(server.proc)


def test_web_page_upload_timeline_and_table(embedded, fixtures_dir: Path, artifacts: Path):
    audio = fixtures_dir / "esc10_dog_1-100032-A.ogg"
    rooster = fixtures_dir / "esc10_rooster_1-26806-A.ogg"
    errors: list[str] = []
    with chromium_page(viewport={"width": 1200, "height": 1000}) as page:
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(embedded.url + "/")
        page.wait_for_load_state("networkidle")
        assert page.locator("#keybox").is_hidden()  # auth off on loopback: no key needed
        assert "mn04_as" in page.locator("#model").inner_text()  # from GET /v1/models
        # one "choose files" control: the file input itself is hidden behind its label
        assert page.locator("#files").bounding_box()["width"] <= 1
        assert page.get_by_text("choose files").count() == 1
        page.set_input_files("#files", [str(audio), str(rooster)])
        page.fill("#threshold", "0.3")
        page.click("#submit")
        page.wait_for_selector("#timeline .event-bar", timeout=90_000)
        bars = page.locator('#timeline .event-bar[data-label="Bark"]')  # one per sound
        assert bars.count() >= 1
        # hovering an event names it with its times
        bars.first.hover()
        assert "Bark" in page.locator("#tooltip").inner_text()
        # the table lists it and filters
        page.fill("#filter", "bark")
        rows = page.locator("#events tbody tr")
        assert rows.count() >= 1
        assert all("bark" in t.lower() for t in rows.all_inner_texts())
        page.wait_for_timeout(500)  # let the spectrogram draw
        page.screenshot(path=str(artifacts / "web-page.png"), full_page=True)
        # the page's downloads come from the API
        with page.expect_download() as info:
            page.click('button[data-format="csv"]')
        assert "Bark" in Path(info.value.path()).read_text()
        with page.expect_download() as info:
            page.click('button[data-format="audacity"]')
        assert info.value.suggested_filename == f"{audio.name}.audacity.txt"
        assert "\tBark" in Path(info.value.path()).read_text()
        assert page.locator("#axis .tick").count() >= 2  # a time axis under the picture
        # lane names sit in their own column: they never cover the first seconds
        names = page.locator("#lane-names .lane-name")
        assert names.count() == page.locator("#timeline .lane").count() >= 1
        strip_left = page.locator("#scroller").bounding_box()["x"]
        for box in (names.nth(i).bounding_box() for i in range(names.count())):
            assert box["x"] + box["width"] <= strip_left + 1
        # the table lists the selected file's events only
        page.fill("#filter", "")
        dog_rows = page.locator("#events tbody tr").all_inner_texts()
        assert audio.name in page.locator("#count").inner_text()
        page.select_option("#file-select", "1")
        page.wait_for_function(
            f"document.querySelector('#count').textContent.includes({rooster.name!r})"
        )
        rooster_rows = page.locator("#events tbody tr").all_inner_texts()
        assert rooster_rows and rooster_rows != dog_rows
        assert not any("Bark" in r.split("\t")[0] for r in rooster_rows)
    assert not errors, errors


def test_web_page_asks_for_the_key_before_calling_the_api(
    model_dir: Path, tmp_path: Path, artifacts: Path
) -> None:
    """With keys required, the page sends no request that would be refused: it asks for the
    key first (no 401 in the browser's console)."""
    env = embedded_env(tmp_path / "store", model_dir, EARMARK_AUTH="keys")
    server = Server(env, [], artifacts / "embedded-keys.log")
    refused: list[str] = []
    console: list[str] = []
    try:
        with chromium_page() as page:
            page.on(
                "response",
                lambda r: refused.append(r.url) if r.status in (401, 403) else None,
            )
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
            page.goto(server.url + "/")
            page.wait_for_load_state("networkidle")
            assert page.locator("#keybox").is_visible()
            assert "API key" in page.locator("#keyhint").inner_text()
            assert "Enter your API key" in page.locator("#jobs").inner_text()
    finally:
        stop(server.proc)
    assert not refused and not console, (refused, console)


def test_embedded_mode_runs_without_redis_or_postgres(embedded, fixtures_dir: Path) -> None:
    """The same job path with SQLite and the local worker; sync detection too."""
    with httpx.Client(base_url=embedded.url, timeout=120) as http:
        ready = http.get("/readyz").json()
        assert ready["checks"]["broker"].startswith("embedded")
        body = (fixtures_dir / "esc10_rooster_1-26806-A.ogg").read_bytes()
        answer = http.post("/v1/detect", files={"file": ("rooster.ogg", body)})
        assert answer.status_code == 200, answer.text
        events = answer.json()["events"]
        # one event per sound: the crowing, with "Chicken, rooster" among its alternatives
        labels = {e["label"] for e in events} | {
            a["label"] for e in events for a in e["alternatives"]
        }
        assert "Chicken, rooster" in labels
        # the HTML report of the job (rendered on first request, then kept)
        report = http.get(f"/v1/jobs/{answer.json()['job']}/report")
        assert report.status_code == 200, report.text
        assert report.headers["content-type"].startswith("text/html")
        assert "rooster.ogg" in report.text and "Crowing, cock-a-doodle-doo" in report.text
        jobs = http.get("/v1/jobs").json()
        assert jobs["total"] >= 1 and jobs["jobs"][0]["state"] == "done"
        # every_class: each class that fires is its own event, as detect --every-class
        dog = (fixtures_dir / "esc10_dog_1-100032-A.ogg").read_bytes()
        made = {}
        for every in (False, True):
            data = {"every_class": "true"} if every else {}
            job = http.post("/v1/jobs", files={"files": ("dog.ogg", dog)}, data=data).json()
            assert wait_job(http, job["id"])["state"] == "done"
            made[every] = http.get(f"/v1/jobs/{job['id']}/events").json()["events"]
        assert {"Dog", "Bark"} <= {e["label"] for e in made[True]}
        assert len(made[False]) < len(made[True])
        assert 'earmark_jobs{state="done"}' in http.get("/metrics").text


def test_limits_hold_on_decoded_audio_not_on_headers(
    model_dir: Path, fixtures_dir: Path, tmp_path: Path, artifacts: Path
) -> None:
    """A FLAC whose header claims 1 s but holds 100 s: accepted by its header, stopped at the
    limit while it is decoded, the job ends with the cause (embedded mode)."""
    import numpy as np
    import soundfile as sf
    from servers import wait_job

    x, sr = sf.read(fixtures_dir / "pyannote_sample.wav", dtype="int16")
    audio = np.concatenate([x[: 5 * sr], np.zeros(95 * sr, dtype=np.int16)])  # small as FLAC
    path = tmp_path / "liar.flac"
    sf.write(path, audio, sr, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    packed = int.from_bytes(data[18:26], "big")  # STREAMINFO: total samples, 36 bits
    data[18:26] = ((packed & ~((1 << 36) - 1)) | sr).to_bytes(8, "big")
    env = embedded_env(tmp_path / "storage", model_dir, EARMARK_MAX_AUDIO_SECONDS="60")
    server = Server(env, [], artifacts / "limits.log")
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            response = http.post("/v1/jobs", files={"files": ("liar.flac", bytes(data))})
            assert response.status_code == 201, response.text  # the header says 1 s
            status = wait_job(http, response.json()["id"])
            assert status["files"][0]["state"] == "failed", status
            error = status["files"][0]["error"]
            assert "limit of 60 s" in error and "EARMARK_MAX_AUDIO_SECONDS" in error
            assert str(tmp_path) not in error  # the client sees its own name, not server paths
    finally:
        stop(server.proc)


def test_killed_embedded_worker_is_restarted_and_readiness_follows_it(
    model_dir: Path, fixtures_dir: Path, tmp_path: Path, artifacts: Path
) -> None:
    import signal
    import subprocess
    import time

    from servers import wait_job

    env = embedded_env(tmp_path / "storage", model_dir, EARMARK_LEASE_SECONDS="4")

    def worker_pids(server: Server) -> list[int]:
        found = subprocess.run(
            ["pgrep", "-f", "-P", str(server.proc.pid), "worker --embedded"],
            capture_output=True,
            text=True,
        ).stdout.split()
        return [int(p) for p in found]

    def worker_pid(server: Server) -> int:
        found = worker_pids(server)
        assert len(found) == 1, found
        return found[0]

    server = Server(env, [], artifacts / "supervised.log")
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            first = worker_pid(server)
            os.kill(first, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                found = worker_pids(server)
                if found and found[0] != first:
                    break
                time.sleep(0.2)
            second = worker_pid(server)
            assert second != first  # restarted
            body = (fixtures_dir / "esc10_dog_1-100032-A.ogg").read_bytes()
            job = http.post("/v1/jobs", files={"files": ("dog.ogg", body)}).json()["id"]
            assert wait_job(http, job)["state"] == "done"
            # a worker that stops answering (here: stopped) makes the service not ready
            os.kill(second, signal.SIGSTOP)
            try:
                deadline = time.monotonic() + 40
                ready = http.get("/readyz")
                while ready.status_code == 200 and time.monotonic() < deadline:
                    time.sleep(0.5)
                    ready = http.get("/readyz")
                assert ready.status_code == 503
                assert "embedded worker not running" in ready.json()["checks"]["worker"]
            finally:
                os.kill(second, signal.SIGCONT)
            deadline = time.monotonic() + 30
            while http.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert http.get("/readyz").json()["checks"]["worker"] == "ok"
    finally:
        stop(server.proc)
    assert "restarting it" in (artifacts / "supervised.log").read_text()


def test_web_page_detects_a_servers_custom_classes(
    model_dir: Path, shared_dir: Path, fixtures_dir: Path, tmp_path: Path, artifacts: Path
) -> None:
    """The page offers the server's custom-class models (``earmark train``) and a job that
    picks one reports those classes only."""
    import csv
    import subprocess
    import sys

    esc10 = shared_dir / "audio" / "esc10"
    with open(esc10 / "esc10_meta.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["esc10_class"] in ("Dog bark", "Rooster")]
    clips = tmp_path / "clips.csv"
    with open(clips, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "label", "fold"])
        for r in rows:
            if int(r["fold"]) <= 2:
                writer.writerow([esc10 / r["path"], r["esc10_class"], r["fold"]])
    models = tmp_path / "models"
    env = {**os.environ, "EARMARK_MODEL_DIR": str(model_dir)}
    env["EARMARK_EMBEDDING_CACHE"] = str(tmp_path / "cache")
    trained = subprocess.run(
        [sys.executable, "-m", "earmark", "train", str(clips), "-o", str(models / "farm"), "-q",
         "--no-baseline", "--threads", "2"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    server = Server(
        embedded_env(tmp_path / "store", model_dir, EARMARK_CLASSES_DIR=str(models)),
        [],
        artifacts / "embedded-classes.log",
    )
    errors: list[str] = []
    try:
        with chromium_page(viewport={"width": 1200, "height": 1000}) as page:
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url + "/")
            page.wait_for_load_state("networkidle")
            assert page.locator("#classes-box").is_visible()
            option = page.locator("#classes option[value='farm']")
            assert "Dog bark" in option.inner_text() and "Rooster" in option.inner_text()
            page.select_option("#classes", "farm")
            assert page.locator("#audioset-box").is_visible()
            page.set_input_files("#files", str(fixtures_dir / "esc10_rooster_1-26806-A.ogg"))
            page.click("#submit")
            page.wait_for_selector("#timeline .event-bar", timeout=90_000)
            labels = {
                b.get_attribute("data-label") for b in page.locator("#timeline .event-bar").all()
            }
            # the model's classes only (no AudioSet class), the rooster among them
            assert "Rooster" in labels and labels <= {"Rooster", "Dog bark"}, labels
    finally:
        stop(server.proc)
    assert not errors, errors
