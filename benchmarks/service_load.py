"""Load and throughput of the service in queue mode (API + Redis + PostgreSQL + Celery workers).

1. **Latency under load**: 50 concurrent clients each submit a job (a 5 s real clip) and poll its
   status every 0.5 s until it is done; p50/p95/max latency of submissions and of status calls.
   One worker process.
2. **Throughput**: a batch of jobs holding long real recordings, processed by 1 and then 2 worker
   processes (one torch thread each); hours of audio processed per hour of wall time, from the
   first submission to the last job done.

Redis and PostgreSQL are private servers started on loopback (as in the tests). Results go to
``benchmarks/results/service.json``.

Usage: ``python -m benchmarks.service_load [--clients 50] [--minutes 10] [--jobs 4]``
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

from benchmarks.common import SHARED, long_recording, save_result

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "service"))
from servers import Server, Worker, postgres_server, redis_server, stop

KEY = "bench-secret-0123456789abcdef01"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary_ms(values: list[float]) -> dict:
    """p50/p95/max/mean of latencies in milliseconds."""
    return {
        "n": len(values),
        "p50": round(percentile(values, 50) * 1000, 1),
        "p95": round(percentile(values, 95) * 1000, 1),
        "max": round(max(values) * 1000, 1),
        "mean": round(statistics.fmean(values) * 1000, 1),
    }


def wait_done(http: httpx.Client, job: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = http.get(f"/v1/jobs/{job}").json()
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.2)
    raise TimeoutError(job)


def load_test(server: Server, clip: Path, clients: int) -> dict:
    """``clients`` concurrent submit-then-poll loops; latency of each request."""
    body = clip.read_bytes()
    submit: list[float] = []
    status: list[float] = []
    states: list[str] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(clients)

    def one(i: int) -> None:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120
        ) as http:
            start_gate.wait()
            t0 = time.perf_counter()
            response = http.post("/v1/jobs", files={"files": (f"clip{i}.ogg", body)})
            took = time.perf_counter() - t0
            response.raise_for_status()
            job = response.json()["id"]
            mine = []
            while True:
                t0 = time.perf_counter()
                state = http.get(f"/v1/jobs/{job}").json()["state"]
                mine.append(time.perf_counter() - t0)
                if state in ("done", "failed"):
                    break
                time.sleep(0.5)
            with lock:
                submit.append(took)
                status.extend(mine)
                states.append(state)

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(clients)))
    return {
        "clients": clients,
        "clip": clip.name,
        "jobs_done": states.count("done"),
        "jobs_failed": states.count("failed"),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "submit_latency_ms": summary_ms(submit),
        "status_latency_ms": summary_ms(status),
    }


def throughput(server: Server, env: dict, recording: Path, jobs: int, processes: int, log: Path):
    """Hours of audio per hour with ``processes`` worker processes."""
    worker = Worker(env, log, concurrency=processes)
    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=300
        ) as http:
            # warm-up: every process has loaded the model before the clock starts
            clip = SHARED / "audio" / "fixtures" / "esc10_dog_1-100032-A.ogg"
            warm = [
                http.post("/v1/jobs", files={"files": ("w.ogg", clip.read_bytes())}).json()["id"]
                for _ in range(processes * 2)
            ]
            for job in warm:
                wait_done(http, job, 300)
            body = recording.read_bytes()
            t0 = time.perf_counter()
            ids = [
                http.post("/v1/jobs", files={"files": (f"r{i}.mp3", body)}).json()["id"]
                for i in range(jobs)
            ]
            finals = [wait_done(http, job, 3600) for job in ids]
            wall = time.perf_counter() - t0
    finally:
        worker.stop()
    audio = sum(f["progress"]["seconds_total"] for f in finals)
    return {
        "worker_processes": processes,
        "torch_threads_per_process": 1,
        "jobs": jobs,
        "audio_hours": round(audio / 3600, 3),
        "wall_seconds": round(wall, 1),
        "audio_hours_per_hour": round(audio / wall, 1),
        "all_done": all(f["state"] == "done" for f in finals),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of each long job")
    parser.add_argument("--jobs", type=int, default=4, help="long jobs per throughput run")
    args = parser.parse_args()
    model_dir = os.environ.get("EARMARK_MODEL_DIR", str(SHARED / "models"))
    recording = long_recording(args.minutes * 60)
    clip = SHARED / "audio" / "fixtures" / "esc10_dog_1-100032-A.ogg"
    logs = Path(__file__).resolve().parent / "data" / "service-logs"
    logs.mkdir(parents=True, exist_ok=True)
    storage = logs / "storage"
    load_before = os.getloadavg()
    with redis_server() as redis_url, postgres_server() as database_url:
        env = dict(os.environ)
        env.update(
            EARMARK_BROKER_URL=redis_url,
            EARMARK_DATABASE_URL=database_url,
            EARMARK_STORAGE_DIR=str(storage),
            EARMARK_MODEL_DIR=model_dir,
            EARMARK_BOOTSTRAP_KEYS=f"bench:{KEY}",
            EARMARK_RATE_LIMIT="1000000",
            EARMARK_WORKER_THREADS="1",
            EARMARK_LOG_LEVEL="warning",
        )
        server = Server(env, ["--no-worker"], logs / "api.log")
        try:
            worker = Worker(env, logs / "worker-load.log")
            try:
                print(f"load: {args.clients} clients ...", flush=True)
                load = load_test(server, clip, args.clients)
            finally:
                worker.stop()
            print(load, flush=True)
            runs = []
            for processes in (1, 2):
                print(f"throughput: {processes} worker process(es) ...", flush=True)
                log = logs / f"worker-{processes}.log"
                runs.append(throughput(server, env, recording, args.jobs, processes, log))
                print(runs[-1], flush=True)
        finally:
            stop(server.proc)
    path = save_result(
        "service",
        {
            "note": "2-core machine shared with other engineers' jobs while measured: "
            "figures are pessimistic; API and workers share the same 2 cores",
            "load_average_before_and_after": [
                [round(v, 1) for v in load_before],
                [round(v, 1) for v in os.getloadavg()],
            ],
            "load": load,
            "throughput": runs,
            "long_job_recording_minutes": args.minutes,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
