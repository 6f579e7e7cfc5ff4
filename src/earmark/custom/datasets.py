"""Labelled clip collections for training custom classes: folders, CSV lists, ESC-50 meta files.

Three layouts are read by :func:`load_dataset`:

* **A folder per class**: ``DATA/<label>/**/*.wav`` (any audio format earmark decodes). The
  folder name is the label; files directly inside ``DATA`` are ignored (and reported).
* **A CSV list**: ``filename,label[,fold]`` with a header. File names are relative to the CSV's
  folder (or absolute). Column names are matched case-insensitively: the file column may be
  called ``filename``, ``file``, ``path`` or ``audio_filename``; the label column ``label``,
  ``category``, ``class`` or ``event_label`` (or end in ``_label``, ``_class`` or
  ``_category``); the fold column ``fold`` (or end in ``_fold``). Other columns are ignored and
  listed in the summary. ESC-50's ``meta/esc50.csv`` (``filename,fold,target,category,...``)
  works as is: its files are looked up in ``../audio/`` when not next to the CSV.
* **An ESC-50 folder**: a folder holding ``meta/esc50.csv`` and ``audio/``.

Problems are reported as :class:`DatasetError` naming the file and the cause: a missing file
(all of them are listed, up to a limit), a CSV without a usable file or label column, a fold
that is not an integer, a class with fewer examples than cross-validation needs.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

FILE_COLUMNS = ("filename", "file", "path", "audio_filename", "audio_file", "filepath")
LABEL_COLUMNS = ("label", "category", "class", "event_label", "class_name")
LABEL_SUFFIXES = ("_label", "_class", "_category")
FOLD_COLUMNS = ("fold",)
MIN_PER_CLASS = 2
"""Fewest examples per class by default (cross-validation needs one per side at least)."""
MAX_LISTED = 10
"""Missing files or bad rows listed one by one in an error message."""


class DatasetError(ValueError):
    """A dataset that cannot be used as given; the message names the file and the cause."""


@dataclass(frozen=True)
class Clip:
    """One labelled recording."""

    path: Path
    label: str
    fold: int | None = None

    @property
    def name(self) -> str:
        """The file name."""
        return self.path.name


@dataclass
class Dataset:
    """Labelled clips and where they came from."""

    clips: list[Clip]
    source: Path
    layout: str
    """``folders``, ``csv`` or ``esc50``."""
    columns: dict[str, str] = field(default_factory=dict)
    """Which CSV column gave the file, label and fold (CSV layouts only)."""
    ignored: list[str] = field(default_factory=list)
    """CSV columns not used, or stray files of a folder layout."""

    @property
    def classes(self) -> list[str]:
        """Class names, sorted: the order of the model's outputs."""
        return sorted({c.label for c in self.clips})

    @property
    def has_folds(self) -> bool:
        """True when every clip has a fold number."""
        return bool(self.clips) and all(c.fold is not None for c in self.clips)

    @property
    def folds(self) -> list[int]:
        """The distinct fold numbers, sorted (empty without folds)."""
        return sorted({c.fold for c in self.clips if c.fold is not None})

    def counts(self) -> dict[str, int]:
        """Examples per class."""
        counts = Counter(c.label for c in self.clips)
        return {label: counts[label] for label in self.classes}

    def subset(self, keep: Sequence[int]) -> Dataset:
        """A dataset with the clips at the given positions."""
        return Dataset(
            [self.clips[i] for i in keep], self.source, self.layout, self.columns, self.ignored
        )

    def summary(self) -> dict:
        """Counts per class and fold, for printing before training and for the model's config."""
        per_fold: dict[str, dict[str, int]] = {}
        for clip in self.clips:
            key = "none" if clip.fold is None else str(clip.fold)
            per_fold.setdefault(key, {}).setdefault(clip.label, 0)
            per_fold[key][clip.label] += 1
        counts = self.counts()
        return {
            "source": str(self.source),
            "layout": self.layout,
            "columns": self.columns,
            "ignored": self.ignored,
            "n_clips": len(self.clips),
            "n_classes": len(counts),
            "classes": counts,
            "folds": self.folds,
            "per_fold": {k: per_fold[k] for k in sorted(per_fold)},
            "smallest_class": min(counts.values()) if counts else 0,
            "largest_class": max(counts.values()) if counts else 0,
        }

    def format_summary(self) -> str:
        """A short human-readable table of the dataset."""
        s = self.summary()
        lines = [
            f"dataset {s['source']} ({s['layout']}): {s['n_clips']} clips, "
            f"{s['n_classes']} classes, "
            + (f"folds {', '.join(map(str, s['folds']))}" if s["folds"] else "no folds")
        ]
        if self.columns:
            lines.append("  columns: " + ", ".join(f"{k}={v!r}" for k, v in self.columns.items()))
        if self.ignored:
            shown = ", ".join(self.ignored[:8]) + (" ..." if len(self.ignored) > 8 else "")
            lines.append(f"  ignored: {shown}")
        width = max((len(c) for c in s["classes"]), default=5)
        folds = self.folds
        header = f"  {'class':<{width}}  {'clips':>5}"
        if folds:
            header += "  " + " ".join(f"f{f:<3}" for f in folds)
        lines.append(header.rstrip())
        for label, n in s["classes"].items():
            row = f"  {label:<{width}}  {n:>5}"
            if folds:
                row += "  " + " ".join(
                    f"{s['per_fold'].get(str(f), {}).get(label, 0):<4}" for f in folds
                )
            lines.append(row.rstrip())
        if s["smallest_class"] and s["largest_class"] > 3 * s["smallest_class"]:
            lines.append(
                f"  note: classes are imbalanced ({s['smallest_class']} to "
                f"{s['largest_class']} clips); macro-F1 is the figure to watch"
            )
        return "\n".join(lines)


