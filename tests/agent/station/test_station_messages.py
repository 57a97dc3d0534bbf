"""The station's typed message models (issue 19): the agent's real status, forecast and alert messages parse;
forged ones are refused with a reason and the field; acknowledgements the agent would refuse are never sent."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.alerts import AlertService, AlertSettings, build_evidence, decode_ack
from agent.forecast_message import ForecastWindow, forecast_message
from agent.patient import PatientStream
from agent.sequencer import Delivery
from agent.settings import Settings
from agent.station._messages import decode_alert, decode_forecast
from core.errors import ProtocolError
from core.measurements import measure_leads
from core.protocol import Topics, WaveChunk
from core.wire import decode_status
from simulators import generate_scenario

from .ward import forecast_for

FS = 250.0
TOPICS = Topics("ecg/v1")

ISSUE_FORECAST = b'{"schema":"ecgcast.forecast/1","patient_id":"P777","published_at":[1]}'


def strip() -> np.ndarray:
    record = generate_scenario("sinus_ectopy", seed=2, minutes=0.5, fs=FS, leads=("II", "V1"), noise="low")
    return record.p_signal.astype(np.float32)


def published_forecast(pid: str = "P777", **changes: Any) -> dict[str, Any]:
    """A forecast message as the agent publishes it (the model of agent.forecast_message), with ``changes``."""
    message = forecast_message(
        forecast_for(pid, 0.1, 0.03, 0.62, 120.0),
        published_at=time.time(),
        window=ForecastWindow(start=1.7e9, end=1.7e9 + 60.0, segment=1),
        signal_quality={"II": "good", "V1": "noisy"},
        measurements=measure_leads(strip(), FS, ("II", "V1")),
    )
    body: dict[str, Any] = json.loads(message.payload())
    return {**body, **changes}


def test_the_agents_own_status_messages_parse() -> None:
    patient = PatientStream("P1", Settings())
    samples = strip()
    for seq in (0, 1, 3):  # seq 2 missing: a gap and an event in the status
        block = np.ascontiguousarray(samples[seq * 250 : (seq + 1) * 250].T)
        chunk = WaveChunk("P1", "dev", seq, 1.7e9 + seq, FS, ("II", "V1"), block)
        patient.accept(Delivery(chunk), now_mono=float(seq), now_wall=1.7e9 + seq)
    for status in (patient.status(1.7e9 + 4), {**patient.status(1.7e9 + 99), "state": "evicted"}):
        parsed = decode_status(json.dumps(status).encode(), "P1")
        assert parsed.state == status["state"] and parsed.leads == ("II", "V1")


def test_a_forecast_as_the_agent_publishes_it_parses() -> None:
    forecast = decode_forecast(json.dumps(published_forecast()).encode(), "P777")
    assert forecast.peak_risk["vt"] == pytest.approx(0.62)
    assert forecast.measurements is not None and forecast.measurements.lead in ("II", "V1")
    assert forecast.window is not None and forecast.window.segment == 1


@pytest.mark.parametrize(
    ("payload", "reason", "field"),
    [
        (ISSUE_FORECAST, "missing_field", "t_forecast"),
        (json.dumps(published_forecast(published_at=[1])).encode(), "bad_field", "published_at"),
        (json.dumps(published_forecast(published_at="yesterday")).encode(), "bad_field", "published_at"),
        (json.dumps(published_forecast(onset_probs={"60": {"af": "x"}})).encode(), "bad_field", "onset_probs.60.af"),
        (json.dumps(published_forecast(patient_id="P778")).encode(), "patient_mismatch", "patient_id"),
        (json.dumps(published_forecast(rhythm_probs=None)).encode(), "bad_field", "rhythm_probs"),
        (json.dumps(published_forecast(window={"start": 1})).encode(), "missing_field", "window.end"),
        (json.dumps(published_forecast(extra=1)).encode(), "unknown_field", "extra"),
    ],
)
def test_a_forged_forecast_is_refused_naming_the_field(payload: bytes, reason: str, field: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_forecast(payload, "P777")
    assert (info.value.reason, info.value.field) == (reason, field)


def test_a_forecast_with_forged_measurements_is_refused() -> None:
    body = published_forecast()
    body["measurements"]["rr_irregularity"] = "x"
    with pytest.raises(ProtocolError) as info:
        decode_forecast(json.dumps(body).encode(), "P777")
    assert (info.value.reason, info.value.field) == ("bad_field", "measurements.rr_irregularity")


def real_alert_messages(tmp_path: Path) -> list[bytes]:
    """Every lifecycle message the agent's AlertService publishes for a raised, then acknowledged, VT forecast."""
    published: list[bytes] = []
    service = AlertService(
        AlertSettings(store_path=tmp_path / "a.sqlite3"), tmp_path / "a.sqlite3",
        lambda topic, payload, qos, retain: published.append(payload), TOPICS,
    )  # fmt: skip
    try:
        evidence = build_evidence(measure_leads(strip(), FS, ("II", "V1")), None, {"II": "good", "V1": "good"}, 30.0)
        for _ in range(3):
            service.on_forecast("P777", forecast_for("P777", 0.05, 0.03, 0.7, 100.0), evidence)
        alert_id = json.loads(published[0])["after"]["alert_id"]
        ack = {"schema": "ecgcast.alert_ack/1", "alert_id": alert_id, "by": "nurse.kim"}
        service.acknowledge(decode_ack(json.dumps(ack).encode(), "P777", "nurse.kim", received_at=time.time()))
    finally:
        service.close()
    return published


