"""Dependencies and helpers the routes share: the caller, app state, jobs, uploads, options.

Everything here reads the app's state from ``request.app.state`` (set by
:func:`earmark.service.api.create_app`): ``settings``, ``db``, ``storage``, ``limiter``,
``celery`` and ``redis`` (both ``None`` in embedded mode), ``prepared`` and ``last_sweep``.
"""

import ipaddress
import os
import tempfile
import time
from datetime import timezone
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import Depends, HTTPException, Request, UploadFile
from sqlalchemy import func, select

from earmark.service.db import Database
from earmark.service.jobs import create_job_record, delete_job_record
from earmark.service.models import ApiKey, Job
from earmark.service.schemas import FileStatus, JobStatus, Progress
from earmark.service.security import UploadError, authenticate, check_audio, upload_name
from earmark.service.settings import QUEUE_NAME, Settings
from earmark.service.storage import Storage

MAX_FILES_PER_JOB = 100
"""Files one job (one request) may hold."""
SWEEP_SECONDS = 600.0
"""Spooled uploads abandoned by a crashed API process are looked for at most this often."""

Accepted = list[tuple[UploadFile, Path, Any]]
"""Received uploads: the upload, its spooled file and ``(name, checked audio)``."""


# ---------------------------------------------------------------------------- app state
# (async: reading an attribute needs no worker thread)
async def get_settings(request: Request) -> Settings:
    """The service's settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_database(request: Request) -> Database:
    """The service's database."""
    db: Database = request.app.state.db
    return db


async def get_storage(request: Request) -> Storage:
    """The service's storage directory."""
    storage: Storage = request.app.state.storage
    return storage


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
StorageDep = Annotated[Storage, Depends(get_storage)]


# ---------------------------------------------------------------------------- helpers
def iso_time(value: Any) -> str | None:
    """A datetime as ISO 8601 to the second (naive ones are UTC); ``None`` stays ``None``."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat(timespec="seconds")


def split_list(value: str | None) -> list[str] | None:
    """``"a; b,c"`` -> ``["a", "b", "c"]``; ``None`` when nothing is left."""
    if not value:
        return None
    items = [v.strip() for v in value.replace(",", ";").split(";") if v.strip()]
    return items or None


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def queue_length(db: Database, redis_client: Any | None) -> int | None:
    """Jobs waiting: the broker queue's length in queue mode, queued job rows when embedded
    (``None`` when the broker does not answer)."""
    if redis_client is not None:
        try:
            return int(redis_client.llen(QUEUE_NAME))
        except Exception:
            return None
    with db.session() as session:
        return int(session.scalar(select(func.count()).where(Job.state == "queued")) or 0)


# ---------------------------------------------------------------------------- the caller
class Principal:
    """Who is calling: a key, or nobody when auth is off (embedded mode on loopback)."""

    def __init__(self, key_id: int | None, name: str, admin: bool) -> None:
        self.key_id, self.name, self.admin = key_id, name, admin


def principal(request: Request) -> Principal:
    """The caller from its API key (401 without a valid one), within its rate limit (429)."""
    settings: Settings = request.app.state.settings
    header = request.headers.get("authorization", "")
    secret = request.headers.get("x-api-key", "")
    if header.lower().startswith("bearer "):
        secret = header[7:].strip()
    if settings.auth == "none":
        client = request.client.host if request.client else None
        if not _is_loopback(client):
            raise HTTPException(403, "authentication is off, so only loopback clients")
        who = Principal(None, "local", True)
    else:
        if not secret:
            raise HTTPException(
                401,
                "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        with request.app.state.db.session() as session:
            key: ApiKey | None = authenticate(session, secret)
            if key is None:
                raise HTTPException(
                    401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
                )
            who = Principal(key.id, key.name, key.admin)
    allowed, retry_after = request.app.state.limiter.hit(str(who.key_id))
    if not allowed:
        raise HTTPException(
            429,
            f"rate limit of {settings.rate_limit} requests per minute exceeded for this key",
            headers={"Retry-After": str(retry_after)},
        )
    return who


Caller = Annotated[Principal, Depends(principal)]


# ---------------------------------------------------------------------------- jobs
def load_job(session: Any, job_id: str, who: Principal) -> Job:
    """The job ``job_id`` if ``who`` may see it, else 404."""
    job = session.get(Job, job_id) if len(job_id) <= 36 else None
    if job is None or not (who.admin or job.key_id == who.key_id):
        raise HTTPException(404, f"no job {job_id!r} for this key")
    return job


def status_of(job: Job) -> JobStatus:
    """A job's state, progress in seconds of audio, files and links."""
    files = list(job.files)
    total = sum(f.duration or 0.0 for f in files)
    done = sum(
        (f.duration or f.seconds_done)
        if f.state in ("done", "partial", "failed")
        else min(f.seconds_done, f.duration or f.seconds_done)
        for f in files
    )
    finished = sum(f.state in ("done", "partial", "failed") for f in files)
    base = f"/v1/jobs/{job.id}"
    return JobStatus(
        id=job.id,
        state=job.state,  # type: ignore[arg-type]
        created_at=iso_time(job.created_at) or "",
        started_at=iso_time(job.started_at),
        finished_at=iso_time(job.finished_at),
        error=job.error,
        attempts=job.attempts,
        options=dict(job.options or {}),
        progress=Progress(
            seconds_done=round(done, 2),
            seconds_total=round(total, 2),
            fraction=round(done / total, 4) if total else (1.0 if job.state == "done" else 0.0),
            files_done=finished,
            files_total=len(files),
        ),
        n_events=sum(f.n_events for f in files),
        files=[
            FileStatus(
                index=f.index,
                name=f.name,
                format=f.format,
                size=f.size,
                duration=f.duration,
                state=f.state,  # type: ignore[arg-type]
                seconds_done=round(f.seconds_done, 2),
                n_events=f.n_events,
                error=f.error,
                warnings=list(f.warnings or []),
            )
            for f in files
        ],
        links={
            "self": base,
            "events": f"{base}/events",
            "report": f"{base}/report",
            **{f"scores_{f.index}": f"{base}/scores/{f.index}" for f in files},
        },
    )


