"""Encoder tests run torch on one thread (the shared encoder fixtures live in tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    """On a shared 2-core machine two spinning torch threads run far slower than one."""
    torch.set_num_threads(1)
