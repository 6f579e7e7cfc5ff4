"""The service in queue mode against real servers: API, Redis, PostgreSQL, Celery workers."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from servers import ALICE, BOB, Worker, client, wait_job

pytestmark = pytest.mark.slow

SHORT = ["esc10_dog_1-100032-A.ogg", "esc10_rooster_1-26806-A.ogg", "panns_R9_ZSCveAHg_7s.wav"]


def upload(paths: list[Path]) -> list[tuple[str, tuple[str, bytes]]]:
    return [("files", (p.name, p.read_bytes())) for p in paths]


def test_api_process_never_imports_torch() -> None:
    code = (
        "import sys, earmark.service.api as a, earmark.service.worker, earmark.service.jobs\n"
        "a.create_app()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_real_files_give_the_library_events(api, worker, fixtures_dir: Path, tmp_path) -> None:
    """Events from the service equal those of earmark.detect on the same files and options."""
    import earmark
    from earmark.outputs import read_events

    files = [fixtures_dir / name for name in SHORT]
    with client(api, ALICE) as http:
        response = http.post("/v1/jobs", files=upload(files), data={"threshold": "0.3"})
        assert response.status_code == 201, response.text
        job = response.json()
        assert job["files"] == 3 and job["audio_seconds"] == pytest.approx(17.0, abs=0.1)
        status = wait_job(http, job["id"])
        assert status["state"] == "done", status
        assert [f["state"] for f in status["files"]] == ["done"] * 3
        assert status["progress"]["fraction"] == 1.0
        got = http.get(f"/v1/jobs/{job['id']}/events").json()["events"]
        csv_text = http.get(f"/v1/jobs/{job['id']}/events", params={"format": "csv"}).text
        tsv = http.get(f"/v1/jobs/{job['id']}/events", params={"format": "tsv"})
        scores = http.get(f"/v1/jobs/{job['id']}/scores/0", params={"top": 3}).json()
        events_url = f"/v1/jobs/{job['id']}/events"
        assert http.get(events_url, params={"format": "audacity"}).status_code == 422
        audacity = http.get(events_url, params={"format": "audacity", "file": 0}).text

    model = earmark.load_model("mn04_as")
    expected = []
    for path in files:
        found = earmark.detect(path, model=model, threshold=0.3)
        expected += [{**e.to_dict(), "file": path.name} for e in found]
    key = lambda e: (e["file"], e["label"], e["onset"])  # noqa: E731
    assert len(got) == len(expected)
    for a, b in zip(sorted(got, key=key), sorted(expected, key=key), strict=True):
        assert (a["file"], a["label"]) == (b["file"], b["label"])
        assert a["onset"] == pytest.approx(b["onset"], abs=1e-3)
        assert a["offset"] == pytest.approx(b["offset"], abs=1e-3)
        assert a["peak"] == pytest.approx(b["peak"], abs=2e-3)
        assert [x["label"] for x in a["alternatives"]] == [x["label"] for x in b["alternatives"]]
    labels = {(e["file"], e["label"]) for e in got}
    # one event per sound: the bark is "Bark" with "Dog" among its alternatives
    (bark,) = [e for e in got if e["file"] == "esc10_dog_1-100032-A.ogg" and e["label"] == "Bark"]
    assert "Dog" in [x["label"] for x in bark["alternatives"]]
    named = labels | {(e["file"], x["label"]) for e in got for x in e["alternatives"]}
    assert ("esc10_rooster_1-26806-A.ogg", "Chicken, rooster") in named
    assert ("panns_R9_ZSCveAHg_7s.wav", "Speech") in labels
    # every format holds the same events (read back with earmark's own readers)
    (tmp_path / "e.csv").write_text(csv_text)
    (tmp_path / "e.tsv").write_text(tsv.text)
    assert len(read_events(tmp_path / "e.csv")) == len(got)
    assert len(read_events(tmp_path / "e.tsv")) == len(got)
    (tmp_path / "dog.txt").write_text(audacity)
    dog_events = [e for e in got if e["file"] == "esc10_dog_1-100032-A.ogg"]
    assert [e.label for e in read_events(tmp_path / "dog.txt")] == [e["label"] for e in dog_events]
    assert tsv.headers["content-type"].startswith("text/tab-separated-values")
    # framewise scores for the timeline: the dog file's top class is an animal sound
    assert scores["file"] == "esc10_dog_1-100032-A.ogg" and scores["hop"] == pytest.approx(0.32)
    assert scores["tracks"][0]["max"] > 0.9
    assert len(scores["tracks"][0]["values"]) == scores["frames"]


def test_a_key_cannot_read_another_keys_job(api, worker, fixtures_dir: Path) -> None:
    with client(api, ALICE) as alice, client(api, BOB) as bob, client(api, None) as anonymous:
        job = alice.post("/v1/jobs", files=upload([fixtures_dir / SHORT[0]])).json()["id"]
        for path in ("", "/events", "/report", "/scores/0", "/audio/0"):
            response = bob.get(f"/v1/jobs/{job}{path}")
            assert response.status_code == 404, (path, response.text)
            assert "no job" in response.json()["detail"]
        assert bob.delete(f"/v1/jobs/{job}").status_code == 404
        assert job not in {j["id"] for j in bob.get("/v1/jobs").json()["jobs"]}
        assert job in {j["id"] for j in alice.get("/v1/jobs").json()["jobs"]}
        assert anonymous.get(f"/v1/jobs/{job}").status_code == 401
        wrong = httpx.get(f"{api.url}/v1/jobs/{job}", headers={"X-API-Key": "em_wrong"})
        assert wrong.status_code == 401 and "invalid" in wrong.json()["detail"]
        assert wait_job(alice, job)["state"] == "done"
        # the owner deletes it: audio, results and rows are gone
        assert alice.delete(f"/v1/jobs/{job}").status_code == 204
        assert alice.get(f"/v1/jobs/{job}").status_code == 404


def test_bad_uploads_get_clear_4xx_and_the_service_keeps_serving(
    api, worker, service_env: dict, fixtures_dir: Path
) -> None:
    good = (fixtures_dir / SHORT[0]).read_bytes()
    wav = (fixtures_dir / "panns_R9_ZSCveAHg_7s.wav").read_bytes()
    cases = {
        "text.wav": (b"this is not audio at all, just text\n" * 50, 415, "not an audio file"),
        "empty.ogg": (b"", 422, "empty"),
        "corrupt.ogg": (good[:64] + bytes(range(256)) * 40, 422, "corrupt.ogg"),
        "noise.wav": (wav[:44] + b"\x00" * 10, 422, "noise.wav"),
        "big.wav": (wav[:44] + b"\x01\x02" * (9 * 512 * 1024), 413, "limit of 8 MB"),
    }
    with client(api, ALICE) as http:
        for name, (body, status, words) in cases.items():
            response = http.post("/v1/jobs", files={"files": (name, body)})
            assert response.status_code == status, (name, response.text)
            assert words in response.json()["detail"], (name, response.text)
        # a bad file among good ones rejects the request as a whole: nothing half-created
        before = http.get("/v1/jobs").json()["total"]
        mixed = [("files", ("ok.ogg", good)), ("files", ("text.mp3", b"hello" * 100))]
        assert http.post("/v1/jobs", files=mixed).status_code == 415
        assert http.get("/v1/jobs").json()["total"] == before
        assert http.get("/healthz").status_code == 200
        job = http.post("/v1/jobs", files={"files": ("still.ogg", good)}).json()["id"]
        assert wait_job(http, job)["state"] == "done"
    storage = Path(service_env["EARMARK_STORAGE_DIR"])
    assert not list((storage / "tmp").glob("*.upload")), "spooled uploads left behind"


def test_same_and_hostile_names_stay_apart_and_reports_use_stored_audio(
    api, worker, fixtures_dir: Path, service_env: dict, tmp_path: Path
) -> None:
    dog, rooster = (fixtures_dir / name for name in SHORT[:2])
    files = [
        ("files", ("x.ogg", dog.read_bytes())),
        ("files", ("X.ogg", rooster.read_bytes())),  # the same name, for a case-blind disk
        ("files", ("a\x00b\x1b.ogg", dog.read_bytes())),  # NUL and ESC in a name
    ]
    boundary = "earmark-test-boundary"
    body = (
        b"".join(  # by hand: HTTP clients escape a NUL in a name, an attacker does not
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="'.encode()
            + name.encode()
            + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
            + data
            + b"\r\n"
            for _, (name, data) in files
        )
        + f"--{boundary}--\r\n".encode()
    )
    with client(api, ALICE) as http:
        response = http.post(
            "/v1/jobs",
            content=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert response.status_code == 201, response.text
        job = response.json()["id"]
        status = wait_job(http, job)
        assert status["state"] == "done", status
        assert [f["name"] for f in status["files"]] == ["x.ogg", "X (2).ogg", "a_b_.ogg"]
        events = [
            http.get(f"/v1/jobs/{job}/events", params={"file": i}).json()["events"]
            for i in range(3)
        ]
        assert {e["file"] for e in events[0]} == {"x.ogg"}
        assert {e["file"] for e in events[1]} == {"X (2).ogg"}
        assert {"Dog", "Bark"} & {e["label"] for e in events[0]}
        assert not {"Dog", "Bark"} & {e["label"] for e in events[1]}
        report = http.get(f"/v1/jobs/{job}/report")
        assert report.status_code == 200
        # levels and spectrograms measured on the job's stored audio: a picture for every file
        assert report.text.count("data:image/png;base64,") >= 3
        # what clients get names files as they sent them, never by the server's storage paths
        storage = service_env["EARMARK_STORAGE_DIR"]
        assert storage not in report.text
        npz = http.get(f"/v1/jobs/{job}/scores/1", params={"format": "npz"})
        assert npz.status_code == 200 and storage.encode() not in npz.content
        from earmark.outputs import read_scores

        (tmp_path / "s.scores.npz").write_bytes(npz.content)
        assert read_scores(tmp_path / "s.scores.npz")[3]["file"] == "X (2).ogg"
        # a model the service lists but does not have is refused at once, by name
        refused = http.post("/v1/jobs", files=files[:1], data={"model": "mn10_as"})
        assert refused.status_code == 422 and "mn10_as" in refused.json()["detail"]
        assert "mn04_as" in refused.json()["detail"]


def test_fifty_concurrent_submissions_complete(api, worker, fixtures_dir: Path) -> None:
    body = (fixtures_dir / SHORT[0]).read_bytes()

    def submit(i: int) -> str:
        with client(api, ALICE) as http:
            response = http.post("/v1/jobs", files={"files": (f"dog{i}.ogg", body)})
            assert response.status_code == 201, response.text
            return response.json()["id"]

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        ids = list(pool.map(submit, range(50)))
    assert len(set(ids)) == 50
    with client(api, ALICE) as http:
        states = [wait_job(http, job, timeout=180) for job in ids]
    assert all(s["state"] == "done" for s in states)
    counts = {s["n_events"] for s in states}
    assert len(counts) == 1 and counts.pop() > 0  # same file, same events every time


def test_killed_worker_job_completes_once(
    api, worker, service_env: dict, shared_dir: Path, artifacts: Path
) -> None:
    """SIGKILL the worker in the middle of a long job; a new worker finishes it with every
    file's results present exactly once."""

    names = [
        "backgrounds/sounds/animals/crows.mp3",
        "backgrounds/sounds/nature/wind.mp3",
        "backgrounds/sounds/nature/waves.mp3",
        "backgrounds/sounds/rain/rain-on-window.mp3",
    ]
    files = [shared_dir / "audio" / n for n in names]
    with client(api, ALICE) as http:
        job = http.post("/v1/jobs", files=upload(files)).json()["id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = http.get(f"/v1/jobs/{job}").json()
            if status["progress"]["files_done"] >= 1:
                break
            time.sleep(0.05)
        assert status["state"] == "running" and status["progress"]["files_done"] < len(files)
        worker[0].kill()
        killed_at = {f["name"]: f for f in status["files"]}
        done_before = {n for n, f in killed_at.items() if f["state"] == "done"}
        events_before = [
            e
            for e in http.get(f"/v1/jobs/{job}/events").json()["events"]
            if e["file"] in done_before
        ]
        worker.append(Worker(service_env, artifacts / "worker2.log"))
        final = wait_job(http, job, timeout=240)
        events = http.get(f"/v1/jobs/{job}/events").json()["events"]
    assert final["state"] == "done", final
    assert final["attempts"] >= 2
    assert all(f["state"] == "done" for f in final["files"])
    # no duplicates, and each file's events are as many as its status says
    keys = [(e["file"], e["label"], e["onset"], e["offset"]) for e in events]
    assert len(keys) == len(set(keys))
    for f in final["files"]:
        assert sum(e["file"] == f["name"] for e in events) == f["n_events"] > 0
    # what was finished before the kill is unchanged
    assert [e for e in events if e["file"] in done_before] == events_before
    # the results folder written at the end agrees with the database
    results = Path(service_env["EARMARK_STORAGE_DIR"]) / "jobs" / job / "results"
    written = json.loads((results / "events.json").read_text())["events"]
    assert len(written) == len(events)
    manifest = json.loads((results / "manifest.json").read_text())
    assert manifest["totals"]["files"] == len(files) and manifest["job"]["attempts"] >= 2


def test_metrics_and_readiness(api, worker) -> None:
    metrics = httpx.get(f"{api.url}/metrics").text
    values = {}
    for line in metrics.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    assert values['earmark_jobs{state="done"}'] >= 1
    assert values["earmark_audio_seconds_processed_total"] > 10
    assert values["earmark_file_processing_seconds_count"] >= 1
    assert "earmark_queue_length" in values
    assert any(k.startswith("earmark_http_request_seconds_count") for k in values)
    ready = httpx.get(f"{api.url}/readyz").json()
    assert ready["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}
    # after serving every test above, the API process has still not loaded torch
    maps = Path(f"/proc/{api.proc.pid}/maps").read_text()
    assert "libtorch" not in maps and "libc10" not in maps


def test_detect_queue_cli(api, worker, service_env: dict, fixtures_dir: Path, tmp_path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "earmark.cli",
            "detect",
            str(fixtures_dir / SHORT[1]),
            "-o",
            str(out),
            "--queue",
            service_env["EARMARK_BROKER_URL"],
            "--json",
        ],
        env=service_env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "done" and summary["events"] > 0
    text = (out / "events.csv").read_text()
    assert "Chicken, rooster" in text
    assert json.loads((out / "manifest.json").read_text())["totals"]["files"] == 1


def test_schemathesis_finds_no_server_errors(api, worker, artifacts: Path, tmp_path) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{api.url}/openapi.json",
            "--checks",
            "all",
            # uploads are sniffed: a schema-valid body of random bytes is rightly refused
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "8",
            "--seed",
            "1",
            "--header",
            f"Authorization: Bearer {ALICE}",
            "--max-time",
            "30",
            "--request-timeout",
            "30",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,  # its example cache (.schemathesis/) stays out of the repository
    )
    (artifacts / "schemathesis.txt").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-4000:]