def create_job(
    request: Request, who: Principal, accepted: Accepted, options: dict, sync: bool
) -> Job:
    """Record a job of the received uploads and, in queue mode, send it to the workers
    (503, and nothing kept, when the broker refuses it)."""
    db: Database = request.app.state.db
    storage: Storage = request.app.state.storage
    items = [(name, tmp, checked) for _, tmp, (name, checked) in accepted]
    job = create_job_record(db, storage, who.key_id, items, options, sync)
    celery = request.app.state.celery
    if celery is not None:
        from earmark.service.worker import TASK_NAME

        try:
            celery.send_task(TASK_NAME, args=[job.id], queue=QUEUE_NAME)
        except Exception as exc:
            delete_job_record(db, storage, job.id)
            raise HTTPException(503, f"job queue unavailable, try again: {exc}") from None
    return job


# ---------------------------------------------------------------------------- uploads
async def receive_uploads(request: Request, uploads: list[UploadFile]) -> Accepted:
    """Spool each upload to the storage tmp dir and check it; undo everything on error."""
    settings: Settings = request.app.state.settings
    storage: Storage = request.app.state.storage
    if not uploads:
        raise HTTPException(422, "no files: send one or more audio files as 'files'")
    if len(uploads) > MAX_FILES_PER_JOB:
        raise HTTPException(413, f"at most {MAX_FILES_PER_JOB} files per job")
    state = request.app.state
    if time.monotonic() - state.last_sweep > SWEEP_SECONDS:  # abandoned spools, now and then
        state.last_sweep = time.monotonic()
        await anyio.to_thread.run_sync(storage.sweep_uploads)
    free = storage.free_mb()
    if free < settings.min_free_mb:
        raise HTTPException(
            507,
            f"the server is low on storage ({free:.0f} MB free, keeps"
            f" {settings.min_free_mb:g} MB: EARMARK_MIN_FREE_MB); try again later",
        )
    tmp_dir = storage.upload_tmp_dir()
    accepted: Accepted = []
    total = 0
    taken: set[str] = set()
    try:
        for upload in uploads:
            name = upload_name(upload.filename, taken)
            fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, suffix=".upload")
            tmp = Path(tmp_name)
            accepted.append((upload, tmp, None))
            with os.fdopen(fd, "wb") as out:
                while chunk := await upload.read(1 << 20):
                    total += len(chunk)
                    if total > settings.max_upload_bytes:
                        raise HTTPException(
                            413,
                            f"{name}: upload larger than the limit of "
                            f"{settings.max_upload_mb:g} MB (EARMARK_MAX_UPLOAD_MB)",
                        )
                    if total > (free - settings.min_free_mb) * 1024 * 1024:
                        raise HTTPException(
                            507,
                            f"{name}: not enough storage left on the server for this upload"
                            f" ({free:.0f} MB free, keeps {settings.min_free_mb:g} MB)",
                        )
                    try:
                        out.write(chunk)
                    except OSError as exc:
                        raise HTTPException(
                            507, f"{name}: the server's storage is full ({exc.strerror})"
                        ) from None
            try:
                checked = await anyio.to_thread.run_sync(
                    check_audio, tmp, name, settings.max_audio_seconds
                )
            except UploadError as exc:
                raise HTTPException(exc.status, str(exc)) from None
            accepted[-1] = (upload, tmp, (name, checked))
    except BaseException:
        for _, tmp, _ in accepted:
            tmp.unlink(missing_ok=True)
        raise
    return accepted


# ---------------------------------------------------------------------------- options
def check_model(model: str | None) -> None:
    """422 naming the model when it is unknown or its file is not where the service looks."""
    from earmark import assets

    if model is None:
        return
    available = [r["name"] for r in assets.list_models() if r["path"] is not None]
    if model not in available:
        known = "known but its file is missing here" if model in assets.MODELS else "unknown"
        raise HTTPException(
            422, f"model {model!r} is {known}; available models: {', '.join(available)}"
        )


def job_options(
    model: str | None,
    threshold: float | None,
    off_threshold: float | None,
    median_filter: float | None,
    min_duration: float | None,
    merge_gap: float | None,
    labels: str | None,
    exclude: str | None,
    group_by: str | None,
    class_thresholds: str | None,
    scoring: str | None,
) -> dict[str, Any]:
    """Flat detection options (the keys of ``earmark detect --config``) from form fields."""
    thresholds: dict[str, float] = {}
    for item in split_list(class_thresholds) or []:
        label, sep, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not sep or not label.strip() or not 0.0 < number <= 1.0:
            raise HTTPException(
                422, f"class_thresholds: expected LABEL=VALUE with 0 < VALUE <= 1, got {item!r}"
            )
        thresholds[label.strip()] = number
    if threshold is not None and off_threshold is not None and off_threshold > threshold:
        raise HTTPException(422, "off_threshold must not exceed threshold")
    flat = {
        "model": model,
        "threshold": threshold,
        "off_threshold": off_threshold,
        "median_filter": median_filter,
        "min_duration": min_duration,
        "merge_gap": merge_gap,
        "labels": split_list(labels),
        "exclude": split_list(exclude),
        "group_by": group_by or None,
        "thresholds": thresholds or None,
        "method": scoring,
    }
    return {k: v for k, v in flat.items() if v is not None}
