# ruff: noqa: F811  (pytest fixtures imported from review_fixtures)
"""The review page in Chromium (Playwright), driven with the keyboard and the mouse: accept,
reject, relabel, move a boundary with the keys, drag one, label a stretch in free mode; then a
reload finds every change, on the page and on disk, and the exports say the same."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from chromium import chromium_page
from review_fixtures import detected_run, review_run  # noqa: F401  (fixtures)

from earmark.custom.strong_labels import read_label_file
from earmark.review.run import load_run
from earmark.review.server import ReviewApp, make_server
from earmark.review.store import ReviewStore

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "review"


@pytest.fixture
def served(review_run: Path) -> Iterator[str]:
    """``earmark review``'s server over a fresh run, on a free port."""
    server = make_server(ReviewApp(ReviewStore(load_run(review_run)), "tester"), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def page() -> Iterator:
    with chromium_page(viewport={"width": 1280, "height": 900}) as browser_page:
        yield browser_page


def current(page) -> str:
    return page.get_attribute("#card", "data-id")


def wait_status(page, ident: str, status: str) -> None:
    page.wait_for_selector(f'#queue li[data-id="{ident}"][data-status="{status}"]', timeout=10000)


def test_keyboard_review_survives_a_reload(served: str, review_run: Path, page) -> None:
    page.goto(served)
    page.wait_for_selector("#card[data-id^='d']")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review-page-start.png"), full_page=True)

    accepted = current(page)
    page.keyboard.press("a")
    wait_status(page, accepted, "accepted")

    rejected = current(page)
    assert rejected != accepted
    page.keyboard.press("r")
    wait_status(page, rejected, "rejected")

    relabelled = current(page)
    page.keyboard.press("l")
    page.wait_for_selector("#label-input:focus")
    page.keyboard.press("Control+A")
    page.keyboard.type("Dog bark")
    page.keyboard.press("Enter")
    wait_status(page, relabelled, "corrected")

    moved = current(page)  # the start, two steps right with the keys, saved after a pause
    before = load_run(review_run).by_id()[moved]
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    wait_status(page, moved, "corrected")

    dragged = current(page)  # next one: drag its end with the mouse
    page.keyboard.press("j")
    page.wait_for_function(f"document.querySelector('#card').dataset.id !== '{dragged}'")
    dragged = current(page)
    handle = page.locator("#h-end").bounding_box()
    wrap = page.locator("#spec-wrap").bounding_box()
    assert handle and wrap
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - wrap["width"] * 0.05, y, steps=5)
    page.mouse.up()
    wait_status(page, dragged, "corrected")

    # free mode: select a stretch of the timeline and label it
    line = page.locator("#timeline").bounding_box()
    assert line
    page.mouse.move(line["x"] + line["width"] * 0.02, line["y"] + 3)
    page.mouse.down()
    page.mouse.move(line["x"] + line["width"] * 0.06, line["y"] + 3, steps=4)
    page.mouse.up()
    page.wait_for_selector("#free-label:focus")
    page.keyboard.type("Hand clap")
    page.keyboard.press("Enter")
    page.wait_for_selector('#queue li[data-status="added"]')

    page.reload()
    page.wait_for_selector("#card[data-id^='d']")
    for ident, status in (
        (accepted, "accepted"),
        (rejected, "rejected"),
        (relabelled, "corrected"),
        (moved, "corrected"),
        (dragged, "corrected"),
    ):
        wait_status(page, ident, status)
    page.wait_for_selector('#queue li[data-status="added"]')
    page.screenshot(path=str(ARTIFACTS / "review-page.png"), full_page=True)

    # on disk: the journal rebuilds exactly these decisions
    store = ReviewStore(load_run(review_run))
    assert store.warnings == []
    items = store.items
    assert items[accepted].status == "accepted"
    assert items[rejected].status == "rejected"
    assert (items[relabelled].status, items[relabelled].label) == ("corrected", "Dog bark")
    assert items[moved].onset == pytest.approx(before.onset + 0.1, abs=1e-3)
    assert items[moved].offset == pytest.approx(before.offset, abs=1e-3)
    original = items[dragged].original
    assert original is not None and items[dragged].offset < original["offset"] - 0.05
    added = [i for i in items.values() if i.status == "added"]
    assert [(i.label, i.user) for i in added] == [("Hand clap", "tester")]
    assert added[0].offset > added[0].onset
    # the exports match the decisions, and the page serves the same file
    labels = read_label_file(review_run / "reviews" / "labels.tsv")
    want = sorted(
        (i.file, i.label, round(i.onset, 3), round(i.offset, 3))
        for i in items.values()
        if i.status in ("accepted", "corrected", "added")
    )
    assert sorted((e.file, e.label, e.onset, e.offset) for e in labels) == want
    negatives = read_label_file(review_run / "reviews" / "negatives.tsv")
    assert [(e.file, e.label) for e in negatives] == [(items[rejected].file, items[rejected].label)]
    with urllib.request.urlopen(served + "api/export/labels.tsv") as answer:
        assert answer.read() == (review_run / "reviews" / "labels.tsv").read_bytes()
