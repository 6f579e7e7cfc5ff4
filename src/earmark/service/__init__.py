"""earmark as a service: REST API, job queue, workers, storage and a web page.

Parts (one module each): :mod:`~earmark.service.settings` (configuration from the environment),
:mod:`~earmark.service.models` and :mod:`~earmark.service.db` (SQLAlchemy tables, engine,
Alembic migrations), :mod:`~earmark.service.storage` (audio and result files),
:mod:`~earmark.service.security` (API keys, rate limits, upload checks),
:mod:`~earmark.service.jobs` (the job-processing function every worker runs),
:mod:`~earmark.service.worker` (Celery app on Redis, and the embedded worker),
:mod:`~earmark.service.api` (FastAPI app; its routes in :mod:`~earmark.service.routes`,
shared dependencies in :mod:`~earmark.service.deps`, bodies in :mod:`~earmark.service.schemas`),
:mod:`~earmark.service.metrics` (Prometheus) and
:mod:`~earmark.service.cli` (``earmark serve|worker|db|keys``).

The API side never imports torch; only workers load the model.
"""
