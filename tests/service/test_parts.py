"""Service parts without the model: upload sniffing, keys, rate limits, migrations, the API
in-process on SQLite (no worker: jobs stay queued)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from earmark.service.api import create_app
from earmark.service.db import Database, upgrade
from earmark.service.security import RateLimiter, UploadError, check_audio, sniff_format
from earmark.service.settings import Settings, SettingsError

KEY = "unit-secret-0123456789abcdef0123"


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("esc10_dog_1-100032-A.ogg", "ogg"),
        ("panns_R9_ZSCveAHg_7s.wav", "wav"),
        ("fmt_bus.opus", "opus"),
        ("fmt_testing.m4a", "mp4"),
        ("fmt_stereo_24bit.WAV", "wav"),
    ],
)
def test_sniffing_recognises_real_files(fixtures_dir: Path, name: str, fmt: str) -> None:
    head = (fixtures_dir / name).read_bytes()[:4096]
    assert sniff_format(head) == fmt


def test_sniffing_rejects_what_is_not_audio(fixtures_dir: Path, tmp_path: Path) -> None:
    assert sniff_format((fixtures_dir / "fixtures.csv").read_bytes()[:4096]) is None
    assert sniff_format(b"%PDF-1.7\n" + b"0" * 100) is None
    fake = tmp_path / "song.mp3"
    fake.write_bytes(b"<html><body>not a song</body></html>" * 10)
    with pytest.raises(UploadError) as info:
        check_audio(fake, "song.mp3", 3600)
    assert info.value.status == 415 and "song.mp3" in str(info.value)
    # real audio over the duration limit
    with pytest.raises(UploadError) as info:
        check_audio(fixtures_dir / "esc10_dog_1-100032-A.ogg", "dog.ogg", 2)
    assert info.value.status == 413 and "limit of 2 s" in str(info.value)


def test_settings_from_environment(tmp_path: Path) -> None:
    settings = Settings.from_env({"EARMARK_STORAGE_DIR": str(tmp_path)})
    assert settings.embedded and settings.database_url == f"sqlite:///{tmp_path}/earmark.db"
    assert settings.auth == "keys" and settings.cors_origins == ()
    assert settings.visibility_timeout > settings.task_time_limit
    env = {"EARMARK_STORAGE_DIR": str(tmp_path), "EARMARK_BOOTSTRAP_KEYS": "ci:" + KEY}
    assert Settings.from_env(env).bootstrap_keys == (("ci", KEY),)
    with pytest.raises(SettingsError, match="16 characters"):
        Settings.from_env({"EARMARK_BOOTSTRAP_KEYS": "ci:short"})
    with pytest.raises(SettingsError, match="EARMARK_AUTH"):
        Settings.from_env({"EARMARK_AUTH": "maybe"})


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_match_the_models(tmp_path: Path, backend: str, request) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from earmark.service.models import Base

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
    else:  # a fresh database in the session's PostgreSQL server
        import psycopg

        server = request.getfixturevalue("postgres_url")
        port = server.rsplit(":", 1)[1].split("/")[0]
        dsn = f"host=127.0.0.1 port={port} user=earmark dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS migrations_check")
            conn.execute("CREATE DATABASE migrations_check")
        url = server.rsplit("/", 1)[0] + "/migrations_check"
    upgrade(url)
    db = Database(url)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    db.dispose()
    assert diff == []


def test_local_rate_limit() -> None:
    limiter = RateLimiter(3)
    assert [limiter.hit("k")[0] for _ in range(4)] == [True, True, True, False]
    assert limiter.hit("other")[0]


def test_redis_rate_limit_is_shared(redis_url: str) -> None:
    a, b = RateLimiter(2, redis_url), RateLimiter(2, redis_url)
    assert a.hit("shared")[0] and b.hit("shared")[0]
    allowed, retry_after = a.hit("shared")
    assert not allowed and 0 < retry_after <= 60


def make_client(tmp_path: Path, **overrides) -> TestClient:
    env = {
        "EARMARK_STORAGE_DIR": str(tmp_path),
        "EARMARK_BOOTSTRAP_KEYS": f"unit:{KEY}",
        **overrides,
    }
    return TestClient(create_app(Settings.from_env(env)))


def test_keys_limits_cors_and_file_names_in_process(tmp_path: Path, fixtures_dir: Path) -> None:
    body = (fixtures_dir / "esc10_dog_1-100032-A.ogg").read_bytes()
    with make_client(tmp_path, EARMARK_RATE_LIMIT="6") as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/v1/jobs").status_code == 401
        auth = {"X-API-Key": KEY, "Origin": "https://elsewhere.example"}
        response = http.post(
            "/v1/jobs", headers=auth, files={"files": ("../../etc/passwd.ogg", body)}
        )
        assert response.status_code == 201, response.text
        assert "access-control-allow-origin" not in response.headers  # CORS off by default
        job = response.json()["id"]
        status = http.get(f"/v1/jobs/{job}", headers=auth).json()
        assert status["state"] == "queued" and status["files"][0]["name"] == "passwd.ogg"
        stored = list((tmp_path / "jobs" / job / "audio").iterdir())
        assert [p.name for p in stored] == ["000.ogg"]
        assert not (tmp_path / "etc").exists()
        codes = [http.get("/v1/jobs", headers=auth).status_code for _ in range(6)]
        assert codes[-1] == 429 and codes[0] == 200
        limited = http.get("/v1/jobs", headers=auth)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) <= 60


def test_open_mode_only_serves_loopback(tmp_path: Path) -> None:
    with make_client(tmp_path, EARMARK_AUTH="none") as http:  # TestClient's host is not loopback
        response = http.get("/v1/jobs")
        assert response.status_code == 403 and "loopback" in response.json()["detail"]


def test_db_keys_and_worker_check_commands(
    tmp_path: Path, redis_url: str, model_dir: Path, monkeypatch, capsys
) -> None:
    import json

    from earmark.cli import main

    monkeypatch.setenv("EARMARK_STORAGE_DIR", str(tmp_path))
    monkeypatch.setenv("EARMARK_MODEL_DIR", str(model_dir))
    monkeypatch.delenv("EARMARK_DATABASE_URL", raising=False)
    monkeypatch.delenv("EARMARK_BROKER_URL", raising=False)
    assert main(["db", "upgrade"]) == 0
    assert "at revision 0002" in capsys.readouterr().out
    assert main(["keys", "create", "x" * 101]) == 2
    assert "1 to 100 characters" in capsys.readouterr().err
    assert main(["keys", "create", "carol", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["key"].startswith("em_") and len(created["key"]) > 40
    assert main(["keys", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [
        {"id": created["id"], "name": "carol", "prefix": created["key"][:8], "admin": False,
         "revoked": False}
    ]  # fmt: skip
    assert created["key"] not in (tmp_path / "earmark.db").read_bytes().decode("latin-1")
    assert main(["keys", "revoke", str(created["id"])]) == 0
    with make_client(tmp_path) as http:
        refused = http.get("/v1/jobs", headers={"X-API-Key": created["key"]})
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert main(["keys", "revoke", "999"]) == 2
    # the worker probe: fails without a broker, passes with one
    assert main(["worker", "--check"]) == 1
    assert "EARMARK_BROKER_URL" in capsys.readouterr().err
    monkeypatch.setenv("EARMARK_BROKER_URL", redis_url)
    assert main(["worker", "--check"]) == 0


def test_readiness_reports_unreachable_database_and_broker(tmp_path: Path) -> None:
    from servers import free_port

    closed = free_port()  # nothing listens there
    with make_client(
        tmp_path,
        EARMARK_AUTO_MIGRATE="0",
        EARMARK_DATABASE_URL=f"postgresql+psycopg://earmark@127.0.0.1:{closed}/earmark",
        EARMARK_BROKER_URL=f"redis://127.0.0.1:{closed}/0",
    ) as http:
        assert http.get("/healthz").status_code == 200  # liveness has no dependencies
        ready = http.get("/readyz")
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks["database"].startswith("unreachable")
        assert checks["broker"].startswith("unreachable")
        down = http.get("/v1/jobs", headers={"X-API-Key": KEY})
        assert down.status_code == 503 and "database is unavailable" in down.json()["detail"]


def test_abandoned_uploads_are_swept_at_start(tmp_path: Path) -> None:
    import os

    spool = tmp_path / "tmp"
    spool.mkdir()
    old, fresh = spool / "tmpold.upload", spool / "tmpfresh.upload"
    old.write_bytes(b"\0" * 1024)
    fresh.write_bytes(b"\0" * 1024)
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    with make_client(tmp_path) as http:
        assert http.get("/healthz").status_code == 200
        deadline = time.monotonic() + 30
        while old.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    assert not old.exists()  # an API process died while receiving it, long ago
    assert fresh.exists()  # another process may still be receiving this one


def test_unavailable_model_is_refused_by_name(tmp_path: Path, fixtures_dir: Path) -> None:
    body = (fixtures_dir / "esc10_dog_1-100032-A.ogg").read_bytes()
    with make_client(tmp_path) as http:
        auth = {"X-API-Key": KEY}
        for model, words in (("mn10_as", "file is missing"), ("nope", "unknown")):
            response = http.post(
                "/v1/jobs", headers=auth, files={"files": ("d.ogg", body)}, data={"model": model}
            )
            assert response.status_code == 422, response.text
            assert model in response.json()["detail"] and words in response.json()["detail"]


def test_browser_headers_and_host_origin_checks(tmp_path: Path) -> None:
    with make_client(tmp_path) as http:
        page = http.get("/")
        assert page.status_code == 200
        for response in (page, http.get("/v1/config"), http.get("/healthz")):
            csp = response.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
    # without authentication: only loopback host names (DNS rebinding gets nothing)
    with make_client(tmp_path, EARMARK_AUTH="none") as http:
        # and a page on another site cannot make a visitor's browser submit jobs
        forged = http.post(
            "/v1/jobs",
            headers={"Host": "localhost:8000", "Origin": "https://evil.example"},
            files={"files": ("a.ogg", b"OggS")},
        )
        assert forged.status_code == 403 and "cross-site" in forged.json()["detail"]
        rebound = http.get("/v1/config", headers={"Host": "attacker.example"})
        assert rebound.status_code == 403 and "EARMARK_ALLOWED_HOSTS" in rebound.json()["detail"]
        assert http.get("/v1/config", headers={"Host": "localhost:8000"}).status_code == 200
        assert http.get("/v1/config", headers={"Host": "127.0.0.1"}).status_code == 200
    with make_client(tmp_path, EARMARK_AUTH="none", EARMARK_ALLOWED_HOSTS="box.lan") as http:
        assert http.get("/v1/config", headers={"Host": "box.lan:8000"}).status_code == 200


def test_report_policy_allows_exactly_its_script(tmp_path: Path) -> None:
    import base64
    import hashlib
    from importlib import resources

    from earmark.report import script_hashes

    script = resources.files("earmark").joinpath("data", "report", "report.js").read_text()
    digest = hashlib.sha256(script.encode()).digest()
    assert script_hashes() == [f"'sha256-{base64.b64encode(digest).decode()}'"]
    from earmark.service.security import browser_headers

    csp = browser_headers("/v1/jobs/abc/report", script_hashes())["Content-Security-Policy"]
    assert "default-src 'none'" in csp and script_hashes()[0] in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]


def test_full_storage_gets_507_and_readiness_says_so(tmp_path: Path, fixtures_dir: Path) -> None:
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    storage = tmp_path / "storage"
    storage.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(storage)], check=True)
    try:
        big = (fixtures_dir / "pyannote_sample.wav").read_bytes() * 4  # about 3.8 MB
        with make_client(storage, EARMARK_MIN_FREE_MB="1") as http:
            assert http.get("/readyz").json()["checks"]["storage"] == "ok"
            response = http.post(
                "/v1/jobs", headers={"X-API-Key": KEY}, files={"files": ("a.wav", big)}
            )
            assert response.status_code == 507, response.text
            assert "storage" in response.json()["detail"]
            assert not list((storage / "tmp").iterdir())  # the partial upload is gone
            (storage / "filler").write_bytes(b"\0" * (2 * 1024 * 1024 + 512 * 1024))
            ready = http.get("/readyz")
            assert (
                ready.status_code == 503
                and "EARMARK_MIN_FREE_MB" in ready.json()["checks"]["storage"]
            )
            small = (fixtures_dir / "esc10_dog_1-100032-A.ogg").read_bytes()
            refused = http.post(
                "/v1/jobs", headers={"X-API-Key": KEY}, files={"files": ("d.ogg", small)}
            )
            assert refused.status_code == 507
    finally:
        subprocess.run(["umount", "-l", str(storage)], check=True)


def test_answers_agree_with_the_schema(tmp_path: Path) -> None:
    with make_client(tmp_path) as http:
        auth = {"X-API-Key": KEY}
        invalid = http.post("/v1/jobs", headers=auth, data={"threshold": "2"})
        assert invalid.status_code == 422
        body = invalid.json()
        assert isinstance(body["detail"], str) and "threshold" in body["detail"]
        assert "files" in body["detail"] and isinstance(body["errors"], list)
        wrong = http.put("/v1/jobs/" + "0" * 32, headers=auth)
        assert wrong.status_code == 405
        assert set(wrong.headers["allow"].split(", ")) == {"DELETE", "GET", "HEAD"}
        schema = http.get("/openapi.json").json()
        text = json.dumps(schema["components"]["schemas"]["Body_submit_v1_jobs_post"])
        assert '"null"' not in text  # a form field is absent or has a value, never null
        answer = schema["paths"]["/v1/jobs"]["post"]["responses"]["422"]
        assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/Problem")


def test_chunked_upload_over_the_limit_gets_413(tmp_path: Path, fixtures_dir: Path) -> None:
    wav = (fixtures_dir / "pyannote_sample.wav").read_bytes()  # about 1 MB
    boundary = "b0undary"

    def body():  # no Content-Length: sent chunked, the size is known only while reading
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.wav"'
            "\r\nContent-Type: audio/wav\r\n\r\n"
        ).encode()
        for _ in range(3):
            yield wav
        yield f"\r\n--{boundary}--\r\n".encode()

    with make_client(tmp_path, EARMARK_MAX_UPLOAD_MB="1") as http:
        response = http.post(
            "/v1/jobs",
            headers={"X-API-Key": KEY, "Content-Type": f"multipart/form-data; boundary={boundary}"},
            content=body(),
        )
        assert response.status_code == 413, response.text
        assert "limit of 1 MB" in response.json()["detail"]
    spool = tmp_path / "tmp"
    assert not spool.exists() or not list(spool.iterdir())  # nothing left half-received


def test_docs_pin_swagger_ui_with_integrity(tmp_path: Path) -> None:
    import re

    with make_client(tmp_path) as http:
        page = http.get("/docs")
        assert page.status_code == 200
        external = re.findall(r'(?:src|href)="(https://[^"]+)"', page.text)
        assert len(external) == 2 and all("swagger-ui-dist@5.35.0/" in u for u in external)
        assert page.text.count('integrity="sha384-') == 2
        assert "<script>" not in page.text  # no inline script: the CSP allows none
        assert (
            "'unsafe-inline'"
            not in page.headers["content-security-policy"].split("script-src")[1].split(";")[0]
        )
        assert http.get("/static/docs.js").status_code == 200
        assert http.get("/redoc").status_code == 404


def test_the_page_takes_the_cli_defaults(tmp_path: Path) -> None:
    from earmark.events import DEFAULT_MERGE_GAP, DEFAULT_THRESHOLD

    with make_client(tmp_path) as http:
        defaults = http.get("/v1/config").json()["defaults"]
        page = http.get("/").text
    assert defaults["threshold"] == DEFAULT_THRESHOLD and defaults["merge_gap"] == DEFAULT_MERGE_GAP
    # the page has no defaults of its own: app.js fills the fields from /v1/config
    for field in ("threshold", "min_duration", "merge_gap"):
        tag = page.split(f'id="{field}"')[1].split(">")[0]
        assert "value=" not in tag, field
