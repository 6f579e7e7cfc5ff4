"""Registry of model assets (checkpoints, label list, ontology) and their resolution.

Every asset has an official download location and, where we know it, a pinned sha256. A file is
looked up, in this order:

1. an explicit path given by the caller (a file, or a folder that contains the asset's file name);
2. ``$EARMARK_MODEL_DIR/<filename>``;
3. the user cache, ``cache_dir()/<filename>``;
4. a download from the official URL into the cache (only when downloads are allowed).

Pinned files are verified against their sha256 wherever they are found; the verification is
memoised per (path, size, mtime) inside the process so repeated loads are cheap.

``sha256=None`` means "not pinned": such a file is used as it is when the user provides it, but
downloading it is refused unless ``EARMARK_ALLOW_UNPINNED=1`` is set, in which case the computed
sha256 is logged so that it can be pinned.

Sources of the registry facts (file names, URLs, widths, mAP, parameter counts):

* checkpoint file names and the release URL: ``pretrained_models`` in ``models/mn/model.py`` of
  https://github.com/fschmid56/EfficientAT (release ``v0.0.1``);
* width multipliers: the model naming convention ``mn<width*10>_as`` and ``NAME_TO_WIDTH`` in
  ``helpers/utils.py`` of the same repository;
* mAP: the model table in the repository's ``README.md`` (mn04 … mn40_as_ext); for mn01_as and
  mn02_as, which the README table does not list, the mAP encoded in the official file name;
* parameter counts: the same README table (published in millions, to 3-4 significant digits);
  mn04_as is counted exactly from the official checkpoint (983 599, consistent with "0.983 M").
  no count is published for mn01_as and mn02_as: theirs are counted from the architecture
  (``earmark.model.MobileNet(width)``), which reproduces every published count;
* sha256 and sizes of ``mn04_as_mAP_432.pt``, ``class_labels_indices.csv`` and ``ontology.json``:
  the project's shared asset table (measured on the official files). No sha256 has been published
  for the other checkpoints, so they are not pinned.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import platformdirs

from earmark import constants

__all__ = [
    "ALLOW_UNPINNED_ENV",
    "ASSETS",
    "CACHE_DIR_ENV",
    "DEFAULT_MODEL",
    "MODELS",
    "MODEL_DIR_ENV",
    "OFFLINE_ENV",
    "Asset",
    "AssetIntegrityError",
    "AssetNotFoundError",
    "ModelSpec",
    "ResolvedAsset",
    "UnpinnedAssetError",
    "cache_dir",
    "download",
    "get_asset",
    "list_models",
    "locate",
    "needed_files",
    "resolve",
    "resolve_model",
    "sha256_file",
    "spec_from_filename",
]

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

MODEL_DIR_ENV = "EARMARK_MODEL_DIR"
"""Folder holding model files provided by the user (searched before the cache)."""
CACHE_DIR_ENV = "EARMARK_CACHE_DIR"
"""Root of earmark's cache; model files live in its ``models`` sub-folder."""
ALLOW_UNPINNED_ENV = "EARMARK_ALLOW_UNPINNED"
"""Set to ``1`` to allow downloading assets that have no pinned sha256."""
OFFLINE_ENV = "EARMARK_OFFLINE"
"""Set to ``1`` to forbid any download (same as ``download=False``)."""

KINDS = ("checkpoint", "labels", "ontology")

EFFICIENTAT_RELEASE_URL = "https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/"
LABELS_URL = (
    "https://raw.githubusercontent.com/fschmid56/EfficientAT/main/metadata/class_labels_indices.csv"
)
ONTOLOGY_URL = "https://raw.githubusercontent.com/audioset/ontology/master/ontology.json"

DEFAULT_MODEL = constants.DEFAULT_MODEL
DEFAULT_TIMEOUT = 60.0
USER_AGENT = "earmark (+https://github.com/fschmid56/EfficientAT assets)"

_CHUNK = 1 << 20
_TRUE = ("1", "true", "yes", "on")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Checkpoints whose architecture and front end are those of the plain ``mnXX_as`` models:
# e.g. mn10_as_mAP_471.pt, mn40_as_ext_mAP_487.pt, mn40_as_mAP_483(2).pt. Variants with another
# hop size, mel count or head (``_hop_``, ``_mels_``, ``_fc``) are deliberately not matched.
_CHECKPOINT_NAME_RE = re.compile(
    r"^(?P<base>mn(?P<width>\d{2})_as)(?P<variant>_ext|_no_im_pre)?"
    r"_mAP_(?P<map>\d{3})(?:\(\d+\))?\.pt$"
)

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int | None], None]
"""``progress(bytes_done, bytes_total_or_None)``, called while a download runs."""


