"""Helpers for the service tests: free ports, waiting, server and worker processes."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ALICE = "alice-secret-0123456789abcdef"
BOB = "bob-secret-0123456789abcdef012"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    """Poll ``check()`` until it is true; fail naming ``what`` (and the process's exit)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Terminate a process we started (its whole process group), then kill it if needed."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


class Server:
    """A running ``earmark serve`` process."""

    def __init__(self, env: dict, args: list[str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "earmark.cli", "serve", "--port", str(self.port), *args],
            env=env,
            stdout=open(log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(
            lambda: httpx.get(self.url + "/readyz", timeout=2).status_code == 200,
            60,
            "earmark serve",
            self.proc,
        )


class Worker:
    """A running ``earmark worker`` (Celery) process group."""

    def __init__(self, env: dict, log: Path, concurrency: int = 1) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "earmark.cli", "worker", "--concurrency", str(concurrency)],
            env=env,
            stdout=open(log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes: no chance to clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """Stop it (warm shutdown)."""
        stop(self.proc, timeout=30)


def client(server: Server, key: str | None) -> httpx.Client:
    """An HTTP client for ``server`` with an API key."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def wait_job(http: httpx.Client, job_id: str, timeout: float = 120) -> dict:
    """Poll a job until it is done or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = http.get(f"/v1/jobs/{job_id}").json()
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} not finished after {timeout} s: {status}")


class MissingServer(RuntimeError):
    """A server binary (or the user to run it as) is not installed."""


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Run a private redis-server on a free loopback port; yield its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise MissingServer("redis-server")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="earmark-redis-")
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [binary, *args, "--dir", workdir, "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        wait_for(client.ping, 20, "redis-server", proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Run a private PostgreSQL cluster on a free loopback port (as ``postgres`` when root);
    yield the SQLAlchemy URL of its ``earmark`` database."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = bins[-1] if bins else shutil.which("initdb")
    if initdb is None:
        raise MissingServer("PostgreSQL (initdb)")
    bindir = Path(initdb).parent
    workdir = Path(tempfile.mkdtemp(prefix="earmark-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise MissingServer("the 'postgres' user") from None
        os.chown(workdir, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data = workdir / "data"
    subprocess.run(
        [
            *prefix,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "earmark",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    port = free_port()
    settings = ["listen_addresses=127.0.0.1", "fsync=off", "max_connections=200"]
    settings += ["synchronous_commit=off", "full_page_writes=off"]
    options = [item for setting in settings for item in ("-c", setting)]
    proc = subprocess.Popen(
        [
            *prefix,
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(workdir),
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    import psycopg

    dsn = f"host=127.0.0.1 port={port} user=earmark dbname=postgres"

    def ready() -> bool:
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT 1")
        return True

    try:
        wait_for(ready, 30, "postgres", proc)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE earmark")
        yield f"postgresql+psycopg://earmark@127.0.0.1:{port}/earmark"
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
