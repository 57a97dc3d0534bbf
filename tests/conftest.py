"""Shared fixtures: a private mosquitto per test module, never the shared broker on 1883."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.local_broker import LocalMosquitto


@pytest.fixture
def broker() -> Iterator[LocalMosquitto]:
    """A fresh private broker (persistence on) for one test; ``broker.restart()`` keeps queued messages."""
    with LocalMosquitto() as instance:
        yield instance