# --------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Asset:
    """A file earmark needs, where to get it and how to check it.

    ``sha256`` is the pinned lower-case hex digest, or ``None`` when no trustworthy value is known
    ("not pinned"). ``size`` is the expected size in bytes when known.
    """

    filename: str
    url: str
    sha256: str | None
    kind: str
    size: int | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Asset kind must be one of {KINDS}, got {self.kind!r}")
        if not self.filename or Path(self.filename).name != self.filename:
            raise ValueError(f"Asset filename must be a bare file name, got {self.filename!r}")
        if self.sha256 is not None and not _SHA256_RE.match(self.sha256):
            raise ValueError(f"sha256 of {self.filename} must be 64 lower-case hex digits")

    @property
    def pinned(self) -> bool:
        """Whether the asset has a known sha256."""
        return self.sha256 is not None


@dataclass(frozen=True)
class ModelSpec:
    """One pretrained model: its architecture parameters and its checkpoint asset."""

    name: str
    family: str
    width: float
    checkpoint: Asset
    published_map: float
    params: int | None
    n_classes: int = 527
    description: str = ""


@dataclass(frozen=True)
class ResolvedAsset:
    """An asset together with the local file that holds it and how it was found."""

    asset: Asset
    path: Path
    source: str  # "explicit" | "env" | "cache" | "download"


class AssetNotFoundError(FileNotFoundError):
    """An asset is not available locally and could not (or may not) be downloaded.

    The message names the file, its official URL and ``EARMARK_MODEL_DIR`` and says how to fix
    the problem. The command-line interface maps this error to exit code 2.
    """

    def __init__(
        self,
        message: str,
        *,
        asset_filename: str | None = None,
        url: str | None = None,
        searched: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.asset_filename = asset_filename
        self.url = url
        self.searched = searched


class UnpinnedAssetError(AssetNotFoundError):
    """A download was refused because the asset has no pinned sha256."""


class AssetIntegrityError(ValueError):
    """A file does not have the pinned sha256."""

    def __init__(self, path: Path | str, expected: str, actual: str, hint: str = "") -> None:
        self.path = Path(path)
        self.expected = expected
        self.actual = actual
        message = (
            f"sha256 mismatch for {self.path.name} ({self.path}): expected {expected}, "
            f"got {actual}. The file is corrupt, truncated or a different version."
        )
        if hint:
            message = f"{message} {hint}"
        super().__init__(message)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def _checkpoint(filename: str, sha256: str | None = None, size: int | None = None) -> Asset:
    return Asset(
        filename=filename,
        url=EFFICIENTAT_RELEASE_URL + filename,
        sha256=sha256,
        kind="checkpoint",
        size=size,
        description="EfficientAT MobileNetV3 checkpoint trained on AudioSet (MIT licence)",
    )


def _mn(
    name: str,
    width: float,
    filename: str,
    published_map: float,
    params: int | None,
    *,
    sha256: str | None = None,
    size: int | None = None,
    note: str = "",
) -> ModelSpec:
    description = f"EfficientAT MobileNetV3, width {width:g}, AudioSet mAP {published_map:.3f}"
    if note:
        description = f"{description}, {note}"
    return ModelSpec(
        name=name,
        family="efficientat-mn",
        width=width,
        checkpoint=_checkpoint(filename, sha256, size),
        published_map=published_map,
        params=params,
        description=description,
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _mn("mn01_as", 0.1, "mn01_as_mAP_298.pt", 0.298, 123_783),
        _mn("mn02_as", 0.2, "mn02_as_mAP_378.pt", 0.378, 324_695),
        _mn(
            "mn04_as",
            0.4,
            "mn04_as_mAP_432.pt",
            0.432,
            983_599,
            sha256="899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c",
            size=4_066_513,
        ),
        _mn("mn05_as", 0.5, "mn05_as_mAP_443.pt", 0.443, 1_430_000),
        _mn("mn10_as", 1.0, "mn10_as_mAP_471.pt", 0.471, 4_880_000),
        _mn("mn20_as", 2.0, "mn20_as_mAP_478.pt", 0.478, 17_910_000),
        _mn("mn30_as", 3.0, "mn30_as_mAP_482.pt", 0.482, 39_090_000),
        _mn("mn40_as", 4.0, "mn40_as_mAP_484.pt", 0.484, 68_430_000),
        _mn(
            "mn40_as_ext",
            4.0,
            "mn40_as_ext_mAP_487.pt",
            0.487,
            68_430_000,
            note="extended training (300 epochs)",
        ),
    )
}
"""Pretrained EfficientAT MobileNet models trained on AudioSet, keyed by official name."""

