"""Durable alert history in SQLite, so a restart neither loses nor repeats active alerts.

One row per alert holding its latest JSON (with the full transition history inside), and one row per change of a
patient's forecast mute (append-only: who muted, why, until when; unmuted; expired). The connection is shared across
threads and every call is serialised by one lock, because the ack path and the forecast path may run on different
threads.

Why a rollback journal and not WAL: WAL keeps its index in a ``-shm`` file that SQLite memory-maps, and a mapped
file that shrinks or cannot be extended (truncated, disk full, made unwritable) kills the process with SIGBUS, which
no ``except`` can catch (issue #19: the agent died within 3 s). ``journal_mode=DELETE`` with ``mmap_size=0`` maps
nothing, so every fault of the file or the disk is an :class:`sqlite3.Error`, raised here as
:class:`StoreUnavailable` for the service to ride out. Alert traffic is a few writes a minute, so WAL's concurrency
is not needed; a reader (``alerts history``) waits at most the busy timeout for a write to finish.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import structlog

from core.errors import BrokerError, ConfigError, LifecycleError

from ._model import ACTIVE_STATES, Alert, Mute

__all__ = ["AlertReads", "AlertStore", "Fence", "StoreUnavailable", "mute_rows"]

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 1
_DDL = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id   TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    state      TEXT NOT NULL,
    raised_at  REAL NOT NULL,
    updated_at REAL NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_patient ON alerts (patient_id, raised_at);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state);
CREATE TABLE IF NOT EXISTS alert_mutes (
    id         INTEGER PRIMARY KEY,
    patient_id TEXT NOT NULL,
    action     TEXT NOT NULL,
    at         REAL NOT NULL,
    until_at   REAL,
    body       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_mutes_patient ON alert_mutes (patient_id, id);
"""
_ACTIVE = f"state IN ({', '.join(repr(s) for s in ACTIVE_STATES)})"
BUSY_TIMEOUT_S = 1.0
"""How long a write waits for another connection's lock (``alerts history`` reading) before it counts as a fault:
the forecast path holds the alert lock meanwhile, so this bounds how long a locked file can delay it."""


class StoreUnavailable(BrokerError):
    """The alert store cannot be read or written now (disk full, file locked, unwritable or removed, database
    unreachable). A fault of the medium, not of the data: the alert service holds what it could not write and
    retries (docs/ALERTS.md section 9)."""


@dataclass(frozen=True)
class Fence:
    """The writer's claim: it owns ``partition`` of super stream ``scope`` under ``epoch``."""

    scope: str
    partition: int
    epoch: int


class AlertReads:
    """The queries both stores share. A subclass names its tables, its parameter placeholder and the tie-break of
    equal ``raised_at``, opens ``_db`` (a DB-API connection: sqlite3 or psycopg) guarded by ``_lock``, and says in
    ``_check_open`` whether it is still open."""

    _table = "alerts"
    _mutes = "alert_mutes"
    _p = "?"
    _tiebreak = "rowid"
    _driver_errors: tuple[type[Exception], ...] = ()  # what the driver raises for a fault of the medium
    _lock: threading.Lock
    _db: Any
    path: Path | str

    def _check_open(self) -> None:
        raise NotImplementedError

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        """The driver's error, naming the store (never its credentials: ``path`` has none)."""
        return StoreUnavailable(f"alert store {self.path}: {exc}")

    def _bodies(self, sql: str, params: tuple[object, ...]) -> list[str]:
        with self._lock:
            self._check_open()
            try:
                rows = self._db.execute(sql, params).fetchall()
            except self._driver_errors as exc:
                raise self._unavailable(exc) from exc
        return [body for (body,) in rows]

    def _query(self, sql: str, params: tuple[object, ...]) -> list[Alert]:
        return [Alert.model_validate_json(body) for body in self._bodies(sql, params)]

    def _mute_query(self, sql: str, params: tuple[object, ...]) -> list[Mute]:
        return [Mute.model_validate_json(body) for body in self._bodies(sql, params)]

    def get(self, alert_id: str) -> Alert | None:
        rows = self._query(f"SELECT body FROM {self._table} WHERE alert_id = {self._p}", (alert_id,))
        return rows[0] if rows else None

    def active(self) -> list[Alert]:
        """Every active (raised or acknowledged) alert of every patient, oldest first."""
        return self._query(f"SELECT body FROM {self._table} WHERE {_ACTIVE} ORDER BY raised_at", ())

    def active_for(self, patient_id: str) -> list[Alert]:
        """One patient's active alerts, oldest first: what a replica taking the patient over continues."""
        where = f"patient_id = {self._p} AND {_ACTIVE}"
        return self._query(f"SELECT body FROM {self._table} WHERE {where} ORDER BY raised_at", (patient_id,))

    def history(self, patient_id: str, limit: int) -> list[Alert]:
        """A patient's alerts, newest raised first, active and ended."""
        order = f"raised_at DESC, {self._tiebreak} DESC"
        return self._query(
            f"SELECT body FROM {self._table} WHERE patient_id = {self._p} ORDER BY {order} LIMIT {self._p}",
            (patient_id, limit),
        )

    def mute_history(self, patient_id: str, limit: int) -> list[Mute]:
        """A patient's forecast mute changes, newest first; the first is the current state."""
        where = f"patient_id = {self._p}"
        return self._mute_query(
            f"SELECT body FROM {self._mutes} WHERE {where} ORDER BY id DESC LIMIT {self._p}", (patient_id, limit)
        )

    def active_mutes(self, now: float) -> list[Mute]:
        """Every patient's mute that is in force at ``now``: the patient's latest change, a mute not yet over."""
        latest = f"id = (SELECT MAX(id) FROM {self._mutes} WHERE patient_id = m.patient_id)"
        where = f"action = 'muted' AND until_at > {self._p} AND {latest}"
        return self._mute_query(f"SELECT body FROM {self._mutes} AS m WHERE {where} ORDER BY id", (now,))

    def _mute_insert(self) -> str:
        columns = "patient_id, action, at, until_at, body"
        return f"INSERT INTO {self._mutes} ({columns}) VALUES ({', '.join([self._p] * 5)})"


