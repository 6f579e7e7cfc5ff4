"""Review of a job's detections (``/v1/jobs/{id}/review...``): the decisions, queue order and
exports of ``earmark review``, per API key (a key sees and edits only its own jobs; an admin
key all of them), every decision audited (the journal keeps the key and the time of each, and
the ``earmark.service.audit`` log says who changed what)."""

import logging
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from earmark.service.deps import Caller, DatabaseDep, Principal, StorageDep, load_job
from earmark.service.schemas import ERRORS, Problem

audit = logging.getLogger("earmark.service.audit")
if not audit.handlers:  # the audit trail is written whatever the service's log level
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s earmark audit: %(message)s"))
    audit.addHandler(_handler)
    audit.setLevel(logging.INFO)
    audit.propagate = False
router = APIRouter()

REVIEW_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: {"model": Problem, "description": "the job has not finished"},
}
PAGE_DIR = Path(__file__).resolve().parents[2] / "review" / "static"
"""``earmark review``'s page, served at ``/review/?job=ID`` for a job."""
PAGE_FILES = {
    "": ("review.html", "text/html"),
    "review.js": ("review.js", "text/javascript"),
    "review.css": ("review.css", "text/css"),
}


class Decision(BaseModel):
    """One decision on an event of the job (as ``earmark review``'s page sends)."""

    op: Literal["accept", "reject", "relabel", "bounds", "add", "reset"]
    id: str | None = Field(None, max_length=64, description="the event (not for add)")
    label: str | None = Field(None, max_length=200, description="relabel, add")
    onset: float | None = Field(None, ge=0, le=1e6, description="bounds, add: seconds")
    offset: float | None = Field(None, ge=0, le=1e6, description="bounds, add: seconds")
    file: int | None = Field(None, ge=0, le=100000, description="add: index of the job's file")
    base: int | None = Field(None, ge=0, le=1_000_000, description="version the client saw")


def _store(job_id: str, who: Principal, db: Any, storage: Any) -> Any:
    """The review store of a finished job the caller may see (404 / 409 otherwise)."""
    from earmark.review.run import run_from_rows
    from earmark.review.store import ReviewStore
    from earmark.service.jobs import job_events

    with db.session() as session:
        job = load_job(session, job_id, who)
        if job.state not in ("done", "partial"):
            raise HTTPException(409, f"job {job_id} is {job.state}: review it once it is done")
        files = {f.name: float(f.duration) for f in job.files if f.duration}
        rows = [e.to_dict() for e in job_events(session, job_id)]
        options = dict(job.options or {})
    threshold = float(options.get("threshold") or 0.15)
    per_class = {str(k): float(v) for k, v in (options.get("thresholds") or {}).items()}
    root = storage.job_dir(job_id)
    root.mkdir(parents=True, exist_ok=True)
    run = run_from_rows(root, rows, files, threshold, per_class, where=f"job {job_id}")
    return ReviewStore(run)


def _user(who: Principal) -> str:
    return who.name if who.key_id is None else f"{who.name} (key {who.key_id})"


@router.get("/v1/jobs/{job_id}/review", tags=["review"], responses=REVIEW_ERRORS)
def review_state(
    job_id: str,
    who: Caller,
    db: DatabaseDep,
    storage: StorageDep,
    order: Literal["queue", "random"] = "queue",
) -> dict[str, Any]:
    """Every event of the job with its review state, the queue order (most to learn first, or
    random), each detection's priority, counts per class and the journal's warnings."""
    from earmark.review.server import page_state

    state = page_state(_store(job_id, who, db, storage), order, _user(who))
    state["run"] = job_id  # never the server's paths
    return state


