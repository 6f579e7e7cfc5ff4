"""ASGI middleware that refuses upload bodies over the size limit before they fill the disk."""

import contextlib
from typing import Any

from fastapi.responses import JSONResponse

UPLOAD_PATHS = ("/v1/jobs", "/v1/detect")
"""The paths whose bodies are limited."""
MULTIPART_OVERHEAD = 64 * 1024
"""Extra bytes of multipart framing and form fields allowed beyond the upload limit."""


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
