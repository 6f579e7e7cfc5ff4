"""End-to-end check of a running earmark service (standard library only).

Used by the chart's `helm test` hook and by deploy/test-deploy.sh against the compose stack:

    python3 smoke_test.py --url http://127.0.0.1:8000 --key KEY --file dog.ogg --expect-label Dog
    python3 smoke_test.py --url http://earmark-api:8000 --key KEY      # a generated 4 s clip

Steps, each named in the output and in the error when it fails: liveness (/healthz), readiness
(/readyz, waited for), auth enforced (a request without a key is refused), /v1/models, job
submitted (POST /v1/jobs), job finished (polled), events as JSON (at least one, well-formed,
optionally one whose label matches --expect-label), events as CSV, report, metrics.
Exit code 0 when every step passed; the last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import struct
import sys
import time
import urllib.error
import urllib.request
import uuid
import wave
from pathlib import Path

DONE = {"done", "succeeded", "success", "completed", "finished", "partial"}
FAILED = {"failed", "error", "cancelled", "canceled"}


class CheckFailed(Exception):
    """A step of the check failed (message names the step)."""


def request(method, url, key=None, body=None, content_type=None, timeout=60.0):
    """(status, headers, bytes) of one HTTP request; HTTP errors are returned, not raised."""
    headers = {"Accept": "*/*"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if content_type:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers or {}), exc.read()


def multipart(files, fields):
    """Body and content type of a multipart/form-data request."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        out.write(head.encode())
        out.write(f"{value}\r\n".encode())
    for name, (filename, data) in files:
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
        )
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def generated_clip(seconds=4.0, rate=16000):
    """A 16-bit mono WAV: 1 s silence, then beeps (880 Hz) every half second."""
    frames = bytearray()
    for i in range(int(seconds * rate)):
        t = i / rate
        on = t >= 1.0 and (t % 0.5) < 0.25
        value = 0.5 * math.sin(2 * math.pi * 880 * t) if on else 0.0
        frames += struct.pack("<h", int(value * 32767))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return buf.getvalue()


def as_json(step, status, body):
    try:
        return json.loads(body)
    except ValueError:
        raise CheckFailed(f"{step}: HTTP {status}, not JSON: {body[:300]!r}") from None


def expect(step, status, body, ok=(200,)):
    if status not in ok:
        raise CheckFailed(f"{step}: HTTP {status} (expected {ok}): {body[:500]!r}")


