"""Fixtures shared by the station's browser tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .chromium import open_browser


@pytest.fixture
def browser() -> Iterator[object]:
    """A headless Chromium driver (tests that take it carry ``chromium.needs_chromium``)."""
    yield from open_browser()
