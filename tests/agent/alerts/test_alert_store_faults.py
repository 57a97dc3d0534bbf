"""Issue #19 item 5, store faults: when the alert store fails, forecasts and alerts still go out, the fault is
reported (``store_health``, ``/readyz``, watchers), and what the store refused is written back once it works.

Each failure is real where root can cause it (a removed file, a lock held by another connection, a truncated shared
memory file); a full or read-only disk, which root's writes ignore, is the store's write raising the
``sqlite3.OperationalError`` SQLite raises for it.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.alerts import STORE_RETRY_S, Ack, AlertStore, StoreHealth
from agent.alerts._store import BUSY_TIMEOUT_S
from core.errors import ProtocolError

from .alert_builders import evidence, forecast
from .test_alert_service import Clock, Wire, open_service, raise_af

ROOT = Path(__file__).resolve().parents[3]
DISK_FULL = "database or disk is full"


def stored_states(path: Path) -> dict[str, str]:
    """alert_id -> state, read from the file by a connection of its own."""
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT alert_id, state FROM alerts").fetchall())
    finally:
        db.close()


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool], None]]:
    """``full_disk(True)``: every SQLite write fails as on a full disk; ``full_disk(False)``: it works again."""
    works = AlertStore._write

    def refuse(self: AlertStore, *args: Any) -> None:
        raise sqlite3.OperationalError(DISK_FULL)

    def set_full(full: bool) -> None:
        monkeypatch.setattr(AlertStore, "_write", refuse if full else works)

    yield set_full


def retry(service: Any, clock: Clock) -> None:
    """Let the store's retry come due and run it (the alert worker ticks every second)."""
    clock.now += STORE_RETRY_S
    service.tick()


def test_alerts_go_out_while_the_store_refuses_writes_and_are_stored_on_recovery(
    tmp_path: Path, full_disk: Callable[[bool], None]
) -> None:
    path, wire, clock = tmp_path / "alerts.sqlite3", Wire(), Clock()
    with open_service(path, wire, clock) as service:
        full_disk(True)
        alert_id = raise_af(service, clock)  # on_forecast did not raise
        assert [(m["type"], m["after"]["alert_id"]) for m in wire.messages()] == [("new", alert_id)]
        health = service.store_health()
        assert (health.ok, health.store, health.unsaved) == (False, str(path), 1)
        assert health.reason is not None and DISK_FULL in health.reason and str(path) in health.reason
        assert stored_states(path) == {}
        assert [a.alert_id for a in service.history("P001")] == [alert_id]  # held in memory, still listed

        retry(service, clock)  # still full: nothing lost, still failing
        assert not service.store_health().ok and service.store_health().unsaved == 1

        full_disk(False)
        retry(service, clock)
        health = service.store_health()
        assert (health.ok, health.unsaved, health.failures) == (True, 0, 2)
        assert stored_states(path) == {alert_id: "raised"}
    with open_service(path, Wire(), clock) as restarted:  # what was held survives a restart once written
        assert [a.alert_id for a in restarted.active("P001")] == [alert_id]


def test_a_removed_store_file_is_recreated_with_every_active_alert(tmp_path: Path) -> None:
    """Reads fail too: a new patient is decided from memory, an ack is applied from memory, and the new file gets
    the alerts that were active before the removal as well as those changed after it."""
    path, wire, clock = tmp_path / "alerts.sqlite3", Wire(), Clock()
    with open_service(path, wire, clock, persistence_k=1, persistence_n=1) as service:
        first = raise_af(service, clock)
        path.unlink()  # the open connection would write to the unlinked inode: lost at exit

        clock.now += 10
        assert service.would_raise("P002", forecast(af=0.8, patient_id="P002"), evidence())
        (new,) = service.on_forecast("P002", forecast(af=0.8, patient_id="P002"), evidence())
        acked = service.acknowledge(Ack("P001", first, "nurse.kim", clock.now))
        assert acked.state == "acknowledged"
        assert [m["reason"] for m in wire.messages()][-2:] == ["raised", "acknowledged"]
        health = service.store_health()
        assert not health.ok and "removed or replaced" in (health.reason or "")

        retry(service, clock)
        assert service.store_health().ok
        assert stored_states(path) == {first: "acknowledged", new.after.alert_id: "raised"}


def test_a_locked_store_delays_nothing_beyond_its_busy_timeout(tmp_path: Path) -> None:
    """Another process holds the file's write lock: the first write waits the busy timeout, then alerts go on
    without the store; the lock released, the retry writes them."""
    path, wire, clock = tmp_path / "alerts.sqlite3", Wire(), Clock()
    with open_service(path, wire, clock) as service:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            alert_id = raise_af(service, clock)
            assert "database is locked" in (service.store_health().reason or "")
            assert [m["type"] for m in wire.messages()] == ["new"]
            clock.now += 10
            started = time.monotonic()
            service.on_forecast("P001", forecast(af=0.9), evidence())
            assert time.monotonic() - started < BUSY_TIMEOUT_S / 2  # no second wait: writes are held meanwhile
        finally:
            other.execute("ROLLBACK")
            other.close()
        retry(service, clock)
        assert service.store_health().ok
        assert stored_states(path) == {alert_id: "raised"}


