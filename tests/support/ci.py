"""What a test does when something it needs is missing: skip on a laptop, fail under ``CI=true``.

CI is meant to have every broker, tool and toolchain; a test skipped there would pass a red build
off as green. ``tests/conftest.py`` also turns any skip under CI into a failure, so a test that
skips by another path (a plain ``pytest.skip``, a ``skipif``) cannot slip through either.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """Whether this run is CI, where every broker and tool is mandatory."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(message: str) -> NoReturn:
    """Fail under CI, skip elsewhere, saying what is missing (``message``) and how to get it."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: this test may not be skipped)")
    pytest.skip(message)
