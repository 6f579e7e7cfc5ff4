"""The web page: its index (``/``; files under ``/static``) and the ``/v1/config`` it reads."""

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from earmark.service.deps import SettingsDep, iso_time
from earmark.service.models import utcnow

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
"""The page's files (``earmark/service/static``), served under ``/static``."""

router = APIRouter()


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The web page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get("/v1/config", tags=["models"])
def public_config(settings: SettingsDep) -> dict[str, Any]:
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
        "time": iso_time(utcnow()),
    }
