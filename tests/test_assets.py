"""Tests for the model asset registry and its resolution, on the real shared model files.

Downloads are exercised against a real HTTP server on the loopback interface serving copies of
real assets; nothing here touches the internet.
"""

from __future__ import annotations

import http.server
import logging
import os
import re
import shutil
import socket
import threading
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from earmark import assets, downloads
from earmark.assets import (
    ALLOW_UNPINNED_ENV,
    ASSETS,
    CACHE_DIR_ENV,
    DEFAULT_MODEL,
    MODEL_DIR_ENV,
    MODELS,
    OFFLINE_ENV,
    Asset,
    AssetIntegrityError,
    AssetNotFoundError,
    UnpinnedAssetError,
    cache_dir,
    download,
    fetch,
    list_models,
    locate,
    resolve,
    resolve_model,
    sha256_file,
    spec_from_filename,
)

MN04 = MODELS["mn04_as"].checkpoint
LABELS = ASSETS["labels"]
ONTOLOGY = ASSETS["ontology"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Every test starts with an empty private cache, no model dir and a cold hash memo."""
    cache_root = tmp_path / "cache-root"
    monkeypatch.setenv(CACHE_DIR_ENV, str(cache_root))
    for name in (MODEL_DIR_ENV, ALLOW_UNPINNED_ENV, OFFLINE_ENV):
        monkeypatch.delenv(name, raising=False)
    downloads.clear_memo()
    yield cache_root
    downloads.clear_memo()


def _copy(src: Path, folder: Path, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / (name or src.name)
    shutil.copyfile(src, dest)
    return dest


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------------------------
# A real HTTP server on loopback
# --------------------------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; ``/truncated/<name>`` sends half the bytes with the full length;
    ``/stall/<name>`` sends headers and then nothing for a while."""

    requests: list[str]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        for prefix in ("/truncated/", "/stall/"):
            if self.path.startswith(prefix):
                data = (Path(self.directory) / self.path[len(prefix) :]).read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if prefix == "/truncated/":
                    self.wfile.write(data[: len(data) // 2])
                else:
                    time.sleep(3)
                self.wfile.flush()
                self.close_connection = True
                return
        super().do_GET()


@dataclass
class Server:
    root: Path
    base_url: str
    requests: list[str]

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"


@pytest.fixture
def server(tmp_path: Path, model_dir: Path) -> Iterator[Server]:
    root = tmp_path / "served"
    _copy(model_dir / LABELS.filename, root)
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(root, f"http://127.0.0.1:{httpd.server_address[1]}", requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _served_labels(server: Server, *, sha256: str | None = LABELS.sha256, path: str = "") -> Asset:
    return Asset(
        filename=LABELS.filename,
        url=server.url(path + LABELS.filename),
        sha256=sha256,
        kind="labels",
    )


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def test_registry_contents() -> None:
    expected = {
        "mn01_as": (0.1, "mn01_as_mAP_298.pt", 0.298),
        "mn02_as": (0.2, "mn02_as_mAP_378.pt", 0.378),
        "mn04_as": (0.4, "mn04_as_mAP_432.pt", 0.432),
        "mn05_as": (0.5, "mn05_as_mAP_443.pt", 0.443),
        "mn10_as": (1.0, "mn10_as_mAP_471.pt", 0.471),
        "mn20_as": (2.0, "mn20_as_mAP_478.pt", 0.478),
        "mn30_as": (3.0, "mn30_as_mAP_482.pt", 0.482),
        "mn40_as": (4.0, "mn40_as_mAP_484.pt", 0.484),
        "mn40_as_ext": (4.0, "mn40_as_ext_mAP_487.pt", 0.487),
    }
    assert {n: (s.width, s.checkpoint.filename, s.published_map) for n, s in MODELS.items()} == (
        expected
    )
    for spec in MODELS.values():
        assert spec.family == "efficientat-mn"
        assert spec.n_classes == 527
        assert spec.checkpoint.kind == "checkpoint"
        assert spec.checkpoint.url == (
            "https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/"
            + spec.checkpoint.filename
        )
    assert DEFAULT_MODEL == "mn04_as"
    # Only the files whose sha256 we know are pinned.
    assert [s.name for s in MODELS.values() if s.checkpoint.pinned] == ["mn04_as"]
    assert LABELS.pinned and ONTOLOGY.pinned
    assert LABELS.url.endswith("/fschmid56/EfficientAT/main/metadata/class_labels_indices.csv")
    assert (
        ONTOLOGY.url == "https://raw.githubusercontent.com/audioset/ontology/master/ontology.json"
    )


def test_asset_validation() -> None:
    with pytest.raises(ValueError, match="kind"):
        Asset("x.pt", "http://example.invalid/x.pt", None, kind="weights")
    with pytest.raises(ValueError, match="sha256"):
        Asset("x.pt", "http://example.invalid/x.pt", "abc", kind="checkpoint")
    with pytest.raises(ValueError, match="bare file name"):
        Asset("a/x.pt", "http://example.invalid/x.pt", None, kind="checkpoint")


def test_get_asset_by_name_role_and_filename() -> None:
    assert assets.get_asset("mn04_as") is MN04
    assert assets.get_asset("labels") is LABELS
    assert assets.get_asset("ontology.json") is ONTOLOGY
    assert assets.get_asset("mn10_as_mAP_471.pt") is MODELS["mn10_as"].checkpoint
    with pytest.raises(KeyError, match="Unknown asset"):
        assets.get_asset("nope")


# --------------------------------------------------------------------------------------------
# Hashes of the real files
# --------------------------------------------------------------------------------------------


def test_real_files_match_pinned_sha256_and_size(model_dir: Path) -> None:
    for asset in (MN04, LABELS, ONTOLOGY):
        path = model_dir / asset.filename
        assert sha256_file(path) == asset.sha256
        assert path.stat().st_size == asset.size


def test_mn04_parameter_count_matches_checkpoint(model_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    state = torch.load(model_dir / MN04.filename, map_location="cpu", weights_only=True)
    learnable = sum(
        t.numel()
        for k, t in state.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert learnable == MODELS["mn04_as"].params
    assert state["classifier.5.bias"].shape[0] == MODELS["mn04_as"].n_classes


# --------------------------------------------------------------------------------------------
# Resolution order and errors
# --------------------------------------------------------------------------------------------


def test_cache_dir_env_and_default(monkeypatch: pytest.MonkeyPatch, clean_env: Path) -> None:
    assert cache_dir() == clean_env / "models"
    monkeypatch.delenv(CACHE_DIR_ENV)
    default = cache_dir()
    assert default.name == "models"
    assert "earmark" in default.parts


def test_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_dir: Path) -> None:
    src = model_dir / LABELS.filename
    explicit_dir = tmp_path / "explicit"
    env_dir = tmp_path / "env"
    explicit = _copy(src, explicit_dir)
    env_copy = _copy(src, env_dir)
    cached = _copy(src, cache_dir())
    monkeypatch.setenv(MODEL_DIR_ENV, str(env_dir))

    r = resolve(LABELS, path=explicit_dir, download=False)
    assert (r.source, r.path) == ("explicit", explicit)
    r = resolve(LABELS, path=explicit, download=False)
    assert (r.source, r.path) == ("explicit", explicit)
    r = resolve("labels", download=False)
    assert (r.source, r.path) == ("env", env_copy)
    assert r.asset is LABELS

    env_copy.unlink()  # env folder set but without the file: the cache is next
    r = resolve(LABELS, download=False)
    assert (r.source, r.path) == ("cache", cached)
    monkeypatch.delenv(MODEL_DIR_ENV)
    assert resolve(LABELS, download=False).source == "cache"

    cached.unlink()
    with pytest.raises(AssetNotFoundError):
        resolve(LABELS, download=False)


def test_explicit_path_missing_is_an_error_without_fallback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_dir: Path
) -> None:
    monkeypatch.setenv(MODEL_DIR_ENV, str(model_dir))  # would be found there
    with pytest.raises(AssetNotFoundError, match="does not exist") as info:
        resolve(MN04, path=tmp_path / "nowhere" / MN04.filename)
    assert MN04.url in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AssetNotFoundError, match="not found in the folder"):
        resolve(MN04, path=empty)


def test_explicit_file_is_verified(tmp_path: Path, model_dir: Path) -> None:
    bad = _copy(model_dir / LABELS.filename, tmp_path / "mine")
    _corrupt(bad)
    with pytest.raises(AssetIntegrityError):
        resolve(LABELS, path=bad)


def test_real_checkpoint_resolves_from_model_dir(
    monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> None:
    monkeypatch.setenv(MODEL_DIR_ENV, str(model_dir))
    r = resolve(MN04, download=False)
    assert r.source == "env"
    assert r.path == model_dir / MN04.filename
    spec, r2 = resolve_model("mn04_as")
    assert spec is MODELS["mn04_as"]
    assert r2.path == r.path
    for role in ("labels", "ontology"):
        assert resolve(role, download=False).source == "env"


def test_corrupted_copy_in_model_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_dir: Path
) -> None:
    env_dir = tmp_path / "models"
    bad = _copy(model_dir / MN04.filename, env_dir)
    _corrupt(bad)
    actual = sha256_file(bad)
    monkeypatch.setenv(MODEL_DIR_ENV, str(env_dir))
    with pytest.raises(AssetIntegrityError) as info:
        resolve(MN04)  # download allowed, but a bad user file is an error, not a fallback
    message = str(info.value)
    assert MN04.filename in message
    assert MN04.sha256 in message
    assert actual in message
    assert (info.value.expected, info.value.actual) == (MN04.sha256, actual)
    assert bad.exists()  # the user's file is never deleted


def test_missing_everywhere_without_download(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AssetNotFoundError) as info:
        resolve(MN04, download=False)
    message = str(info.value)
    assert MN04.filename in message
    assert MN04.url in message
    assert MODEL_DIR_ENV in message
    assert str(cache_dir()) in message
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.url == MN04.url
    assert info.value.asset_filename == MN04.filename
    # EARMARK_OFFLINE forbids downloads even when the caller allows them.
    monkeypatch.setenv(OFFLINE_ENV, "1")
    with pytest.raises(AssetNotFoundError, match=OFFLINE_ENV):
        resolve(MN04, download=True)


def test_missing_model_dir_folder_is_skipped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_dir: Path
) -> None:
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "typo"))
    cached = _copy(model_dir / LABELS.filename, cache_dir())
    r = resolve(LABELS, download=False)
    assert (r.source, r.path) == ("cache", cached)