def _audio_extensions() -> frozenset[str]:
    from earmark.inputs import AUDIO_EXTENSIONS

    return AUDIO_EXTENSIONS


def _pick_column(header: Sequence[str], exact: Sequence[str], suffixes: Sequence[str] = ()) -> str:
    lower = {h.strip().lower(): h for h in header}
    for name in exact:
        if name in lower:
            return lower[name]
    for suffix in suffixes:
        for key, original in lower.items():
            if key.endswith(suffix):
                return original
    return ""


def _load_folders(root: Path) -> Dataset:
    extensions = _audio_extensions()
    clips: list[Clip] = []
    ignored = sorted(
        p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in extensions
    )
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in sub.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        clips += [Clip(p, sub.name) for p in files]
    if not clips:
        raise DatasetError(
            f"{root}: no audio found in class subfolders (expected {root}/<label>/<files>, "
            "or give a CSV with filename,label[,fold])"
        )
    return Dataset(clips, root, "folders", ignored=ignored)


def _resolve(value: str, bases: Sequence[Path]) -> Path | None:
    path = Path(value)
    if path.is_absolute():
        return path if path.is_file() else None
    for base in bases:
        candidate = base / path
        if candidate.is_file():
            return candidate
    return None


def _load_csv(
    path: Path,
    file_column: str | None = None,
    label_column: str | None = None,
    fold_column: str | None = None,
    layout: str = "csv",
) -> Dataset:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            sample = handle.read(4096)
            handle.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel
            reader = csv.DictReader(handle, dialect=dialect)
            header = [h for h in (reader.fieldnames or []) if h is not None]
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a UTF-8 text file ({exc})") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}: malformed CSV ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not header:
        raise DatasetError(f"{path}: empty CSV (expected a header filename,label[,fold])")

    def choose(given: str | None, exact: Sequence[str], suffixes: Sequence[str], what: str) -> str:
        if given:
            if given not in header:
                raise DatasetError(
                    f"{path}: no column {given!r} for the {what}; columns are {header}"
                )
            return given
        return _pick_column(header, exact, suffixes)

    fcol = choose(file_column, FILE_COLUMNS, (), "file")
    lcol = choose(label_column, LABEL_COLUMNS, LABEL_SUFFIXES, "label")
    kcol = choose(fold_column, FOLD_COLUMNS, ("_fold",), "fold")
    if not fcol or not lcol:
        missing = " and ".join(what for what, col in (("file", fcol), ("label", lcol)) if not col)
        raise DatasetError(
            f"{path}: unknown columns {header}: no {missing} column. Expected a header "
            f"like filename,label[,fold] (file: {', '.join(FILE_COLUMNS)}; label: "
            f"{', '.join(LABEL_COLUMNS)} or *_label/*_class/*_category; fold: fold)"
        )
    # a CSV may name files relative to itself, or (ESC-50: meta/esc50.csv) to ../audio/
    bases = [path.parent, path.parent.parent / "audio", path.parent / "audio", path.parent.parent]
    # when several columns could name the file (ESC-10 meta: path and filename), use the first
    # that resolves
    file_candidates = [fcol] + [
        h for h in header if h.strip().lower() in FILE_COLUMNS and h != fcol and not file_column
    ]
    clips: list[Clip] = []
    missing_files: list[str] = []
    bad_rows: list[str] = []
    chosen_file_col = fcol
    for candidate in file_candidates:
        first = next((r for r in rows if (r.get(candidate) or "").strip()), None)
        if first is not None and _resolve(first[candidate].strip(), bases) is not None:
            chosen_file_col = candidate
            break
    for n, row in enumerate(rows, start=2):
        name = (row.get(chosen_file_col) or "").strip()
        label = (row.get(lcol) or "").strip()
        if not name and not label and not any((v or "").strip() for v in row.values()):
            continue  # blank line
        if not name or not label:
            bad_rows.append(f"line {n}: empty {'file' if not name else 'label'}")
            continue
        fold = None
        if kcol:
            raw = (row.get(kcol) or "").strip()
            if raw:
                try:
                    fold = int(float(raw))
                except ValueError:
                    bad_rows.append(f"line {n}: fold {raw!r} is not an integer")
                    continue
        resolved = _resolve(name, bases)
        if resolved is None:
            missing_files.append(f"line {n}: {name}")
            continue
        clips.append(Clip(resolved, label, fold))
    problems = []
    if bad_rows:
        problems.append(f"{len(bad_rows)} bad row(s): " + "; ".join(bad_rows[:MAX_LISTED]))
    if missing_files:
        problems.append(
            f"{len(missing_files)} missing file(s) (looked in "
            + ", ".join(str(b) for b in bases[:2])
            + "): "
            + "; ".join(missing_files[:MAX_LISTED])
            + (" ..." if len(missing_files) > MAX_LISTED else "")
        )
    if problems:
        raise DatasetError(f"{path}: " + " | ".join(problems))
    if not clips:
        raise DatasetError(f"{path}: no rows")
    if kcol and any(c.fold is None for c in clips):
        n_none = sum(c.fold is None for c in clips)
        raise DatasetError(f"{path}: {n_none} row(s) have no value in the fold column {kcol!r}")
    used = {chosen_file_col, lcol, kcol} - {""}
    columns = {"file": chosen_file_col, "label": lcol}
    if kcol:
        columns["fold"] = kcol
    ignored = [h for h in header if h not in used]
    return Dataset(clips, path, layout, columns=columns, ignored=ignored)


