"""The synchronous detection route (``POST /v1/detect``): one short clip, answered when done."""

import asyncio
import time
from typing import Annotated

import anyio
from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile

from earmark.service.deps import (
    Caller,
    DatabaseDep,
    SettingsDep,
    create_job,
    job_options,
    receive_uploads,
)
from earmark.service.models import Job
from earmark.service.schemas import UPLOAD_ERRORS, DetectOut, EventOut, Problem

router = APIRouter()


@router.post(
    "/v1/detect",
    tags=["jobs"],
    responses={**UPLOAD_ERRORS, 504: {"model": Problem}},
)
async def detect_sync(
    who: Caller,
    request: Request,
    settings: SettingsDep,
    db: DatabaseDep,
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
    accepted = await receive_uploads(request, [file])
    name, checked = accepted[0][2]
    if (checked.duration or 0.0) > settings.sync_max_seconds:
        accepted[0][1].unlink(missing_ok=True)
        raise HTTPException(
            413,
            f"{name}: {checked.duration:.0f} s is too long to answer synchronously (limit "
            f"{settings.sync_max_seconds:g} s); submit it with POST /v1/jobs",
        )
    job = await anyio.to_thread.run_sync(create_job, request, who, accepted, options, True)
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