def test_verification_is_memoised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_dir: Path
) -> None:
    calls: list[Path] = []
    real = downloads.sha256_file

    def counting(path: str | Path) -> str:
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(downloads, "sha256_file", counting)
    copy = _copy(model_dir / LABELS.filename, tmp_path / "m")
    monkeypatch.setenv(MODEL_DIR_ENV, str(copy.parent))
    for _ in range(3):
        resolve(LABELS, download=False)
    assert len(calls) == 1
    # A changed file (new mtime) is hashed again, and a corruption is caught.
    _corrupt(copy)
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(AssetIntegrityError):
        resolve(LABELS, download=False)
    assert len(calls) == 2


def test_corrupted_cache_without_download_is_removed(model_dir: Path) -> None:
    cached = _copy(model_dir / LABELS.filename, cache_dir())
    _corrupt(cached)
    with pytest.raises(AssetIntegrityError, match="removed"):
        resolve(LABELS, download=False)
    assert not cached.exists()


def test_locate(monkeypatch: pytest.MonkeyPatch, model_dir: Path) -> None:
    assert locate(MN04) is None
    monkeypatch.setenv(MODEL_DIR_ENV, str(model_dir))
    found = locate(MN04)
    assert found is not None
    assert (found.source, found.path) == ("env", model_dir / MN04.filename)
    assert locate(MODELS["mn10_as"].checkpoint) is None


