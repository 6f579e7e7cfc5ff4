# ruff: noqa: F811  (pytest fixtures imported from review_fixtures)
"""``earmark review`` on the command line and over HTTP, and ``earmark train --from-reviews``:
clear errors naming the file and cause, never a traceback, never a lost decision."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from review_fixtures import detected_run, review_run  # noqa: F401  (fixtures)

from earmark.cli import main
from earmark.review.run import load_run
from earmark.review.server import ReviewApp, make_server
from earmark.review.store import ReviewStore


def test_export_warns_about_a_corrupt_journal_and_strict_stops(review_run: Path, capsys) -> None:
    run = load_run(review_run)
    store = ReviewStore(run)
    store.decide({"op": "accept", "id": run.detections[0].id})
    (review_run / "reviews" / "labels.tsv").unlink()  # e.g. a crash before the export
    with open(store.journal, "a", encoding="utf-8") as fh:
        fh.write("not json\n")
    assert main(["review", str(review_run), "--export"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["reviewed"] == 1
    assert f"{store.journal}:2: unreadable line ignored" in err
    assert (review_run / "reviews" / "labels.tsv").is_file()  # rebuilt from the journal
    assert main(["review", str(review_run), "--export", "--strict"]) == 2
    assert "--strict stops" in capsys.readouterr().err


def test_not_a_run_folder_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["review", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "no such run folder" in err and "Traceback" not in err
    (tmp_path / "events.json").write_text("{oops", encoding="utf-8")
    assert main(["review", str(tmp_path), "--export"]) == 2
    assert f"{tmp_path / 'events.json'}: unreadable events" in capsys.readouterr().err


def test_compare_with_another_run(review_run: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "other"
    other.mkdir()
    data = json.loads((review_run / "events.json").read_text())
    first, second = data["events"][0], data["events"][1]
    data["events"] = [*data["events"][2:], {**second, "label": "Something else"}]
    data["events"].append({**first, "onset": first["onset"] + 40, "offset": first["offset"] + 40})
    (other / "events.json").write_text(json.dumps(data))
    assert main(["review", str(review_run), "--compare", str(other), "--no-serve"]) == 0
    summary = json.loads(capsys.readouterr().out)["compare"]
    assert [r["label"] for r in summary["removed"]] == [first["label"]]
    assert [(r["label"], r["new_label"]) for r in summary["relabelled"]] == [
        (second["label"], "Something else")
    ]
    assert len(summary["new"]) == 1 and summary["unchanged"] == len(data["events"]) - 2


def test_http_errors_are_json_and_nothing_is_lost(review_run: Path) -> None:
    run = load_run(review_run)
    server = make_server(ReviewApp(ReviewStore(run), "web"), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def post(body: object) -> tuple[int, dict]:
        request = urllib.request.Request(
            base + "/api/decide", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        ident = run.detections[0].id
        assert post({"op": "accept", "id": ident, "base": 0})[0] == 200
        status, body = post({"op": "add", "file": 99, "onset": 0, "offset": 1, "label": "X"})
        assert status == 400 and "not a file of this run" in body["error"]
        status, body = post(["accept"])
        assert status == 400 and "JSON object" in body["error"]
        # a second tab that loaded version 0 relabels: it wins, and is told whose change it replaced
        status, body = post({"op": "relabel", "id": ident, "label": "Cat", "base": 0})
        assert status == 200 and "web" in body["warning"] and body["item"]["label"] == "Cat"
        with urllib.request.urlopen(base + "/api/state") as answer:
            state = json.loads(answer.read())
        assert state["counts"]["reviewed"] == 1
        assert next(i for i in state["items"] if i["id"] == ident)["version"] == 2
        with pytest.raises(urllib.error.HTTPError) as missing_file:
            urllib.request.urlopen(base + "/api/audio?file=7&start=0&end=1")
        assert missing_file.value.code == 400
    finally:
        server.shutdown()
        server.server_close()


def test_train_from_reviews_reads_the_reviewed_stretches(review_run: Path, capsys) -> None:
    from earmark.custom.detector import DetectorConfig, training_recordings

    run = load_run(review_run)
    store = ReviewStore(run)
    siren = next(d for d in run.detections if "siren" in d.label.lower())
    store.decide({"op": "relabel", "id": siren.id, "label": "Siren"})
    other = next(d for d in run.detections if d.id != siren.id and d.file == siren.file)
    store.decide({"op": "reject", "id": other.id})
    recordings, description = training_recordings(
        [], 3, ["Siren", "Dog"], DetectorConfig(), reviews=[review_run]
    )
    assert description["labelled_recordings"] == len(recordings) >= 1
    events = [e for r in recordings for e in r.events]
    assert [e.label for e in events] == ["Siren"]
    rec = next(r for r in recordings if r.events)
    rows = (review_run / "reviews" / "regions.tsv").read_text().splitlines()[1:]
    regions = [(float(a), float(b)) for _f, a, b in (r.split("\t") for r in rows)]
    start, end = next((a, b) for a, b in regions if a <= siren.onset < b)
    assert start + rec.events[0].onset == pytest.approx(siren.onset, abs=0.01)
    assert start + rec.events[0].offset == pytest.approx(siren.offset, abs=0.01)
    assert len(rec.audio) / 32000 == pytest.approx(end - start, abs=0.01)
    assert end == pytest.approx(min(10.0, siren.offset + 1.0), abs=0.35)  # cut short of others


def test_train_from_a_run_without_reviews_says_what_to_do(
    review_run: Path, shared_dir: Path, tmp_path: Path, capsys
) -> None:
    meta = shared_dir / "audio" / "esc10" / "esc10_meta.csv"
    code = main(
        ["train", str(meta), "--from-reviews", str(review_run), "-o", str(tmp_path / "m"), "-q"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"{review_run}: no reviews" in err and f"earmark review {review_run}" in err
    assert "Traceback" not in err and not (tmp_path / "m").exists()


def test_retrain_from_the_page_reports_a_failed_training(review_run: Path, tmp_path: Path) -> None:
    import time

    from earmark.review.retrain import Retrainer, train_command
    from earmark.review.store import ReviewError

    with pytest.raises(ReviewError, match="earmark train"):
        train_command("detect x.wav -o out")
    with pytest.raises(ReviewError, match="-o MODEL_DIR"):
        train_command("earmark train clips.csv")
    assert train_command("earmark train c.csv -o m --negatives")[1] == Path("m")

    store = ReviewStore(load_run(review_run))
    missing_data = tmp_path / "no-such-clips.csv"
    retrainer = Retrainer(store, f"train {missing_data} -o {tmp_path / 'model'} -q")
    with pytest.raises(ReviewError, match="review some detections first"):
        retrainer.start()
    store.decide({"op": "accept", "id": store.run.detections[0].id})
    server = make_server(ReviewApp(store, "web", None, retrainer), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        request = urllib.request.Request(base + "/api/retrain", b"{}", method="POST")
        with urllib.request.urlopen(request) as answer:
            assert json.loads(answer.read())["state"] == "training"
        deadline = time.monotonic() + 120
        while True:
            with urllib.request.urlopen(base + "/api/retrain") as answer:
                status = json.loads(answer.read())
            if status["state"] not in ("training", "detecting") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status["state"] == "failed", status
        assert "earmark train failed" in status["error"] and str(missing_data) in status["error"]
        assert (review_run / "reviews" / "retrain.log").is_file()
        with urllib.request.urlopen(base + "/api/state") as answer:
            assert json.loads(answer.read())["retrain"] is True
    finally:
        server.shutdown()
        server.server_close()
