"""Partition epochs: a fencing token per partition, strictly increasing across every replica, kept in PostgreSQL.

Why a database counter and not the activation time: clocks of different machines disagree, and a replica paused
(GC, swap, a stopped VM) longer than the broker's heartbeat may wake up still believing it owns a partition. Each
activation takes ``epoch + 1`` in one atomic upsert, and the shared alert store
(:class:`agent.alerts.PostgresAlertStore`) refuses writes stamped with an older epoch, so a stale owner can neither
publish as current nor overwrite alert state.
"""

from __future__ import annotations

import threading

import psycopg
import structlog

from agent.alerts import EPOCHS_DDL, EPOCHS_TABLE, ensure_tables
from core.errors import BrokerError, LifecycleError

__all__ = ["EpochLedger"]

log = structlog.get_logger(__name__)

_NEXT = f"""
INSERT INTO {EPOCHS_TABLE} AS e (scope, partition, epoch, owner) VALUES (%s, %s, 1, %s)
ON CONFLICT (scope, partition) DO UPDATE SET epoch = e.epoch + 1, owner = EXCLUDED.owner, updated_at = now()
RETURNING epoch
"""


class EpochLedger:
    """``next(partition)`` on every activation. ``scope`` is the super stream name, so two clusters can share a
    database. One connection, serialised by a lock (activations are rare)."""

    def __init__(self, url: str, scope: str, owner: str) -> None:
        self.scope = scope
        self.owner = owner
        self._lock = threading.Lock()
        try:
            self._db = psycopg.connect(url, autocommit=True, connect_timeout=10)
            ensure_tables(self._db, (EPOCHS_DDL,))
        except psycopg.Error as exc:
            raise BrokerError(f"cannot open the partition epoch ledger at {url.split('@')[-1]}: {exc}") from exc
        self._closed = False

    def next(self, partition: int) -> int:
        with self._lock:
            if self._closed:
                raise LifecycleError("epoch ledger is closed")
            row = self._db.execute(_NEXT, (self.scope, partition, self.owner)).fetchone()
        assert row is not None  # RETURNING always yields the row
        epoch = int(row[0])
        log.info("partition_epoch", partition=partition, epoch=epoch, owner=self.owner)
        return epoch

    def current(self, partition: int) -> int:
        """The newest epoch handed out for ``partition`` (0 when none was)."""
        with self._lock:
            row = self._db.execute(
                f"SELECT epoch FROM {EPOCHS_TABLE} WHERE scope = %s AND partition = %s", (self.scope, partition)
            ).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