def test_list_models(monkeypatch: pytest.MonkeyPatch, model_dir: Path) -> None:
    rows = {row["name"]: row for row in list_models()}
    assert list(rows) == list(MODELS)
    assert all(row["where"] == "missing" for row in rows.values())
    monkeypatch.setenv(MODEL_DIR_ENV, str(model_dir))
    rows = {row["name"]: row for row in list_models(verify=True)}
    mn04 = rows["mn04_as"]
    assert mn04["where"] == f"env: {model_dir / MN04.filename}"
    assert mn04["verified"] is True
    assert mn04["sha256_pinned"] is True
    assert mn04["default"] is True
    assert mn04["size"] == MN04.size
    assert mn04["params"] == 983_599
    assert (mn04["width"], mn04["published_map"]) == (0.4, 0.432)
    mn10 = rows["mn10_as"]
    assert (mn10["where"], mn10["sha256_pinned"], mn10["verified"]) == ("missing", False, None)
    assert mn10["filename"] == "mn10_as_mAP_471.pt"


# --------------------------------------------------------------------------------------------
# resolve_model
# --------------------------------------------------------------------------------------------


def test_resolve_model_from_path(tmp_path: Path, model_dir: Path) -> None:
    spec, r = resolve_model(str(model_dir / MN04.filename))
    assert spec is MODELS["mn04_as"]
    assert (r.source, r.path) == ("explicit", model_dir / MN04.filename)

    renamed = _copy(model_dir / MN04.filename, tmp_path, "weights.pt")
    with pytest.raises(ValueError, match=re.escape("mn10_as_mAP_471.pt")):
        resolve_model(renamed)
    with pytest.raises(AssetNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "mn10_as_mAP_471.pt"))
    with pytest.raises(ValueError, match="Unknown model"):
        resolve_model("mn04")


