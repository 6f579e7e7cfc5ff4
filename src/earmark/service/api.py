"""The HTTP API (FastAPI): jobs, events, scores, models, health, metrics and the web page.

Run it with ``earmark serve`` (embedded mode: also a local worker and SQLite) or any ASGI
server: ``uvicorn earmark.service.api:app``. The OpenAPI schema (``/openapi.json``) is the
contract. This module never imports torch: detection runs in workers.
"""

import asyncio
import contextlib
import ipaddress
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from earmark.service.db import Database
from earmark.service.jobs import create_job_record, delete_job_record
from earmark.service.models import ApiKey, Job, JobFile, utcnow
from earmark.service.security import (
    RateLimiter,
    UploadError,
    authenticate,
    browser_headers,
    check_audio,
    ensure_key,
    host_problem,
    upload_name,
)
from earmark.service.settings import QUEUE_NAME, Settings, SettingsError
from earmark.service.storage import HEARTBEAT_STALE_SECONDS, Storage

log = logging.getLogger("earmark.service")

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_FILES_PER_JOB = 100
UPLOAD_PATHS = ("/v1/jobs", "/v1/detect")
#: Extra bytes of multipart framing and form fields allowed beyond the upload limit.
MULTIPART_OVERHEAD = 64 * 1024
MEDIA_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "mp3": "audio/mpeg",
    "aac": "audio/aac",
    "mp4": "audio/mp4",
    "mkv": "video/webm",
    "aiff": "audio/aiff",
    "caf": "audio/x-caf",
    "amr": "audio/amr",
    "wma": "audio/x-ms-wma",
}


# ---------------------------------------------------------------------------- schemas
class FileStatus(BaseModel):
    """One file of a job."""

    index: int = Field(description="position of the file in the upload, from 0")
    name: str = Field(description="file name as uploaded (display only)")
    format: str = Field(description="container recognised from the content")
    size: int = Field(description="bytes")
    duration: float | None = Field(description="seconds of audio")
    state: Literal["queued", "running", "done", "partial", "failed"]
    seconds_done: float
    n_events: int
    error: str | None
    warnings: list[str]


class Progress(BaseModel):
    """Progress in seconds of audio."""

    seconds_done: float
    seconds_total: float
    fraction: float
    files_done: int
    files_total: int


class JobStatus(BaseModel):
    """A job: state, progress, per-file state and errors."""

    id: str
    state: Literal["queued", "running", "done", "failed"]
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: str | None
    attempts: int
    options: dict[str, Any]
    progress: Progress
    n_events: int
    files: list[FileStatus]
    links: dict[str, str]


class JobSummary(BaseModel):
    """A job in a listing."""

    id: str
    state: str
    created_at: str
    files: int
    audio_seconds: float
    error: str | None


class JobList(BaseModel):
    """A page of jobs, newest first."""

    jobs: list[JobSummary]
    total: int


class AlternativeOut(BaseModel):
    """Another class found for the same sound as an event."""

    label: str
    mid: str
    peak: float | None


class EventOut(BaseModel):
    """A sound event: times in seconds from the start of its file."""

    file: str
    label: str
    mid: str
    onset: float
    offset: float
    duration: float
    peak: float | None
    mean: float | None
    alternatives: list[AlternativeOut] = []
    """Other classes found for the same sound, best first (``detect --every-class`` in the CLI
    reports them as events of their own)."""


class EventsOut(BaseModel):
    """Events of a job (so far, while it runs)."""

    meta: dict[str, Any]
    events: list[EventOut]


class DetectOut(BaseModel):
    """Answer of the synchronous detection of a short clip."""

    job: str
    file: str
    duration: float | None
    state: str
    error: str | None
    events: list[EventOut]


class ModelInfo(BaseModel):
    """A model the workers can use."""

    name: str
    default: bool
    width: float
    params: int | None
    published_map: float
    available: bool = Field(description="model file present where the service looks")


