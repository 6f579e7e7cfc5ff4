"""Real servers for the service tests: Redis, PostgreSQL, the API and Celery workers.

Redis and PostgreSQL are the Debian binaries, started on loopback on free (non-default) ports
with their data in temporary directories, and stopped at the end of the session. PostgreSQL
refuses to run as root, so as root it runs as the ``postgres`` user. Missing binaries skip the
tests, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from needs import missing
from servers import (
    ALICE,
    BOB,
    MissingServer,
    Server,
    Worker,
    postgres_server,
    redis_server,
    stop,
)

REPO = Path(__file__).resolve().parents[2]


def _missing(what: str) -> None:
    missing(f"{what} not found (the service tests need Debian's redis-server and postgresql)")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private redis-server on loopback."""
    try:
        with redis_server() as url:
            yield url
    except MissingServer as exc:
        _missing(str(exc))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL cluster on loopback (run as ``postgres`` when we are root)."""
    try:
        with postgres_server() as url:
            yield url
    except MissingServer as exc:
        _missing(str(exc))


@pytest.fixture(scope="session")
def service_env(redis_url: str, postgres_url: str, model_dir: Path, tmp_path_factory) -> dict:
    """Environment of the queue-mode deployment under test (API + Celery workers)."""
    env = dict(os.environ)
    env.update(
        EARMARK_BROKER_URL=redis_url,
        EARMARK_DATABASE_URL=postgres_url,
        EARMARK_STORAGE_DIR=str(tmp_path_factory.mktemp("storage")),
        EARMARK_MODEL_DIR=str(model_dir),
        EARMARK_BOOTSTRAP_KEYS=f"alice:{ALICE},bob:{BOB}",
        EARMARK_MAX_UPLOAD_MB="8",
        EARMARK_RATE_LIMIT="100000",
        # short recovery times so that a killed worker's job comes back within the test
        EARMARK_VISIBILITY_TIMEOUT="8",
        EARMARK_LEASE_SECONDS="4",
        EARMARK_WORKER_THREADS="1",
        EARMARK_LOG_LEVEL="warning",
    )
    return env


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """test-artifacts/ (git-ignored): logs and screenshots."""
    path = REPO / "test-artifacts" / "service"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def api(service_env: dict, artifacts: Path) -> Iterator[Server]:
    """The API in queue mode (PostgreSQL, Redis), no local worker."""
    server = Server(service_env, ["--no-worker"], artifacts / "api.log")
    try:
        yield server
    finally:
        stop(server.proc)


@pytest.fixture(scope="session")
def worker(api: Server, service_env: dict, artifacts: Path) -> Iterator[Worker]:
    """One Celery worker process for the session (tests may kill and replace it)."""
    holder = Worker(service_env, artifacts / "worker.log")
    box = [holder]
    try:
        yield box  # type: ignore[misc]
    finally:
        for w in box:
            w.stop()
