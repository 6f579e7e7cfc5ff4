"""Catalog routes: the models (``/v1/models``) and custom-class models (``/v1/classes``)."""

import logging

from fastapi import APIRouter

from earmark.service.deps import Caller, SettingsDep
from earmark.service.schemas import ERRORS, CustomModelInfo, ModelInfo
from earmark.service.settings import SettingsError

log = logging.getLogger("earmark.service")

router = APIRouter()


@router.get("/v1/classes", tags=["models"], responses=ERRORS)
def custom_models(who: Caller, settings: SettingsDep) -> list[CustomModelInfo]:
    """Custom-class models jobs may name with ``classes``."""
    from earmark.custom.model import CustomModelError, load_custom_classes

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


@router.get("/v1/models", tags=["models"], responses=ERRORS)
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
