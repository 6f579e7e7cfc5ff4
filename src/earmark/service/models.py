"""Database tables (SQLAlchemy 2 ORM): API keys, jobs, their files, events and counters.

The schema is created and changed only by the Alembic migrations in
``earmark/service/migrations``; keep both in step (a test compares them).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: Job states: ``queued`` -> ``running`` -> ``done`` | ``failed``; ``done`` may still hold files
#: that failed (``files_failed`` > 0). A file is ``queued``, ``running``, then ``done``,
#: ``partial`` or ``failed`` (:data:`earmark.service.jobs.FINAL_FILE_STATES`).
JOB_STATES = ("queued", "running", "done", "failed")


def utcnow() -> dt.datetime:
    """Timezone-aware now (UTC)."""
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of every table."""


class ApiKey(Base):
    """An API key. Only a hash of the secret is stored; ``prefix`` identifies it in listings."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Job(Base):
    """One detection job: one or more uploaded files processed with one set of options."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), index=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="queued", index=True)
    options: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    audio_seconds: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    model: Mapped[str | None] = mapped_column(String(100))
    sync: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    files: Mapped[list[JobFile]] = relationship(
        back_populates="job", order_by="JobFile.index", cascade="all, delete-orphan"
    )


class JobFile(Base):
    """One uploaded file of a job. ``name`` is the client's file name, for display only."""

    __tablename__ = "job_files"
    __table_args__ = (UniqueConstraint("job_id", "index", name="uq_job_files_job_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    index: Mapped[int] = mapped_column(Integer, nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    stored: Mapped[str] = mapped_column(String(64), nullable=False)
    format: Mapped[str] = mapped_column(String(32), nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    duration: Mapped[float | None] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    seconds_done: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    warnings: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    n_events: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    processing_seconds: Mapped[float | None] = mapped_column(Float)
    audio_info: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)

    job: Mapped[Job] = relationship(back_populates="files")


class EventRow(Base):
    """One detected event. ``seq`` numbers the events of a file: (file_id, seq) is unique,
    so a result written twice can never appear twice."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("file_id", "seq", name="uq_events_file_seq"),
        Index("ix_events_job", "job_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    file_id: Mapped[int] = mapped_column(
        ForeignKey("job_files.id", ondelete="CASCADE"), nullable=False
    )
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    label: Mapped[str] = mapped_column(String(200), nullable=False)
    mid: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    onset: Mapped[float] = mapped_column(Float, nullable=False)
    offset: Mapped[float] = mapped_column(Float, nullable=False)
    peak: Mapped[float | None] = mapped_column(Float)
    mean: Mapped[float | None] = mapped_column(Float)
    alternatives: Mapped[list | None] = mapped_column(JSON)
    """Other classes of the same sound: ``[[label, mid, peak], ...]`` (see earmark.sounds)."""


class Counter(Base):
    """Service-wide monotonic counters (Prometheus), updated in the transaction that
    records a file's result, so they count each file exactly once whichever worker ran it."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