def run(args):
    base = args.url.rstrip("/")
    done = []

    status, _, body = request("GET", f"{base}/healthz", timeout=10)
    expect("liveness GET /healthz", status, body)
    done.append("healthz")

    deadline = time.monotonic() + args.ready_timeout
    while True:
        status, _, body = request("GET", f"{base}/readyz", timeout=10)
        if status == 200:
            break
        if time.monotonic() > deadline:
            raise CheckFailed(
                f"readiness GET /readyz: still HTTP {status} after "
                f"{args.ready_timeout:.0f} s: {body[:300]!r}"
            )
        time.sleep(2)
    done.append("readyz")

    status, _, body = request("GET", f"{base}/v1/models", timeout=30)
    if status not in (401, 403):
        raise CheckFailed(f"auth: GET /v1/models without a key gave HTTP {status}, not 401/403")
    done.append("auth-enforced")

    status, _, body = request("GET", f"{base}/v1/models", key=args.key, timeout=30)
    expect("GET /v1/models", status, body)
    models = as_json("GET /v1/models", status, body)
    done.append("models")

    if args.file:
        path = Path(args.file)
        filename, data = path.name, path.read_bytes()
    else:
        filename, data = "beeps.wav", generated_clip()
    fields = {"threshold": str(args.threshold)} if args.threshold is not None else {}
    body, ctype = multipart([("files", (filename, data))], fields)
    status, _, resp = request(
        "POST", f"{base}/v1/jobs", key=args.key, body=body, content_type=ctype, timeout=120
    )
    expect("submit POST /v1/jobs", status, resp, ok=(200, 201, 202))
    job = as_json("submit POST /v1/jobs", status, resp)
    job_id = job.get("id") or job.get("job_id")
    if not job_id:
        raise CheckFailed(f"submit POST /v1/jobs: no job id in {job}")
    done.append("job-submitted")

    started = time.monotonic()
    state = None
    while True:
        status, _, resp = request("GET", f"{base}/v1/jobs/{job_id}", key=args.key, timeout=30)
        expect(f"poll GET /v1/jobs/{job_id}", status, resp)
        job = as_json("poll job", status, resp)
        state = str(job.get("state") or job.get("status") or "").lower()
        if state in DONE:
            break
        if state in FAILED:
            raise CheckFailed(f"job {job_id} {state}: {json.dumps(job)[:800]}")
        if time.monotonic() - started > args.job_timeout:
            raise CheckFailed(f"job {job_id} still {state!r} after {args.job_timeout:.0f} s")
        time.sleep(1)
    job_seconds = time.monotonic() - started
    done.append(f"job-{state}")

    url = f"{base}/v1/jobs/{job_id}/events?format=json"
    status, _, resp = request("GET", url, key=args.key, timeout=60)
    expect("GET events (json)", status, resp)
    payload = as_json("GET events (json)", status, resp)
    events = payload.get("events", payload) if isinstance(payload, dict) else payload
    if not isinstance(events, list) or not events:
        raise CheckFailed(f"GET events (json): no events came back: {str(payload)[:500]}")
    for ev in events:
        label, onset, offset = ev.get("label"), ev.get("onset"), ev.get("offset")
        if not label or not isinstance(onset, (int, float)) or not isinstance(offset, (int, float)):
            raise CheckFailed(f"GET events (json): malformed event {ev}")
        if not 0 <= onset < offset:
            raise CheckFailed(f"GET events (json): onset/offset out of order in {ev}")
    labels = sorted({ev["label"] for ev in events})
    if args.expect_label and not any(re.search(args.expect_label, lb, re.I) for lb in labels):
        raise CheckFailed(f"events: no label matches {args.expect_label!r}; got {labels}")
    done.append("events-json")

    status, _, resp = request(
        "GET", f"{base}/v1/jobs/{job_id}/events?format=csv", key=args.key, timeout=60
    )
    expect("GET events (csv)", status, resp)
    header = resp.decode("utf-8", "replace").splitlines()[0] if resp else ""
    if "onset" not in header.lower():
        raise CheckFailed(f"GET events (csv): unexpected header {header!r}")
    done.append("events-csv")

    report = "not requested"
    if args.report:
        url = f"{base}/v1/jobs/{job_id}/report"
        status, _, resp = request("GET", url, key=args.key, timeout=120)
        if status == 404 and b"report" in resp:
            # an installation without the report module says so; recorded, not hidden
            report = f"unavailable: {resp[:200].decode('utf-8', 'replace')}"
        else:
            expect("GET report", status, resp)
            if b"<html" not in resp[:2000].lower():
                raise CheckFailed(f"GET report: not HTML: {resp[:200]!r}")
            report = f"html, {len(resp)} bytes"
            done.append("report")

    status, _, resp = request("GET", f"{base}/metrics", timeout=30)
    expect("GET /metrics", status, resp)
    if b"# TYPE" not in resp:
        raise CheckFailed("GET /metrics: not Prometheus text")
    done.append("metrics")

    return {
        "ok": True,
        "steps": done,
        "job": job_id,
        "file": filename,
        "job_seconds": round(job_seconds, 2),
        "events": len(events),
        "report": report,
        "labels": labels[:20],
        "models": models if isinstance(models, list) else list(models)[:5],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("EARMARK_URL", "http://127.0.0.1:8000"))
    parser.add_argument(
        "--key",
        default=os.environ.get("EARMARK_API_KEY", ""),
        help="API key (default $EARMARK_API_KEY)",
    )
    parser.add_argument("--file", help="audio file to submit (default: a generated 4 s clip)")
    parser.add_argument("--expect-label", help="regex one event label must match")
    parser.add_argument("--threshold", type=float, help="detection threshold sent with the job")
    parser.add_argument("--report", action="store_true", help="also fetch the job report")
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument("--job-timeout", type=float, default=300.0)
    args = parser.parse_args()
    if not args.key:
        parser.error("an API key is needed (--key or EARMARK_API_KEY)")
    try:
        summary = run(args)
    except CheckFailed as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        print(f"smoke test FAILED: {exc}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(json.dumps({"ok": False, "error": f"connection: {exc}"}))
        print(f"smoke test FAILED: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
