"""Reviewing a job's detections through the service: a key sees and edits only its own jobs,
every decision is saved with the key that made it and logged for audit, conflicts between two
clients warn (the later wins), and the exports match (embedded mode, real audio)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from servers import ALICE, BOB, Server, stop, wait_job
from test_web import chromium_page, embedded_env

from earmark.evaluation import load_reference

pytestmark = pytest.mark.slow


def test_review_per_key_with_audit(
    model_dir: Path, fixtures_dir: Path, tmp_path: Path, artifacts: Path
) -> None:
    env = embedded_env(
        tmp_path / "store",
        model_dir,
        EARMARK_AUTH="keys",
        EARMARK_BOOTSTRAP_KEYS=f"alice:{ALICE},bob:{BOB}",
    )
    log = artifacts / "review.log"
    server = Server(env, [], log)
    try:
        alice = httpx.Client(base_url=server.url, timeout=120, headers={"X-API-Key": ALICE})
        bob = httpx.Client(base_url=server.url, timeout=120, headers={"X-API-Key": BOB})
        body = (fixtures_dir / "scaper_soundscape_20200501_22050.wav").read_bytes()
        job = alice.post("/v1/jobs", files={"files": ("scape.wav", body)}).json()
        assert wait_job(alice, job["id"])["state"] == "done"
        url = f"/v1/jobs/{job['id']}/review"

        state = alice.get(url).json()
        assert state["run"] == job["id"] and state["counts"]["reviewed"] == 0
        first, second = state["order"][:2]
        assert {i["id"] for i in state["items"]} >= {first, second}

        # another key sees nothing of it and cannot change it
        assert bob.get(url).status_code == 404
        assert bob.post(url, json={"op": "accept", "id": first}).status_code == 404
        assert bob.get(f"{url}/labels.tsv").status_code == 404

        answer = alice.post(url, json={"op": "accept", "id": first, "base": 0})
        assert answer.status_code == 200 and answer.json()["warning"] is None
        answer = alice.post(url, json={"op": "reject", "id": second, "base": 0})
        assert answer.json()["item"]["status"] == "rejected"
        # a second client that loaded the job before: last writer wins, with a warning
        late = alice.post(url, json={"op": "relabel", "id": second, "label": "Siren", "base": 0})
        assert late.status_code == 200 and "replaced" in late.json()["warning"]
        added = alice.post(
            url, json={"op": "add", "file": 0, "onset": 0.5, "offset": 1.0, "label": "Clap"}
        )
        assert added.json()["item"]["status"] == "added"
        bad = alice.post(url, json={"op": "add", "file": 5, "onset": 0, "offset": 1, "label": "X"})
        assert bad.status_code == 400 and "no file 5" in bad.text
        bad = alice.post(url, json={"op": "accept", "id": "d0"})
        assert bad.status_code == 400 and "not an event" in bad.text

        state = alice.get(url).json()
        assert state["counts"]["reviewed"] == 3
        labels = alice.get(f"{url}/labels.tsv")
        assert labels.status_code == 200
        (tmp_path / "labels.tsv").write_text(labels.text)
        events = load_reference(tmp_path / "labels.tsv")
        assert sorted(e.label for e in events) == sorted(
            ["Clap", "Siren", next(i["label"] for i in state["items"] if i["id"] == first)]
        )
        journal = alice.get(f"{url}/journal.jsonl").text.splitlines()
        assert len(journal) == 4 and all('"user": "alice (key ' in line for line in journal)

        # sound and spectrogram of a stretch, for the owner only
        snippet = {"file": 0, "start": 1.0, "end": 3.0}
        wav = alice.get(f"{url}/snippet", params=snippet)
        assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
        png = alice.get(f"{url}/snippet", params={**snippet, "kind": "spectrogram"})
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
        assert bob.get(f"{url}/snippet", params=snippet).status_code == 404

        # the same review page, served for the job, with the key the service page keeps
        with chromium_page(viewport={"width": 1280, "height": 900}) as page:
            page.goto(server.url + "/")
            page.evaluate(f"localStorage.setItem('earmark.key', '{ALICE}')")
            page.goto(f"{server.url}/review/?job={job['id']}")
            page.wait_for_selector("#card[data-id^='d']")
            ident = page.get_attribute("#card", "data-id")
            assert ident not in (first, second)  # the first unreviewed one
            page.keyboard.press("r")
            page.wait_for_selector(f'#queue li[data-id="{ident}"][data-status="rejected"]')
            page.wait_for_function("document.querySelector('#spec').naturalWidth > 0")
            page.screenshot(path=str(artifacts / "review-job-page.png"), full_page=True)
        assert next(i for i in alice.get(url).json()["items"] if i["id"] == ident)["status"] == (
            "rejected"
        )
    finally:
        stop(server.proc)
    text = log.read_text()
    assert f"earmark audit: job {job['id']}: accept {first} by alice" in text
    assert "conflict:" in text
