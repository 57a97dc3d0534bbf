"""Fixtures of the cluster tests: a private RabbitMQ 4 (Debian 13 rootfs, chroot) and the local PostgreSQL.

Locally, a missing rootfs or database skips with the command that fixes it; in CI (CI=true) it fails, because
.ci/run prepares both and a silent skip would hide a broken scale-out path.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import structlog

from agent.cluster import PrivateRabbitMQ, rootfs_ready

PG_URL = os.environ.get("ECGCAST_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must provide it: see .ci/run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def rabbit() -> Iterator[PrivateRabbitMQ]:
    if not rootfs_ready():
        _unavailable("no RabbitMQ 4 rootfs: run 'python main.py cluster broker --prepare' (root, debootstrap)")
    if os.geteuid() != 0:
        _unavailable("the private RabbitMQ 4 runs chrooted: needs root")
    with PrivateRabbitMQ() as node:
        yield node


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A schema of its own in the local PostgreSQL, dropped afterwards: alert rows of other runs stay out."""
    schema = f"ecgcast_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        _unavailable(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{PG_URL}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``main.py`` commands point structlog at the test's captured stderr; later tests must not inherit it."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def scope() -> str:
    """A super stream name of its own per test: epochs and streams of other tests never interfere."""
    return f"t{uuid.uuid4().hex[:10]}.waves"
