"""The Celery application: jobs travel through Redis to any number of worker processes.

Delivery guarantees:

* ``acks_late`` + ``prefetch 1``: a worker acknowledges a job only when it is finished and holds
  at most one job it has not started, so a worker that dies loses nothing;
* ``reject_on_worker_lost``: if a pool process dies (killed, out of memory), its job goes back
  to the queue at once;
* Redis ``visibility_timeout`` (above the longest job): if a whole worker machine disappears,
  its unacknowledged job is handed out again after that time;
* retries with exponential backoff (and jitter) for database or storage hiccups;
* a soft and a hard time limit per job;
* duplicates (a job delivered twice) are harmless: see :mod:`earmark.service.jobs` (leases,
  idempotent result writes).

Importing this module does not import torch (the API imports it to publish jobs); the model is
loaded once per worker process, when it starts.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals
from celery.exceptions import SoftTimeLimitExceeded

from earmark.service.settings import QUEUE_NAME, Settings

log = logging.getLogger(__name__)

TASK_NAME = "earmark.process_job"


def make_celery(settings: Settings) -> Celery:
    """A Celery app for these settings (without a broker URL: an in-memory broker, unused)."""
    app = Celery("earmark", broker=settings.broker_url or "memory://", set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=QUEUE_NAME,
        task_serializer="json",
        accept_content=["json"],
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=max(settings.task_time_limit - 60, 30),
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": min(10, max(1, settings.visibility_timeout // 4)),
            "unacked_restore_throttle": 1,
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    _register(app, settings)
    return app


_STATE: dict[str, Any] = {}


def _parts(settings: Settings) -> tuple[Any, Any]:
    """The worker process's database and storage (created once)."""
    if "db" not in _STATE:
        from earmark.service.db import Database
        from earmark.service.storage import Storage

        _STATE["db"] = Database(settings.database_url)
        _STATE["storage"] = Storage(settings.storage_dir)
    return _STATE["db"], _STATE["storage"]


def _register(app: Celery, settings: Settings) -> None:
    from sqlalchemy.exc import OperationalError

    @app.task(
        name=TASK_NAME,
        bind=True,
        autoretry_for=(OperationalError, ConnectionError, TimeoutError),
        retry_backoff=2,
        retry_backoff_max=300,
        retry_jitter=True,
        max_retries=8,
    )
    def process_job_task(self: Any, job_id: str) -> str:
        """Process one job (see :func:`earmark.service.jobs.process_job`)."""
        from earmark.service import jobs

        db, storage = _parts(settings)
        try:
            if jobs.attempts(db, job_id) >= jobs.MAX_ATTEMPTS:
                jobs.give_up(db, job_id, f"gave up after {jobs.MAX_ATTEMPTS} attempts")
                return "failed"
            outcome = jobs.process_job(db, storage, settings, job_id)
        except SoftTimeLimitExceeded:
            jobs.give_up(db, job_id, f"time limit of {settings.task_time_limit} s exceeded")
            return "failed"
        if outcome.status == "busy":
            # another live worker holds the job: look again when its lease would have expired
            raise self.retry(countdown=outcome.retry_in + 1, max_retries=None)
        return outcome.status


@signals.worker_process_init.connect
def _load_model_once(**_: Any) -> None:
    """Load the default model when a worker process starts, not on its first job."""
    from earmark import assets
    from earmark.service import jobs

    settings = Settings.from_env()
    try:
        jobs.get_tagger(assets.DEFAULT_MODEL, settings.worker_threads)
    except Exception:  # reported again, per job, when a job needs it
        log.exception("could not load the default model at worker start")


def check(settings: Settings) -> list[str]:
    """Problems that keep a worker from working (empty when broker, database and model are
    reachable): what ``earmark worker --check`` reports."""
    from earmark import assets
    from earmark.service.db import Database

    problems = []
    if not settings.broker_url:
        problems.append("EARMARK_BROKER_URL is not set")
    else:
        try:
            import redis

            redis.Redis.from_url(settings.broker_url, socket_timeout=5).ping()
        except Exception as exc:
            problems.append(f"broker {settings.broker_url} unreachable: {exc}")
    try:
        db = Database(settings.database_url)
        db.ping()
        db.dispose()
    except Exception as exc:
        problems.append(f"database unreachable: {exc}")
    try:
        assets.resolve_model(assets.DEFAULT_MODEL, download=False)
        assets.resolve(assets.get_asset("labels"), download=False)
    except Exception as exc:
        problems.append(f"model not found: {exc}")
    return problems


celery_app = make_celery(Settings.from_env())
"""The app ``celery -A earmark.service.worker:celery_app worker`` and ``earmark worker`` run."""
