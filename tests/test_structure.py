"""The house rules of the package, read from its source: no import cycles, the core never
imports a wing, no private name crosses modules, every module says what it holds, and no new
module grows past ~600 lines (docs/architecture.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "earmark"

CORE = {
    "earmark.asset_registry",
    "earmark.assets",
    "earmark.audio",
    "earmark.backends",
    "earmark.batch",
    "earmark.boundaries",
    "earmark.config",
    "earmark.constants",
    "earmark.containers",
    "earmark.downloads",
    "earmark.events",
    "earmark.extensions",
    "earmark.features",
    "earmark.inputs",
    "earmark.labels",
    "earmark.mel",
    "earmark.model",
    "earmark.outputs",
    "earmark.pipeline",
    "earmark.postprocessing",
    "earmark.preprocess",
    "earmark.python_api",
    "earmark.scoring",
    "earmark.signal_stats",
    "earmark.sounds",
    "earmark.tagger",
    "earmark.waveform",
}
"""The detection path: audio -> features -> model -> scoring -> events -> outputs."""

CUSTOM = "earmark.custom"
"""The custom-classes wing: everything ``earmark train`` writes and what uses it."""
CUSTOM_IMPORTERS = {"earmark.cli", "earmark.service.routes.catalog"}
"""The only modules outside :data:`CUSTOM` that import it (its sub-commands; the service's list
of custom models). The detection path reaches it through the ``earmark.classes`` entry point."""

REVIEW = "earmark.review"
"""The review wing (``earmark review``): imported only by the command line and the service's
review routes; the custom wing reads the files it writes (``train --from-reviews``) and never
imports it."""
REVIEW_IMPORTERS = {"earmark.cli", "earmark.service.routes.review"}

OVERSIZE: dict[str, int] = {}
"""Modules allowed over 600 lines, with the size they may not pass (none now: issue 19 split
the last ones)."""
MAX_LINES = 600


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (migrations left out)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> tuple[set[str], list[str]]:
    """Modules of the package that ``name`` imports (at any level, functions included), and
    the private names it imports from them."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets, private = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("earmark"):
                continue
            subs = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in known]
            # `from earmark import assets` imports the module, not the package's __init__
            targets.update(subs if len(subs) == len(node.names) else [module, *subs])
            private += [
                f"{module}.{a.name}"
                for a in node.names
                if a.name.startswith("_") and not a.name.startswith("__")
            ]
        elif isinstance(node, ast.Import):
            targets.update(a.name for a in node.names if a.name in known)
    return {t for t in targets if t in known and t != name}, private


def graph() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    mods = modules()
    edges, private = {}, {}
    for name, path in mods.items():
        edges[name], private[name] = imports(name, path, set(mods))
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    edges, _ = graph()
    assert cycles(edges) == []


def test_cycle_finder_finds_a_cycle() -> None:
    """The check above would see one: a -> b -> c -> a."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_core_never_imports_a_wing() -> None:
    edges, _ = graph()
    assert set(edges) >= CORE, sorted(CORE - set(edges))
    wrong = sorted(f"{a} -> {b}" for a in CORE for b in edges[a] if b not in CORE)
    assert wrong == []


def test_custom_classes_are_one_wing() -> None:
    edges, _ = graph()
    assert CUSTOM in edges

    def inside(name: str) -> bool:
        return name == CUSTOM or name.startswith(f"{CUSTOM}.")

    importers = {a for a, targets in edges.items() if not inside(a) and any(map(inside, targets))}
    assert importers <= CUSTOM_IMPORTERS, sorted(importers - CUSTOM_IMPORTERS)


def test_review_is_a_wing() -> None:
    edges, _ = graph()
    assert REVIEW in edges

    def inside(name: str) -> bool:
        return name == REVIEW or name.startswith(f"{REVIEW}.")

    importers = {a for a, targets in edges.items() if not inside(a) and any(map(inside, targets))}
    assert importers <= REVIEW_IMPORTERS, sorted(importers - REVIEW_IMPORTERS)


def test_entry_points_name_existing_objects() -> None:
    """Every ``module:name`` of pyproject.toml (scripts, the ``earmark.classes`` provider) is a
    module of the package that defines that name: a moved module cannot leave one behind."""
    text = (PACKAGE.parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    targets = re.findall(r'^\s*[\w-]+\s*=\s*"(earmark[\w.]*):(\w+)"', text, re.MULTILINE)
    assert ("earmark.cli", "main") in targets
    mods = modules()
    for module, name in targets:
        assert module in mods, module
        tree = ast.parse(mods[module].read_text(encoding="utf-8"))
        defined = {
            t.id
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name)
        } | {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)}
        assert name in defined, f"{module}:{name}"


def test_no_private_names_across_modules() -> None:
    _, private = graph()
    assert {name: names for name, names in private.items() if names} == {}


def test_every_module_says_what_it_holds() -> None:
    missing = [
        name
        for name, path in modules().items()
        if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert missing == []


def test_modules_stay_small() -> None:
    sizes = {
        name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()
    }
    too_big = {name: n for name, n in sizes.items() if n > OVERSIZE.get(name, MAX_LINES)}
    assert too_big == {}