def load_dataset(
    source: str | Path,
    min_per_class: int = MIN_PER_CLASS,
    file_column: str | None = None,
    label_column: str | None = None,
    fold_column: str | None = None,
) -> Dataset:
    """Read a labelled dataset: a folder per class, a CSV list, or an ESC-50 folder.

    Raises:
        DatasetError: the source is missing, empty or malformed, a listed file is missing, or
            a class has fewer than ``min_per_class`` examples (all of them are named).
    """
    source = Path(source).expanduser()
    if source.is_dir():
        meta = source / "meta" / "esc50.csv"
        if meta.is_file():
            dataset = _load_csv(meta, file_column, label_column, fold_column, layout="esc50")
        else:
            dataset = _load_folders(source)
    elif source.is_file():
        if source.suffix.lower() not in (".csv", ".tsv", ".txt"):
            raise DatasetError(
                f"{source}: not a dataset (give a folder with one subfolder per class, or a "
                "CSV with filename,label[,fold])"
            )
        dataset = _load_csv(source, file_column, label_column, fold_column)
    else:
        raise DatasetError(f"{source}: no such folder or CSV file")
    counts = dataset.counts()
    if len(counts) < 2:
        raise DatasetError(
            f"{source}: {len(counts)} class(es) found ({', '.join(counts) or 'none'}); "
            "a classifier needs at least 2"
        )
    small = {label: n for label, n in counts.items() if n < min_per_class}
    if small:
        listed = ", ".join(f"{label!r} ({n})" for label, n in sorted(small.items()))
        raise DatasetError(
            f"{source}: class(es) with fewer than {min_per_class} examples: {listed}. "
            "Add clips, merge or drop these classes."
        )
    return dataset
