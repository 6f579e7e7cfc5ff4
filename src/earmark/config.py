"""Config files for detection runs: TOML or YAML holding any :class:`DetectOptions` field.

Keys may be nested as written by a run (``scoring: {method: local}``,
``postprocess: {threshold: 0.3}``) or flat (``threshold = 0.3``): a flat key is placed in the
section that owns it. Unknown keys are an error, so a typo never passes silently.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import yaml

from earmark.boundaries import RefineOptions
from earmark.events import PostprocessOptions
from earmark.pipeline import DetectOptions
from earmark.preprocess import PreprocessOptions
from earmark.scoring import ScoringOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

SECTIONS: dict[str, type] = {
    "scoring": ScoringOptions,
    "postprocess": PostprocessOptions,
    "boundaries": RefineOptions,
    "preprocess": PreprocessOptions,
}


class ConfigError(ValueError):
    """A config file that cannot be read or holds unknown or ill-typed keys."""


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a ``.toml``, ``.yaml``/``.yml`` or ``.json`` file into a dict."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from exc
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of option names to values")
    return data


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def normalise(data: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Turn flat or nested option dicts into the nested form of :class:`DetectOptions`."""
    top = _field_names(DetectOptions) - set(SECTIONS)
    out: dict[str, Any] = {name: {} for name in SECTIONS}
    known: str | list[str]
    for key, value in data.items():
        key_norm = key.replace("-", "_")
        if key_norm in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{key}' must be a table of options")
            allowed = _field_names(SECTIONS[key_norm])
            for sub, sub_value in value.items():
                sub_norm = sub.replace("-", "_")
                if sub_norm not in allowed:
                    known = ", ".join(sorted(allowed))
                    raise ConfigError(f"{source}: unknown option '{key}.{sub}'; known: {known}")
                out[key_norm][sub_norm] = sub_value
        elif key_norm in top:
            out[key_norm] = value
        else:
            owner = [name for name, cls in SECTIONS.items() if key_norm in _field_names(cls)]
            if not owner:
                known = sorted(top | set().union(*(_field_names(c) for c in SECTIONS.values())))
                raise ConfigError(f"{source}: unknown option '{key}'; known: {', '.join(known)}")
            out[owner[0]][key_norm] = value
    return out


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Nested merge: values in ``override`` win."""
    result = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = {**result[key], **value}
        else:
            result[key] = value
    return result


def build_options(nested: dict[str, Any], source: str = "config") -> DetectOptions:
    """Construct and validate :class:`DetectOptions` from the nested form."""
    try:
        kwargs = {k: v for k, v in nested.items() if k not in SECTIONS}
        if "formats" in kwargs:
            formats = kwargs["formats"]
            kwargs["formats"] = tuple(formats.split(",") if isinstance(formats, str) else formats)
        defaults = DetectOptions()
        options = DetectOptions(
            scoring=dataclasses.replace(defaults.scoring, **nested.get("scoring", {})),
            postprocess=dataclasses.replace(defaults.postprocess, **nested.get("postprocess", {})),
            boundaries=dataclasses.replace(defaults.boundaries, **nested.get("boundaries", {})),
            preprocess=dataclasses.replace(defaults.preprocess, **nested.get("preprocess", {})),
            **kwargs,
        )
        options.validate()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    return options


def load_options(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> DetectOptions:
    """Options from an optional config file, with ``overrides`` (flat or nested) on top."""
    nested: dict[str, Any] = {}
    if path is not None:
        nested = normalise(read_config_file(path), str(path))
    if overrides:
        nested = merge(nested, normalise(overrides, "command line"))
    return build_options(nested, str(path) if path else "options")
