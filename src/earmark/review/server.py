"""``earmark review RUN_DIR``'s local web server (standard library only): the review page and
the small JSON API it calls.

===============================  ==========================================================
``GET /``                        the review page (``static/review.html``)
``GET /api/state``               the run, the classes, every event's state, the queue order,
                                 per-class counts, warnings (``?order=queue|random``)
``POST /api/decide``             one decision (:class:`~.store.ReviewStore.decide`); the
                                 answer holds the event's new state and a conflict warning
``GET /api/audio``               WAV snippet: ``?file=N&start=S&end=E`` (N: index of the file)
``GET /api/spectrogram``         PNG of the same stretch
``GET /api/export/NAME``         ``labels.tsv``, ``negatives.tsv`` or ``regions.tsv``
``GET /api/compare``             the comparison with a new model's run (``--compare``)
``GET|POST /api/retrain``        the retraining's state / start it (``--train``)
===============================  ==========================================================

Files are named by their index in the run, never by a path from the client.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from earmark.review.media import ROLL, AudioCache, MediaError, spectrogram_png, wav_bytes
from earmark.review.queue import priorities, random_order
from earmark.review.retrain import Retrainer
from earmark.review.store import ReviewError, ReviewStore

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC = {
    "/": ("review.html", "text/html; charset=utf-8"),
    "/review.js": ("review.js", "text/javascript; charset=utf-8"),
    "/review.css": ("review.css", "text/css; charset=utf-8"),
}
EXPORTS = {"labels.tsv", "negatives.tsv", "regions.tsv"}
MAX_BODY = 64 * 1024


class ReviewApp:
    """What the server serves: one run's store, its media and (optionally) a comparison."""

    def __init__(
        self,
        store: ReviewStore,
        user: str = "local",
        compare: dict[str, Any] | None = None,
        retrainer: Retrainer | None = None,
    ) -> None:
        self.store = store
        self.user = user
        self.compare = compare
        self.retrainer = retrainer
        self.media = AudioCache()
        self.files = store.run.files

    def state(self, order: str = "queue") -> dict[str, Any]:
        """Everything the page shows (see :func:`page_state`)."""
        return {
            **page_state(self.store, order, self.user),
            "compare": self.compare is not None,
            "retrain": self.retrainer is not None,
        }

    def decide(self, body: dict[str, Any]) -> dict[str, Any]:
        """Apply a decision from the page; ``file`` may be given as an index."""
        if "file" in body and isinstance(body["file"], int):
            if not 0 <= body["file"] < len(self.files):
                raise ReviewError(f"file {body['file']} is not a file of this run")
            body["file"] = self.files[body["file"]]
        item, warning = self.store.decide(body, self.user)
        return {"item": item.public(), "warning": warning, "counts": self.store.counts()}

    def stretch(self, query: dict[str, list[str]]) -> tuple[str, float, float]:
        """The file and times a media request names."""
        try:
            n = int(query["file"][0])
            start, end = float(query["start"][0]), float(query["end"][0])
            return self.files[n], max(0.0, start), end
        except (KeyError, IndexError, ValueError):
            raise MediaError("give file (an index of the run's files), start and end") from None


def page_state(store: ReviewStore, order: str = "queue", user: str = "") -> dict[str, Any]:
    """The run, its files and classes, every event's state, the queue order (``queue`` or
    ``random``) with each detection's priority, per-class counts and the journal's warnings."""
    store.refresh()
    durations = store.run.durations
    items = [i.public() for i in list(store.items.values())]
    detections = store.run.detections
    prio = priorities(detections, store.reviewed_per_class())
    ids = random_order(detections, 0) if order == "random" else [p.id for p in prio]
    known = set(ids)
    ids += [i["id"] for i in items if i["id"] not in known]  # added in free mode
    return {
        "run": str(store.run.root),
        "user": user,
        "files": [
            {"index": n, "path": f, "name": Path(f).name, "duration": durations.get(f)}
            for n, f in enumerate(store.run.files)
        ],
        "classes": sorted({*store.run.classes, *(i["label"] for i in items)}),
        "items": items,
        "order": ids,
        "priorities": {p.id: p.as_dict() for p in prio},
        "detections": {d.id: {"peak": d.peak, "threshold": d.threshold} for d in detections},
        "counts": store.counts(),
        "warnings": store.warnings,
        "roll": ROLL,
    }


def make_handler(app: ReviewApp) -> type[BaseHTTPRequestHandler]:
    """The request handler class bound to ``app``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "earmark-review"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the page polls nothing, errors are answered as JSON."""

        def send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def json(self, obj: Any, status: int = 200) -> None:
            self.send(status, json.dumps(obj).encode("utf-8"), "application/json")

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            try:
                if url.path in STATIC:
                    name, kind = STATIC[url.path]
                    self.send(200, (STATIC_DIR / name).read_bytes(), kind)
                elif url.path == "/api/state":
                    self.json(app.state(query.get("order", ["queue"])[0]))
                elif url.path == "/api/audio":
                    file, start, end = app.stretch(query)
                    self.send(200, wav_bytes(app.media.cut(file, start, end)), "audio/wav")
                elif url.path == "/api/spectrogram":
                    file, start, end = app.stretch(query)
                    png = spectrogram_png(app.media.cut(file, start, end))
                    self.send(200, png, "image/png")
                elif url.path.startswith("/api/export/") and url.path[12:] in EXPORTS:
                    path = app.store.folder / url.path[12:]
                    body = path.read_bytes() if path.exists() else b""
                    self.send(200, body, "text/tab-separated-values; charset=utf-8")
                elif url.path == "/api/compare" and app.compare is not None:
                    self.json(app.compare)
                elif url.path == "/api/retrain" and app.retrainer is not None:
                    self.json(app.retrainer.status())
                else:
                    self.json({"error": f"no such page: {url.path}"}, HTTPStatus.NOT_FOUND)
            except MediaError as exc:
                self.json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)

        def do_POST(self) -> None:
            if urlparse(self.path).path == "/api/retrain" and app.retrainer is not None:
                try:
                    self.json(app.retrainer.start())
                except ReviewError as exc:
                    self.json({"error": str(exc)}, HTTPStatus.CONFLICT)
                return
            if urlparse(self.path).path != "/api/decide":
                self.json({"error": "no such endpoint"}, HTTPStatus.NOT_FOUND)
                return
            try:
                size = int(self.headers.get("Content-Length") or 0)
                if size > MAX_BODY:
                    raise ReviewError("request too large")
                body = json.loads(self.rfile.read(size) or b"{}")
                if not isinstance(body, dict):
                    raise ReviewError("send one decision as a JSON object")
                self.json(app.decide(body))
            except (ReviewError, ValueError) as exc:
                self.json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)
            except OSError as exc:  # the disk refused the journal: say so, keep serving
                self.json({"error": f"not saved: {exc}"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    return Handler


def make_server(app: ReviewApp, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (port 0: any free port); call ``serve_forever``."""
    server = ThreadingHTTPServer((host, port), make_handler(app))
    server.daemon_threads = True
    return server
