"""Prometheus metrics of the service (``GET /metrics``).

Job and processing figures are read from the database at scrape time, so they are the same
whichever API replica is scraped and count the work of every worker machine; request latency
is measured in this API process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import func, select

from earmark.service.db import Database
from earmark.service.models import JOB_STATES, Counter, Job

log = logging.getLogger(__name__)


class ServiceCollector:
    """Jobs by state, queue length, audio processed, processing time (from the database)."""

    def __init__(self, db: Database, queue_length: Callable[[], int | None]) -> None:
        self.db = db
        self.queue_length = queue_length

    def collect(self) -> Iterator[Metric]:
        """Called by the registry on every scrape."""
        from earmark.service.jobs import PROCESSING_BUCKETS

        try:
            with self.db.session() as session:
                by_state = dict(
                    session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
                )
                counters = dict(session.execute(select(Counter.name, Counter.value)).all())
        except Exception:  # the database is down: /readyz says so; expose what we can
            log.warning("metrics: database unavailable")
            return
        jobs = GaugeMetricFamily("earmark_jobs", "Jobs in the database by state", labels=["state"])
        for state in JOB_STATES:
            jobs.add_metric([state], by_state.get(state, 0))
        yield jobs
        length = self.queue_length()
        if length is not None:
            yield GaugeMetricFamily(
                "earmark_queue_length", "Jobs waiting in the broker queue", value=length
            )
        yield CounterMetricFamily(
            "earmark_audio_seconds_processed",
            "Seconds of audio processed by all workers",
            value=counters.get("audio_seconds_processed_total", 0.0),
        )
        files = CounterMetricFamily(
            "earmark_files_processed", "Files processed, by outcome", labels=["state"]
        )
        for state in ("done", "partial", "failed"):
            files.add_metric([state], counters.get(f"files_{state}_total", 0.0))
        yield files
        finished = CounterMetricFamily(
            "earmark_jobs_finished", "Jobs finished, by outcome", labels=["state"]
        )
        for state in ("done", "failed"):
            finished.add_metric([state], counters.get(f"jobs_{state}_total", 0.0))
        yield finished
        buckets = [
            (f"{bound:g}", counters.get(f"processing_seconds_bucket:{bound:g}", 0.0))
            for bound in PROCESSING_BUCKETS
        ]
        buckets.append(("+Inf", counters.get("processing_seconds_count", 0.0)))
        yield HistogramMetricFamily(
            "earmark_file_processing_seconds",
            "Time to process one file (decode, score, events, outputs)",
            buckets=buckets,
            sum_value=counters.get("processing_seconds_sum", 0.0),
        )


def make_registry(
    db: Database, queue_length: Callable[[], int | None]
) -> tuple[CollectorRegistry, Histogram]:
    """A registry with the service collector and the request-latency histogram."""
    registry = CollectorRegistry()
    registry.register(ServiceCollector(db, queue_length))  # type: ignore[arg-type]
    latency = Histogram(
        "earmark_http_request_seconds",
        "API request latency",
        ["method", "route", "status"],
        registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    )
    return registry, latency
