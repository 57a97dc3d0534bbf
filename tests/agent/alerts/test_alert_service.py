"""AlertService: published message schema, SQLite persistence across restarts, acknowledgements."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.alerts import SCHEMA_ALERT, Ack, AlertService, AlertSettings, decode_ack
from core.errors import BrokerError, LifecycleError, ProtocolError
from core.protocol import Topics

from .alert_builders import evidence, forecast


@dataclass
class Wire:
    """Collects what the service publishes: (topic, decoded JSON, qos, retain)."""

    sent: list[tuple[str, dict[str, Any], int, bool]] = field(default_factory=list)

    def __call__(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.sent.append((topic, json.loads(payload), qos, retain))

    def messages(self) -> list[dict[str, Any]]:
        return [m for _, m, _, _ in self.sent]


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def open_service(path: Path, wire: Wire, clock: Clock, **defaults: Any) -> AlertService:
    settings = AlertSettings.model_validate({"store_path": str(path), "defaults": defaults})
    return AlertService(settings, None, wire, Topics("ecg/v1"), clock=clock)


def raise_af(service: AlertService, clock: Clock) -> str:
    for p in (0.7, 0.8):
        clock.now += 10
        service.on_forecast("P001", forecast(af=p), evidence())
    (alert,) = service.active("P001")
    return alert.alert_id


ALERT_KEYS = {
    "alert_id", "patient_id", "state", "priority", "kind", "arrhythmia", "horizon_s", "probability", "threshold",
    "explanation", "rationale_note", "evidence", "window", "model_id", "model_version", "raised_at", "updated_at",
    "acknowledged_by", "acknowledged_at", "ended_at", "renotified", "last_notified_at", "history", "ihe",
}  # fmt: skip
EVIDENCE_KEYS = {
    "lead", "window_s", "t_end_s", "hr_bpm", "hr_change_bpm", "rr_irregularity", "rr_cv", "pac_per_min",
    "pac_per_min_before", "pvc_per_min", "pvc_per_min_before", "couplets", "ventricular_runs",
    "longest_ventricular_run", "usable_fraction", "signal_quality",
}  # fmt: skip


def test_published_message_schema(tmp_path: Path) -> None:
    wire, clock = Wire(), Clock()
    with open_service(tmp_path / "a.sqlite3", wire, clock) as service:
        raise_af(service, clock)
    ((topic, message, qos, retain),) = wire.sent
    assert (topic, qos, retain) == ("ecg/v1/P001/alert", 1, False)
    assert set(message) == {"schema", "type", "reason", "before", "after"}
    assert (message["schema"], message["type"], message["before"]) == (SCHEMA_ALERT, "new", None)
    after = message["after"]
    assert set(after) == ALERT_KEYS
    assert set(after["evidence"]) == EVIDENCE_KEYS
    assert after["window"] == {"start_s": 300.0, "end_s": 600.0}
    assert (after["model_id"], after["model_version"]) == ("ecgcast-test", "0.0-test")
    assert after["ihe"] == {"priority": "PL", "source": "SA"}
    assert after["history"] == [{"at": clock.now, "state": "raised", "priority": "low", "reason": "raised", "by": None}]


def test_restart_keeps_active_alerts_and_does_not_repeat_them(tmp_path: Path) -> None:
    path, clock = tmp_path / "var" / "alerts.sqlite3", Clock()
    first = Wire()
    with open_service(path, first, clock) as service:
        alert_id = raise_af(service, clock)
        service.acknowledge(Ack("P001", alert_id, "nurse.kim", None))
    second = Wire()
    with open_service(path, second, clock) as service:
        (alert,) = service.active("P001")
        assert (alert.alert_id, alert.state, alert.acknowledged_by) == (alert_id, "acknowledged", "nurse.kim")
        for _ in range(3):
            clock.now += 10
            service.on_forecast("P001", forecast(af=0.8), evidence())
        assert second.sent == []  # no second "new" for an alert already raised
        assert [a.alert_id for a in service.active("P001")] == [alert_id]
        for _ in range(2):
            clock.now += 10
            service.on_forecast("P001", forecast(af=0.05), evidence())
        assert [(m["type"], m["after"]["state"]) for m in second.messages()] == [("end", "cleared")]
        history = service.history("P001", 10)
        assert [(a.alert_id, a.state) for a in history] == [(alert_id, "cleared")]
        assert [t.reason for t in history[0].history] == [
            "raised",
            "acknowledged",
            "risk fell below the clearing level",
        ]


def test_store_is_sqlite_with_a_rollback_journal(tmp_path: Path) -> None:
    """Not WAL: its memory-mapped -shm file can kill the process with SIGBUS (test_alert_store_faults.py)."""
    path, clock = tmp_path / "a.sqlite3", Clock()
    with open_service(path, Wire(), clock) as service:
        raise_af(service, clock)
        db = sqlite3.connect(path)
        try:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
            assert not (tmp_path / "a.sqlite3-shm").exists()
            assert db.execute("SELECT count(*) FROM alerts WHERE state = 'raised'").fetchone()[0] == 1
        finally:
            db.close()


def test_ack_from_the_wire_changes_state(tmp_path: Path) -> None:
    wire, clock = Wire(), Clock()
    with open_service(tmp_path / "a.sqlite3", wire, clock) as service:
        alert_id = raise_af(service, clock)
        payload = json.dumps({"schema": "ecgcast.alert_ack/1", "alert_id": alert_id, "by": "nurse.kim"}).encode()
        clock.now += 5
        alert = service.acknowledge(decode_ack(payload, "P001", "nurse.kim", received_at=time.time()))
        assert (alert.state, alert.acknowledged_by, alert.acknowledged_at) == ("acknowledged", "nurse.kim", clock.now)
        last = wire.messages()[-1]
        assert (last["type"], last["reason"], last["before"]["state"], last["after"]["state"]) == (
            "update",
            "acknowledged",
            "raised",
            "acknowledged",
        )


def test_invalid_acks_are_rejected_with_reasons(tmp_path: Path) -> None:
    wire, clock = Wire(), Clock()
    with open_service(tmp_path / "a.sqlite3", wire, clock, clear_after=1) as service:
        alert_id = raise_af(service, clock)
        with pytest.raises(ProtocolError) as info:
            service.acknowledge(Ack("P001", "no-such-alert", "x", None))
        assert info.value.reason == "unknown_alert"
        with pytest.raises(ProtocolError) as info:
            service.acknowledge(Ack("P002", alert_id, "x", None))
        assert info.value.reason == "wrong_patient"
        service.on_forecast("P001", forecast(af=0.01), evidence())  # clears
        with pytest.raises(ProtocolError) as info:
            service.acknowledge(Ack("P001", alert_id, "x", None))
        assert info.value.reason == "already_ended"


def test_tick_renotifies_unacknowledged(tmp_path: Path) -> None:
    wire, clock = Wire(), Clock()
    with open_service(tmp_path / "a.sqlite3", wire, clock, renotify_after_s=120) as service:
        raise_af(service, clock)
        assert service.tick(clock.now + 60) == []
        (event,) = service.tick(clock.now + 121)
        assert (event.reason, event.after.renotified) == ("renotified", 1)
        assert wire.messages()[-1]["after"]["renotified"] == 1


def test_cannot_assess_is_published(tmp_path: Path) -> None:
    wire, clock = Wire(), Clock()
    with open_service(tmp_path / "a.sqlite3", wire, clock) as service:
        service.on_cannot_assess("P001", evidence(hr_bpm=None, signal_quality={"II": "leads_off"}))
        ((topic, message, _, _),) = wire.sent
        assert topic == "ecg/v1/P001/alert"
        assert message["after"]["kind"] == "cannot_assess"
        assert message["after"]["ihe"] == {"priority": "PL", "source": "ST"}
        assert message["after"]["explanation"].startswith("Cannot assess: signal quality")


def test_forecast_for_another_patient_is_refused(tmp_path: Path) -> None:
    with (
        open_service(tmp_path / "a.sqlite3", Wire(), Clock()) as service,
        pytest.raises(ProtocolError, match="wrong_patient"),
    ):
        service.on_forecast("P002", forecast(), evidence())


def test_closed_service_refuses_work(tmp_path: Path) -> None:
    service = open_service(tmp_path / "a.sqlite3", Wire(), Clock())
    service.close()
    service.close()  # idempotent
    with pytest.raises(LifecycleError):
        service.on_forecast("P001", forecast(), evidence())


def test_forecast_and_ack_threads_do_not_corrupt_state(tmp_path: Path) -> None:
    """Forecasts on one thread, acks and ticks on another: every alert ends in one consistent stored state."""
    wire, clock = Wire(), Clock()
    with open_service(tmp_path / "a.sqlite3", wire, clock, persistence_k=1, persistence_n=1, clear_after=1) as service:

        def forecasts() -> None:
            for i in range(60):
                service.on_forecast("P001", forecast(af=0.8 if i % 4 < 2 else 0.01), evidence())

        def acks() -> None:
            for _ in range(200):
                for alert in service.active("P001"):
                    try:
                        service.acknowledge(Ack("P001", alert.alert_id, "nurse.kim", None))
                    except ProtocolError as exc:  # it may clear between the look-up and the ack
                        assert exc.reason in {"already_ended", "unknown_alert"}
                service.tick()

        threads = [threading.Thread(target=forecasts), threading.Thread(target=acks)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        stored = {a.alert_id: a for a in service.history("P001", 1000)}
        published_last = {m["after"]["alert_id"]: m["after"]["state"] for m in wire.messages()}
    assert len(stored) == 15  # raised once in every 4 forecasts
    assert {k: a.state for k, a in stored.items()} == published_last


def test_disabling_an_arrhythmia_resolves_its_stored_alert(tmp_path: Path) -> None:
    path, clock = tmp_path / "a.sqlite3", Clock()
    with open_service(path, Wire(), clock) as service:
        raise_af(service, clock)
    wire = Wire()
    with open_service(path, wire, clock, af={"enabled": False}) as service:
        clock.now += 10
        service.on_forecast("P001", forecast(af=0.9), evidence())
        assert service.active("P001") == []
    assert [(m["type"], m["after"]["state"]) for m in wire.messages()] == [("end", "resolved")]


def test_publish_failure_keeps_the_alert_stored(tmp_path: Path) -> None:
    def broken(topic: str, payload: bytes, qos: int, retain: bool) -> None:
        raise BrokerError("broker unreachable")

    clock = Clock()
    settings = AlertSettings.model_validate({"store_path": str(tmp_path / "a.sqlite3")})
    with AlertService(settings, None, broken, Topics("ecg/v1"), clock=clock) as service:
        alert_id = raise_af(service, clock)
        assert [a.alert_id for a in service.history("P001", 5)] == [alert_id]


def test_resolve_patient(tmp_path: Path) -> None:
    wire, clock = Wire(), Clock()
    with open_service(tmp_path / "a.sqlite3", wire, clock) as service:
        raise_af(service, clock)
        (event,) = service.resolve_patient("P001", "discharged")
        assert (event.type, event.after.state, event.after.history[-1].reason) == ("end", "resolved", "discharged")
        assert service.active("P001") == []


def test_the_alert_worker_resolves_an_evicted_patients_alerts_for_good(tmp_path: Path) -> None:
    """Eviction ends the patient's alerts (no more re-notification) and a restart does not bring them back."""
    import queue

    from agent.daemon import EVICTED_REASON, AlertWorker

    wire, clock = Wire(), Clock()
    departures: queue.SimpleQueue[str] = queue.SimpleQueue()
    with open_service(tmp_path / "a.sqlite3", wire, clock) as service:
        alert_id = raise_af(service, clock)
        departures.put("P001")
        AlertWorker(service, queue.Queue(), departures).step()
        assert service.active("P001") == []
        end = wire.messages()[-1]
        assert (end["type"], end["after"]["alert_id"], end["after"]["state"]) == ("end", alert_id, "resolved")
        assert end["after"]["history"][-1]["reason"] == EVICTED_REASON
    with open_service(tmp_path / "a.sqlite3", Wire(), clock) as reopened:
        assert reopened.active("P001") == []


