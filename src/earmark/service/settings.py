"""Service configuration, read from ``EARMARK_*`` environment variables.

Every variable has a default that gives *embedded mode*: no broker (a local worker process polls
the database), SQLite in the storage directory, keys required. The same settings drive the API,
the Celery workers and the command line, so one environment configures a whole deployment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

DEFAULT_MAX_UPLOAD_MB = 200
DEFAULT_MAX_AUDIO_SECONDS = 4 * 3600
DEFAULT_MIN_FREE_MB = 200.0
#: Longest clip ``POST /v1/detect`` answers synchronously (seconds of audio).
DEFAULT_SYNC_MAX_SECONDS = 120
#: Requests per minute and API key.
DEFAULT_RATE_LIMIT = 600
#: Queue name the API publishes to and workers consume.
QUEUE_NAME = "earmark"


class SettingsError(ValueError):
    """A configuration value that cannot be used (named in the message)."""


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(float(raw))
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None


def _flag(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    return raw in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Everything the service parts need to know about their environment."""

    storage_dir: Path
    database_url: str
    broker_url: str | None = None
    auth: str = "keys"
    bootstrap_keys: tuple[tuple[str, str], ...] = ()
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS
    sync_max_seconds: float = DEFAULT_SYNC_MAX_SECONDS
    cors_origins: tuple[str, ...] = ()
    #: Free space (MB) the storage must keep: uploads that would go below it get 507, and
    #: readiness fails below it (``EARMARK_MIN_FREE_MB``).
    min_free_mb: float = DEFAULT_MIN_FREE_MB
    #: Host names (and origins) besides loopback this service answers to without authentication,
    #: and origins whose browsers may send it jobs (``EARMARK_ALLOWED_HOSTS``, comma-separated).
    allowed_hosts: tuple[str, ...] = ()
    log_level: str = "info"
    auto_migrate: bool = True
    rate_limit: int = DEFAULT_RATE_LIMIT
    #: Seconds a per-task hard time limit allows (longest job we accept, with margin).
    task_time_limit: int = 0
    #: Seconds after which Redis hands an unacknowledged job to another worker.
    visibility_timeout: int = 0
    #: Seconds without a heartbeat after which a job's claim by a worker is considered dead.
    lease_seconds: int = 60
    worker_threads: int | None = None
    #: Folder of models written by ``earmark train`` that jobs may name (``classes=NAME``).
    classes_dir: Path | None = None
    extra: dict = field(default_factory=dict)

    def custom_model(self, name: str) -> Path:
        """The custom-class model folder a job names: a folder of :attr:`classes_dir` (never a
        path given by a client). Raises :class:`SettingsError` naming the models there."""
        available = self.custom_models()
        if name not in available:
            where = (
                f"models in EARMARK_CLASSES_DIR: {', '.join(available) or 'none'}"
                if self.classes_dir
                else "EARMARK_CLASSES_DIR is not set on this server"
            )
            raise SettingsError(f"custom classes {name!r} not found ({where})")
        assert self.classes_dir is not None
        return self.classes_dir / name

    def custom_models(self) -> list[str]:
        """Names of the trained models in :attr:`classes_dir`."""
        if self.classes_dir is None or not self.classes_dir.is_dir():
            return []
        return sorted(
            p.name
            for p in self.classes_dir.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / "labels.json").is_file()
        )

    @property
    def embedded(self) -> bool:
        """True without a broker: jobs are dispatched through the database to a local worker."""
        return not self.broker_url

    @property
    def max_upload_bytes(self) -> int:
        """Upload limit in bytes (per request)."""
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (default ``os.environ``)."""
        env = dict(os.environ if env is None else env)
        storage = Path(
            env.get("EARMARK_STORAGE_DIR") or platformdirs.user_data_dir("earmark", appauthor=False)
        ).expanduser()
        database = env.get("EARMARK_DATABASE_URL") or f"sqlite:///{storage / 'earmark.db'}"
        auth = (env.get("EARMARK_AUTH") or "keys").strip().lower()
        if auth not in {"keys", "none"}:
            raise SettingsError(f"EARMARK_AUTH={auth!r}: use 'keys' or 'none'")
        keys = []
        for item in (env.get("EARMARK_BOOTSTRAP_KEYS") or "").split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, secret = item.partition(":")
            if not sep or not name.strip() or len(secret.strip()) < 16:
                raise SettingsError(
                    "EARMARK_BOOTSTRAP_KEYS: expected comma-separated name:secret pairs with "
                    f"secrets of at least 16 characters, got an entry for {name.strip()!r}"
                )
            keys.append((name.strip(), secret.strip()))
        max_audio = _float(env, "EARMARK_MAX_AUDIO_SECONDS", DEFAULT_MAX_AUDIO_SECONDS)
        # a job may hold several files of the longest length; the scoring is >20x real time even
        # on a busy machine, so a file of max_audio takes at most max_audio / 20 seconds
        default_limit = int(max(600.0, max_audio / 2))
        time_limit = _int(env, "EARMARK_TASK_TIME_LIMIT", default_limit)
        visibility = _int(env, "EARMARK_VISIBILITY_TIMEOUT", time_limit + 600)
        threads = _int(env, "EARMARK_WORKER_THREADS", 0) or None
        origins = tuple(
            o.strip() for o in (env.get("EARMARK_CORS_ORIGINS") or "").split(",") if o.strip()
        )
        return cls(
            storage_dir=storage,
            database_url=database,
            broker_url=(env.get("EARMARK_BROKER_URL") or "").strip() or None,
            auth=auth,
            bootstrap_keys=tuple(keys),
            max_upload_mb=_float(env, "EARMARK_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB),
            max_audio_seconds=max_audio,
            sync_max_seconds=_float(env, "EARMARK_SYNC_MAX_SECONDS", DEFAULT_SYNC_MAX_SECONDS),
            cors_origins=origins,
            min_free_mb=_float(env, "EARMARK_MIN_FREE_MB", DEFAULT_MIN_FREE_MB),
            allowed_hosts=tuple(
                h.strip() for h in (env.get("EARMARK_ALLOWED_HOSTS") or "").split(",") if h.strip()
            )
            + origins,
            log_level=(env.get("EARMARK_LOG_LEVEL") or "info").lower(),
            auto_migrate=_flag(env, "EARMARK_AUTO_MIGRATE", True),
            rate_limit=_int(env, "EARMARK_RATE_LIMIT", DEFAULT_RATE_LIMIT),
            task_time_limit=time_limit,
            visibility_timeout=visibility,
            lease_seconds=_int(env, "EARMARK_LEASE_SECONDS", 60),
            classes_dir=Path(env["EARMARK_CLASSES_DIR"]).expanduser()
            if (env.get("EARMARK_CLASSES_DIR") or "").strip()
            else None,
            worker_threads=threads,
        )
