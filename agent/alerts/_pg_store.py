"""Alert history in PostgreSQL, shared by every agent replica of a cluster (docs/SCALING.md).

Why PostgreSQL rather than a RabbitMQ stream of alert events: a new owner needs one patient's *current* active alerts
at once (a keyed read), an acknowledgement must update one row atomically, and writes from a replica that lost its
partition must be refused. A table with an upsert does all three; a stream would have to be replayed and folded by
every replica. Same row layout as the SQLite store, plus the fence (partition, epoch) of the last writer.

Fencing: a save stamped with :class:`Fence` runs in one transaction that first reads the partition's current epoch
(``FOR SHARE``, so an activation cannot interleave) and refuses with :class:`StaleEpochError` when a newer owner exists.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

import psycopg
import structlog

from core.errors import LifecycleError

from ._model import Alert, Mute
from ._store import AlertReads, Fence, StoreUnavailable, mute_rows

__all__ = ["EPOCHS_DDL", "EPOCHS_TABLE", "Fence", "PostgresAlertStore", "StaleEpochError", "ensure_tables"]

log = structlog.get_logger(__name__)

EPOCHS_TABLE = "ecgcast_partition_epochs"  # written by agent.cluster.EpochLedger, read here to fence writes
EPOCHS_DDL = f"""
CREATE TABLE IF NOT EXISTS {EPOCHS_TABLE} (
    scope      TEXT    NOT NULL,
    partition  INTEGER NOT NULL,
    epoch      BIGINT  NOT NULL,
    owner      TEXT    NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, partition)
)"""
_DDL = (
    """
CREATE TABLE IF NOT EXISTS ecgcast_alerts (
    alert_id    TEXT PRIMARY KEY,
    patient_id  TEXT NOT NULL,
    state       TEXT NOT NULL,
    raised_at   DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL,
    body        TEXT NOT NULL,
    fence_scope TEXT,
    partition   INTEGER,
    epoch       BIGINT
)""",
    "CREATE INDEX IF NOT EXISTS ecgcast_alerts_patient ON ecgcast_alerts (patient_id, raised_at)",
    """
CREATE TABLE IF NOT EXISTS ecgcast_alert_mutes (
    id          BIGSERIAL PRIMARY KEY,
    patient_id  TEXT NOT NULL,
    action      TEXT NOT NULL,
    at          DOUBLE PRECISION NOT NULL,
    until_at    DOUBLE PRECISION,
    body        TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS ecgcast_alert_mutes_patient ON ecgcast_alert_mutes (patient_id, id)",
    EPOCHS_DDL,
)
_UPSERT = """
INSERT INTO ecgcast_alerts VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (alert_id) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at, body = EXCLUDED.body,
    fence_scope = EXCLUDED.fence_scope, partition = EXCLUDED.partition, epoch = EXCLUDED.epoch
"""


_DDL_LOCK = 0x6563_6763  # advisory lock id ("ecgc"): replicas starting together must not race on CREATE TABLE


def ensure_tables(db: psycopg.Connection[tuple[object, ...]], statements: tuple[str, ...]) -> None:
    """Create what is missing, one replica at a time: ``CREATE TABLE IF NOT EXISTS`` run concurrently on a fresh
    database fails in one of them (duplicate key in pg_type)."""
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
        for ddl in statements:
            db.execute(ddl)


class StaleEpochError(LifecycleError):
    """A replica that lost its partition tried to write: a newer owner holds a higher epoch."""

    def __init__(self, fence: Fence, current: int) -> None:
        self.fence = fence
        self.current = current
        super().__init__(f"partition {fence.partition} is at epoch {current}; this writer holds epoch {fence.epoch}")


class PostgresAlertStore(AlertReads):
    """Same methods as the SQLite ``AlertStore``; one connection serialised by a lock (alert traffic is small)."""

    _table = "ecgcast_alerts"
    _mutes = "ecgcast_alert_mutes"
    _p = "%s"
    _tiebreak = "updated_at"
    _driver_errors = (psycopg.Error,)
    created = False  # a database server is not recreated empty under a running agent

    def __init__(self, url: str) -> None:
        self.path = url.split("@")[-1]  # shown in logs and errors without credentials
        self._url = url
        self._lock = threading.Lock()
        self._db = self._connect()
        self._closed = False
        log.info("alert_store_opened", path=self.path, kind="postgresql")

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        try:
            db = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
            ensure_tables(db, _DDL)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot open the PostgreSQL alert store at {self.path}: {exc}") from exc
        return db

    def reopen(self) -> bool:
        """Connect again after a fault (a lost connection stays broken); False: the tables are the same ones.
        Raises StoreUnavailable."""
        with self._lock:
            self._check_open()
            try:
                self._db.close()
            except psycopg.Error as exc:
                log.warning("alert_store_close_failed", path=self.path, error=str(exc))
            self._db = self._connect()
            return False

    def save(self, alerts: Iterable[Alert], fence: Fence | None = None, mutes: Iterable[Mute] = ()) -> None:
        """Upsert each alert's row and append each mute change in one transaction; with a fence, only while its
        epoch is still current."""
        scope, partition, epoch = (fence.scope, fence.partition, fence.epoch) if fence else (None, None, None)
        rows = [
            (a.alert_id, a.patient_id, a.state, a.raised_at, a.updated_at, a.model_dump_json(), scope, partition, epoch)
            for a in alerts
        ]
        changes = mute_rows(mutes)
        if not rows and not changes:
            return
        with self._lock:
            self._check_open()
            try:
                self._write(rows, changes, fence)
            except psycopg.Error as exc:
                raise self._unavailable(exc) from exc

    def _write(
        self, rows: Sequence[tuple[object, ...]], changes: Sequence[tuple[object, ...]], fence: Fence | None
    ) -> None:
        """One transaction; with a fence, refused (StaleEpochError) when a newer owner holds the partition."""
        with self._db.transaction():
            if fence is not None:
                found = self._db.execute(
                    f"SELECT epoch FROM {EPOCHS_TABLE} WHERE scope = %s AND partition = %s FOR SHARE",
                    (fence.scope, fence.partition),
                ).fetchone()
                current = int(found[0]) if found else 0
                if current > fence.epoch:
                    raise StaleEpochError(fence, current)
            with self._db.cursor() as cur:
                for sql, params in ((_UPSERT, rows), (self._mute_insert(), changes)):
                    if params:
                        cur.executemany(sql, params)

    def close(self) -> None:
        """Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise LifecycleError(f"alert store {self.path} is closed")
