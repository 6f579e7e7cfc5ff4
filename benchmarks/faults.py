"""Fault injection: ``earmark detect`` (the real command, in a child process) under the faults
users and disks produce; a table of cases, results kept, results lost and tracebacks.

Each case puts good recordings beside the fault and counts the good files whose results are
all there afterwards (kept) and those that are not (lost, must be 0), plus any traceback on the
terminal (must be 0). Cases: a non-UTF-8 name, 255-byte names, one base name in two folders,
broken and looping links and a FIFO, a header that lies about the duration, an earlier run in
the output folder (resumed), a full disk and a read-only output folder (small tmpfs mounts: need
root, else reported as not run), and a worker process killed during ``--jobs 2``. The service
(``earmark serve`` in embedded mode) under a killed worker, a header that lies (limits on the
decoded audio) and full storage: jobs counted, server errors (5xx) counted as tracebacks.
In queue mode (Redis, PostgreSQL, Celery; the servers as the tests start them), a worker group
killed in the middle of a job and replaced.

Writes ``benchmarks/results/faults.json``; exits 1 if anything was lost or a traceback shown.

    python -m benchmarks.faults
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.common import SHARED, save_result
from earmark.inputs import printable

FIXTURES = SHARED / "audio" / "fixtures"
CLIPS = ("esc10_dog_1-100032-A.ogg", "esc10_rooster_1-26806-A.ogg", "pyannote_sample.wav")


def earmark(*args: str | os.PathLike, kill_worker_after: float | None = None) -> tuple[int, str]:
    """Run ``earmark detect``; with ``kill_worker_after``, SIGKILL one worker process then."""
    command = [sys.executable, "-m", "earmark.cli", "detect", "-q", *map(os.fsdecode, args)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if kill_worker_after is not None:
        time.sleep(kill_worker_after)
        children = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
        ).stdout.split()
        if children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(children[0]), signal.SIGKILL)
    _, err = proc.communicate(timeout=900)
    return proc.returncode, err.decode("utf-8", "backslashreplace")


def good_files(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        source = FIXTURES / CLIPS[i % len(CLIPS)]
        paths.append(folder / f"good{i}{source.suffix}")
        shutil.copy(source, paths[-1])
    return paths


def kept(out: Path, good: list[Path]) -> int:
    """Good files with status ok, events counted and every output present."""
    try:
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    names = {printable(p.name) for p in good}
    n = 0
    for entry in manifest.get("files", []):
        if Path(entry["path"]).name in names and entry["status"] == "ok":
            outputs = entry.get("outputs") or {}
            n += bool(outputs) and all(Path(p).is_file() for p in outputs.values())
    return n


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path | None]:
    if os.geteuid() != 0:
        yield None
        return
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


# ---------------------------------------------------------------------------- cases
def case_non_utf8(work: Path) -> tuple[list[Path], int, str, Path]:
    good = good_files(work / "in")
    odd = Path(os.fsdecode(os.fsencode(work / "in") + b"/bad_\xff\xfe_name.ogg"))
    shutil.copy(FIXTURES / CLIPS[0], odd)
    code, err = earmark(work / "in", "-o", work / "out")
    return [*good, odd], code, err, work / "out"


def case_long_names(work: Path) -> tuple[list[Path], int, str, Path]:
    (work / "in").mkdir()
    good = []
    for i, stem in enumerate(("a" * 251, "é" * 120 + "b" * 11, "c" * 200)):
        good.append(work / "in" / f"{stem}.ogg")
        shutil.copy(FIXTURES / CLIPS[i % 2], good[-1])
    code, err = earmark(work / "in", "-o", work / "out")
    return good, code, err, work / "out"


def case_duplicate_names(work: Path) -> tuple[list[Path], int, str, Path]:
    good = []
    for sub, clip in (("a", CLIPS[0]), ("b", CLIPS[1])):
        (work / sub).mkdir()
        good.append(work / sub / "x.ogg")
        shutil.copy(FIXTURES / clip, good[-1])
    code, err = earmark(*good, "-o", work / "out")
    outputs = {
        entry["outputs"].get("json")
        for entry in json.loads((work / "out" / "manifest.json").read_text())["files"]
    }
    if len(outputs) != 2:  # one overwrote the other: only one kept
        good = good[:1]
    return good, code, err, work / "out"


def case_links_and_fifo(work: Path) -> tuple[list[Path], int, str, Path]:
    good = good_files(work / "in")
    (work / "in" / "dangling.ogg").symlink_to(work / "gone.ogg")
    (work / "in" / "loop.ogg").symlink_to(work / "in" / "loop.ogg")
    os.mkfifo(work / "pipe.wav")
    code, err = earmark(work / "in", work / "pipe.wav", "-o", work / "out")
    return good, code, err, work / "out"


def case_lying_header(work: Path) -> tuple[list[Path], int, str, Path]:
    good = good_files(work / "in")
    x, sr = sf.read(FIXTURES / "pyannote_sample.wav", dtype="int16")
    liar = work / "in" / "liar.flac"
    sf.write(liar, np.tile(x, 4), sr, subtype="PCM_16")
    data = bytearray(liar.read_bytes())
    packed = int.from_bytes(data[18:26], "big")
    data[18:26] = ((packed & ~((1 << 36) - 1)) | sr).to_bytes(8, "big")  # "1 second"
    liar.write_bytes(bytes(data))
    code, err = earmark(work / "in", "-o", work / "out")
    entry = next(
        e
        for e in json.loads((work / "out" / "manifest.json").read_text())["files"]
        if e["path"].endswith("liar.flac")
    )
    warned = any("declares 1.0 s" in w for w in entry["warnings"]) and entry["duration"] > 100
    return [*good, liar] if warned else good, code, err, work / "out"


def case_resume(work: Path) -> tuple[list[Path], int, str, Path]:
    good = good_files(work / "in")
    earmark(work / "in", "-o", work / "out")
    for path in (work / "out" / "files").glob("good1.*"):
        path.unlink()  # as if the run had been interrupted
    refused, _ = earmark(work / "in", "-o", work / "out")
    code, err = earmark(work / "in", "-o", work / "out", "--resume")
    return good, (code if refused == 2 else 99), err, work / "out"


def case_full_disk(work: Path) -> tuple | None:
    good = good_files(work / "in", 6)
    with tmpfs(work / "small", "size=160k") as small:
        if small is None:
            return None
        code, err = earmark(work / "in", "-o", small / "out")
        # a good file counts as kept if all its outputs fit, as lost if it is reported ok
        # without them; files that failed for lack of space are named, not lost
        manifest = json.loads((small / "out" / "manifest.json").read_text())
        failed_for_space = {
            Path(e["path"]).name
            for e in manifest["files"]
            if e["status"] == "failed" and "No space left" in (e["error"] or "")
        }
        reported = [p for p in good if p.name not in failed_for_space]
        counted = kept(small / "out", reported)  # before the file system goes away
        return reported, code, err, small / "out", counted


def case_read_only(work: Path) -> tuple[list[Path], int, str, Path] | None:
    good_files(work / "in")
    with tmpfs(work / "ro", "ro,size=64k") as ro:
        if ro is None:
            return None
        code, err = earmark(work / "in", "-o", ro / "out")
        clear = code == 2 and "Read-only file system" in err
        return [], (code if clear else 99), err, ro / "out"  # 99: not the clear usage error


def case_killed_worker(work: Path) -> tuple[list[Path], int, str, Path]:
    good = good_files(work / "in", 2)
    x, sr = sf.read(FIXTURES / "pyannote_sample.wav", dtype="int16")
    for i in range(4):
        good.append(work / "in" / f"long{i}.wav")
        sf.write(good[-1], np.tile(x, 20), sr, subtype="PCM_16")
    code, err = earmark(work / "in", "-o", work / "out", "--jobs", "2", kill_worker_after=6.0)
    return good, code, err, work / "out"


# ---------------------------------------------------------------------------- the service
@contextlib.contextmanager
def service(work: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """``earmark serve`` in embedded mode (SQLite, local worker) on a free loopback port."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EARMARK_")}
    environ.update(
        EARMARK_STORAGE_DIR=str(work / "storage"),
        EARMARK_MODEL_DIR=os.environ.get("EARMARK_MODEL_DIR", str(SHARED / "models")),
        EARMARK_AUTH="none",
        EARMARK_LEASE_SECONDS="4",
        EARMARK_WORKER_THREADS="1",
        EARMARK_LOG_LEVEL="warning",
        **env,
    )
    log = open(work / "serve.log", "wb")  # noqa: SIM115
    command = [sys.executable, "-m", "earmark.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(command, env=environ, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.3)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def wait_jobs(http: object, ids: list[str], timeout: float = 300) -> dict[str, dict]:
    deadline, states = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        states = {i: http.get(f"/v1/jobs/{i}").json() for i in ids}  # type: ignore[attr-defined]
        if all(s["state"] in ("done", "failed") for s in states.values()):
            break
        time.sleep(0.5)
    return states


def served_results(http: object, ids: list[str]) -> tuple[int, int, str]:
    """(jobs whose every file is done with events served, jobs lost, 5xx answers seen)."""
    states = wait_jobs(http, ids)
    kept = errors = 0
    for i, status in states.items():
        events = http.get(f"/v1/jobs/{i}/events")  # type: ignore[attr-defined]
        errors += events.status_code >= 500
        done = status["state"] == "done" and all(f["state"] == "done" for f in status["files"])
        kept += done and events.status_code == 200 and bool(events.json()["events"])
    return kept, len(ids) - kept, f"{errors} server error(s)" if errors else ""


def long_wav(path: Path, minutes: int) -> Path:
    x, sr = sf.read(FIXTURES / "pyannote_sample.wav", dtype="int16")
    sf.write(path, np.tile(x, minutes * 2), sr, subtype="PCM_16")
    return path


def case_service_killed_worker(work: Path) -> tuple:
    import httpx

    audio = long_wav(work / "long.wav", 2).read_bytes()
    with service(work) as (url, proc), httpx.Client(base_url=url, timeout=60) as http:
        ids = [
            http.post("/v1/jobs", files={"files": (f"rec{i}.wav", audio)}).json()["id"]
            for i in range(3)
        ]
        time.sleep(3.0)  # the worker is on the first job
        found = subprocess.run(
            ["pgrep", "-f", "-P", str(proc.pid), "worker --embedded"],
            capture_output=True,
            text=True,
        ).stdout.split()
        for pid in found:
            os.kill(int(pid), signal.SIGKILL)
        kept_jobs, _, errors = served_results(http, ids)
    return [Path(i) for i in ids], (0 if found else 99), errors, None, kept_jobs


def case_service_lying_header(work: Path) -> tuple:
    import httpx

    x, sr = sf.read(FIXTURES / "pyannote_sample.wav", dtype="int16")
    liar = work / "liar.flac"
    sf.write(liar, np.concatenate([x[: 5 * sr], np.zeros(95 * sr, np.int16)]), sr)
    data = bytearray(liar.read_bytes())
    packed = int.from_bytes(data[18:26], "big")
    data[18:26] = ((packed & ~((1 << 36) - 1)) | sr).to_bytes(8, "big")
    good = (FIXTURES / CLIPS[0]).read_bytes()
    with (
        service(work, EARMARK_MAX_AUDIO_SECONDS="60") as (url, _),
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        ids = [
            http.post("/v1/jobs", files={"files": ("good.ogg", good)}).json()["id"],
            http.post("/v1/jobs", files={"files": ("liar.flac", bytes(data))}).json()["id"],
        ]
        states = wait_jobs(http, ids)
        error = states[ids[1]]["files"][0]["error"] or ""
        stopped = states[ids[1]]["files"][0]["state"] == "failed" and "limit of 60 s" in error
        kept_jobs, _, errors = served_results(http, ids[:1])
    return [Path(ids[0])], (0 if stopped else 99), errors, None, kept_jobs


def case_service_full_storage(work: Path) -> tuple | None:
    import httpx

    body = long_wav(work / "a.wav", 1).read_bytes()  # about 1.9 MB
    with tmpfs(work / "storage", "size=12m") as small:
        if small is None:
            return None
        with (
            service(work, EARMARK_MIN_FREE_MB="2") as (url, _),
            httpx.Client(base_url=url, timeout=60) as http,
        ):
            ids, codes = [], []
            for i in range(8):
                response = http.post("/v1/jobs", files={"files": (f"a{i}.wav", body)})
                codes.append(response.status_code)
                if response.status_code == 201:
                    ids.append(response.json()["id"])
            refused_cleanly = 507 in codes and set(codes) <= {201, 507}
            kept_jobs, _, errors = served_results(http, ids)
            if not refused_cleanly:
                errors += f" answers {codes}"
    return [Path(i) for i in ids], (0 if refused_cleanly else 99), errors.strip(), None, kept_jobs


def case_queue_killed_worker(work: Path) -> tuple | None:
    """Queue mode (Redis, PostgreSQL, Celery): the worker group is SIGKILLed mid-job and a new
    one started; every job must finish once. Uses the test suite's server helpers."""
    import httpx

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "service"))
    try:
        from servers import MissingServer, Server, Worker, postgres_server, redis_server
    except ImportError:
        return None
    audio = long_wav(work / "long.wav", 2).read_bytes()
    try:
        with redis_server() as broker, postgres_server() as database:
            env = {k: v for k, v in os.environ.items() if not k.startswith("EARMARK_")}
            env.update(
                EARMARK_BROKER_URL=broker,
                EARMARK_DATABASE_URL=database,
                EARMARK_STORAGE_DIR=str(work / "storage"),
                EARMARK_MODEL_DIR=os.environ.get("EARMARK_MODEL_DIR", str(SHARED / "models")),
                EARMARK_AUTH="none",
                EARMARK_VISIBILITY_TIMEOUT="8",
                EARMARK_LEASE_SECONDS="4",
                EARMARK_WORKER_THREADS="1",
                EARMARK_LOG_LEVEL="warning",
            )
            api = Server(env, ["--no-worker"], work / "api.log")
            worker = Worker(env, work / "worker.log")
            try:
                with httpx.Client(base_url=api.url, timeout=60) as http:
                    ids = [
                        http.post("/v1/jobs", files={"files": (f"r{i}.wav", audio)}).json()["id"]
                        for i in range(3)
                    ]
                    deadline = time.monotonic() + 120
                    while time.monotonic() < deadline:  # until the worker holds a job
                        states = [http.get(f"/v1/jobs/{i}").json()["state"] for i in ids]
                        if "running" in states:
                            break
                        time.sleep(0.2)
                    worker.kill()
                    worker = Worker(env, work / "worker.log")
                    kept_jobs, _, errors = served_results(http, ids)
            finally:
                worker.stop()
                api.proc.terminate()
                api.proc.wait(30)
    except MissingServer:
        return None
    return [Path(i) for i in ids], 0, errors, None, kept_jobs


