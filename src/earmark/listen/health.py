"""The listener's health and Prometheus metrics over HTTP (``earmark listen --health-port``).

``GET /healthz``: 200 with every source's status as JSON when each source delivers audio (or
ended, for a file), 503 otherwise (a Kubernetes liveness or readiness probe reads it).
``GET /metrics``: Prometheus text format, one series per source (and per class for events):
``earmark_listen_up``, ``earmark_listen_audio_seconds_total``, ``earmark_listen_lag_seconds``,
``earmark_listen_events_total``, ``earmark_listen_reconnects_total``,
``earmark_listen_gap_seconds_total``, ``earmark_listen_latency_seconds`` (p50, p95), and the
sinks' delivery counters when they report any.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from earmark.listen.listener import Listener

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    """A Prometheus label value, escaped."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def metrics_text(listener: Listener, sink_stats: Callable[[], dict] | None = None) -> str:
    """Every metric of ``listener`` (and its sinks) in Prometheus text format."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, rows: list[tuple[dict, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in rows:
            inner = ",".join(f'{k}="{_label(str(v))}"' for k, v in labels.items())
            lines.append(f"{name}{{{inner}}} {value:.6g}")

    status = list(listener.status.values())
    family("earmark_listen_up", "gauge", "1 while the source delivers audio",
           [({"source": s.name}, float(s.up)) for s in status])  # fmt: skip
    family("earmark_listen_audio_seconds_total", "counter", "stream time heard, gaps included",
           [({"source": s.name}, s.audio_seconds) for s in status])  # fmt: skip
    family("earmark_listen_lag_seconds", "gauge", "processing behind the audio's arrival",
           [({"source": s.name}, s.lag_seconds) for s in status])  # fmt: skip
    family("earmark_listen_reconnects_total", "counter", "times the source was opened again",
           [({"source": s.name}, float(s.reconnects)) for s in status])  # fmt: skip
    family("earmark_listen_gap_seconds_total", "counter", "seconds without audio",
           [({"source": s.name}, sum(g for _, g in s.gaps)) for s in status])  # fmt: skip
    family("earmark_listen_events_total", "counter", "events emitted",
           [({"source": s.name, "label": label}, float(n))
            for s in status for label, n in sorted(s.events.items())])  # fmt: skip
    rows = []
    for s in status:
        summary = s.to_dict()
        for q in ("50", "95"):
            if summary[f"latency_p{q}"] is not None:
                rows.append(({"source": s.name, "quantile": f"0.{q}"}, summary[f"latency_p{q}"]))
    family("earmark_listen_latency_seconds", "gauge",
           "seconds from an event's end in the stream to its emission", rows)  # fmt: skip
    if sink_stats is not None:
        for key, value in sorted(_flat(sink_stats()).items()):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                name = "earmark_listen_sink_" + "".join(c if c.isalnum() else "_" for c in key)
                family(name, "gauge", f"sink counter {key}", [({}, float(value))])
    return "\n".join(lines) + "\n"


def _flat(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "_"))
        else:
            out[name] = value
    return out


def serve_health(
    listener: Listener,
    port: int,
    host: str = "127.0.0.1",
    sink_stats: Callable[[], dict] | None = None,
) -> ThreadingHTTPServer:
    """Serve ``/healthz`` and ``/metrics`` on ``host:port`` in a background thread (port 0:
    any free port, see ``server.server_address``); ``server.shutdown()`` stops it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/healthz":
                ok = listener.healthy()
                body = json.dumps(
                    {"status": "ok" if ok else "degraded",
                     "sources": [s.to_dict() for s in listener.status.values()]}
                ).encode()  # fmt: skip
                self._send(200 if ok else 503, "application/json", body)
            elif self.path.split("?")[0] == "/metrics":
                self._send(200, PROMETHEUS_TYPE, metrics_text(listener, sink_stats).encode())
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, code: int, kind: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # no access log on the console

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="listen-health", daemon=True).start()
    return server