def test_resolve_model_by_registered_filename(
    monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> None:
    monkeypatch.chdir(model_dir.parent)  # the bare name is not a file in the working directory
    monkeypatch.setenv(MODEL_DIR_ENV, str(model_dir))
    spec, r = resolve_model(MN04.filename)
    assert spec is MODELS["mn04_as"]
    assert r.source == "env"


def test_spec_from_filename() -> None:
    assert spec_from_filename("mn10_as_mAP_471.pt") is MODELS["mn10_as"]
    assert spec_from_filename("/x/y/mn40_as_ext_mAP_487.pt") is MODELS["mn40_as_ext"]
    alt = spec_from_filename("mn40_as_mAP_483(2).pt")
    assert (alt.name, alt.width, alt.published_map) == ("mn40_as", 4.0, 0.483)
    assert alt.params == MODELS["mn40_as"].params
    assert alt.checkpoint.sha256 is None
    assert spec_from_filename("mn40_as_no_im_pre_mAP_482.pt").width == 4.0
    for bad in ("mn10_as_hop_5_mAP_475.pt", "mn10_as_mels_64_mAP_461.pt", "dymn10_as.pt", "a.pt"):
        with pytest.raises(ValueError, match="Cannot tell"):
            spec_from_filename(bad)


# --------------------------------------------------------------------------------------------
# Downloads through a real loopback HTTP server
# --------------------------------------------------------------------------------------------


def test_download_success_writes_atomically_to_cache(server: Server) -> None:
    asset = _served_labels(server)
    seen: list[tuple[int, int | None]] = []
    r = resolve(asset, progress=lambda done, total: seen.append((done, total)))
    assert r.source == "download"
    assert r.path == cache_dir() / asset.filename
    assert sha256_file(r.path) == LABELS.sha256
    assert _leftovers(cache_dir()) == [asset.filename]  # no temp file left
    assert seen[0] == (0, LABELS.size)
    assert seen[-1] == (LABELS.size, LABELS.size)
    # A second resolve uses the cache without another request.
    n = len(server.requests)
    assert resolve(asset).source == "cache"
    assert len(server.requests) == n


def test_corrupted_cache_is_downloaded_again(server: Server, model_dir: Path) -> None:
    cached = _copy(model_dir / LABELS.filename, cache_dir())
    _corrupt(cached)
    r = resolve(_served_labels(server))
    assert r.source == "download"
    assert sha256_file(cached) == LABELS.sha256


def test_fetch_into_model_dir_downloads_verifies_and_repairs(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "models-volume"  # does not exist yet, as on a fresh volume
    monkeypatch.setenv(MODEL_DIR_ENV, str(folder))
    asset = _served_labels(server)
    r = fetch(asset)
    assert (r.source, r.path) == ("download", folder / asset.filename)
    assert sha256_file(r.path) == LABELS.sha256
    assert _leftovers(folder) == [asset.filename]
    n = len(server.requests)
    assert fetch(asset).source == "env"  # present and verified: no request
    assert len(server.requests) == n
    _corrupt(r.path)
    assert fetch(asset).source == "download"  # a bad copy is replaced
    assert sha256_file(r.path) == LABELS.sha256
    _corrupt(r.path)
    monkeypatch.setenv(OFFLINE_ENV, "1")
    with pytest.raises(AssetNotFoundError, match=str(folder)):
        fetch(asset)


def test_download_wrong_sha256_leaves_nothing(server: Server) -> None:
    wrong = "0" * 64
    asset = _served_labels(server, sha256=wrong)
    with pytest.raises(AssetIntegrityError) as info:
        resolve(asset)
    assert info.value.expected == wrong
    assert info.value.actual == LABELS.sha256
    assert _leftovers(cache_dir()) == []


def test_download_404(server: Server) -> None:
    asset = Asset("absent.csv", server.url("absent.csv"), LABELS.sha256, kind="labels")
    with pytest.raises(AssetNotFoundError) as info:
        resolve(asset)
    message = str(info.value)
    assert "404" in message
    assert asset.url in message
    assert MODEL_DIR_ENV in message
    assert isinstance(info.value.__cause__, urllib.error.HTTPError)
    assert _leftovers(cache_dir()) == []


def test_download_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as sock:  # find a free port, then close it: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dest = tmp_path / "dl" / LABELS.filename
    with pytest.raises(AssetNotFoundError) as info:
        download(f"http://127.0.0.1:{port}/{LABELS.filename}", dest, LABELS.sha256, timeout=5)
    assert isinstance(info.value.__cause__, urllib.error.URLError)
    assert re.search("refused", str(info.value), re.IGNORECASE)
    assert MODEL_DIR_ENV in str(info.value)
    assert _leftovers(dest.parent) == []


def test_download_interrupted_transfer_leaves_nothing(server: Server) -> None:
    asset = _served_labels(server, path="truncated/")
    with pytest.raises(AssetNotFoundError) as info:
        resolve(asset)
    assert info.value.__cause__ is not None
    assert "incomplete" in str(info.value).lower() or "IncompleteRead" in str(info.value)
    assert _leftovers(cache_dir()) == []


def test_download_timeout(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / "dl" / LABELS.filename
    with pytest.raises(AssetNotFoundError) as info:
        download(server.url("stall/" + LABELS.filename), dest, LABELS.sha256, timeout=0.5)
    assert info.value.__cause__ is not None
    assert _leftovers(dest.parent) == []


def test_unpinned_download_refused_unless_allowed(
    monkeypatch: pytest.MonkeyPatch, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    asset = _served_labels(server, sha256=None)
    with pytest.raises(UnpinnedAssetError) as info:
        resolve(asset)
    assert ALLOW_UNPINNED_ENV in str(info.value)
    assert MODEL_DIR_ENV in str(info.value)
    assert isinstance(info.value, AssetNotFoundError)
    assert server.requests == []  # refused before any network access
    assert _leftovers(cache_dir()) == []

    monkeypatch.setenv(ALLOW_UNPINNED_ENV, "1")
    with caplog.at_level(logging.WARNING, logger="earmark.assets"):
        r = resolve(asset)
    assert r.source == "download"
    assert sha256_file(r.path) == LABELS.sha256
    assert LABELS.sha256 in caplog.text


def test_unpinned_local_file_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_dir: Path
) -> None:
    asset = Asset(LABELS.filename, "http://127.0.0.1:9/none", None, kind="labels")
    folder = tmp_path / "models"
    _copy(model_dir / LABELS.filename, folder)
    monkeypatch.setenv(MODEL_DIR_ENV, str(folder))
    assert resolve(asset, download=False).source == "env"