class CustomModelInfo(BaseModel):
    """A custom-class model of the server (``EARMARK_CLASSES_DIR``) that jobs may name."""

    name: str
    classes: list[str]
    detector: str = Field(description="frame-level head, or clip head")
    expected_event_f1: float | None = Field(
        None, description="event F1 (0.2 s collars) measured on held-out training mixtures"
    )


class ScoreTrack(BaseModel):
    """Scores of one class over time."""

    label: str
    mid: str
    max: float
    values: list[float]


class ScoresOut(BaseModel):
    """Framewise scores of the top classes of one file (max-pooled to ``step`` frames)."""

    file: str
    hop: float = Field(description="seconds between frames of the stored matrix")
    step: int = Field(description="stored frames per value below")
    duration: float | None
    frames: int
    tracks: list[ScoreTrack]


class Created(BaseModel):
    """A job was accepted."""

    id: str
    state: str
    files: int
    audio_seconds: float
    links: dict[str, str]


class Problem(BaseModel):
    """An error: ``detail`` says what is wrong."""

    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "missing or invalid API key"},
    404: {"model": Problem, "description": "no such job (or not yours)"},
    429: {"model": Problem, "description": "rate limit exceeded"},
}
SWEEP_SECONDS = 600.0
"""Spooled uploads abandoned by a crashed API process are looked for at most this often."""
UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {"model": Problem, "description": "malformed multipart body"},
    413: {"model": Problem, "description": "upload or audio longer than the limits"},
    415: {"model": Problem, "description": "an upload is not an audio or video file"},
    507: {"model": Problem, "description": "the server's storage is (nearly) full"},
}


# ---------------------------------------------------------------------------- helpers
class Principal:
    """Who is calling: a key, or nobody when auth is off (embedded mode on loopback)."""

    def __init__(self, key_id: int | None, name: str, admin: bool) -> None:
        self.key_id, self.name, self.admin = key_id, name, admin


class UploadTooLarge(Exception):
    """The request body grew past the upload limit."""


