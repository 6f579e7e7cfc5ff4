"""One rule for a test whose requirement (data, a program) is missing: it fails under
``CI=true``, where everything must be there, and is skipped with the reason elsewhere."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(message: str) -> NoReturn:
    """Fail (under ``CI=true``) or skip the running test, saying what is missing."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
