"""Pydantic request and response models of the HTTP API (the bodies of its OpenAPI schema).

Named ``schemas`` because :mod:`earmark.service.models` already holds the database tables
(SQLAlchemy); these classes are what the API sends and documents, never rows. ``ERRORS`` and
``UPLOAD_ERRORS`` are the error responses the routes declare.
"""

from typing import Any, Literal

from pydantic import BaseModel, Field


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
"""Error responses every authenticated route declares."""
UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {"model": Problem, "description": "malformed multipart body"},
    413: {"model": Problem, "description": "upload or audio longer than the limits"},
    415: {"model": Problem, "description": "an upload is not an audio or video file"},
    507: {"model": Problem, "description": "the server's storage is (nearly) full"},
}
"""Error responses of the routes that take uploads."""