def mute_rows(mutes: Iterable[Mute]) -> list[tuple[str, str, float, float | None, str]]:
    """Rows of the mute history table, in the column order of :meth:`AlertReads._mute_insert`."""
    return [(m.patient_id, m.action, m.at, m.until, m.model_dump_json()) for m in mutes]


class StoreState(Enum):
    OPENED = "opened"
    FAILED = "failed"  # a reopen failed: faults until the next one succeeds
    CLOSED = "closed"


class AlertStore(AlertReads):
    """SQLite-backed alert rows. ``path`` ':memory:' keeps nothing across instances (tests of the policy only)."""

    _driver_errors = (sqlite3.Error,)

    def __init__(self, path: Path | str) -> None:
        """Open (creating the file and its directories); raises StoreUnavailable when the file cannot be opened,
        LifecycleError when it holds another schema version."""
        self.path = path
        self._lock = threading.Lock()
        self._state = StoreState.FAILED
        self._identity: tuple[int, int] | None = None
        self.created = self._open()
        log.info("alert_store_opened", path=str(path), created=self.created)

    def _open(self) -> bool:
        """Connect and configure; True when the file was new (no schema yet). Call with the lock held or from
        ``__init__``."""
        try:
            if str(self.path) != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_S)
        except (OSError, sqlite3.Error) as exc:
            raise self._unavailable(exc) from exc
        try:
            created = self._configure(db)
        except sqlite3.Error as exc:
            db.close()
            raise self._unavailable(exc) from exc
        except LifecycleError:
            db.close()
            raise
        self._db = db
        self._identity = self._file_identity()
        self._state = StoreState.OPENED
        return created

    def _configure(self, db: sqlite3.Connection) -> bool:
        """Rollback journal, no memory map (module docstring: SIGBUS), full sync; the schema. True when new."""
        mode = db.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        if mode not in ("delete", "memory"):
            raise sqlite3.OperationalError(f"journal_mode is {mode}, not delete (another process holds it in WAL)")
        db.execute("PRAGMA mmap_size=0")
        db.execute("PRAGMA synchronous=FULL")  # a rollback journal is durable across power loss only with FULL
        db.executescript(_DDL)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise LifecycleError(f"alert store {self.path} has schema version {version}, expected {SCHEMA_VERSION}")
        return bool(version == 0)

    def reopen(self) -> bool:
        """Close and connect again (the file may have been removed and recreated, or a lock released); True when
        the file is new, so its owner must write back everything it holds. Raises StoreUnavailable."""
        with self._lock:
            if self._state is StoreState.CLOSED:
                raise LifecycleError(f"alert store {self.path} is closed")
            self._close_db()
            self._state = StoreState.FAILED
            self.created = self._open()
            return self.created

    def save(self, alerts: Iterable[Alert], fence: Fence | None = None, mutes: Iterable[Mute] = ()) -> None:
        """Insert or replace each alert's row and append each mute change, all in one transaction. A local file
        cannot fence replicas. Raises StoreUnavailable when the file cannot be written."""
        if fence is not None:
            raise ConfigError("fenced alert writes (a cluster replica) need the shared store: set alerts.store_url")
        rows = [(a.alert_id, a.patient_id, a.state, a.raised_at, a.updated_at, a.model_dump_json()) for a in alerts]
        changes = mute_rows(mutes)
        if not rows and not changes:
            return
        with self._lock:
            self._check_open()
            try:
                self._write(rows, changes)
            except sqlite3.Error as exc:
                raise self._unavailable(exc) from exc

    def _write(self, rows: list[tuple[Any, ...]], changes: list[tuple[str, str, float, float | None, str]]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("INSERT OR REPLACE INTO alerts VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._db.executemany(self._mute_insert(), changes)
            self._db.execute("COMMIT")
        except sqlite3.Error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Idempotent."""
        with self._lock:
            self._close_db()
            self._state = StoreState.CLOSED

    def _close_db(self) -> None:
        if self._state is StoreState.OPENED:
            try:
                self._db.close()
            except sqlite3.Error as exc:  # closing a connection to a vanished file: nothing left to lose
                log.warning("alert_store_close_failed", path=str(self.path), error=str(exc))

    def _file_identity(self) -> tuple[int, int] | None:
        """(device, inode) of the file, None for ':memory:': how a removed or replaced file is noticed."""
        if str(self.path) == ":memory:":
            return None
        stat = os.stat(self.path)
        return (stat.st_dev, stat.st_ino)

    def _check_open(self) -> None:
        """Closed: a LifecycleError. Failed, or the file removed or replaced under the open connection (writes would
        go to an unlinked inode and vanish at exit): StoreUnavailable."""
        if self._state is StoreState.CLOSED:
            raise LifecycleError(f"alert store {self.path} is closed")
        if self._state is StoreState.FAILED:
            raise StoreUnavailable(f"alert store {self.path} is not open (its last reopen failed)")
        if self._identity is not None:
            try:
                now = self._file_identity()
            except OSError:
                now = None
            if now != self._identity:
                raise StoreUnavailable(f"alert store {self.path} was removed or replaced")
