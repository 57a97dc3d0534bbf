"""Durable alert history in SQLite, so a restart neither loses nor repeats active alerts.

One row per alert holding its latest JSON (with the full transition history inside), and one row per change of a
patient's forecast mute (append-only: who muted, why, until when; unmuted; expired). WAL mode lets a reader (the
history query of a status page) run beside the writer; the connection is shared across threads and every call is
serialised by one lock, because the ack path and the forecast path may run on different threads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import structlog

from core.errors import ConfigError, LifecycleError

from ._model import ACTIVE_STATES, Alert, Mute

__all__ = ["AlertReads", "AlertStore", "Fence", "mute_rows"]

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
    _lock: threading.Lock
    _db: Any

    def _check_open(self) -> None:
        raise NotImplementedError

    def _bodies(self, sql: str, params: tuple[object, ...]) -> list[str]:
        with self._lock:
            self._check_open()
            rows = self._db.execute(sql, params).fetchall()
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
    CLOSED = "closed"


class AlertStore(AlertReads):
    """SQLite-backed alert rows. ``path`` ':memory:' keeps nothing across instances (tests of the policy only)."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        self._db.executescript(_DDL)
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            self._db.close()
            raise LifecycleError(f"alert store {path} has schema version {version}, expected {SCHEMA_VERSION}")
        self._state = StoreState.OPENED
        self.path = path
        log.info("alert_store_opened", path=str(path))

    def save(self, alerts: Iterable[Alert], fence: Fence | None = None, mutes: Iterable[Mute] = ()) -> None:
        """Insert or replace each alert's row and append each mute change, all in one transaction. A local file
        cannot fence replicas."""
        if fence is not None:
            raise ConfigError("fenced alert writes (a cluster replica) need the shared store: set alerts.store_url")
        rows = [(a.alert_id, a.patient_id, a.state, a.raised_at, a.updated_at, a.model_dump_json()) for a in alerts]
        changes = mute_rows(mutes)
        if not rows and not changes:
            return
        with self._lock:
            self._check_open()
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO alerts VALUES (?, ?, ?, ?, ?, ?)", rows)
                self._db.executemany(self._mute_insert(), changes)
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Idempotent."""
        with self._lock:
            if self._state is StoreState.OPENED:
                self._db.close()
                self._state = StoreState.CLOSED

    def _check_open(self) -> None:
        if self._state is StoreState.CLOSED:
            raise LifecycleError(f"alert store {self.path} is closed")