ASSETS: dict[str, Asset] = {
    "labels": Asset(
        filename="class_labels_indices.csv",
        url=LABELS_URL,
        sha256="cdd1049833c4b86127c2773ac0d14a2754b6a6d0d1798002ed5c66e699708429",
        kind="labels",
        size=14_675,
        description="the 527 AudioSet classes in model output order (CC BY-SA 4.0)",
    ),
    "ontology": Asset(
        filename="ontology.json",
        url=ONTOLOGY_URL,
        sha256="9c685f4403eecc3ca9be37fd7285cf212feaaea6ff7229d3e7ca89e0d1f2d15d",
        kind="ontology",
        size=342_780,
        description="AudioSet ontology: class hierarchy and descriptions (CC BY-SA 4.0)",
    ),
}
"""Non-checkpoint assets, keyed by role."""


def get_asset(name: str) -> Asset:
    """Look an asset up by model name, role (``labels``, ``ontology``) or file name."""
    if name in MODELS:
        return MODELS[name].checkpoint
    if name in ASSETS:
        return ASSETS[name]
    for asset in _all_assets():
        if asset.filename == name:
            return asset
    known = ", ".join([*MODELS, *ASSETS])
    raise KeyError(f"Unknown asset {name!r}; known: {known}")


def _all_assets() -> list[Asset]:
    return [spec.checkpoint for spec in MODELS.values()] + list(ASSETS.values())


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


def _file_sha256_memo(path: Path) -> str:
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


def _clear_memo() -> None:
    """Forget all memoised digests (for tests)."""
    with _verified_lock:
        _verified.clear()


def _check(asset: Asset, path: Path, hint: str = "") -> None:
    """Raise AssetIntegrityError if ``path`` does not match the asset's pinned sha256."""
    if asset.sha256 is None:
        log.debug("%s is not pinned; using %s without verification", asset.filename, path)
        return
    actual = _file_sha256_memo(path)
    if actual != asset.sha256:
        raise AssetIntegrityError(path, asset.sha256, actual, hint)


