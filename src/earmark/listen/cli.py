"""``earmark listen``: the command line of live listening (sources, sinks, options, console)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from earmark.constants import FRAME_HOP

EXIT_OK, EXIT_USAGE, EXIT_FAILED = 0, 2, 1
STATUS_EVERY = 30.0
"""Seconds between two status lines on the console."""
SINKS_ENV = "EARMARK_LISTEN_SINKS"
"""Sinks when no ``--sink`` is given (space-separated specs): containers set them this way."""


def add_parser(sub: Any) -> None:
    """Register ``earmark listen``."""
    from earmark.cli_options import add_event_options
    from earmark.listen.options import LiveOptions
    from earmark.listen.sinks import SPEC_HELP

    defaults = LiveOptions()
    p = sub.add_parser(
        "listen",
        help="detect events live from microphones, cameras, streams or growing files",
        description="Listen to live sources and emit each event when it ends (and optionally "
        "when it starts), with the same model, post-processing and custom classes as detect. "
        "Sources: rtsp(s)://, http(s)://, udp://, srt://, rtmp://, tcp:// URLs; alsa:DEV, "
        "pulse:DEV, avfoundation:DEV, dshow:DEV input devices; follow:PATH for a file still "
        "being written; a plain file is replayed once. Name a source with NAME=SOURCE. "
        "Events go to JSON lines on stdout unless --sink says otherwise (docs/listen.md).",
    )
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="[NAME=]URL, device or file")
    p.add_argument(
        "--sources-file",
        metavar="FILE",
        help="more sources, one per line ('#' starts a comment): a ConfigMap in Kubernetes",
    )
    p.add_argument(
        "--sink",
        action="append",
        metavar="SPEC",
        help=f"where events go (repeatable; default ${SINKS_ENV} split on spaces, else jsonl:-):"
        f" {SPEC_HELP}",
    )
    p.add_argument("-c", "--config", help="TOML or YAML file with detect's options")
    grp = p.add_argument_group("model")
    grp.add_argument("--model", help="model name (see 'earmark models')")
    grp.add_argument("--checkpoint", help="explicit checkpoint file (.pt)")
    grp.add_argument("--backend", choices=("auto", "torch", "onnxruntime"), help="who runs it")
    add_event_options(p.add_argument_group("events"))
    grp = p.add_argument_group("live")
    grp.add_argument(
        "--lookahead",
        type=float,
        metavar="SECONDS",
        help=f"audio scored after each block before its frames count (default "
        f"{defaults.lookahead_frames * FRAME_HOP:.2f} s; more: scores closer to detect's, "
        "events later)",
    )
    grp.add_argument(
        "--exact",
        action="store_true",
        help="the scores of a whole-file pass (look-ahead 7.68 s): the same events as detect, "
        "about 8 s later",
    )
    grp.add_argument("--started", action="store_true", help="also emit a notice when events start")
    grp.add_argument(
        "--level-gate", type=float, metavar="DBFS", help="drop events quieter than this (e.g. -50)"
    )
    grp.add_argument(
        "--max-event",
        type=float,
        default=defaults.max_event,
        metavar="SECONDS",
        help=f"end longer events there (default {defaults.max_event:g})",
    )
    grp.add_argument("--save-clips", metavar="DIR", help="save each event's audio (WAV) here")
    grp.add_argument("--pre-roll", type=float, default=2.0, help="clip seconds before (default 2)")
    grp.add_argument("--post-roll", type=float, default=2.0, help="clip seconds after (default 2)")
    grp.add_argument(
        "--realtime", action="store_true", help="replay files at their own pace (tests, demos)"
    )
    grp = p.add_argument_group("running")
    grp.add_argument(
        "--health-port", type=int, metavar="PORT", help="serve /healthz and /metrics on this port"
    )
    grp.add_argument(
        "--health-host", default="127.0.0.1", help="address to serve them on (default 127.0.0.1)"
    )
    grp.add_argument("--threads", type=int, help="torch/ONNX threads (default: all cores)")
    grp.add_argument("-q", "--quiet", action="store_true", help="no status lines on stderr")
    grp.add_argument(
        "--json", action="store_true", help="print a JSON summary of every source at the end"
    )
    p.set_defaults(func=cmd_listen)


def _live_options(args: argparse.Namespace) -> Any:
    from earmark.listen.options import LiveOptions
    from earmark.scoring import DEFAULT_MARGIN_FRAMES

    live = LiveOptions(
        started=args.started, level_gate_db=args.level_gate, max_event=args.max_event
    )
    if args.exact:
        live.lookahead_frames = DEFAULT_MARGIN_FRAMES
    elif args.lookahead is not None:
        live.lookahead_frames = round(args.lookahead / FRAME_HOP)
    live.validate()
    return live


def cmd_listen(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run ``earmark listen`` until the sources end or a signal stops it."""
    from earmark.cli_options import detect_overrides
    from earmark.config import ConfigError, load_options
    from earmark.listen.listener import ClipWriter, Listener
    from earmark.listen.sinks import sinks_from_specs
    from earmark.listen.sources import parse_source

    logging.basicConfig(format="earmark listen: %(message)s", level=logging.WARNING)
    try:
        options = load_options(args.config, detect_overrides(args))
        sources = [parse_source(s) for s in [*args.sources, *_sources_file(args.sources_file)]]
        if not sources:
            raise ValueError("no source given (SOURCE arguments or --sources-file)")
        live = _live_options(args)
        if args.pre_roll < 0 or args.post_roll < 0:
            raise ValueError("--pre-roll and --post-roll must be >= 0 seconds")
    except (ConfigError, ValueError) as exc:
        print(f"earmark listen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from earmark.assets import AssetNotFoundError
    from earmark.tagger import load_model

    try:
        tagger = load_model(options.model, checkpoint=options.checkpoint, threads=args.threads)
        specs = args.sink or os.environ.get(SINKS_ENV, "").split() or ["jsonl:-"]
        sink = sinks_from_specs(specs, sources=[s.name for s in sources])
    except (AssetNotFoundError, ValueError, OSError) as exc:
        print(f"earmark listen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    clips = (
        ClipWriter(Path(args.save_clips), args.pre_roll, args.post_roll)
        if args.save_clips
        else None
    )
    try:
        listener = Listener(
            tagger, sources, options, live, sink, clips=clips, realtime=args.realtime
        )
    except ValueError as exc:
        sink.close(5.0)
        print(f"earmark listen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    server = None
    if args.health_port is not None:
        from earmark.listen.health import serve_health

        try:
            server = serve_health(listener, args.health_port, args.health_host, sink.stats)
        except OSError as exc:
            sink.close(5.0)
            print(f"earmark listen: health port {args.health_port}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    stopping = threading.Event()

    def stop(signum: int, _frame: Any) -> None:
        stopping.set()
        listener.stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    listener.start()
    try:
        last = time.monotonic()
        while not listener.wait(1.0):
            if not args.quiet and time.monotonic() - last >= STATUS_EVERY:
                last = time.monotonic()
                _print_status(listener)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sink.close(10.0)
        if server is not None:
            server.shutdown()
    summary = [s.to_dict() for s in listener.status.values()]
    if args.json:
        json.dump({"sources": summary, "sink": sink.stats()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not args.quiet:
        _print_status(listener)
    failed = [s for s in summary if s["failed"] or (not s["ended"] and not stopping.is_set())]
    return EXIT_FAILED if failed else EXIT_OK


def _sources_file(path: str | None) -> list[str]:
    """The sources listed in ``path``, one per line, comments and blank lines left out."""
    if not path:
        return []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--sources-file {path}: {exc}") from None
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def _print_status(listener: Any) -> None:
    for s in listener.status.values():
        state = "up" if s.up else ("ended" if s.ended else "down")
        events = sum(s.events.values())
        extra = f", last error: {s.last_error}" if s.last_error and not s.up else ""
        print(
            f"{s.name}: {state}, {s.audio_seconds:.0f} s heard, {events} events, "
            f"lag {s.lag_seconds:.1f} s, {s.reconnects} reconnects{extra}",
            file=sys.stderr,
        )