CASES: dict[str, Callable[[Path], tuple | None]] = {
    "non-UTF-8 name": case_non_utf8,
    "255-byte names": case_long_names,
    "same name in two folders": case_duplicate_names,
    "broken/looping links, FIFO": case_links_and_fifo,
    "header lies about duration": case_lying_header,
    "earlier run: refused, then --resume": case_resume,
    "full disk (tmpfs)": case_full_disk,
    "read-only output folder": case_read_only,
    "worker killed (--jobs 2)": case_killed_worker,
    "service: embedded worker killed": case_service_killed_worker,
    "service: header lies (limit on decoded audio)": case_service_lying_header,
    "service: storage full (tmpfs)": case_service_full_storage,
    "service: queue worker killed (Redis, PostgreSQL)": case_queue_killed_worker,
}


def main() -> dict:
    rows = []
    for name, case in CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            outcome = case(Path(tmp))
            if outcome is None:
                why = "needs root (tmpfs) or Redis and PostgreSQL installed"
                rows.append({"case": name, "run": False, "why": why})
                continue
            good, code, err, out = outcome[:4]
            n_kept = outcome[4] if len(outcome) > 4 else kept(out, good) if good else 0
            rows.append(
                {
                    "case": name,
                    "run": True,
                    "exit_code": code,
                    "good_files": len(good),
                    "kept": n_kept,
                    "lost": len(good) - n_kept,
                    "tracebacks": err.count("Traceback")
                    + sum(int(n) for n in re.findall(r"(\d+) server error", err)),
                    "seconds": round(time.perf_counter() - started, 1),
                    "stderr_first_line": err.strip().splitlines()[0] if err.strip() else "",
                }
            )
    width = max(len(r["case"]) for r in rows)
    print(f"{'case':<{width}}  exit  kept  lost  tracebacks")
    for r in rows:
        if not r["run"]:
            print(f"{r['case']:<{width}}  not run: {r['why']}")
            continue
        print(
            f"{r['case']:<{width}}  {r['exit_code']:>4}  {r['kept']:>4}  {r['lost']:>4}"
            f"  {r['tracebacks']:>10}"
        )
    lost = sum(r.get("lost", 0) for r in rows)
    tracebacks = sum(r.get("tracebacks", 0) for r in rows)
    bad_codes = [r["case"] for r in rows if r.get("exit_code") in (3, 99)]
    print(f"total: lost {lost}, tracebacks {tracebacks}, unexpected exits {bad_codes or 0}")
    result = {"cases": rows, "lost": lost, "tracebacks": tracebacks, "unexpected": bad_codes}
    save_result("faults", result)
    return result


if __name__ == "__main__":
    outcome = main()
    sys.exit(1 if outcome["lost"] or outcome["tracebacks"] or outcome["unexpected"] else 0)