# --------------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Folder where downloaded model files are kept.

    ``$EARMARK_CACHE_DIR/models`` when the variable is set, else the platform's user cache folder
    for ``earmark`` (``~/.cache/earmark`` on Linux) plus ``models``. The folder is not created.
    """
    root = os.environ.get(CACHE_DIR_ENV)
    base = Path(root).expanduser() if root else Path(platformdirs.user_cache_dir("earmark", False))
    return base / "models"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _model_dir() -> Path | None:
    value = os.environ.get(MODEL_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def _as_asset(asset: Asset | str) -> Asset:
    return asset if isinstance(asset, Asset) else get_asset(asset)


def needed_files(asset: Asset | None = None) -> list[Asset]:
    """The files a first run needs (the default model, the labels, the ontology used by
    ``--group-by``), with ``asset`` first when it is another one."""
    files = [MODELS[DEFAULT_MODEL].checkpoint, ASSETS["labels"], ASSETS["ontology"]]
    if asset is not None and asset not in files:
        files.insert(0, asset)
    return files


def _fix_hint(asset: Asset, cache: Path) -> str:
    """How to get ``asset`` and the other files a run needs, all at once: one per line with its
    URL and sha256, and the one command that fetches them."""
    rows = [
        f"  {a.filename:<26} {a.url}" + (f"  sha256 {a.sha256}" if a.sha256 else "")
        for a in needed_files(asset)
    ]
    return (
        "earmark needs these files (sha256-verified):\n"
        + "\n".join(rows)
        + f"\nTo fix: run `earmark models fetch --dir DIR` where the network is reachable and set "
        f"{MODEL_DIR_ENV}=DIR, or put the files in DIR yourself; with network access (and "
        f"{OFFLINE_ENV} unset) earmark downloads them into {cache}."
    )


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
    if sha256 is None and not _env_flag(ALLOW_UNPINNED_ENV):
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


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------


def _explicit(asset: Asset, path: str | Path) -> ResolvedAsset:
    given = Path(path).expanduser()
    if given.is_dir():
        candidate = given / asset.filename
        if not candidate.is_file():
            raise AssetNotFoundError(
                f"{asset.filename} was not found in the folder {given} given explicitly. "
                f"Download it from {asset.url} into that folder, or point to the file itself "
                f"(or leave the path out to use {MODEL_DIR_ENV} or the cache).",
                asset_filename=asset.filename,
                url=asset.url,
                searched=(str(candidate),),
            )
    elif given.is_file():
        candidate = given
    else:
        raise AssetNotFoundError(
            f"The path {given} given for {asset.filename} does not exist. Official download: "
            f"{asset.url} (or leave the path out to use {MODEL_DIR_ENV} or the cache).",
            asset_filename=asset.filename,
            url=asset.url,
            searched=(str(given),),
        )
    _check(asset, candidate, "This is the file given explicitly; it is not the official one.")
    return ResolvedAsset(asset, candidate, "explicit")


def _in_env(asset: Asset, searched: list[str]) -> Path | None:
    folder = _model_dir()
    if folder is None:
        searched.append(f"{MODEL_DIR_ENV} (not set)")
        return None
    candidate = folder / asset.filename
    if not folder.is_dir():
        log.warning("%s=%s is not a folder; ignoring it", MODEL_DIR_ENV, folder)
        searched.append(f"{MODEL_DIR_ENV}={folder} (not a folder)")
        return None
    searched.append(f"{MODEL_DIR_ENV}: {candidate}")
    return candidate if candidate.is_file() else None


def _in_cache(asset: Asset, searched: list[str]) -> Path:
    candidate = cache_dir() / asset.filename
    searched.append(f"cache: {candidate}")
    return candidate


def resolve(
    asset: Asset | str,
    path: str | Path | None = None,
    download: bool = True,
    progress: ProgressCallback | None = None,
) -> ResolvedAsset:
    """Find (and if needed download) an asset and verify it.

    Args:
        asset: an :class:`Asset`, or a model name, asset role or file name (see :func:`get_asset`).
        path: an explicit file, or a folder containing ``asset.filename``. When given it must
            exist: there is no silent fallback to other locations.
        download: allow downloading into the cache when the file is found nowhere. Downloads are
            also disabled by ``EARMARK_OFFLINE=1``.
        progress: optional ``progress(bytes_done, bytes_total_or_None)`` for downloads.

    Order: explicit path, ``$EARMARK_MODEL_DIR/<filename>``, ``cache_dir()/<filename>``, download
    into the cache. Pinned files are verified wherever found (memoised per path, size, mtime).

    Raises:
        AssetNotFoundError: the file is nowhere and cannot be downloaded (message says how to fix).
        AssetIntegrityError: a file found does not have the pinned sha256. A bad file in the cache
            is removed first and, if downloads are allowed, downloaded again instead of raising.
    """
    asset = _as_asset(asset)
    if path is not None:
        return _explicit(asset, path)

    searched: list[str] = []
    found = _in_env(asset, searched)
    if found is not None:
        _check(asset, found, f"The file comes from {MODEL_DIR_ENV}; replace it with {asset.url}.")
        return ResolvedAsset(asset, found, "env")

    cached = _in_cache(asset, searched)
    allowed = download and not _env_flag(OFFLINE_ENV)
    if cached.is_file():
        try:
            _check(asset, cached)
            return ResolvedAsset(asset, cached, "cache")
        except AssetIntegrityError as exc:
            cached.unlink(missing_ok=True)
            if not allowed:
                raise AssetIntegrityError(
                    exc.path,
                    exc.expected,
                    exc.actual,
                    "The bad cached copy was removed; allow downloads to fetch it again.",
                ) from None
            log.warning("%s; removed the cached copy, downloading it again", exc)

    if not allowed:
        where = "; ".join(searched)
        reason = (
            f"downloads are disabled ({OFFLINE_ENV} is set)"
            if download
            else "downloads are disabled"
        )
        raise AssetNotFoundError(
            f"model file {asset.filename} not found (looked in {where}) and {reason}.\n"
            f"{_fix_hint(asset, cached.parent)}",
            asset_filename=asset.filename,
            url=asset.url,
            searched=tuple(searched),
        )

    log.info("Downloading %s from %s to %s", asset.filename, asset.url, cached)
    try:
        _download(asset.url, cached, asset.sha256, progress=progress)
    except UnpinnedAssetError:
        raise
    except AssetNotFoundError as exc:
        raise AssetNotFoundError(
            f"model file {asset.filename} not found locally (looked in {'; '.join(searched)}) "
            f"and the download failed: {exc}\n{_fix_hint(asset, cached.parent)}",
            asset_filename=asset.filename,
            url=asset.url,
            searched=tuple(searched),
        ) from exc.__cause__
    return ResolvedAsset(asset, cached, "download")


# ``resolve`` has a parameter named ``download``; keep a module-level alias to the function.
_download = download


def fetch(
    asset: Asset | str,
    dest_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> ResolvedAsset:
    """Make sure an asset is present and verified in a folder, downloading it if needed.

    The folder is ``dest_dir``, else ``$EARMARK_MODEL_DIR`` (created if missing), else the user
    cache (then this is :func:`resolve`). A file already there is verified against its pinned
    sha256; a missing or bad one is downloaded (verified, atomic write). This is what a
    container's start-up step or an air-gapped preparation uses: ``earmark models fetch``.

    Raises:
        AssetNotFoundError, UnpinnedAssetError, AssetIntegrityError: as :func:`download`.
    """
    asset = _as_asset(asset)
    folder = Path(dest_dir).expanduser() if dest_dir is not None else _model_dir()
    if folder is None:
        return resolve(asset, progress=progress)
    target = folder / asset.filename
    if target.is_file():
        try:
            _check(asset, target)
            return ResolvedAsset(asset, target, "explicit" if dest_dir is not None else "env")
        except AssetIntegrityError as exc:
            log.warning("%s; downloading it again", exc)
    if _env_flag(OFFLINE_ENV):
        raise AssetNotFoundError(
            f"Model asset {asset.filename} is not in {folder} and downloads are disabled "
            f"({OFFLINE_ENV} is set). Download {asset.url} into {folder}.",
            asset_filename=asset.filename,
            url=asset.url,
            searched=(str(target),),
        )
    log.info("Downloading %s from %s to %s", asset.filename, asset.url, target)
    _download(asset.url, target, asset.sha256, progress=progress)
    return ResolvedAsset(asset, target, "download")


def locate(asset: Asset | str, verify: bool = True) -> ResolvedAsset | None:
    """Like :func:`resolve` without an explicit path and without downloading.

    Returns ``None`` when the file is neither in ``EARMARK_MODEL_DIR`` nor in the cache. With
    ``verify=True`` a pinned file found is checked (a mismatch raises AssetIntegrityError; nothing
    is removed). With ``verify=False`` no file is read.
    """
    asset = _as_asset(asset)
    searched: list[str] = []
    found = _in_env(asset, searched)
    if found is not None:
        if verify:
            _check(asset, found)
        return ResolvedAsset(asset, found, "env")
    cached = _in_cache(asset, searched)
    if cached.is_file():
        if verify:
            _check(asset, cached)
        return ResolvedAsset(asset, cached, "cache")
    return None


def list_models(verify: bool = False) -> list[dict]:
    """One row per registered model, for ``earmark models``.

    Keys: ``name``, ``default``, ``family``, ``width``, ``params``, ``published_map``,
    ``filename``, ``url``, ``size`` (registry value, or the size of the file found),
    ``sha256_pinned``, ``where`` (``"env: /path"``, ``"cache: /path"`` or ``"missing"``),
    ``path`` (str or None) and ``verified`` (True/False after a check with ``verify=True``,
    otherwise None). Listing never downloads and, unless ``verify``, never reads a file.
    """
    rows = []
    for spec in MODELS.values():
        asset = spec.checkpoint
        found = locate(asset, verify=False)
        verified: bool | None = None
        where = "missing"
        size = asset.size
        if found is not None:
            where = f"{found.source}: {found.path}"
            size = found.path.stat().st_size
            if verify and asset.pinned:
                verified = _file_sha256_memo(found.path) == asset.sha256
                if not verified:
                    where = f"{where} (sha256 MISMATCH)"
        rows.append(
            {
                "name": spec.name,
                "default": spec.name == DEFAULT_MODEL,
                "family": spec.family,
                "width": spec.width,
                "params": spec.params,
                "published_map": spec.published_map,
                "filename": asset.filename,
                "url": asset.url,
                "size": size,
                "sha256_pinned": asset.pinned,
                "where": where,
                "path": str(found.path) if found is not None else None,
                "verified": verified,
            }
        )
    return rows


def spec_from_filename(filename: str) -> ModelSpec:
    """Infer a :class:`ModelSpec` from an EfficientAT checkpoint file name.

    A registered file name gives the registered spec. Otherwise names of the form
    ``mnXX_as[_ext|_no_im_pre]_mAP_NNN[(k)].pt`` (same architecture and front end as the
    registered models, e.g. the alternative runs ``mn40_as_mAP_483.pt``) give a spec with width
    ``XX/10`` and an unpinned checkpoint. Anything else raises ``ValueError``.
    """
    name = Path(filename).name
    for spec in MODELS.values():
        if spec.checkpoint.filename == name:
            return spec
    match = _CHECKPOINT_NAME_RE.match(name)
    if match is None:
        raise ValueError(
            f"Cannot tell which model {name!r} is: expected a registered model name "
            f"({', '.join(MODELS)}) or an EfficientAT AudioSet checkpoint named like "
            f"'mn10_as_mAP_471.pt'. Variants with another hop size, mel count or head "
            f"(_hop_, _mels_, _fc) are not supported."
        )
    width_code = int(match["width"])
    if width_code == 0:
        raise ValueError(f"Invalid width in checkpoint name {name!r}")
    variant = match["variant"] or ""
    registered = MODELS.get(match["base"] + variant) or MODELS.get(match["base"])
    width = width_code / 10
    params = registered.params if registered is not None and registered.width == width else None
    checkpoint = Asset(
        filename=name,
        url=EFFICIENTAT_RELEASE_URL + name,
        sha256=None,
        kind="checkpoint",
        description="checkpoint identified by its file name only (not pinned, not verified)",
    )
    return ModelSpec(
        name=match["base"] + variant,
        family="efficientat-mn",
        width=width,
        checkpoint=checkpoint,
        published_map=int(match["map"]) / 1000,
        params=params,
        description=f"EfficientAT MobileNetV3, width {width:g}, from file name {name}",
    )


def resolve_model(
    name_or_path: str | Path,
    download: bool = True,
    progress: ProgressCallback | None = None,
) -> tuple[ModelSpec, ResolvedAsset]:
    """Resolve a model given by registry name or by a path to a ``.pt`` checkpoint.

    * A registry name (``"mn04_as"``) or a bare registered file name resolves through
      :func:`resolve` (explicit path not used).
    * An existing file is used as an explicit path; its spec is inferred from its file name with
      :func:`spec_from_filename` (a registered file is verified against its pinned sha256).
    * A path that does not exist raises :class:`AssetNotFoundError`; an unknown name ``ValueError``.
    """
    text = str(name_or_path)
    if text in MODELS:
        spec = MODELS[text]
        return spec, resolve(spec.checkpoint, download=download, progress=progress)

    path = Path(text).expanduser()
    if path.is_file():
        spec = spec_from_filename(path.name)
        return spec, resolve(spec.checkpoint, path=path, download=False)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a checkpoint file or a model name")

    registered = [s for s in MODELS.values() if s.checkpoint.filename == text]
    if registered:
        spec = registered[0]
        return spec, resolve(spec.checkpoint, download=download, progress=progress)

    looks_like_path = path.suffix in (".pt", ".pth") or os.sep in text or "/" in text
    if looks_like_path:
        raise AssetNotFoundError(
            f"Checkpoint file {path} does not exist. Give an existing .pt file or one of the "
            f"registered model names: {', '.join(MODELS)}.",
            asset_filename=path.name,
        )
    raise ValueError(f"Unknown model {text!r}; known models: {', '.join(MODELS)}")


def _check_registry() -> None:
    names = [a.filename for a in _all_assets()]
    if len(set(names)) != len(names):  # pragma: no cover - guards edits of the tables above
        raise RuntimeError("duplicate file names in the asset registry")
    if DEFAULT_MODEL not in MODELS:  # pragma: no cover
        raise RuntimeError("DEFAULT_MODEL is not registered")


_check_registry()
