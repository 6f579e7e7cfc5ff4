"""Health routes: liveness (``/healthz``), readiness (``/readyz``) and Prometheus ``/metrics``."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from earmark.service.deps import DatabaseDep, SettingsDep, StorageDep
from earmark.service.storage import HEARTBEAT_STALE_SECONDS

router = APIRouter()


@router.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    """Liveness: the process answers (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"], responses={503: {"description": "not ready"}})
def readyz(
    request: Request, settings: SettingsDep, db: DatabaseDep, storage: StorageDep
) -> JSONResponse:
    """Readiness: the database and (in queue mode) the broker are reachable."""
    checks: dict[str, str] = {}
    try:
        db.ping()
        checks["database"] = "ok" if request.app.state.prepared else "reachable, migrations pending"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    redis_client = request.app.state.redis
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
            else f"low: {free:.0f} MB free, keeps {settings.min_free_mb:g} MB (EARMARK_MIN_FREE_MB)"
        )
    except OSError as exc:
        checks["storage"] = f"unusable: {exc.strerror or exc}"
    ok = all(v == "ok" or v.startswith("embedded (") for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "not ready", "checks": checks},
        status_code=200 if ok else 503,
    )


@router.get("/metrics", tags=["health"], response_class=PlainTextResponse)
def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
