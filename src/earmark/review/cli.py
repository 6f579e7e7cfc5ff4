"""The ``review`` sub-command: serve the review page over a run folder, export its labels, or
compare a new model's detections with the run.

:func:`add_parser` registers it on the main parser of :mod:`earmark.cli`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_review(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``earmark review RUN_DIR``: see :func:`add_parser`."""
    from earmark.review.compare import compare_runs, redetect
    from earmark.review.run import RunError, load_run
    from earmark.review.store import ReviewError, ReviewStore

    try:
        run = load_run(args.run_dir)
        store = ReviewStore(run)
        for warning in store.warnings:
            _say(f"earmark review: warning: {warning}")
        if store.warnings and args.strict:
            _say("earmark review: the review journal has problems (see above); --strict stops")
            return 2
        store.save()  # the exports match the journal, even after a crash mid-export
        comparison = None
        if args.compare:
            target = Path(args.compare).expanduser()
            new = load_run(target) if (target / "events.json").is_file() else None
            if new is None:
                if not (target / "labels.json").is_file():
                    raise RunError(f"{target}: neither a run folder nor an 'earmark train' model")
                _say(f"detecting {len(run.files)} file(s) again with {target} ...")
                new = redetect(run, target, quiet=not args.verbose)
            comparison = compare_runs(run, new, store.reviewed())
            _say(comparison["advice"])
        counts = store.counts()
        if args.export or (args.compare and args.no_serve):
            summary = {"run": str(run.root), "reviews": str(store.folder), **counts}
            if comparison is not None:
                summary["compare"] = comparison
            print(json.dumps(summary, indent=2))
            return 0
    except (RunError, ReviewError) as exc:
        _say(f"earmark review: {exc}")
        return 2
    from earmark.review.retrain import Retrainer
    from earmark.review.server import ReviewApp, make_server

    try:
        retrainer = Retrainer(store, args.train) if args.train else None
    except ReviewError as exc:
        _say(f"earmark review: {exc}")
        return 2
    try:
        app = ReviewApp(store, args.user, comparison, retrainer)
        server = make_server(app, args.host, args.port)
    except OSError as exc:
        _say(f"earmark review: cannot listen on {args.host}:{args.port} ({exc.strerror or exc})")
        return 2
    host, port = str(server.server_address[0]), int(server.server_address[1])
    _say(
        f"reviewing {run.root}: {counts['reviewed']} of {counts['total']} events reviewed; "
        f"decisions saved in {store.folder}"
    )
    print(f"open http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        _say("earmark review: stopped; every decision is saved")
    finally:
        server.server_close()
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``earmark review`` on the main parser's sub-commands."""
    p = sub.add_parser(
        "review",
        help="review and correct the detections of a run in a local web page",
        description="Serve a page over a run folder of 'earmark detect': a queue of its "
        "detections, most informative first (scores near the threshold, AudioSet and custom "
        "classes disagreeing, classes with few reviewed examples), each with its spectrogram "
        "and sound; accept (a), reject (r), relabel (l), move its start/end (arrow keys or "
        "drag), or label a stretch of the timeline. Decisions are saved at once in "
        "RUN_DIR/reviews/ (journal, DCASE TSV, Audacity and Raven files); "
        "'earmark train --from-reviews RUN_DIR' learns from them.",
    )
    p.add_argument("run_dir", help="run folder written by 'earmark detect'")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument(
        "--user", default=getpass.getuser(), help="reviewer name saved with every decision"
    )
    p.add_argument(
        "--export",
        action="store_true",
        help="only rebuild the exports from the journal and print the counts (no server)",
    )
    p.add_argument(
        "--compare",
        metavar="MODEL_OR_RUN",
        help="a model folder of 'earmark train' (the run's files are detected again with it) or "
        "another run folder: show the new, removed and relabelled events before adopting it",
    )
    p.add_argument(
        "--train",
        metavar="COMMAND",
        help="the 'earmark train ... -o MODEL_DIR' command the page's Retrain button runs, with "
        "--from-reviews RUN_DIR added; the run is then detected again with the new model and "
        "the changes shown before you adopt it",
    )
    p.add_argument(
        "--no-serve", action="store_true", help="with --compare: print the comparison and stop"
    )
    p.add_argument(
        "--strict", action="store_true", help="stop when the review journal has unreadable lines"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show the re-detection's output")
    p.set_defaults(func=cmd_review)
