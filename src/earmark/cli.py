"""The ``earmark`` command line.

Exit codes: 0 everything processed; 1 at least one file failed or was only partly decoded (its
neighbours are still processed and written); 2 usage, configuration or missing-asset errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO, cast

from earmark import assets, repeats, report
from earmark.cli_options import add_event_options, detect_overrides
from earmark.constants import BACKENDS
from earmark.custom import cli as custom_cli
from earmark.evaluation import cli as evaluate
from earmark.evaluation import synth, tuning
from earmark.inputs import printable
from earmark.listen import cli as listen_cli
from earmark.review import cli as review_cli
from earmark.service import cli as service_cli

EXIT_OK = 0
EXIT_FILES_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130
EXTRAS = {
    "uvicorn": "service",
    "fastapi": "service",
    "multipart": "service",
    "celery": "service",
    "redis": "service",
    "sqlalchemy": "service",
    "alembic": "service",
    "psycopg": "service",
    "prometheus_client": "service",
    "umap": "custom",
    "pyarrow": "custom",
}
"""Optional modules and the extra (``pip install 'earmark[EXTRA]'``) that brings each."""


# ---------------------------------------------------------------------------- formatting
def format_duration(seconds: float | None) -> str:
    """``h:mm:ss`` (or ``?`` when unknown)."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class TerminalProgress:
    """Renders run progress on stderr: files and seconds of audio done, speed and ETA.

    On a terminal one status line is redrawn in place; otherwise a line is printed at most every
    ``interval`` seconds and after each file, so logs stay readable.
    """

    def __init__(self, stream: TextIO | None = None, interval: float = 10.0) -> None:
        # sys.stderr looked up now, not at import: it may have been replaced since
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 0.25 if self.tty else interval
        self.n_files = 0
        self.total_seconds: float | None = None
        self.files_done = 0
        self.seconds_done = 0.0
        self.current = 0.0
        self.current_name = ""
        self.started = time.perf_counter()
        self.last_draw = 0.0

    def start(self, n_files: int, total_seconds: float | None) -> None:
        self.n_files, self.total_seconds = n_files, total_seconds
        self.started = time.perf_counter()
        self._write(
            f"earmark: {n_files} file(s), {format_duration(total_seconds)} of audio", final=True
        )

    def file_started(self, path: str) -> None:
        self.current, self.current_name = 0.0, path

    def advance(self, path: str, seconds_done_in_file: float) -> None:
        self.current = seconds_done_in_file
        self._draw()

    def file_done(self, result: Any) -> None:
        self.files_done += 1
        self.seconds_done += result.duration
        self.current = 0.0
        if result.status != "ok" or result.warnings:
            reason = result.error or "; ".join(result.warnings)
            kind = "WARNING" if result.status == "ok" else result.status.upper()
            self._write(f"  {kind}: {reason}", final=True)
        self._draw(force=not self.tty)

    def finish(self, summary: Any) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.flush()

    def status_line(self) -> str:
        """The current status as one line of text."""
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        done = self.seconds_done + self.current
        rate = done / elapsed
        eta = None
        if self.total_seconds and rate > 0:
            eta = max(self.total_seconds - done, 0.0) / rate
        total = f" of {format_duration(self.total_seconds)}" if self.total_seconds else ""
        return (
            f"[{self.files_done}/{self.n_files} files] {format_duration(done)}{total} audio"
            f" | {rate:.0f}x real time | elapsed {format_duration(elapsed)}"
            f" | ETA {format_duration(eta)}"
        )

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last_draw < self.interval:
            return
        self.last_draw = now
        self._write(self.status_line(), final=not self.tty)

    def _write(self, text: str, final: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def print_summary(summary: Any, stream: TextIO, top: int = 25) -> None:
    """The end-of-run table: files, hours of audio, events per class, failures."""
    totals = summary.manifest["totals"]
    took = totals["processing_seconds"]
    stream.write(
        f"\n{totals['files']} file(s): {totals['ok']} ok, {totals['partial']} partial, "
        f"{totals['failed']} failed | {format_duration(totals['audio_seconds'])} of audio in "
        f"{format_duration(took) if took >= 10 else f'{took:.1f} s'} "
        f"({totals['realtime_factor'] or 0:.0f}x real time) | {totals['events']} events\n"
    )
    counts = summary.counts_by_label()
    if counts:
        width = max(len(label) for label in list(counts)[:top])
        stream.write(f"\n{'label':<{width}}  events  total time\n")
        for label, (n, total) in list(counts.items())[:top]:
            stream.write(f"{label:<{width}}  {n:>6}  {format_duration(total):>10}\n")
        if len(counts) > top:
            stream.write(f"... and {len(counts) - top} more classes\n")
    if summary.resumed:
        stream.write(f"\n{summary.resumed} file(s) kept from the earlier run (--resume)\n")
    for result in summary.results:
        if result.status != "ok" or result.warnings:
            reason = result.error or "; ".join(result.warnings)
            kind = "WARNING" if result.status == "ok" else result.status.upper()
            stream.write(f"{kind}: {reason}\n")
    stream.write(f"\nresults in {printable(summary.out_dir)}\n")


# ---------------------------------------------------------------------------- commands
def cmd_detect(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``earmark detect``: events for every file, written to the output folder."""
    from earmark.batch import Progress, run
    from earmark.config import ConfigError, load_options

    try:
        options = load_options(args.config, detect_overrides(args))
    except (ConfigError, ValueError) as exc:
        print(f"earmark: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.queue:  # a batch for the service's workers instead of a local run
        return service_cli.detect_via_queue(
            args.queue, args.inputs, args.output, options, args.quiet, args.json
        )
    # TerminalProgress implements every method of batch.Progress without subclassing it
    progress = Progress() if args.quiet else cast("Progress", TerminalProgress())
    try:
        summary = run(
            args.inputs,
            args.output,
            options,
            progress=progress,
            argv=["earmark", *argv],
            existing=args.existing or "refuse",
        )
    except ValueError as exc:  # options the model cannot satisfy, an unusable output folder
        print(f"earmark: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        json.dump(
            {
                "out_dir": printable(summary.out_dir),
                "resumed": summary.resumed,
                "totals": summary.manifest["totals"],
                "files": summary.manifest["files"],
                "events_by_label": {
                    k: {"events": n, "seconds": round(t, 3)}
                    for k, (n, t) in summary.counts_by_label().items()
                },
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    elif not args.quiet:
        print_summary(summary, sys.stdout)
    if args.report and not summary.output_error:  # report.html + report.md in the output folder
        try:
            paths = report.write_report(summary.out_dir)
        except (OSError, ValueError) as exc:  # the detection outputs are written all the same
            print(f"earmark: report: {exc}", file=sys.stderr)
            return EXIT_FILES_FAILED
        if not args.quiet and not args.json:
            print(f"report: {paths[0]}")
    if args.quiet:  # quiet means no progress or summary, but errors are still reported
        for result in summary.failed:
            reason = result.error or "; ".join(result.warnings)
            print(f"earmark: {result.status.upper()}: {reason}", file=sys.stderr)
    if summary.output_error:
        print(f"earmark: {summary.output_error}", file=sys.stderr)
        return EXIT_FILES_FAILED
    if not summary.results:
        print("earmark: no input files found", file=sys.stderr)
        return EXIT_FILES_FAILED
    return EXIT_FILES_FAILED if summary.failed else EXIT_OK


def cmd_models(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``earmark models``: every known model, its size, published mAP and where it was found."""
    rows = assets.list_models(verify=args.verify)
    if args.json:
        json.dump(rows, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return EXIT_OK
    header = f"{'model':<12} {'width':>5} {'params':>8} {'mAP':>6} {'size':>8}  where"
    print(header)
    for row in rows:
        params = f"{row['params'] / 1e6:.2f}M" if row.get("params") else "?"
        size = f"{row['size'] / 1e6:.1f}MB" if row.get("size") else "?"
        mark = "*" if row.get("default") else " "
        print(
            f"{row['name']:<11}{mark} {row['width']:>5g} {params:>8} "
            f"{row['published_map']:>6.3f} {size:>8}  {row['where']}"
        )
    print(f"\n* default. Searched: ${assets.MODEL_DIR_ENV}, then {assets.cache_dir()}")
    return EXIT_OK


def cmd_models_fetch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``earmark models fetch``: download and verify model files (exit 2 if any is missing)."""
    wanted = args.names or assets.needed_files()  # the same list a missing-file error gives
    status = EXIT_OK
    for name in wanted:
        try:
            found = assets.fetch(name, args.dir)
        except (KeyError, assets.AssetNotFoundError, assets.AssetIntegrityError) as exc:
            reason = exc.args[0] if isinstance(exc, KeyError) else exc
            print(f"earmark: {getattr(name, 'filename', name)}: {reason}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        if not args.quiet:
            print(f"{found.asset.filename}\t{found.source}\t{found.path}")
    return status


def cmd_labels(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``earmark labels``: the classes a model reports (for --labels, --exclude, thresholds)."""
    from earmark.labels import load_labels

    path = assets.resolve(assets.get_asset("labels")).path
    labels = load_labels(path)
    needle = (args.search or "").lower()
    for label in labels:
        if needle in label.name.lower() or needle == label.mid.lower():
            print(f"{label.index}\t{label.mid}\t{label.name}")
    return EXIT_OK


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("earmark")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="earmark",
        description="Find sound events in recordings: which sounds, when, how sure.",
    )
    parser.add_argument(
        "--version", action="version", version=f"earmark {_version()}", help="show the version"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    det = sub.add_parser(
        "detect",
        help="detect sound events in files or folders",
        description="Detect sound events (all AudioSet classes at once) with start and end "
        "times. Writes per-file and run-level events (CSV, JSON, DCASE TSV, Audacity labels), "
        "framewise scores and a run manifest to the output folder.",
    )
    det.add_argument("inputs", nargs="+", help="audio/video files, folders (recursive) or globs")
    det.add_argument("-o", "--output", default="earmark-out", help="output folder")
    existing = det.add_mutually_exclusive_group()
    existing.add_argument(
        "--overwrite",
        action="store_const",
        const="overwrite",
        dest="existing",
        help="the output folder holds an earlier run: remove its outputs, then run",
    )
    existing.add_argument(
        "--resume",
        action="store_const",
        const="resume",
        dest="existing",
        help="the output folder holds an earlier (interrupted) run with the same options: keep"
        " the files it finished (unchanged since), process the others",
    )
    det.add_argument("-c", "--config", help="TOML or YAML file with any options below")
    grp = det.add_argument_group("model")
    grp.add_argument("--model", help=f"model name (default {assets.DEFAULT_MODEL}; see 'models')")
    grp.add_argument("--checkpoint", help="explicit checkpoint file (.pt)")
    grp = det.add_argument_group("framewise scoring")
    grp.add_argument("--scoring", choices=("local", "window"), help="scoring method")
    grp.add_argument("--se-context", type=int, help="local: SE gate window in 0.32 s frames")
    grp.add_argument("--pool", type=int, help="local: head pooling window in 0.32 s frames")
    grp.add_argument("--window", type=float, help="window: clip length in seconds")
    grp.add_argument("--hop", type=float, help="window: hop in seconds")
    grp.add_argument(
        "--backend",
        choices=BACKENDS,
        help="local: who runs the network (default auto: onnxruntime when installed, else torch)",
    )
    add_event_options(det.add_argument_group("events"))
    grp = det.add_argument_group("preprocessing (default: none; see docs/report.md)")
    grp.add_argument("--denoise", choices=("spectral-gate", "wiener", "none"), help="denoising")
    grp.add_argument(
        "--normalize", type=float, nargs="?", const=-23.0, metavar="LUFS", help="loudness target"
    )
    grp.add_argument("--highpass", type=float, metavar="HZ", help="high-pass filter cut-off")
    grp = det.add_argument_group("output and running")
    grp.add_argument("--report", action="store_true", help="also write report.html/report.md")
    grp.add_argument("--formats", help="comma-separated: csv,json,tsv,audacity (default all)")
    grp.add_argument("--no-scores", action="store_true", help="do not save framewise scores")
    grp.add_argument("-j", "--jobs", type=int, help="files processed in parallel (default 1)")
    grp.add_argument(
        "--threads", type=int, help="torch threads per job (default: cores per job, less one)"
    )
    grp.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    grp.add_argument("--json", action="store_true", help="print the run summary as JSON")
    grp.add_argument(
        "--queue",
        metavar="URL",
        help="send the files to the service's workers (redis://...) as one job, "
        "wait, and write its results to the output folder",
    )
    det.set_defaults(func=cmd_detect)

    mod = sub.add_parser("models", help="list models, sizes, published mAP, where found")
    mod.add_argument("--json", action="store_true", help="machine-readable output")
    mod.add_argument("--verify", action="store_true", help="check sha256 of files found")
    mod.set_defaults(func=cmd_models)
    mod_sub = mod.add_subparsers(dest="models_command")
    fetch = mod_sub.add_parser(
        "fetch",
        help="download and verify model files into EARMARK_MODEL_DIR (or the cache)",
        description="Make sure model files are present and sha256-verified, downloading what "
        "is missing or bad. Into --dir, else $EARMARK_MODEL_DIR, else the user cache. With no "
        "names: the default model, the labels and the ontology.",
    )
    fetch.add_argument("names", nargs="*", help="model names or asset roles (labels, ontology)")
    fetch.add_argument("--dir", help="target folder (default: $EARMARK_MODEL_DIR, else cache)")
    fetch.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    fetch.set_defaults(func=cmd_models_fetch)

    lab = sub.add_parser("labels", help="list the class labels (index, mid, name)")
    lab.add_argument("search", nargs="?", help="substring of the name, or a mid")
    lab.set_defaults(func=cmd_labels)

    synth.add_parser(sub)
    tuning.add_parser(sub)
    evaluate.add_parser(sub)
    report.add_parser(sub)
    repeats.add_parser(sub)
    custom_cli.add_parser(sub)
    service_cli.add_parser(sub)
    listen_cli.add_parser(sub)
    review_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``earmark`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, argv)
    except assets.AssetNotFoundError as exc:
        print(f"earmark: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except assets.AssetIntegrityError as exc:
        print(f"earmark: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("earmark: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ModuleNotFoundError as exc:
        module = (exc.name or "").split(".")[0]
        extra = EXTRAS.get(module)
        if extra is None:
            return _internal_error(exc)
        print(
            f"earmark {args.command}: needs the '{extra}' extra (module {module} is missing):"
            f" pip install 'earmark[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except OSError as exc:  # a path named on the command line that cannot be read or written
        where = f"{printable(exc.filename)}: " if exc.filename else ""
        print(f"earmark: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_FILES_FAILED
    except Exception as exc:  # the last line of defence: no traceback reaches a user
        return _internal_error(exc)


def _internal_error(exc: BaseException) -> int:
    """Report a bug in one line; the traceback goes to a file the message names."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="earmark-error-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
        fh.write("".join(traceback.format_exception(exc)))
    message = printable(str(exc) or type(exc).__name__)
    print(
        f"earmark: unexpected error ({type(exc).__name__}: {message}); details in {path}."
        " Please report it with that file.",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
