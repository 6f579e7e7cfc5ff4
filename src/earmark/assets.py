"""Where model files are found: an explicit path, ``EARMARK_MODEL_DIR``, the cache, a download.

Every asset has an official download location and, where we know it, a pinned sha256. A file is
looked up, in this order:

1. an explicit path given by the caller (a file, or a folder that contains the asset's file name);
2. ``$EARMARK_MODEL_DIR/<filename>``;
3. the user cache, ``cache_dir()/<filename>``;
4. a download from the official URL into the cache (only when downloads are allowed).

Pinned files are verified against their sha256 wherever they are found (:mod:`earmark.downloads`).
What the files are and where they officially come from is :mod:`earmark.asset_registry`; its
names and those of :mod:`earmark.downloads` are importable from here too.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from earmark.asset_registry import (
    ALLOW_UNPINNED_ENV,
    ASSETS,
    CACHE_DIR_ENV,
    DEFAULT_MODEL,
    EFFICIENTAT_RELEASE_URL,
    KINDS,
    LABELS_URL,
    MODEL_DIR_ENV,
    MODELS,
    OFFLINE_ENV,
    ONTOLOGY_URL,
    Asset,
    AssetIntegrityError,
    AssetNotFoundError,
    ModelSpec,
    UnpinnedAssetError,
    all_assets,
    get_asset,
    needed_files,
    spec_from_filename,
)
from earmark.downloads import (
    DEFAULT_TIMEOUT,
    USER_AGENT,
    ProgressCallback,
    check_sha256,
    download,
    env_flag,
    file_sha256,
    sha256_file,
)

__all__ = [
    "ALLOW_UNPINNED_ENV",
    "ASSETS",
    "CACHE_DIR_ENV",
    "DEFAULT_MODEL",
    "DEFAULT_TIMEOUT",
    "EFFICIENTAT_RELEASE_URL",
    "KINDS",
    "LABELS_URL",
    "MODELS",
    "MODEL_DIR_ENV",
    "OFFLINE_ENV",
    "ONTOLOGY_URL",
    "USER_AGENT",
    "Asset",
    "AssetIntegrityError",
    "AssetNotFoundError",
    "ModelSpec",
    "ProgressCallback",
    "ResolvedAsset",
    "UnpinnedAssetError",
    "all_assets",
    "cache_dir",
    "download",
    "fetch",
    "get_asset",
    "list_models",
    "locate",
    "needed_files",
    "resolve",
    "resolve_model",
    "sha256_file",
    "spec_from_filename",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedAsset:
    """An asset together with the local file that holds it and how it was found."""

    asset: Asset
    path: Path
    source: str  # "explicit" | "env" | "cache" | "download"


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


def _model_dir() -> Path | None:
    value = os.environ.get(MODEL_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def _as_asset(asset: Asset | str) -> Asset:
    return asset if isinstance(asset, Asset) else get_asset(asset)


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
    check_sha256(asset, candidate, "This is the file given explicitly; it is not the official one.")
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
        check_sha256(
            asset, found, f"The file comes from {MODEL_DIR_ENV}; replace it with {asset.url}."
        )
        return ResolvedAsset(asset, found, "env")

    cached = _in_cache(asset, searched)
    allowed = download and not env_flag(OFFLINE_ENV)
    if cached.is_file():
        try:
            check_sha256(asset, cached)
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
            check_sha256(asset, target)
            return ResolvedAsset(asset, target, "explicit" if dest_dir is not None else "env")
        except AssetIntegrityError as exc:
            log.warning("%s; downloading it again", exc)
    if env_flag(OFFLINE_ENV):
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
            check_sha256(asset, found)
        return ResolvedAsset(asset, found, "env")
    cached = _in_cache(asset, searched)
    if cached.is_file():
        if verify:
            check_sha256(asset, cached)
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
                verified = file_sha256(found.path) == asset.sha256
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
