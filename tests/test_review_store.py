# ruff: noqa: F811  (pytest fixtures imported from review_fixtures)
"""The review store on a real run: decisions journalled and kept, exports that read back as
training labels, bad input (a corrupt journal line, a label for a missing file, two tabs
editing one event) reported clearly and never losing a decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from review_fixtures import detected_run, review_run  # noqa: F401  (fixtures)

from earmark.custom.strong_labels import find_labelled_recordings, load_reviewed, read_label_file
from earmark.review.queue import priorities, random_order, uncertainty
from earmark.review.run import RunError, load_run
from earmark.review.store import ReviewError, ReviewStore


def first_events(run_dir: Path, n: int = 4):
    run = load_run(run_dir)
    assert len(run.detections) >= n, [d.label for d in run.detections]
    return run, run.detections[:n]


def test_decisions_survive_a_reload_and_export(review_run: Path) -> None:
    run, (a, b, c, d) = first_events(review_run)
    store = ReviewStore(run)
    store.decide({"op": "accept", "id": a.id, "base": 0}, user="ann")
    store.decide({"op": "reject", "id": b.id, "base": 0}, user="ann")
    store.decide({"op": "relabel", "id": c.id, "label": "Dog bark", "base": 0}, user="bob")
    store.decide(
        {"op": "bounds", "id": d.id, "onset": d.onset + 0.1, "offset": d.offset - 0.05, "base": 0}
    )
    dog = next(f for f in run.files if "dog" in f)
    added, _ = store.decide(
        {"op": "add", "file": dog, "onset": 0.5, "offset": 1.5, "label": "Dog"}, user="ann"
    )

    again = ReviewStore(load_run(review_run))  # a reload: the journal rebuilds the state
    assert again.warnings == []
    items = again.items
    assert (items[a.id].status, items[a.id].user) == ("accepted", "ann")
    assert items[b.id].status == "rejected"
    assert (items[c.id].status, items[c.id].label) == ("corrected", "Dog bark")
    assert items[d.id].onset == pytest.approx(d.onset + 0.1, abs=1e-3)
    assert items[added.id].status == "added"
    assert again.counts()["reviewed"] == 5

    # the exports read back through earmark train's own strong-label reader
    folder = review_run / "reviews"
    positives = read_label_file(folder / "labels.tsv")
    got = sorted((Path(e.file).name, e.label, round(e.onset, 3)) for e in positives)
    want = sorted(
        (Path(i.file).name, i.label, round(i.onset, 3))
        for i in items.values()
        if i.status in ("accepted", "corrected", "added")
    )
    assert got == want
    negatives = read_label_file(folder / "negatives.tsv")
    assert [(e.label, round(e.onset, 3)) for e in negatives] == [(b.label, round(b.onset, 3))]
    recordings = find_labelled_recordings(folder / "labels.tsv")  # absolute file names resolve
    kept = {Path(i.file).name for i in items.values() if i.status not in ("pending", "rejected")}
    assert {r.audio.name for r in recordings} == kept
    for sub, suffix in (("audacity", ".txt"), ("raven", ".selections.txt")):
        stem = Path(dog).stem
        back = read_label_file(folder / sub / f"{stem}{suffix}", Path(dog).name)
        assert [(e.label, e.onset, e.offset) for e in back] == [("Dog", 0.5, 1.5)]
    # --from-reviews: stretches of audio with the positives inside as events
    found, notes = load_reviewed([review_run], ["Dog", "Dog bark"])
    events = [e for rec, _ in found for e in rec.events]
    assert {e.label for e in events} == {"Dog", "Dog bark"}
    assert any("left out" in n for n in notes)  # the accepted AudioSet class is not trained
    assert all(len(audio) >= 16000 for _, audio in found)


def test_a_corrupt_line_is_named_and_the_rest_kept(review_run: Path) -> None:
    run, (a, b, *_) = first_events(review_run)
    store = ReviewStore(run)
    store.decide({"op": "accept", "id": a.id})
    with open(store.journal, "a", encoding="utf-8") as fh:
        fh.write('{"op": "reject", "id": "trunc')  # a torn write: no newline, bad JSON
    again = ReviewStore(load_run(review_run))
    assert again.items[a.id].status == "accepted"
    again.decide({"op": "reject", "id": b.id})  # appending after the torn line
    third = ReviewStore(load_run(review_run))
    assert third.items[a.id].status == "accepted" and third.items[b.id].status == "rejected"
    assert len(third.warnings) == 1
    assert f"{store.journal}:2: unreadable line" in third.warnings[0]
    lines = store.journal.read_text(encoding="utf-8").splitlines()
    assert lines[1] == '{"op": "reject", "id": "trunc'  # the bad line is still there
    assert len(lines) == 3


def test_bad_decisions_are_refused_with_the_cause(review_run: Path) -> None:
    run, (a, *_) = first_events(review_run)
    store = ReviewStore(run)
    with pytest.raises(ReviewError, match="not a file of the run"):
        store.decide({"op": "add", "file": "/no/such.wav", "onset": 0, "offset": 1, "label": "X"})
    with pytest.raises(ReviewError, match="not an event of the run"):
        store.decide({"op": "accept", "id": "d000"})
    with pytest.raises(ReviewError, match="bad bounds"):
        store.decide({"op": "bounds", "id": a.id, "onset": 2.0, "offset": 1.0})
    with pytest.raises(ReviewError, match="non-empty"):
        store.decide({"op": "relabel", "id": a.id, "label": "  "})
    assert not store.journal.exists() or store.journal.read_text() == ""
    with pytest.raises(RunError, match=r"no events\.json"):
        load_run(review_run / "files")


def test_two_tabs_last_writer_wins_with_a_warning(review_run: Path) -> None:
    run, (a, *_) = first_events(review_run)
    tab1, tab2 = ReviewStore(run), ReviewStore(load_run(review_run))  # e.g. two servers
    _, warning = tab1.decide({"op": "relabel", "id": a.id, "label": "Cat", "base": 0}, "ann")
    assert warning is None
    item, warning = tab2.decide({"op": "relabel", "id": a.id, "label": "Cow", "base": 0}, "bob")
    assert warning is not None and "ann" in warning and "replaced" in warning
    assert item.label == "Cow" and item.version == 2
    again = ReviewStore(load_run(review_run))
    assert again.items[a.id].label == "Cow"
    ops = [json.loads(x)["label"] for x in again.journal.read_text().splitlines()]
    assert ops == ["Cat", "Cow"]  # both decisions kept in the journal


def test_queue_puts_uncertain_and_rare_first(review_run: Path) -> None:
    run = load_run(review_run)
    order = priorities(run.detections, {})
    assert len(order) == len(run.detections)
    assert [p.priority for p in order] == sorted((p.priority for p in order), reverse=True)
    assert uncertainty(0.151, 0.15) > uncertainty(0.9, 0.15)
    top = {p.id: p for p in order}
    label = run.detections[0].label
    later = {p.id: p for p in priorities(run.detections, {label: 10})}
    assert later[run.detections[0].id].rarity < top[run.detections[0].id].rarity
    assert sorted(random_order(run.detections, 1)) == sorted(d.id for d in run.detections)


def test_reviews_outlive_a_new_detection_of_the_run(review_run: Path) -> None:
    run, (a, b, *_) = first_events(review_run)
    store = ReviewStore(run)
    store.decide({"op": "accept", "id": a.id})
    store.decide({"op": "relabel", "id": b.id, "label": "Cat"})
    data = json.loads((review_run / "events.json").read_text())
    data["events"] = data["events"][2:]  # e.g. detect --overwrite with other options
    (review_run / "events.json").write_text(json.dumps(data))
    again = ReviewStore(load_run(review_run))
    assert again.orphans == {a.id, b.id}
    assert "no longer detections" in again.warnings[0] and len(again.warnings) == 1
    assert (again.items[a.id].status, again.items[a.id].onset) == ("accepted", a.onset)
    assert (again.items[b.id].status, again.items[b.id].label) == ("corrected", "Cat")
    again.save()
    labels = {(e.label, e.onset) for e in read_label_file(review_run / "reviews" / "labels.tsv")}
    assert {(a.label, round(a.onset, 3)), ("Cat", round(b.onset, 3))} <= labels


def test_disagreement_between_audioset_and_custom_classes() -> None:
    from earmark.review.queue import disagreements
    from earmark.review.run import Detection

    def det(ident: str, label: str, onset: float, custom: bool, alts=()) -> Detection:
        return Detection(ident, "a.wav", label, onset, onset + 1.0, 0.5, 0.3, custom, alts)

    found = [
        det("c1", "Dog bark", 0.0, True),  # the AudioSet model hears something there too
        det("a1", "Dog", 0.2, False),
        det("c2", "Rooster", 5.0, True),  # nothing from AudioSet: they disagree
        det("a2", "Speech", 9.0, False, (("Conversation", 0.45),)),  # no custom event either
    ]
    got = disagreements(found)
    assert got == {"c1": 0.0, "a1": 0.0, "c2": 1.0, "a2": 1.0}
    only_audioset = disagreements([d for d in found if not d.custom])
    assert only_audioset == {"a1": 0.0, "a2": 0.5}  # a close alternative label
    order = [p.id for p in priorities(found, {})]
    assert order.index("c2") < order.index("c1")
