"""The shared PostgreSQL alert store and partition epochs: a new owner continues alerts, a stale owner is fenced."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.alerts import AlertService, AlertSettings, Fence, PostgresAlertStore, StaleEpochError
from agent.cluster import EpochLedger
from core.protocol import Topics
from main import main
from tests.agent.alerts.alert_builders import evidence

SCOPE = "ecg.waves"
LEADS_OFF = {"hr_bpm": None, "signal_quality": {"II": "leads_off"}}


@dataclass
class Wire:
    sent: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.sent.append(json.loads(payload))


@dataclass
class Claim:
    """Which (partition, epoch) a replica believes it holds for every patient; None: it holds nothing."""

    epoch: int | None

    def __call__(self, patient_id: str) -> Fence | None:
        return Fence(SCOPE, 5, self.epoch) if self.epoch is not None else None


def service(url: str, wire: Wire, claim: Claim) -> AlertService:
    settings = AlertSettings.model_validate({"store_url": url})
    return AlertService(settings, None, wire, Topics("ecg/v1"), fence=claim)


@pytest.mark.cluster
def test_epochs_increase_per_partition(pg_url: str) -> None:
    a, b = EpochLedger(pg_url, SCOPE, "agent-a"), EpochLedger(pg_url, SCOPE, "agent-b")
    try:
        assert [a.next(5), b.next(5), a.next(6), b.current(5)] == [1, 2, 1, 2]
    finally:
        a.close()
        b.close()


@pytest.mark.cluster
def test_new_owner_continues_the_alert_and_the_old_one_is_fenced(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = EpochLedger(pg_url, SCOPE, "test")
    old_claim, old_wire = Claim(ledger.next(5)), Wire()
    old = service(pg_url, old_wire, old_claim)
    (raised,) = old.on_cannot_assess("P1", evidence(**LEADS_OFF))
    assert raised.type == "new"

    new_claim, new_wire = Claim(ledger.next(5)), Wire()  # the partition moved: epoch + 1
    new = service(pg_url, new_wire, new_claim)
    assert new.active("P1") == []  # nothing preloaded: a replica reads a patient when it meets it
    new.on_cannot_assess("P1", evidence(**LEADS_OFF))
    assert [a.alert_id for a in new.active("P1")] == [raised.after.alert_id]
    assert new_wire.sent == []  # the same alert goes on: no second "new"

    assert old.on_cannot_assess("P1", evidence(hr_bpm=70.0)) == []  # stale epoch: refused, nothing published
    assert old.active("P1") == []
    assert [m["type"] for m in old_wire.sent] == ["new"]
    store = PostgresAlertStore(pg_url)
    try:
        (row,) = store.active_for("P1")
        assert row.alert_id == raised.after.alert_id
        with pytest.raises(StaleEpochError, match="epoch 2"):
            store.save([row], Fence(SCOPE, 5, 1))
    finally:
        store.close()

    config = tmp_path / "agent.yaml"
    config.write_text(f"alerts:\n  store_url: '{pg_url}'\n")
    capsys.readouterr()
    assert main(["alerts", "history", "P1", "--config", str(config)]) == 0  # the CLI reads the shared store too
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert json.loads(line)["alert_id"] == raised.after.alert_id

    new_claim.epoch = None  # the partition moved on again: this replica stays silent for P1
    assert new.on_cannot_assess("P1", evidence(**LEADS_OFF)) == []
    for s in (old, new):
        s.close()
    ledger.close()


@pytest.mark.cluster
def test_replicas_starting_together_create_the_tables_once(pg_url: str) -> None:
    """Concurrent CREATE TABLE IF NOT EXISTS on a fresh database fails in one session unless serialised."""
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_both() -> None:
        barrier.wait()
        try:
            PostgresAlertStore(pg_url).close()
            EpochLedger(pg_url, SCOPE, "agent").close()
        except Exception as exc:  # collected and asserted below: a thread must not swallow it
            errors.append(exc)

    threads = [threading.Thread(target=open_both) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []


@pytest.mark.cluster
def test_a_new_owner_keeps_the_patients_forecast_mute_and_a_stale_one_cannot_change_it(pg_url: str) -> None:
    """Issue #22: the mute is a row of the shared store; a replica taking the patient over reads it when it meets the
    patient, and the replica that lost the partition can neither mute nor unmute any more."""
    from agent.alerts import MuteRequest
    from tests.agent.alerts.alert_builders import forecast

    ledger = EpochLedger(pg_url, SCOPE, "test")
    old_claim, old_wire = Claim(ledger.next(5)), Wire()
    old = service(pg_url, old_wire, old_claim)
    muted = old.mute(MuteRequest("P1", "mute", "nurse.kim", "known paroxysmal AF", 3600.0))
    assert muted is not None and old_wire.sent[-1]["action"] == "muted"

    new_claim, new_wire = Claim(ledger.next(5)), Wire()
    new = service(pg_url, new_wire, new_claim)
    for _ in range(3):  # would raise an AF alert unmuted
        assert new.on_forecast("P1", forecast(af=0.9, patient_id="P1"), evidence()) == []
    assert new.mute_state("P1") == muted

    assert old.mute(MuteRequest("P1", "unmute", "dr.lee", None, None)) is None  # fenced: refused, forgotten
    assert [m["action"] for m in old_wire.sent] == ["muted"]
    store = PostgresAlertStore(pg_url)
    try:
        assert [(m.action, m.by) for m in store.mute_history("P1", 5)] == [("muted", "nurse.kim")]
        assert [m.patient_id for m in store.active_mutes(muted.at + 60)] == ["P1"]
        assert store.active_mutes(muted.at + 3600) == []
    finally:
        store.close()
    for s in (old, new):
        s.close()
    ledger.close()
