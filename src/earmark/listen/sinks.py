"""Where live events go: sinks built from the command line's specs (``jsonl:-``, ``file:DIR?...``,
``webhook:URL``, ``mqtt://host/prefix``) and :class:`FanOut` to several at once.

The spec syntax, the delivery guarantees, topics and files are described in docs/listen.md.
"""

from __future__ import annotations

import logging
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from earmark.listen.delivery import STAT_KEYS, Sink, event_kinds
from earmark.listen.files import FORMATS, RotatingFileSink, StreamSink
from earmark.listen.live_events import LiveEvent
from earmark.listen.mqtt import MqttSink, TlsOptions
from earmark.listen.webhook import WebhookSink

log = logging.getLogger(__name__)

SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3}
SIZE_UNITS["gb"] = SIZE_UNITS["g"]
SPEC_HELP = (
    "jsonl:-, file:DIR[?format=csv|jsonl|tsv&rotate=daily|none&max_size=SIZE], "
    "webhook:URL[#token_env=VAR&header=Name:Value] (or a bare http(s):// URL), "
    "mqtt[s]://[user[:password]@]host[:port][/prefix][?qos=1&password_env=VAR&ca=PEM]"
)
"""One line on the spec syntax, for error messages and ``--help``."""
FILE_OPTIONS = {"format", "rotate", "max_size", "events"}
WEBHOOK_OPTIONS = {"token_env", "header", "events", "timeout", "backoff_max", "spool_max"}
MQTT_OPTIONS = {
    "qos",
    "username",
    "password_env",
    "tls",
    "ca",
    "cert",
    "key",
    "insecure",
    "client_id",
    "events",
    "queue",
    "keepalive",
    "reconnect_max",
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


class FanOut:
    """Sends each event to several sinks; one that raises (against the :class:`Sink` contract)
    is logged and counted, and the others still get the event."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self.name = "fanout(" + ", ".join(s.name for s in self.sinks) + ")"
        self.errors = dict.fromkeys(range(len(self.sinks)), 0)

    def emit(self, event: LiveEvent) -> None:
        """Give ``event`` to every sink, whatever the others do."""
        for index, sink in enumerate(self.sinks):
            try:
                sink.emit(event)
            except Exception:
                self.errors[index] += 1
                log.exception("sink %s failed on event %s", sink.name, event.id)

    def close(self, timeout: float = 10.0) -> None:
        """Close every sink, sharing ``timeout`` seconds (each gets what is left, at least 1 s)."""
        deadline = time.monotonic() + timeout
        for index, sink in enumerate(self.sinks):
            try:
                sink.close(max(1.0, deadline - time.monotonic()))
            except Exception:
                self.errors[index] += 1
                log.exception("sink %s failed to close", sink.name)

    def stats(self) -> dict[str, object]:
        """The sum of the sinks' :data:`STAT_KEYS` counters, ``errors`` (exceptions caught
        here) and each sink's own counters under ``sinks`` (by name)."""
        per_sink: dict[str, object] = {}
        totals: dict[str, object] = {}
        for index, sink in enumerate(self.sinks):
            own = {**sink.stats(), "errors": self.errors[index]}
            name = sink.name if sink.name not in per_sink else f"{sink.name}#{index}"
            per_sink[name] = own
        for key in (*STAT_KEYS, "errors"):
            totals[key] = sum(int(s[key]) for s in per_sink.values() if isinstance(s, dict))
        return {**totals, "sinks": per_sink}


def parse_size(spec: str, text: str) -> int:
    """``10MB``, ``512k``, ``1048576`` as bytes (units of 1024); ValueError naming ``spec``."""
    match = _SIZE.match(text)
    if not match or match.group(2).lower() not in SIZE_UNITS:
        raise ValueError(f"sink {spec!r}: {text!r} is not a size such as 10MB, 512kB or 4096")
    size = int(float(match.group(1)) * SIZE_UNITS[match.group(2).lower()])
    if size <= 0:
        raise ValueError(f"sink {spec!r}: the size {text!r} must be more than 0")
    return size


def _options(spec: str, query: str, allowed: set[str]) -> dict[str, list[str]]:
    try:
        options = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError(f"sink {spec!r}: cannot read the options {query!r} (a=1&b=2)") from None
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"sink {spec!r}: unknown option {', '.join(unknown)}; "
            f"known: {', '.join(sorted(allowed))}"
        )
    return options