def test_would_raise_previews_the_decision_without_storing_or_publishing(tmp_path: Path) -> None:
    """The agent asks before feeding a forecast, to generate the LM rationale only for alerts about to be raised."""
    wire, clock = Wire(), Clock()
    with open_service(tmp_path / "a.sqlite3", wire, clock) as service:
        clock.now += 10
        service.on_forecast("P001", forecast(af=0.7), evidence())
        sent = len(wire.sent)
        assert service.would_raise("P001", forecast(af=0.8), evidence())
        assert not service.would_raise("P001", forecast(af=0.1), evidence())
        assert service.active("P001") == [] and len(wire.sent) == sent
        clock.now += 10
        service.on_forecast("P001", forecast(af=0.8), evidence())
        assert len(service.active("P001")) == 1
        assert not service.would_raise("P001", forecast(af=0.9), evidence())  # already raised: an update, not new


def test_the_log_names_who_is_recorded_when_several_nurses_acknowledge(tmp_path: Path) -> None:
    """Two nurses acknowledge the same alert: the first is recorded, and the log of the second says so rather than
    claiming the second nurse acknowledged it."""
    import queue

    from structlog.testing import capture_logs

    from agent.daemon import AlertWorker

    wire, clock = Wire(), Clock()
    requests: queue.Queue[Any] = queue.Queue()
    with open_service(tmp_path / "a.sqlite3", wire, clock) as service:
        alert_id = raise_af(service, clock)
        worker = AlertWorker(service, requests, queue.SimpleQueue())
        with capture_logs() as logs:
            for nurse in ("nurse.kim", "nurse.lee"):
                requests.put(Ack("P001", alert_id, nurse, None))
                worker.step()
    acked = [e for e in logs if e["event"] == "alert_acknowledged"]
    assert [(e["by"], e["requested_by"]) for e in acked] == [("nurse.kim", "nurse.kim"), ("nurse.kim", "nurse.lee")]