def test_a_patient_met_while_the_store_was_unreadable_is_reconciled_with_it(tmp_path: Path) -> None:
    """The store holds an active alert this service never loaded (another writer raised it: a replica, a restarted
    agent). Met during a failure, the patient is decided from memory alone; on recovery the stored alert is adopted,
    so it goes on (acknowledgement, re-notification) instead of staying active in the file forever."""
    path, clock = tmp_path / "alerts.sqlite3", Clock()
    with open_service(path, Wire(), clock) as service:
        with open_service(path, Wire(), clock) as other:
            theirs = raise_af(other, clock)
        other_holder = sqlite3.connect(path, isolation_level=None)
        other_holder.execute("BEGIN EXCLUSIVE")
        try:
            clock.now += 10
            assert service.on_forecast("P001", forecast(af=0.7), evidence()) == []  # one of k=2: nothing yet
            assert service.active("P001") == []
        finally:
            other_holder.execute("ROLLBACK")
            other_holder.close()
        retry(service, clock)
        assert [a.alert_id for a in service.active("P001")] == [theirs]
        clock.now += 10
        assert service.on_forecast("P001", forecast(af=0.8), evidence()) == []  # continued, not raised again
        assert service.acknowledge(Ack("P001", theirs, "nurse.kim", None)).state == "acknowledged"


def test_watchers_hear_the_failure_and_the_recovery_once_each(
    tmp_path: Path, full_disk: Callable[[bool], None]
) -> None:
    told: list[StoreHealth] = []
    clock = Clock()
    with open_service(tmp_path / "alerts.sqlite3", Wire(), clock) as service:
        service.watch_store(told.append)
        full_disk(True)
        raise_af(service, clock)
        service.tick()
        service.tick()
        assert [(h.ok, h.unsaved) for h in told] == [(False, 1)]
        full_disk(False)
        retry(service, clock)
        service.tick()
        assert [h.ok for h in told] == [False, True]


def test_held_changes_are_written_at_close_when_the_store_works_again(
    tmp_path: Path, full_disk: Callable[[bool], None]
) -> None:
    path, clock = tmp_path / "alerts.sqlite3", Clock()
    service = open_service(path, Wire(), clock)
    full_disk(True)
    alert_id = raise_af(service, clock)
    full_disk(False)
    service.close()  # before any retry was due
    assert stored_states(path) == {alert_id: "raised"}


def test_an_ack_dated_before_the_alert_was_raised_is_refused(tmp_path: Path) -> None:
    wire, clock = Wire(), Clock()
    with open_service(tmp_path / "alerts.sqlite3", wire, clock) as service:
        alert_id = raise_af(service, clock)
        (alert,) = service.active("P001")
        with pytest.raises(ProtocolError) as info:
            service.acknowledge(Ack("P001", alert_id, "nurse.kim", alert.raised_at - 30))
        assert (info.value.reason, info.value.field) == ("before_raised", "at")
        assert "30.0 s before" in info.value.detail
        assert [a.state for a in service.active("P001")] == ["raised"]
        assert service.acknowledge(Ack("P001", alert_id, "nurse.kim", alert.raised_at)).state == "acknowledged"


SHRINKING_SHM = textwrap.dedent(
    """
    import os, sys
    from agent.alerts import AlertStore, Mute

    path = sys.argv[1]
    store = AlertStore(path)
    mutes = [Mute(patient_id="P001", action="unmuted", at=float(i)) for i in range(50)]
    store.save([], None, mutes)
    if os.path.exists(path + "-shm"):
        os.truncate(path + "-shm", 0)  # what an unwritable or full -shm does to WAL's memory map
    for i in range(50):
        store.save([], None, mutes)
    store.close()
    print("alive")
    """
)


def test_no_shared_memory_file_can_kill_the_process(tmp_path: Path) -> None:
    """The issue's SIGBUS: under WAL, SQLite maps ``<db>-shm``; when that file shrank under it the agent died within
    seconds, with no exception to catch. The store keeps no mapped file now."""
    path = tmp_path / "alerts.sqlite3"
    done = subprocess.run(
        [sys.executable, "-c", SHRINKING_SHM, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout.splitlines()[-1:]) == (0, ["alive"]), done.stderr[-2000:]
    assert not Path(f"{path}-shm").exists()
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM alert_mutes").fetchone()[0] == 2550
    finally:
        db.close()