def _one(spec: str, options: dict[str, list[str]], key: str, default: str | None = None) -> str:
    values = options.get(key)
    if not values:
        if default is None:
            raise ValueError(f"sink {spec!r}: option {key} is needed")
        return default
    if len(values) > 1:
        raise ValueError(f"sink {spec!r}: option {key} is given {len(values)} times")
    return values[0]


def _number(spec: str, key: str, text: str, kind: Callable[[str], float] = float) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"sink {spec!r}: {key}={text!r} is not a number") from None
    if value < 0:
        raise ValueError(f"sink {spec!r}: {key}={text!r} is negative")
    return value


def _flag(spec: str, key: str, text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on", ""):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"sink {spec!r}: {key}={text!r} is not 1/0, true/false or yes/no")


def _env(spec: str, env: Mapping[str, str], key: str, name: str) -> str:
    if name not in env:
        raise ValueError(f"sink {spec!r}: {key}={name} but the variable {name} is not set")
    return env[name]


def default_state_dir() -> Path:
    """Where sinks keep their spools and dead letters: ``EARMARK_STATE_DIR``, or the user's
    state folder (``~/.local/state/earmark/listen`` on Linux)."""
    import platformdirs

    override = os.environ.get("EARMARK_STATE_DIR")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_state_dir("earmark", appauthor=False)) / "listen"


def sink_from_spec(
    spec: str,
    *,
    state_dir: Path | None = None,
    stream: TextIO | None = None,
    clock: Callable[[], float] = time.time,
    sources: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> Sink:
    """The sink that ``spec`` names (see :data:`SPEC_HELP` and docs/listen.md).

    ``state_dir`` holds the webhook spools (default :func:`default_state_dir`), ``stream``
    replaces stdout, ``clock`` the files' clock, ``sources`` are announced online on MQTT
    at once, ``env`` replaces ``os.environ`` for ``*_env`` options. A wrong spec is a
    ValueError that names it and says what is wrong.
    """
    env = os.environ if env is None else env
    text = spec.strip()
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if text == "-" or text.lower() == "jsonl":
        scheme, rest, colon = "jsonl", "-", ":"
    if not colon:
        raise ValueError(f"sink {spec!r}: expected one of {SPEC_HELP}")
    if scheme == "jsonl":
        target, _, query = rest.partition("?")
        options = _options(spec, query, {"events"})
        if target != "-":
            raise ValueError(f"sink {spec!r}: jsonl writes to stdout only (jsonl:-); use file:DIR")
        return StreamSink(stream, event_kinds(spec, _one(spec, options, "events", "all")))
    if scheme == "file":
        return _file_sink(spec, rest, clock)
    if scheme == "webhook" or scheme in ("http", "https"):
        return _webhook_sink(spec, text if scheme != "webhook" else rest, state_dir, env)
    if scheme in ("mqtt", "mqtts"):
        return _mqtt_sink(spec, text, sources, env)
    raise ValueError(f"sink {spec!r}: unknown kind {scheme!r}; expected one of {SPEC_HELP}")


def sinks_from_specs(specs: Sequence[str], **kwargs: object) -> Sink:
    """One sink for several specs: the sink itself for one, a :class:`FanOut` for more. Sinks
    built before a wrong spec are closed again before its ValueError is raised."""
    built: list[Sink] = []
    try:
        for spec in specs:
            built.append(sink_from_spec(spec, **kwargs))  # type: ignore[arg-type]
    except Exception:
        for sink in built:
            sink.close(1.0)
        raise
    if not built:
        raise ValueError("no sink given: expected one of " + SPEC_HELP)
    return built[0] if len(built) == 1 else FanOut(built)


def _file_sink(spec: str, rest: str, clock: Callable[[], float]) -> Sink:
    folder, _, query = rest.partition("?")
    if not folder:
        raise ValueError(f"sink {spec!r}: the folder is missing (file:DIR)")
    options = _options(spec, query, FILE_OPTIONS)
    fmt = _one(spec, options, "format", "csv").lower()
    if fmt not in FORMATS:
        raise ValueError(f"sink {spec!r}: format={fmt!r} is not one of {', '.join(FORMATS)}")
    rotate = _one(spec, options, "rotate", "daily").lower()
    if rotate not in ("daily", "none"):
        raise ValueError(f"sink {spec!r}: rotate={rotate!r} is not daily or none")
    max_size = options.get("max_size")
    kinds = event_kinds(spec, _one(spec, options, "events", "ended"))
    if fmt == "tsv" and "started" in kinds:
        raise ValueError(f"sink {spec!r}: the DCASE TSV format holds ended events only")
    return RotatingFileSink(
        Path(folder).expanduser(),
        fmt,
        daily=rotate == "daily",
        max_bytes=parse_size(spec, _one(spec, options, "max_size")) if max_size else None,
        kinds=kinds,
        clock=clock,
    )


def _webhook_sink(spec: str, rest: str, state_dir: Path | None, env: Mapping[str, str]) -> Sink:
    url, _, fragment = rest.partition("#")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"sink {spec!r}: the webhook needs an http:// or https:// URL with a host")
    options = _options(spec, fragment, WEBHOOK_OPTIONS)
    headers = {}
    for header in options.get("header", []):
        name, sep, value = header.partition(":")
        if not sep or not name.strip() or any(c in header for c in "\r\n"):
            raise ValueError(f"sink {spec!r}: header={header!r} is not Name:Value")
        headers[name.strip()] = value.strip()
    token = None
    if "token_env" in options:
        token = _env(spec, env, "token_env", _one(spec, options, "token_env"))
    extra: dict[str, float] = {}
    for key, argument in (("timeout", "timeout"), ("backoff_max", "backoff_max")):
        if key in options:
            extra[argument] = _number(spec, key, _one(spec, options, key))
    return WebhookSink(
        url,
        state_dir if state_dir is not None else default_state_dir(),
        token=token,
        headers=headers,
        kinds=event_kinds(spec, _one(spec, options, "events", "all")),
        spool_max_bytes=parse_size(spec, _one(spec, options, "spool_max", "64MB")),
        **extra,  # type: ignore[arg-type]
    )


