"""Render a local HTML file in headless Chromium (Debian's ``chromium``) for tests.

    from chromium import chromium_binary, dump_dom, screenshot  # tests/ is on sys.path

    dom = dump_dom(path)                      # the DOM after scripts ran, as HTML text
    png = screenshot(path, out_png, width=1280, height=2000)
    with chromium_page(viewport={...}) as page:  # a Playwright page, to drive with keys/mouse

Chromium runs with a throw-away profile, no network services, no GPU, no sandbox (tests run as
root in CI). :func:`chromium_binary` returns the executable or fails (under ``CI=true``) /
skips the test with a clear message when it is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from needs import missing

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
)


def chromium_binary() -> str:
    """Path of the Chromium executable; fails under CI=true, else skips, when there is none."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    missing("headless Chromium not found (Debian package 'chromium'; make test installs it)")


@contextmanager
def chromium_page(**options: object) -> Iterator:
    """A page of Chromium driven by Playwright (headless, no network services); ``options``
    go to ``browser.new_page`` (e.g. ``viewport``)."""
    binary = chromium_binary()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=binary,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser.new_page(**options)
        finally:
            browser.close()


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="earmark-chromium-") as profile:
        command = [chromium_binary(), *FLAGS, f"--user-data-dir={profile}", *args]
        proc = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        error = proc.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"chromium exited with {proc.returncode}: {error}")
    return proc


def dump_dom(path: str | Path, budget_ms: int = 5000, timeout: float = 90.0) -> str:
    """The page's DOM, serialised after its scripts ran (``--dump-dom``)."""
    url = Path(path).resolve().as_uri()
    proc = _run([f"--virtual-time-budget={budget_ms}", "--dump-dom", url], timeout)
    return proc.stdout.decode("utf-8", errors="replace")


def screenshot(
    path: str | Path,
    out_png: str | Path,
    width: int = 1280,
    height: int = 1600,
    budget_ms: int = 5000,
    timeout: float = 90.0,
    fragment: str = "",
) -> Path:
    """Save a PNG screenshot of the page (after its scripts ran) to ``out_png``.

    ``fragment`` (e.g. ``"section-2"``) scrolls to that anchor first.
    """
    out_png = Path(out_png).resolve()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    url = Path(path).resolve().as_uri() + (f"#{fragment}" if fragment else "")
    _run(
        [
            f"--virtual-time-budget={budget_ms}",
            f"--window-size={width},{height}",
            f"--screenshot={out_png}",
            url,
        ],
        timeout,
    )
    if not out_png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {out_png}")
    return out_png