@router.post(
    "/v1/jobs/{job_id}/review",
    tags=["review"],
    responses={**REVIEW_ERRORS, 400: {"model": Problem, "description": "a bad decision"}},
)
def review_decide(
    job_id: str, decision: Decision, who: Caller, db: DatabaseDep, storage: StorageDep
) -> dict[str, Any]:
    """Apply one decision, saved before the answer; the event's new state and, when somebody
    changed it since the version sent in ``base``, a warning (the later decision wins)."""
    from earmark.review.store import ReviewError

    store = _store(job_id, who, db, storage)
    body = decision.model_dump(exclude_none=True)
    if "file" in body:
        names = store.run.files
        if body["file"] >= len(names):
            raise HTTPException(400, f"job {job_id} has no file {body['file']}")
        body["file"] = names[body["file"]]
    try:
        item, warning = store.decide(body, _user(who))
    except ReviewError as exc:
        raise HTTPException(400, str(exc)) from None
    audit.info(
        "job %s: %s %s by %s -> %s %r %.3f-%.3f%s",
        job_id, decision.op, item.id, _user(who), item.status, item.label, item.onset,
        item.offset, f" (conflict: {warning})" if warning else "",
    )  # fmt: skip
    return {"item": item.public(), "warning": warning, "counts": store.counts()}


@router.get(
    "/v1/jobs/{job_id}/review/snippet",
    tags=["review"],
    responses={
        **REVIEW_ERRORS,
        400: {"model": Problem, "description": "a bad stretch"},
        200: {"content": {"audio/wav": {}, "image/png": {}}},
    },
)
def review_snippet(
    job_id: str,
    who: Caller,
    db: DatabaseDep,
    storage: StorageDep,
    file: int = Query(ge=0, le=100000),
    start: float = Query(ge=0, le=1e6),
    end: float = Query(gt=0, le=1e6),
    kind: Literal["audio", "spectrogram"] = "audio",
) -> Response:
    """A stretch of one of the job's files (``file``: its index among the review's files) as a
    16 kHz WAV, or the picture of its log-mel spectrogram (PNG), for the review page."""
    from earmark.review.media import AudioCache, MediaError, spectrogram_png, wav_bytes

    names = _store(job_id, who, db, storage).run.files  # the page's file indices
    with db.session() as session:
        stored = {f.name: f.stored for f in load_job(session, job_id, who).files}
    if file >= len(names):
        raise HTTPException(400, f"job {job_id} has no file {file}")
    path = storage.audio_path(job_id, stored[names[file]])
    if not path.is_file():
        raise HTTPException(404, "the audio of this file is no longer stored")
    try:
        samples = AudioCache(1).cut(str(path), start, end)
    except MediaError as exc:
        raise HTTPException(400, str(exc).replace(str(path), names[file])) from None
    if kind == "audio":
        return Response(wav_bytes(samples), media_type="audio/wav")
    return Response(spectrogram_png(samples), media_type="image/png")


@router.get("/review/{name:path}", include_in_schema=False)
def review_page(name: str) -> FileResponse:
    """The review page (``/review/?job=ID``) and its script and style."""
    if name not in PAGE_FILES:
        raise HTTPException(404, "no such page")
    file, kind = PAGE_FILES[name]
    return FileResponse(PAGE_DIR / file, media_type=kind)


@router.get(
    "/v1/jobs/{job_id}/review/{name}",
    tags=["review"],
    responses={
        **REVIEW_ERRORS,
        200: {"content": {"text/tab-separated-values": {}, "application/x-ndjson": {}}},
    },
)
def review_export(
    job_id: str,
    name: Literal["labels.tsv", "negatives.tsv", "regions.tsv", "journal.jsonl"],
    who: Caller,
    db: DatabaseDep,
    storage: StorageDep,
) -> Response:
    """The review's exports (DCASE TSV of positives, of rejected detections, the reviewed
    stretches) or its journal (the audit trail: every decision with its key and time)."""
    store = _store(job_id, who, db, storage)
    path = store.folder / name
    body = path.read_text(encoding="utf-8") if path.exists() else ""
    kind = "application/x-ndjson" if name.endswith(".jsonl") else "text/tab-separated-values"
    return Response(
        body,
        media_type=f"{kind}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{job_id}.{name}"'},
    )