def _mqtt_sink(spec: str, text: str, sources: Iterable[str], env: Mapping[str, str]) -> Sink:
    parts = urllib.parse.urlsplit(text)
    if not parts.hostname:
        raise ValueError(f"sink {spec!r}: the broker's host is missing (mqtt://host:port/prefix)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"sink {spec!r}: the port is not a number from 1 to 65535") from None
    options = _options(spec, parts.query, MQTT_OPTIONS)
    username = urllib.parse.unquote(parts.username) if parts.username else None
    username = _one(spec, options, "username", username or "") or None
    password = urllib.parse.unquote(parts.password) if parts.password else None
    if "password_env" in options:
        password = _env(spec, env, "password_env", _one(spec, options, "password_env"))
    tls = None
    use_tls = parts.scheme == "mqtts" or _flag(spec, "tls", _one(spec, options, "tls", "0"))
    if use_tls or any(k in options for k in ("ca", "cert", "key", "insecure")):
        tls = TlsOptions(
            ca_certs=_one(spec, options, "ca", "") or None,
            certfile=_one(spec, options, "cert", "") or None,
            keyfile=_one(spec, options, "key", "") or None,
            insecure=_flag(spec, "insecure", _one(spec, options, "insecure", "0")),
        )
    qos = _number(spec, "qos", _one(spec, options, "qos", "1"), int)
    try:
        return MqttSink(
            parts.hostname,
            port,
            urllib.parse.unquote(parts.path).strip("/") or "earmark",
            username=username,
            password=password,
            tls=tls,
            qos=int(qos),
            client_id=_one(spec, options, "client_id", "") or None,
            sources=sources,
            kinds=event_kinds(spec, _one(spec, options, "events", "all")),
            queue_limit=int(_number(spec, "queue", _one(spec, options, "queue", "10000"), int)),
            keepalive=int(_number(spec, "keepalive", _one(spec, options, "keepalive", "30"), int)),
            reconnect_max=int(
                _number(spec, "reconnect_max", _one(spec, options, "reconnect_max", "30"), int)
            ),
        )
    except (ValueError, OSError) as error:  # a bad prefix, or TLS files that cannot be read
        raise ValueError(f"sink {spec!r}: {error}") from None