class BodyLimit:
    """ASGI middleware: refuse upload bodies over the limit before they fill the disk."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") not in UPLOAD_PATHS:
            await self.app(scope, receive, send)
            return
        limit_mb = (self.limit - MULTIPART_OVERHEAD) / 1024 / 1024
        message = (
            f"upload larger than the limit of {limit_mb:g} MB (EARMARK_MAX_UPLOAD_MB); split "
            "long recordings or raise the limit"
        )
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _drain(receive)
            await JSONResponse({"detail": message}, status_code=413)(scope, receive, send)
            return
        received = 0
        started = exceeded = False

        async def limited_receive() -> dict:
            nonlocal received, exceeded
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    raise UploadTooLarge()
            return event

        async def tracking_send(event: dict) -> None:
            nonlocal started
            if exceeded:  # whatever the app answers (a body parser says 400): ours is 413
                return
            if event["type"] == "http.response.start":
                started = True
            await send(event)

        with contextlib.suppress(UploadTooLarge):
            await self.app(scope, limited_receive, tracking_send)
        if exceeded and not started:
            await JSONResponse({"detail": message}, status_code=413)(scope, receive, send)


async def _drain(receive: Any) -> None:
    """Read (and drop) a request body, up to a bound, so the client sees the answer."""
    total = 0
    while total < 1 << 20:
        event = await receive()
        if event["type"] != "http.request":
            return
        total += len(event.get("body", b""))
        if not event.get("more_body"):
            return


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=__import__("datetime").timezone.utc)
    return value.isoformat(timespec="seconds")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split(value: str | None) -> list[str] | None:
    if not value:
        return None
    items = [v.strip() for v in value.replace(",", ";").split(";") if v.strip()]
    return items or None


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
    for item in _split(class_thresholds) or []:
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
        "labels": _split(labels),
        "exclude": _split(exclude),
        "group_by": group_by or None,
        "thresholds": thresholds or None,
        "method": scoring,
    }
    return {k: v for k, v in flat.items() if v is not None}


# ---------------------------------------------------------------------------- the app
def create_app(settings: Settings | None = None) -> FastAPI:
    """The API for ``settings`` (default: from the environment)."""
    settings = settings or Settings.from_env()
    logging.getLogger("earmark").setLevel(settings.log_level.upper())
    db = Database(settings.database_url)
    storage = Storage(settings.storage_dir)
    limiter = RateLimiter(settings.rate_limit, settings.broker_url)
    celery = None
    redis_client = None
    if settings.broker_url:
        import redis

        from earmark.service.worker import TASK_NAME, make_celery

        celery = make_celery(settings)
        redis_client = redis.Redis.from_url(settings.broker_url, socket_timeout=3)

    def queue_length() -> int | None:
        if redis_client is not None:
            try:
                return int(redis_client.llen(QUEUE_NAME))
            except Exception:
                return None
        with db.session() as session:
            return int(session.scalar(select(func.count()).where(Job.state == "queued")) or 0)

    from earmark.service.metrics import make_registry

    registry, latency = make_registry(db, queue_length)

    prepared: list[bool] = []

    def prepare() -> None:
        """Migrations and bootstrap keys (needs the database)."""
        if settings.auto_migrate:
            db.upgrade()
        if settings.bootstrap_keys:
            with db.session() as session:
                for name, secret in settings.bootstrap_keys:
                    ensure_key(session, name, secret)
        storage.sweep_uploads()  # what an API process that died while receiving left behind
        prepared.append(True)

    async def prepare_until_done() -> None:
        """The database may come up after the API (compose, Kubernetes): keep trying; until
        then /readyz answers 503 and requests that need the database fail cleanly."""
        while not prepared:
            await asyncio.sleep(2.0)
            try:
                await anyio.to_thread.run_sync(prepare)
                log.info("database reachable: migrations and bootstrap keys done")
            except Exception as exc:
                log.warning("database still unreachable: %s", exc)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        storage.ensure()
        retry = None
        try:
            prepare()
        except Exception as exc:
            log.warning("database unreachable at start (%s); retrying in the background", exc)
            retry = asyncio.create_task(prepare_until_done())
        log.info(
            "earmark API: %s mode, database %s, storage %s, auth %s",
            "embedded" if settings.embedded else "queue",
            db.engine.url.render_as_string(hide_password=True),
            storage.root,
            settings.auth,
        )
        yield
        if retry is not None:
            retry.cancel()
        db.dispose()

    app = FastAPI(
        title="earmark",
        version=__import__("earmark").__version__,
        description="Sound event detection as a service: upload recordings, get back which "
        "sounds occur, when they start and end, and how sure the model is.",
        lifespan=lifespan,
        docs_url=None,  # earmark.service.contract serves /docs (pinned, with integrity)
        redoc_url=None,
    )
    app.state.settings, app.state.db, app.state.storage = settings, db, storage
    from earmark.service import contract

    contract.install(app, {"$ref": "#/components/schemas/Problem"})
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes + MULTIPART_OVERHEAD)

    @app.exception_handler(OperationalError)
    async def database_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc.orig)
        return JSONResponse(
            {"detail": "the database is unavailable; try again shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    from earmark.report import script_hashes

    report_scripts = script_hashes()

    @app.middleware("http")
    async def measure(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        refused = host_problem(
            request.headers.get("host"),
            request.headers.get("origin"),
            request.method,
            settings.auth,
            settings.allowed_hosts,
        )
        if refused is not None:
            response: Response = JSONResponse({"detail": refused}, status_code=403)
        else:
            response = await call_next(request)
        response.headers.update(browser_headers(request.url.path, report_scripts))
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        latency.labels(request.method, path, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response

    # ------------------------------------------------------------------ auth
    def principal(request: Request) -> Principal:
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
            with db.session() as session:
                key: ApiKey | None = authenticate(session, secret)
                if key is None:
                    raise HTTPException(
                        401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
                    )
                who = Principal(key.id, key.name, key.admin)
        allowed, retry_after = limiter.hit(str(who.key_id))
        if not allowed:
            raise HTTPException(
                429,
                f"rate limit of {settings.rate_limit} requests per minute exceeded for this key",
                headers={"Retry-After": str(retry_after)},
            )
        return who

    Caller = Annotated[Principal, Depends(principal)]

    def load_job(session: Any, job_id: str, who: Principal) -> Job:
        job = session.get(Job, job_id) if len(job_id) <= 36 else None
        if job is None or not (who.admin or job.key_id == who.key_id):
            raise HTTPException(404, f"no job {job_id!r} for this key")
        return job

    def status_of(job: Job) -> JobStatus:
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
            created_at=_iso(job.created_at) or "",
            started_at=_iso(job.started_at),
            finished_at=_iso(job.finished_at),
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

    # ------------------------------------------------------------------ uploads
    last_sweep = [time.monotonic()]

    async def receive_uploads(uploads: list[UploadFile]) -> list[tuple[UploadFile, Path, Any]]:
        """Spool each upload to the storage tmp dir and check it; undo everything on error."""
        if not uploads:
            raise HTTPException(422, "no files: send one or more audio files as 'files'")
        if len(uploads) > MAX_FILES_PER_JOB:
            raise HTTPException(413, f"at most {MAX_FILES_PER_JOB} files per job")
        if time.monotonic() - last_sweep[0] > SWEEP_SECONDS:  # abandoned spools, now and then
            last_sweep[0] = time.monotonic()
            await anyio.to_thread.run_sync(storage.sweep_uploads)
        free = storage.free_mb()
        if free < settings.min_free_mb:
            raise HTTPException(
                507,
                f"the server is low on storage ({free:.0f} MB free, keeps"
                f" {settings.min_free_mb:g} MB: EARMARK_MIN_FREE_MB); try again later",
            )
        tmp_dir = storage.upload_tmp_dir()
        accepted: list[tuple[UploadFile, Path, Any]] = []
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

    def create_job(
        who: Principal, accepted: list[tuple[UploadFile, Path, Any]], options: dict, sync: bool
    ) -> Job:
        items = [(name, tmp, checked) for _, tmp, (name, checked) in accepted]
        job = create_job_record(db, storage, who.key_id, items, options, sync)
        if celery is not None:
            try:
                celery.send_task(TASK_NAME, args=[job.id], queue=QUEUE_NAME)
            except Exception as exc:
                delete_job_record(db, storage, job.id)
                raise HTTPException(503, f"job queue unavailable, try again: {exc}") from None
        return job

    # ------------------------------------------------------------------ routes
    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers (no dependency is checked)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "not ready"}})
    def readyz() -> JSONResponse:
        """Readiness: the database and (in queue mode) the broker are reachable."""
        checks: dict[str, str] = {}
        try:
            db.ping()
            checks["database"] = "ok" if prepared else "reachable, migrations pending"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        if redis_client is not None:
            try:
                redis_client.ping()
                checks["broker"] = "ok"
            except Exception as exc:
                checks["broker"] = f"unreachable: {type(exc).__name__}"
        else:
            checks["broker"] = "embedded (database queue)"
            age = storage.heartbeat_age()
            if age is not None and age <= HEARTBEAT_STALE_SECONDS:
                checks["worker"] = "ok"
            else:
                seen = "never seen" if age is None else f"no heartbeat for {age:.0f} s"
                checks["worker"] = f"embedded worker not running ({seen})"
        try:
            free = storage.free_mb()
            checks["storage"] = (
                "ok"
                if free >= settings.min_free_mb
                else f"low: {free:.0f} MB free, keeps {settings.min_free_mb:g} MB"
                " (EARMARK_MIN_FREE_MB)"
            )
        except OSError as exc:
            checks["storage"] = f"unusable: {exc.strerror or exc}"
        ok = all(v == "ok" or v.startswith("embedded (") for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    def metrics() -> Response:
        """Prometheus metrics."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/classes", tags=["models"], responses=ERRORS)
    def custom_models(who: Caller) -> list[CustomModelInfo]:
        """Custom-class models jobs may name with ``classes``."""
        from earmark.custom_classes import CustomModelError, load_custom_classes

        out = []
        for name in settings.custom_models():
            try:
                custom = load_custom_classes(settings.custom_model(name))
            except (CustomModelError, SettingsError) as exc:
                log.warning("custom classes %s cannot be used: %s", name, exc)
                continue
            cv = ((custom.metrics or {}).get("detection") or {}).get("cross_validation") or {}
            out.append(
                CustomModelInfo(
                    name=name,
                    classes=custom.classes,
                    detector="frame-level head" if custom.frame_head is not None else "clip head",
                    expected_event_f1=cv.get("event_f1"),
                )
            )
        return out

    @app.get("/v1/models", tags=["models"], responses=ERRORS)
    def models(who: Caller) -> list[ModelInfo]:
        """Models the workers can load (the default one first)."""
        from earmark import assets

        rows = sorted(assets.list_models(), key=lambda r: not r["default"])
        return [
            ModelInfo(
                name=r["name"],
                default=r["default"],
                width=r["width"],
                params=r["params"],
                published_map=r["published_map"],
                available=r["path"] is not None,
            )
            for r in rows
        ]

    @app.post("/v1/jobs", status_code=201, tags=["jobs"], responses=UPLOAD_ERRORS)
    async def submit(
        who: Caller,
        files: Annotated[list[UploadFile], File(description="audio or video files")],
        model: Annotated[str | None, Form(max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")] = None,
        threshold: Annotated[float | None, Form(gt=0, le=1)] = None,
        off_threshold: Annotated[float | None, Form(gt=0, le=1)] = None,
        median_filter: Annotated[float | None, Form(ge=0, le=60)] = None,
        min_duration: Annotated[float | None, Form(ge=0, le=3600)] = None,
        merge_gap: Annotated[float | None, Form(ge=0, le=3600)] = None,
        labels: Annotated[str | None, Form(max_length=5000)] = None,
        exclude: Annotated[str | None, Form(max_length=5000)] = None,
        group_by: Annotated[str | None, Form(pattern=r"^(parent|top|[0-9])$")] = None,
        class_thresholds: Annotated[str | None, Form(max_length=5000)] = None,
        scoring: Annotated[Literal["local", "window"] | None, Form()] = None,
        classes: Annotated[
            str | None, Form(max_length=100, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
        ] = None,
        audioset: Annotated[bool | None, Form()] = None,
        every_class: Annotated[bool | None, Form()] = None,
    ) -> Created:
        """Upload one or more recordings with detection options; returns the job id.

        Options are those of ``earmark detect`` (``labels``, ``exclude`` and
        ``class_thresholds`` are ``;``-separated, e.g. ``Dog=0.3;Speech=0.5``). ``classes``
        names a custom-class model of the server (``GET /v1/classes``); ``audioset`` also
        reports AudioSet classes beside them. ``every_class`` reports every class that fires
        instead of one event per sound (``detect --every-class``).
        """
        options = job_options(
            model, threshold, off_threshold, median_filter, min_duration, merge_gap,
            labels, exclude, group_by, class_thresholds, scoring,
        )  # fmt: skip
        if every_class:
            options["join_related"] = False
        check_model(model)
        if classes is not None:
            try:
                settings.custom_model(classes)
            except SettingsError as exc:
                raise HTTPException(422, str(exc)) from None
            options["classes"] = classes
            if audioset is not None:
                options["audioset"] = audioset
        accepted = await receive_uploads(files)
        job = await anyio.to_thread.run_sync(create_job, who, accepted, options, False)
        return Created(
            id=job.id,
            state=job.state,
            files=len(accepted),
            audio_seconds=round(job.audio_seconds, 3),
            links={"self": f"/v1/jobs/{job.id}", "events": f"/v1/jobs/{job.id}/events"},
        )

    @app.get("/v1/jobs", tags=["jobs"], responses=ERRORS)
    def list_jobs(
        who: Caller,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> JobList:
        """This key's jobs, newest first."""
        with db.session() as session:
            where = [] if who.admin else [Job.key_id == who.key_id]
            total = session.scalar(select(func.count()).select_from(Job).where(*where)) or 0
            rows = session.execute(
                select(Job, func.count(JobFile.id))
                .outerjoin(JobFile, JobFile.job_id == Job.id)
                .where(*where)
                .group_by(Job.id)
                .order_by(Job.created_at.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return JobList(
                total=total,
                jobs=[
                    JobSummary(
                        id=j.id,
                        state=j.state,
                        created_at=_iso(j.created_at) or "",
                        files=n,
                        audio_seconds=round(j.audio_seconds, 3),
                        error=j.error,
                    )
                    for j, n in rows
                ],
            )

    @app.get("/v1/jobs/{job_id}", tags=["jobs"], responses=ERRORS)
    def job_status(job_id: str, who: Caller) -> JobStatus:
        """State, progress in seconds of audio, per-file state and errors."""
        with db.session() as session:
            return status_of(load_job(session, job_id, who))

    @app.get(
        "/v1/jobs/{job_id}/events",
        tags=["jobs"],
        responses={
            **ERRORS,
            200: {
                "content": {"text/csv": {}, "text/tab-separated-values": {}, "text/plain": {}},
                "description": "events as JSON (default), CSV, DCASE TSV or an Audacity label"
                " track (text)",
            },
        },
    )
    def job_events(
        job_id: str,
        who: Caller,
        format: Literal["json", "csv", "tsv", "audacity"] = "json",
        label: Annotated[str | None, Query(max_length=200)] = None,
        file: Annotated[int | None, Query(ge=0, le=MAX_FILES_PER_JOB)] = None,
    ) -> EventsOut:
        """Events found so far (all of them once the job is done).

        ``format=csv`` has the columns of ``earmark detect``'s events.csv; ``format=tsv`` is
        the DCASE format (``filename onset offset event_label``); ``format=audacity`` is an
        Audacity label track of one file (give ``file``, its index, when the job has several).
        ``label`` and ``file`` filter the events.
        """
        from earmark.outputs import write_audacity_labels, write_events_csv, write_events_tsv
        from earmark.service.jobs import job_events as read_events

        with db.session() as session:
            job = load_job(session, job_id, who)
            state = job.state
            names = [f.name for f in job.files]
            events = read_events(session, job_id)
        if file is not None:
            if file >= len(names):
                raise HTTPException(404, f"job {job_id} has no file {file}")
            events = [e for e in events if e.file == names[file]]
        elif format == "audacity" and len(names) > 1:
            raise HTTPException(422, "an Audacity label track holds one file: give file=INDEX")
        if label:
            events = [e for e in events if e.label.lower() == label.lower()]
        headers = {"X-Earmark-Job-State": state}
        if format == "json":
            return JSONResponse(  # type: ignore[return-value]
                {
                    "meta": {"job": job_id, "state": state, "n_events": len(events)},
                    "events": [e.to_dict() for e in events],
                },
                headers=headers,
            )
        writers = {
            "csv": (write_events_csv, "text/csv", "events.csv"),
            "tsv": (write_events_tsv, "text/tab-separated-values", "events.tsv"),
            "audacity": (write_audacity_labels, "text/plain", "audacity.txt"),
        }
        writer, media, suffix = writers[format]
        with tempfile.TemporaryDirectory(dir=storage.upload_tmp_dir()) as tmp:
            path = Path(tmp) / suffix
            writer(path, events)
            body = path.read_text(encoding="utf-8")
        headers["Content-Disposition"] = f'attachment; filename="{job_id}.{suffix}"'
        return Response(body, media_type=f"{media}; charset=utf-8", headers=headers)  # type: ignore[return-value]

    @app.get(
        "/v1/jobs/{job_id}/report",
        tags=["jobs"],
        response_class=FileResponse,
        responses={**ERRORS, 409: {"model": Problem, "description": "job not finished"}},
    )
    def job_report(job_id: str, who: Caller) -> Response:
        """The HTML analysis report of a finished job (``earmark.report``; made on the first
        request from the job's results folder, then kept)."""
        with db.session() as session:
            job = load_job(session, job_id, who)
            state = job.state
        if state not in ("done", "failed"):
            raise HTTPException(409, f"job {job_id} is {state}: the report is written at the end")
        from earmark.service.jobs import render_report, report_available

        if not report_available():
            raise HTTPException(
                404, "no HTML report: this earmark version has no report module (earmark.report)"
            )
        if not (storage.results_dir(job_id) / "manifest.json").is_file():
            raise HTTPException(404, f"job {job_id} has no results to report on")
        try:
            path = render_report(storage, job_id)
        except (OSError, ValueError) as exc:
            log.exception("report of job %s failed", job_id)
            raise HTTPException(500, f"the report could not be built: {exc}") from None
        return FileResponse(path, media_type="text/html")

    @app.get(
        "/v1/jobs/{job_id}/scores/{file}",
        tags=["jobs"],
        responses={
            **ERRORS,
            200: {
                "content": {"application/octet-stream": {}},
                "description": "scores as JSON (default) or the compressed NumPy file (npz)",
            },
        },
    )
    def job_scores(
        job_id: str,
        file: Annotated[int, PathParam(ge=0, le=MAX_FILES_PER_JOB)],
        who: Caller,
        top: Annotated[int, Query(ge=1, le=50)] = 8,
        labels: Annotated[str | None, Query(max_length=2000)] = None,
        max_points: Annotated[int, Query(ge=10, le=20000)] = 2000,
        format: Literal["json", "npz"] = "json",
    ) -> ScoresOut:
        """Framewise scores of one file (``file`` = its index in the job) for a timeline.

        JSON holds the ``top`` classes by peak score (or the ``labels`` given,
        ``;``-separated), max-pooled to at most ``max_points`` values; ``format=npz`` returns
        the whole stored matrix (float16, all classes; see ``earmark.outputs.read_scores``).
        """
        import numpy as np

        from earmark.outputs import read_scores

        with db.session() as session:
            job = load_job(session, job_id, who)
            row = next((f for f in job.files if f.index == file), None)
            if row is None:
                raise HTTPException(404, f"job {job_id} has no file {file}")
            name, stored, state, duration = row.name, row.stored, row.state, row.duration
        path = storage.results_dir(job_id) / "files" / f"{stored}.scores.npz"
        if not path.is_file():
            raise HTTPException(404, f"no scores for file {file} ({name}): it is {state}")
        if format == "npz":
            return FileResponse(  # type: ignore[return-value]
                path, media_type="application/octet-stream", filename=f"{job_id}-{file}.npz"
            )
        scores, hop, label_list, _ = read_scores(path)
        peaks = scores.max(axis=0) if len(scores) else np.zeros(scores.shape[1])
        wanted = {v.lower() for v in _split(labels) or []}
        if wanted:
            chosen = [i for i, lab in enumerate(label_list) if lab.name.lower() in wanted]
        else:
            chosen = [int(i) for i in np.argsort(-peaks)[:top]]
        step = max(1, -(-len(scores) // max_points))
        tracks = []
        for i in chosen:
            column = scores[:, i]
            pad = (-len(column)) % step
            if pad:
                column = np.concatenate([column, np.zeros(pad, dtype=column.dtype)])
            pooled = column.reshape(-1, step).max(axis=1) if len(column) else column
            tracks.append(
                ScoreTrack(
                    label=label_list[i].name,
                    mid=label_list[i].mid,
                    max=round(float(peaks[i]), 4),
                    values=[round(float(v), 3) for v in pooled],
                )
            )
        return ScoresOut(
            file=name, hop=hop, step=step, duration=duration, frames=len(scores), tracks=tracks
        )

    @app.get(
        "/v1/jobs/{job_id}/audio/{file}",
        tags=["jobs"],
        response_class=FileResponse,
        responses=ERRORS,
    )
    def job_audio(
        job_id: str, file: Annotated[int, PathParam(ge=0, le=MAX_FILES_PER_JOB)], who: Caller
    ) -> Response:
        """The uploaded audio of one file (for playback in the web page)."""
        with db.session() as session:
            job = load_job(session, job_id, who)
            row = next((f for f in job.files if f.index == file), None)
            if row is None:
                raise HTTPException(404, f"job {job_id} has no file {file}")
            stored, fmt = row.stored, row.format
        path = storage.audio_path(job_id, stored)
        if not path.is_file():
            raise HTTPException(404, "the audio of this file is no longer stored")
        return FileResponse(path, media_type=MEDIA_TYPES.get(fmt, "application/octet-stream"))

    @app.delete("/v1/jobs/{job_id}", status_code=204, tags=["jobs"], responses=ERRORS)
    def delete_job(job_id: str, who: Caller) -> Response:
        """Delete a job with its audio, results and events (a running job is stopped)."""
        with db.session() as session:
            load_job(session, job_id, who)
        delete_job_record(db, storage, job_id)
        return Response(status_code=204)

    @app.post(
        "/v1/detect",
        tags=["jobs"],
        responses={**UPLOAD_ERRORS, 504: {"model": Problem}},
    )
    async def detect_sync(
        who: Caller,
        file: Annotated[UploadFile, File(description="a short audio clip")],
        threshold: Annotated[float | None, Form(gt=0, le=1)] = None,
        min_duration: Annotated[float | None, Form(ge=0, le=3600)] = None,
        labels: Annotated[str | None, Form(max_length=5000)] = None,
        exclude: Annotated[str | None, Form(max_length=5000)] = None,
        timeout: Annotated[float, Form(gt=0, le=600)] = 120.0,
    ) -> DetectOut:
        """Detect events in one short clip and answer when done (at most
        ``EARMARK_SYNC_MAX_SECONDS`` of audio; longer recordings go to ``POST /v1/jobs``)."""
        options = job_options(
            None, threshold, None, None, min_duration, None, labels, exclude, None, None, None
        )
        accepted = await receive_uploads([file])
        name, checked = accepted[0][2]
        if (checked.duration or 0.0) > settings.sync_max_seconds:
            accepted[0][1].unlink(missing_ok=True)
            raise HTTPException(
                413,
                f"{name}: {checked.duration:.0f} s is too long to answer synchronously (limit "
                f"{settings.sync_max_seconds:g} s); submit it with POST /v1/jobs",
            )
        job = await anyio.to_thread.run_sync(create_job, who, accepted, options, True)
        deadline = time.monotonic() + timeout
        while True:
            with db.session() as session:
                row = session.get(Job, job.id)
                state = row.state if row is not None else "failed"
            if state in ("done", "failed") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        if state not in ("done", "failed"):
            raise HTTPException(
                504, f"not finished within {timeout:g} s; follow job {job.id} at /v1/jobs/{job.id}"
            )
        from earmark.service.jobs import job_events as read_events

        with db.session() as session:
            row = session.get(Job, job.id)
            events = read_events(session, job.id)
            file_row = row.files[0] if row is not None and row.files else None
            error = (file_row.error if file_row else None) or (row.error if row else None)
        return DetectOut(
            job=job.id,
            file=name,
            duration=file_row.duration if file_row else None,
            state=state,
            error=error,
            events=[EventOut(**e.to_dict()) for e in events],
        )

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/v1/config", tags=["models"])
    def public_config() -> dict[str, Any]:
        """What the web page needs to know: whether a key is required, upload limits, and the
        detection defaults (the same as ``earmark detect``'s, from :mod:`earmark.events`)."""
        from earmark import events

        return {
            "auth": settings.auth,
            "defaults": {
                "threshold": events.DEFAULT_THRESHOLD,
                "min_duration": 0.0,
                "merge_gap": events.DEFAULT_MERGE_GAP,
                "median_filter": events.DEFAULT_MEDIAN_FILTER,
            },
            "max_upload_mb": settings.max_upload_mb,
            "max_audio_seconds": settings.max_audio_seconds,
            "mode": "embedded" if settings.embedded else "queue",
            "time": _iso(utcnow()),
        }

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def __getattr__(name: str) -> Any:
    # ``earmark.service.api:app`` for ASGI servers, built on first access (reads the environment)
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
