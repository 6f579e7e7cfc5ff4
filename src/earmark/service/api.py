"""The HTTP API (FastAPI): ``create_app`` builds the app, its state, middleware and routes.

Run it with ``earmark serve`` (embedded mode: also a local worker and SQLite) or any ASGI
server: ``uvicorn earmark.service.api:app``. The OpenAPI schema (``/openapi.json``) is the
contract. The routes are in :mod:`earmark.service.routes`, what they share in
:mod:`earmark.service.deps`, their bodies in :mod:`earmark.service.schemas`. This module never
imports torch: detection runs in workers.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from starlette.datastructures import State

from earmark.service.db import Database
from earmark.service.deps import queue_length
from earmark.service.middleware import MULTIPART_OVERHEAD, BodyLimit
from earmark.service.routes import catalog, detect, health, jobs, review, web
from earmark.service.security import RateLimiter, browser_headers, ensure_key, host_problem
from earmark.service.settings import Settings
from earmark.service.storage import Storage

log = logging.getLogger("earmark.service")


def prepare(state: State) -> None:
    """Migrations and bootstrap keys (needs the database); then ``state.prepared`` is true."""
    settings: Settings = state.settings
    if settings.auto_migrate:
        state.db.upgrade()
    if settings.bootstrap_keys:
        with state.db.session() as session:
            for name, secret in settings.bootstrap_keys:
                ensure_key(session, name, secret)
    state.storage.sweep_uploads()  # what an API process that died while receiving left behind
    state.prepared = True


async def prepare_until_done(state: State) -> None:
    """The database may come up after the API (compose, Kubernetes): keep trying; until
    then /readyz answers 503 and requests that need the database fail cleanly."""
    while not state.prepared:
        await asyncio.sleep(2.0)
        try:
            await anyio.to_thread.run_sync(prepare, state)
            log.info("database reachable: migrations and bootstrap keys done")
        except Exception as exc:
            log.warning("database still unreachable: %s", exc)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Prepare the storage and the database at start (retrying in the background while the
    database is unreachable); close the database at the end."""
    state = app.state
    settings: Settings = state.settings
    state.storage.ensure()
    retry = None
    try:
        prepare(state)
    except Exception as exc:
        log.warning("database unreachable at start (%s); retrying in the background", exc)
        retry = asyncio.create_task(prepare_until_done(state))
    log.info(
        "earmark API: %s mode, database %s, storage %s, auth %s",
        "embedded" if settings.embedded else "queue",
        state.db.engine.url.render_as_string(hide_password=True),
        state.storage.root,
        settings.auth,
    )
    yield
    if retry is not None:
        retry.cancel()
    state.db.dispose()


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

        from earmark.service.worker import make_celery

        celery = make_celery(settings)
        redis_client = redis.Redis.from_url(settings.broker_url, socket_timeout=3)

    from earmark.service.metrics import make_registry

    registry, latency = make_registry(db, lambda: queue_length(db, redis_client))

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
    app.state.limiter, app.state.celery, app.state.redis = limiter, celery, redis_client
    app.state.registry = registry
    app.state.prepared = False
    app.state.last_sweep = time.monotonic()
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

    # the order of the routes is that of the OpenAPI schema's paths
    for module in (health, catalog, jobs, review, detect, web):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR), name="static")
    return app


def __getattr__(name: str) -> Any:
    # ``earmark.service.api:app`` for ASGI servers, built on first access (reads the environment)
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