def test_the_agents_own_alert_messages_parse(tmp_path: Path) -> None:
    payloads = real_alert_messages(tmp_path)
    messages = [decode_alert(payload, "P777") for payload in payloads]
    assert [(m.type, m.after.state) for m in messages] == [("new", "raised"), ("update", "acknowledged")]
    assert messages[0].announces and not messages[1].announces
    for payload, message in zip(payloads, messages, strict=True):
        assert message.after.to_wire() == json.loads(payload)["after"]  # what the page gets is what was sent


def test_messages_a_cluster_replica_stamped_still_parse(tmp_path: Path) -> None:
    """A replica's publish gate adds partition, epoch and owner (and ``replaying`` to statuses): the station's strict
    models must take them, or a station reading a cluster would refuse every message."""
    from agent.cluster import PartitionOwnership, PublishGate

    ownership = PartitionOwnership()
    ownership.activate(2, 5, now_ms=1_000)
    for pid in ("P1", "P777"):
        assert ownership.admit(2, pid, written_ms=500)
    gate = PublishGate("ecg/v1", ownership, "agent-b")
    status = PatientStream("P1", Settings()).status(1.7e9)
    stamped = gate("ecg/v1/P1/status", json.dumps(status).encode())
    assert stamped is not None
    parsed = decode_status(stamped, "P1")
    assert (parsed.partition, parsed.epoch, parsed.owner, parsed.replaying) == (2, 5, "agent-b", True)
    forecast = gate("ecg/v1/P777/forecast", json.dumps(published_forecast()).encode())
    assert forecast is not None and decode_forecast(forecast, "P777").epoch == 5
    for payload in real_alert_messages(tmp_path):
        alert = gate("ecg/v1/P777/alert", payload)
        assert alert is not None and decode_alert(alert, "P777").owner == "agent-b"
    with pytest.raises(ProtocolError, match="epoch"):
        decode_status(json.dumps({**status, "epoch": -1}).encode(), "P1")
    assert "epoch" not in json.loads(published_forecast_payload())  # a single agent sends no stamp


def published_forecast_payload() -> bytes:
    message = forecast_message(
        forecast_for("P777", 0.1, 0.03, 0.62, 120.0),
        published_at=1.7e9,
        window=None,
        signal_quality={},
        measurements=None,
    )
    return message.payload()


@pytest.mark.parametrize(
    ("path", "value", "reason", "field"),
    [
        (("after", "raised_at"), "yesterday", "bad_field", "after.raised_at"),
        (("after", "priority"), "urgent", "bad_field", "after.priority"),
        (("after", "state"), "exploded", "bad_field", "after.state"),
        (("after", "patient_id"), "P778", "patient_mismatch", "patient_id"),
        (("after", "history"), [{"at": "x"}], "bad_field", "after.history.0.at"),
        (("type",), "new!", "bad_field", "type"),
        (("schema",), "ecgcast.alert/2", "unknown_schema", "schema"),
    ],
)
def test_a_forged_alert_is_refused_naming_the_field(
    tmp_path: Path, path: tuple[str, ...], value: object, reason: str, field: str
) -> None:
    body = json.loads(real_alert_messages(tmp_path)[0])
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ProtocolError) as info:
        decode_alert(json.dumps(body).encode(), "P777")
    assert (info.value.reason, info.value.field) == (reason, field)


def test_evidence_is_free_form_and_passes_to_the_page(tmp_path: Path) -> None:
    """Evidence is the alert model's open dict: a forged value reaches the page, which must render it defensively
    (test_station_browser.py::test_one_forged_alert_does_not_blank_the_screen)."""
    body = json.loads(real_alert_messages(tmp_path)[0])
    body["after"]["evidence"] = {"rr_irregularity": "x"}
    assert decode_alert(json.dumps(body).encode(), "P777").after.evidence == {"rr_irregularity": "x"}


def test_ack_fields_with_a_trailing_newline_are_refused() -> None:
    """Issue 19: ``^…$`` patterns let "a\\n" through ``decode_ack``'s alert_id and by checks."""
    good = {"schema": "ecgcast.alert_ack/1", "alert_id": "a" * 32, "by": "nurse.kim"}
    assert decode_ack(json.dumps(good).encode(), "P001", "nurse.kim", received_at=time.time()).by == "nurse.kim"
    for field, reason in (("alert_id", "bad_field"), ("by", "wrong_user")):
        bad = {**good, field: good[field] + "\n"}
        with pytest.raises(ProtocolError) as info:
            decode_ack(json.dumps(bad).encode(), "P001", "nurse.kim", received_at=time.time())
        assert (info.value.reason, info.value.field) == (reason, field)
    with pytest.raises(ProtocolError) as info:
        decode_ack(json.dumps(good).encode(), "P001", "nurse.kim\n", received_at=time.time())
    assert info.value.reason == "bad_user"
