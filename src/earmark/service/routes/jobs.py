"""Job routes: submit recordings, list jobs, and a job's status, events, report, scores,
audio and deletion (``/v1/jobs...``)."""

import logging
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response
from sqlalchemy import func, select

from earmark.service.deps import (
    MAX_FILES_PER_JOB,
    Caller,
    DatabaseDep,
    SettingsDep,
    StorageDep,
    check_model,
    create_job,
    iso_time,
    job_options,
    load_job,
    receive_uploads,
    split_list,
    status_of,
)
from earmark.service.jobs import delete_job_record
from earmark.service.models import Job, JobFile
from earmark.service.schemas import (
    ERRORS,
    UPLOAD_ERRORS,
    Created,
    EventsOut,
    JobList,
    JobStatus,
    JobSummary,
    Problem,
    ScoresOut,
    ScoreTrack,
)
from earmark.service.settings import SettingsError

log = logging.getLogger("earmark.service")

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
"""Content types of stored audio by container, for playback."""

router = APIRouter()


@router.post("/v1/jobs", status_code=201, tags=["jobs"], responses=UPLOAD_ERRORS)
async def submit(
    who: Caller,
    request: Request,
    settings: SettingsDep,
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
    accepted = await receive_uploads(request, files)
    job = await anyio.to_thread.run_sync(create_job, request, who, accepted, options, False)
    return Created(
        id=job.id,
        state=job.state,
        files=len(accepted),
        audio_seconds=round(job.audio_seconds, 3),
        links={"self": f"/v1/jobs/{job.id}", "events": f"/v1/jobs/{job.id}/events"},
    )


@router.get("/v1/jobs", tags=["jobs"], responses=ERRORS)
def list_jobs(
    who: Caller,
    db: DatabaseDep,
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
                    created_at=iso_time(j.created_at) or "",
                    files=n,
                    audio_seconds=round(j.audio_seconds, 3),
                    error=j.error,
                )
                for j, n in rows
            ],
        )


@router.get("/v1/jobs/{job_id}", tags=["jobs"], responses=ERRORS)
def job_status(job_id: str, who: Caller, db: DatabaseDep) -> JobStatus:
    """State, progress in seconds of audio, per-file state and errors."""
    with db.session() as session:
        return status_of(load_job(session, job_id, who))


@router.get(
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
    db: DatabaseDep,
    storage: StorageDep,
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


@router.get(
    "/v1/jobs/{job_id}/report",
    tags=["jobs"],
    response_class=FileResponse,
    responses={**ERRORS, 409: {"model": Problem, "description": "job not finished"}},
)
def job_report(job_id: str, who: Caller, db: DatabaseDep, storage: StorageDep) -> Response:
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


@router.get(
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
    db: DatabaseDep,
    storage: StorageDep,
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
    wanted = {v.lower() for v in split_list(labels) or []}
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


@router.get(
    "/v1/jobs/{job_id}/audio/{file}",
    tags=["jobs"],
    response_class=FileResponse,
    responses=ERRORS,
)
def job_audio(
    job_id: str,
    file: Annotated[int, PathParam(ge=0, le=MAX_FILES_PER_JOB)],
    who: Caller,
    db: DatabaseDep,
    storage: StorageDep,
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


@router.delete("/v1/jobs/{job_id}", status_code=204, tags=["jobs"], responses=ERRORS)
def delete_job(job_id: str, who: Caller, db: DatabaseDep, storage: StorageDep) -> Response:
    """Delete a job with its audio, results and events (a running job is stopped)."""
    with db.session() as session:
        load_job(session, job_id, who)
    delete_job_record(db, storage, job_id)
    return Response(status_code=204)
