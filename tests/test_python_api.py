"""The one-call Python API's signature: every knob a typed keyword-only parameter whose default
is the command line's, a misspelt option a TypeError naming it, before any model is loaded."""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import earmark
from earmark import python_api
from earmark.boundaries import RefineOptions
from earmark.events import PostprocessOptions
from earmark.scoring import ScoringOptions
from earmark.tagger import Tagger

LEADING = ["source", "sample_rate", "model"]
"""The only parameters that may be given by position (as before)."""


def knobs(function: object) -> dict[str, inspect.Parameter]:
    params = inspect.signature(function).parameters  # type: ignore[arg-type]
    return {n: p for n, p in params.items() if n not in LEADING}


def default_of(field: dataclasses.Field) -> object:
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()  # type: ignore[misc]


@pytest.mark.parametrize("function", [earmark.detect, earmark.frame_scores])
def test_leading_parameters_then_keyword_only(function: object) -> None:
    params = list(inspect.signature(function).parameters.values())  # type: ignore[arg-type]
    assert [p.name for p in params[:3]] == LEADING
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params[:3])
    named = [p for p in params[3:] if p.kind is not p.VAR_KEYWORD]
    assert named, "no named options"
    for p in named:
        assert p.kind is p.KEYWORD_ONLY, p.name
        assert p.annotation is not p.empty, f"{p.name} has no type"
        assert p.default is not p.empty, f"{p.name} has no default"
    doc = inspect.getdoc(function) or ""
    assert all(p.name in doc for p in named), "every option is documented"


def test_detect_names_every_option_with_the_same_default() -> None:
    """Every field of the three option classes is a keyword of detect(), with the default the
    command line uses (``None`` standing for an empty per-class dict)."""
    params = knobs(earmark.detect)
    fields = [
        f
        for cls in (PostprocessOptions, ScoringOptions, RefineOptions)
        for f in dataclasses.fields(cls)
    ]
    assert sorted(params) == sorted(f.name for f in fields)
    for f in fields:
        expected = default_of(f)
        got = params[f.name].default
        assert got == expected or (got is None and expected == {}), f.name


def test_frame_scores_names_every_scoring_option_with_the_same_default() -> None:
    params = knobs(earmark.frame_scores)
    named = {n: p for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    assert sorted(named) == sorted(f.name for f in dataclasses.fields(ScoringOptions))
    for f in dataclasses.fields(ScoringOptions):
        assert named[f.name].default == default_of(f), f.name


def test_still_importable_from_pipeline() -> None:
    from earmark.pipeline import detect, frame_scores

    assert detect is python_api.detect and frame_scores is python_api.frame_scores


@pytest.fixture()
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a model fails the test: bad options must be refused before."""

    def refuse(*args: object, **kwargs: object) -> Tagger:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(python_api, "load_model", refuse)


def test_unknown_option_is_a_type_error_naming_it(no_model: None, tmp_path: Path) -> None:
    path = tmp_path / "missing.wav"
    with pytest.raises(TypeError, match="treshold"):
        earmark.detect(path, treshold=0.5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="threshold_typo"):
        earmark.frame_scores(path, threshold_typo=1)
    with pytest.raises(TypeError, match="positional"):
        earmark.detect(path, None, None, 0.3)  # type: ignore[misc]


def test_bad_value_is_a_value_error_before_loading(no_model: None, tmp_path: Path) -> None:
    path = tmp_path / "missing.wav"
    with pytest.raises(ValueError, match="threshold"):
        earmark.detect(path, threshold=2.0)
    with pytest.raises(ValueError, match="level"):
        earmark.detect(path, level=1.5)
    with pytest.raises(ValueError, match="scoring method"):
        earmark.frame_scores(path, method="nope")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tagger(model_dir: Path) -> Iterator[Tagger]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield earmark.load_model()
    torch.set_num_threads(threads)


def test_old_call_forms_still_work(tagger: Tagger) -> None:
    """Positional sample rate and model, options by keyword, as before; the post-processing
    options frame_scores() always ignored are still accepted, with a DeprecationWarning."""
    rng = np.random.default_rng(0)
    audio = (0.01 * rng.standard_normal(32000 * 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        events = earmark.detect(audio, 32000, tagger, threshold=0.9, refine=False)
        plain = earmark.frame_scores(audio, 32000, tagger)
    assert isinstance(events, list)
    with pytest.warns(DeprecationWarning, match="threshold"):
        old = earmark.frame_scores(audio, 32000, tagger, threshold=0.3)
    np.testing.assert_array_equal(old.scores, plain.scores)
    with pytest.warns(DeprecationWarning, match="embeddings"):
        earmark.detect(audio, 32000, tagger, embeddings=True, refine=False)
