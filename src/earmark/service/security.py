"""API keys (stored hashed), per-key rate limits and upload checks (content sniffing).

Keys look like ``em_<43 url-safe characters>`` (256 random bits). Only the SHA-256 of a key is
stored: with that much entropy a slow password hash adds nothing, and a lookup stays one
indexed query. The first 8 characters (``prefix``) identify a key in listings.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from earmark.service.models import ApiKey, utcnow

KEY_PREFIX = "em_"


# ---------------------------------------------------------------------------- keys
def hash_secret(secret: str) -> str:
    """SHA-256 hex digest of a key."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """A fresh random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_key(
    session: Session, name: str, admin: bool = False, secret: str | None = None
) -> tuple[ApiKey, str]:
    """Store a new key (hashed) and return it with its secret (shown once, never stored)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("a key name must have 1 to 100 characters")
    secret = secret or new_secret()
    key = ApiKey(name=name, prefix=secret[:8], secret_hash=hash_secret(secret), admin=admin)
    session.add(key)
    session.flush()
    return key, secret


def ensure_key(session: Session, name: str, secret: str, admin: bool = False) -> ApiKey:
    """Create the key ``name:secret`` unless a key with that secret exists (bootstrap keys)."""
    digest = hash_secret(secret)
    found = session.scalar(select(ApiKey).where(ApiKey.secret_hash == digest))
    if found is not None:
        return found
    return create_key(session, name, admin=admin, secret=secret)[0]


def authenticate(session: Session, secret: str) -> ApiKey | None:
    """The active key with this secret, or ``None``."""
    if not secret:
        return None
    digest = hash_secret(secret)
    key = session.scalar(select(ApiKey).where(ApiKey.secret_hash == digest))
    if key is None or key.revoked_at is not None:
        return None
    # constant-time comparison of the stored digest (the lookup itself is by digest)
    return key if hmac.compare_digest(key.secret_hash, digest) else None


def revoke_key(session: Session, key_id: int) -> ApiKey:
    """Mark a key revoked (its jobs stay, readable by admins)."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise KeyError(f"no API key with id {key_id}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


