"""Verified downloads: sha256 of files (memoised per path, size and mtime), atomic downloads.

Pinned files are verified against their sha256 wherever they are found; the verification is
memoised per (path, size, mtime) inside the process so repeated loads are cheap.

``sha256=None`` means "not pinned": such a file is used as it is when the user provides it, but
downloading it is refused unless ``EARMARK_ALLOW_UNPINNED=1`` is set, in which case the computed
sha256 is logged so that it can be pinned.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.client import HTTPException
from pathlib import Path

from earmark.asset_registry import (
    ALLOW_UNPINNED_ENV,
    MODEL_DIR_ENV,
    Asset,
    AssetIntegrityError,
    AssetNotFoundError,
    UnpinnedAssetError,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "USER_AGENT",
    "ProgressCallback",
    "check_sha256",
    "clear_memo",
    "download",
    "env_flag",
    "file_sha256",
    "sha256_file",
]

DEFAULT_TIMEOUT = 60.0
USER_AGENT = "earmark (+https://github.com/fschmid56/EfficientAT assets)"

_CHUNK = 1 << 20
_TRUE = ("1", "true", "yes", "on")

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int | None], None]
"""``progress(bytes_done, bytes_total_or_None)``, called while a download runs."""


# --------------------------------------------------------------------------------------------
# Hashing and its in-process memo
# --------------------------------------------------------------------------------------------

_verified: dict[tuple[str, int, int], str] = {}
_verified_lock = threading.Lock()


def sha256_file(path: str | Path) -> str:
    """Return the lower-case hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of ``path``, memoised per (absolute path, size, mtime_ns)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _verified_lock:
        known = _verified.get(key)
    if known is not None:
        return known
    digest = sha256_file(path)
    with _verified_lock:
        _verified[key] = digest
    return digest


def clear_memo() -> None:
    """Forget all memoised digests (for tests)."""
    with _verified_lock:
        _verified.clear()


def check_sha256(asset: Asset, path: Path, hint: str = "") -> None:
    """Raise AssetIntegrityError if ``path`` does not match the asset's pinned sha256."""
    if asset.sha256 is None:
        log.debug("%s is not pinned; using %s without verification", asset.filename, path)
        return
    actual = file_sha256(path)
    if actual != asset.sha256:
        raise AssetIntegrityError(path, asset.sha256, actual, hint)


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(name, "").strip().lower() in _TRUE


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


def download(
    url: str,
    dest: str | Path,
    sha256: str | None,
    progress: ProgressCallback | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Download ``url`` to ``dest`` atomically and verify it.

    The data is streamed into a temporary file next to ``dest`` while being hashed; only when the
    transfer is complete and the sha256 matches is it moved into place with ``os.replace``. On any
    failure the temporary file is removed and ``dest`` is left untouched.

    An unpinned download (``sha256=None``) is refused with :class:`UnpinnedAssetError` unless
    ``EARMARK_ALLOW_UNPINNED=1``; then the computed sha256 is logged (warning) so it can be pinned.

    Raises:
        AssetNotFoundError: network failure, HTTP error or incomplete transfer (``__cause__``
            holds the original exception).
        AssetIntegrityError: the downloaded data does not have the expected sha256.
    """
    dest = Path(dest)
    name = dest.name
    if sha256 is None and not env_flag(ALLOW_UNPINNED_ENV):
        raise UnpinnedAssetError(
            f"Refusing to download {name} from {url}: no sha256 is pinned for it, so its "
            f"integrity cannot be checked. Either download it yourself, check it, put it in a "
            f"folder and set {MODEL_DIR_ENV} to that folder, or set {ALLOW_UNPINNED_ENV}=1 to "
            f"download it anyway (its sha256 will be logged so that you can pin it).",
            asset_filename=name,
            url=url,
        )
    expected = sha256.lower() if sha256 else None
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    done = False
    try:
        digest = hashlib.sha256()
        received = 0
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with _network(name, url):
                response = urllib.request.urlopen(request, timeout=timeout)
            with response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                if progress is not None:
                    progress(0, total)
                while True:
                    with _network(name, url):
                        chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)  # a local write error (disk full) propagates as OSError
                    digest.update(chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress(received, total)
            if total is not None and received != total:
                cause = HTTPException(f"incomplete transfer: received {received} of {total} bytes")
                raise _network_error(name, url, str(cause)) from cause
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a model file is not secret
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            raise AssetIntegrityError(
                dest,
                expected,
                actual,
                f"The download from {url} was discarded; nothing was written.",
            )
        os.replace(tmp, dest)
        done = True
        if expected is None:
            log.warning(
                "Downloaded unpinned asset %s from %s: sha256 %s (%d bytes). Pin this value to "
                "verify future downloads.",
                name,
                url,
                actual,
                received,
            )
        return dest
    finally:
        if not done:
            tmp.unlink(missing_ok=True)


@contextmanager
def _network(name: str, url: str) -> Iterator[None]:
    """Turn network failures inside the block into AssetNotFoundError (cause kept)."""
    try:
        yield
    except urllib.error.HTTPError as exc:
        raise _network_error(name, url, f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise _network_error(name, url, str(exc.reason)) from exc
    except (OSError, HTTPException) as exc:
        raise _network_error(name, url, f"{type(exc).__name__}: {exc}") from exc


def _network_error(name: str, url: str, cause: str) -> AssetNotFoundError:
    return AssetNotFoundError(
        f"Could not download {name} from {url}: {cause}. If this machine is offline, download "
        f"the file elsewhere, put it in a folder and set {MODEL_DIR_ENV} to that folder.",
        asset_filename=name,
        url=url,
    )