# ---------------------------------------------------------------------------- rate limits
class RateLimiter:
    """Fixed one-minute windows per key, in Redis when available (shared by every API replica),
    else in this process."""

    def __init__(self, per_minute: int, redis_url: str | None = None) -> None:
        self.per_minute = per_minute
        self._local: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._redis = None
        if redis_url and redis_url.startswith(("redis://", "rediss://", "unix://")):
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=2)

    def hit(self, who: str) -> tuple[bool, int]:
        """Count one request of ``who``; ``(allowed, seconds until the window resets)``."""
        if self.per_minute <= 0:
            return True, 0
        now = time.time()
        window = int(now // 60)
        retry_after = 60 - int(now % 60)
        if self._redis is not None:
            key = f"earmark:rate:{who}:{window}"
            try:
                pipe = self._redis.pipeline()
                pipe.incr(key)
                pipe.expire(key, 120)
                count = int(pipe.execute()[0])
                return count <= self.per_minute, retry_after
            except Exception:  # broker down: fall back to the local count
                pass
        with self._lock:
            seen_window, count = self._local.get(who, (window, 0))
            count = count + 1 if seen_window == window else 1
            self._local[who] = (window, count)
            if len(self._local) > 10000:
                self._local = {k: v for k, v in self._local.items() if v[0] == window}
        return count <= self.per_minute, retry_after


# ---------------------------------------------------------------------------- uploads
class UploadError(ValueError):
    """An upload that cannot be accepted; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def sniff_format(head: bytes) -> str | None:
    """The audio/video container the first bytes of a file belong to, or ``None``.

    Decided on content only, never on the file name.
    """
    if len(head) < 12:
        return None
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"RF64"):
        return "wav"
    if head[:4] in (b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        if b"OpusHead" in head[:128]:
            return "opus"
        return "ogg"
    if head[:3] == b"ID3":
        return "mp3"
    if head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06) != 0:
        # MPEG audio frame sync (layer bits not 00); ADTS AAC has layer 00
        return "mp3"
    if head[0] == 0xFF and (head[1] & 0xF6) == 0xF0:
        return "aac"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "mkv"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"caff":
        return "caf"
    if head[:6] == b"#!AMR\n":
        return "amr"
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):
        return "wma"
    return None


@dataclass
class CheckedAudio:
    """What an upload turned out to be."""

    format: str
    duration: float | None
    info: dict


PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:;"
    " style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self';"
    " frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
"""Content-Security-Policy of the web page and the API's answers."""
DOCS_POLICY = (
    "default-src 'self'; img-src 'self' data:;"
    " style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net;"
    " script-src 'self' https://cdn.jsdelivr.net; connect-src 'self';"
    " frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
"""Content-Security-Policy of ``/docs`` (Swagger UI, pinned with integrity, from a CDN)."""


def browser_headers(path: str, report_scripts: list[str]) -> dict[str, str]:
    """Headers every answer carries: no sniffing, no framing, no referrer, and a CSP.

    Reports (self-contained HTML with inline style and one script) get a policy that allows
    exactly that script (by hash) and nothing from elsewhere.
    """
    if path.endswith("/report"):
        policy = (
            "default-src 'none'; img-src data:; style-src 'unsafe-inline';"
            f" script-src {' '.join(report_scripts)}; frame-ancestors 'none'; base-uri 'none'"
        )
    elif path == "/docs":
        policy = DOCS_POLICY
    else:
        policy = PAGE_POLICY
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")
"""Host names a service without authentication answers to (besides EARMARK_ALLOWED_HOSTS)."""
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def host_problem(
    host: str | None, origin: str | None, method: str, auth: str, allowed: tuple[str, ...]
) -> str | None:
    """Why a request must be refused for its ``Host`` or ``Origin`` header (else ``None``).

    Without authentication, only loopback names and ``allowed`` are answered (a DNS-rebinding
    page gets nothing), and a state-changing request sent by a browser from another site (its
    ``Origin`` is not this host nor an allowed one) is refused. With keys, a request needs the
    key in a header, which a page on another site cannot add without CORS (``cors_origins``).
    """
    if auth != "none":
        return None
    name = (host or "").strip().lower()
    bare = name.rsplit(":", 1)[0] if not name.endswith("]") else name
    if name.startswith("[") and "]:" in name:
        bare = name.split("]:")[0] + "]"
    names = {n.lower() for n in allowed}
    if bare not in LOOPBACK_NAMES and bare not in names:
        return (
            f"host {host!r} is not served: without authentication only loopback names and"
            " EARMARK_ALLOWED_HOSTS are"
        )
    if origin and method.upper() in UNSAFE_METHODS:
        from urllib.parse import urlsplit

        origin_host = (urlsplit(origin).netloc or "").lower()
        if origin_host != name and origin.rstrip("/").lower() not in names:
            return f"cross-site request from {origin!r} refused"
    return None


def upload_name(raw: str | None, taken: set[str]) -> str:
    """A client's file name made safe to show and store: its last path part, control
    characters (NUL included) replaced, at most 200 characters, and unique within ``taken``
    (``x (2).ogg`` for a second ``x.ogg``), which it joins."""
    name = os.path.basename((raw or "").replace("\\", "/"))
    name = "".join(ch if ch.isprintable() else "_" for ch in name)
    name = name.encode("utf-8", "replace").decode("utf-8")[:200].strip() or "upload"
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, dot, ext = name, "", ""
    unique, n = name, 1
    while unique.casefold() in taken:
        n += 1
        unique = f"{stem} ({n}){dot}{ext}"
    taken.add(unique.casefold())
    return unique


def check_audio(path: Path, name: str, max_seconds: float) -> CheckedAudio:
    """Accept ``path`` only if it is decodable audio within the duration limit.

    Three steps: the first bytes must be a known audio or video container; the container must
    declare an audio stream (:func:`earmark.audio.probe`); the first seconds must decode.
    Raises :class:`UploadError` naming the upload and the cause.
    """
    from earmark.audio import AudioError, AudioReader, probe

    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head:
        raise UploadError(f"{name}: the file is empty")
    fmt = sniff_format(head)
    if fmt is None:
        raise UploadError(
            f"{name}: not an audio file (content is not WAV, FLAC, Ogg/Opus, MP3, AAC, MP4/M4A, "
            "Matroska/WebM, AIFF, CAF, AMR or WMA, whatever the file name says)",
            status=415,
        )
    try:
        info = probe(path)
    except AudioError as exc:
        raise UploadError(f"{name}: cannot be read as audio: {exc.reason}") from None
    if info.duration is not None and info.duration > max_seconds:
        raise UploadError(
            f"{name}: {info.duration:.0f} s of audio is longer than the limit of "
            f"{max_seconds:.0f} s (EARMARK_MAX_AUDIO_SECONDS)",
            status=413,
        )
    try:
        with AudioReader(path, chunk_seconds=2.0) as reader:
            first = next(iter(reader), None)
    except (AudioError, ValueError, OSError) as exc:
        reason = exc.reason if isinstance(exc, AudioError) else str(exc)
        raise UploadError(f"{name}: audio does not decode: {reason}") from None
    if first is None or len(first) == 0:
        raise UploadError(f"{name}: the file holds no audio samples")
    return CheckedAudio(
        format=fmt,
        duration=info.duration,
        info={
            "container": info.container,
            "codec": info.codec,
            "sample_rate": info.sample_rate,
            "channels": info.channels,
            "declared_duration": info.duration,
        },
    )
