"""IHE PCD-04 messages built from alert lifecycle events parse back with hl7apy; PCD-05 and ACK decoding refuses
what it cannot trust; MLLP framing; the ``hospital`` config section."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.factories import datatype_factory
from hl7apy.parser import parse_message

from agent.alerts import Ack, AlertEvent, AlertService, AlertSettings
from agent.hospital import (
    AcceptAck,
    AlertStatus,
    FrameReader,
    HospitalSettings,
    alert_type_code,
    build_report_alert,
    decode_reply,
    frame,
)
from agent.settings import load_settings
from core.config import DEFAULT_CONFIG_PATH
from core.errors import ConfigError, ProtocolError
from core.protocol import Topics

from ..alerts.alert_builders import evidence, forecast
from .alert_manager_stub import alert_status

HOSPITAL = HospitalSettings.model_validate(
    {
        "patients": {"P001": {"mrn": "MRN-0042", "unit": "ICU3", "bed": "12A"}},
        "hl7": {"enabled": True, "sending_facility": "STMARY", "receiving_application": "ACM"},
    }
)
NOW = 1_800_000_100.0


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def lifecycle(tmp_path: Path, **defaults: Any) -> tuple[AlertService, list[AlertEvent], Clock]:
    events: list[AlertEvent] = []
    clock = Clock()
    settings = AlertSettings.model_validate({"store_path": str(tmp_path / "alerts.sqlite3"), "defaults": defaults})
    service = AlertService(settings, None, lambda *a: None, Topics("ecg/v1"), clock=clock, listeners=[events.append])
    return service, events, clock


def raise_af(service: AlertService, clock: Clock, patient_id: str = "P001") -> None:
    for p in (0.7, 0.8):
        clock.now += 10
        service.on_forecast(patient_id, forecast(af=p, patient_id=patient_id), evidence())


def parsed(event: AlertEvent, hospital: HospitalSettings = HOSPITAL) -> Any:
    return parse_message(build_report_alert(event, hospital, "CTL0001", NOW), find_groups=False)


def facets(message: Any) -> dict[str, str]:
    """OBX-3 text (the MDC name) -> OBX-5 of every facet but the first."""
    return {obx.obx_3.cwe_2.to_er7(): obx.obx_5.to_er7() for obx in message.children.get("OBX")[1:]}


def test_a_forecast_alert_parses_back_with_priority_patient_and_text(tmp_path: Path) -> None:
    service, events, clock = lifecycle(tmp_path)
    with service:
        raise_af(service, clock)
    (event,) = events
    alert = event.after
    message = parsed(event)
    assert [s.name for s in message.children] == ["MSH", "PID", "PV1", "OBR", *["OBX"] * 7]
    msh = message.msh
    assert (msh.msh_9.to_er7(), msh.msh_10.to_er7(), msh.msh_12.to_er7()) == ("ORU^R40^ORU_R40", "CTL0001", "2.6")
    assert (msh.msh_3.to_er7(), msh.msh_4.to_er7(), msh.msh_5.to_er7()) == ("ECGCAST", "STMARY", "ACM")
    assert (msh.msh_15.to_er7(), msh.msh_16.to_er7()) == ("AL", "NE")
    assert msh.msh_21.to_er7() == "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4^ISO"
    assert message.pid.pid_3.to_er7() == "MRN-0042^^^HOSP^MR"
    assert message.pv1.pv1_3.to_er7() == "ICU3^^12A^STMARY"
    assert message.obr.obr_3.to_er7() == f"{alert.alert_id}^ECGCAST"
    assert message.obr.obr_4.to_er7() == "196616^MDC_EVT_ALARM^MDC"
    identity = message.children.get("OBX")[0]
    assert identity.obx_3.to_er7() == "FORECAST_AF^Forecast: atrial fibrillation onset^99ECG"
    assert identity.obx_5.to_er7() == alert.explanation
    assert alert.explanation.startswith("Forecast advisory (a prediction, not a present rhythm): atrial fibrillation")
    assert [flag.to_er7() for flag in identity.children.get("OBX_8")] == ["PL", "SA"]
    assert facets(message) == {
        "MDC_ATTR_ALERT_SOURCE": "ECG lead II",
        "MDC_ATTR_EVENT_PHASE": "start",
        "MDC_ATTR_ALARM_STATE": "active",
        "MDC_ATTR_ALARM_INACTIVATION_STATE": "enabled",
        "MDC_ATTR_ALARM_PRIORITY": "PL",
        "MDC_ATTR_ALERT_TYPE": "SA",
    }
    assert [obx.obx_4.to_er7() for obx in message.children.get("OBX")] == [f"1.0.0.0.{i}" for i in range(1, 8)]


def test_each_lifecycle_step_has_its_phase_state_and_priority(tmp_path: Path) -> None:
    service, events, clock = lifecycle(tmp_path, escalation={"rising_forecasts": 2, "min_rise": 0.05})
    with service:
        raise_af(service, clock)
        clock.now += 10
        service.on_forecast("P001", forecast(af=0.9), evidence())  # margin rose 0.2 → 0.3 → 0.4: escalated
        (alert,) = service.active("P001")
        clock.now += 10
        service.acknowledge(Ack("P001", alert.alert_id, "nurse.kim", None))
        for _ in range(2):
            clock.now += 10
            service.on_forecast("P001", forecast(af=0.05), evidence())
    steps = [(e.type, e.reason) for e in events]
    assert steps == [("new", "raised"), ("update", "escalated"), ("update", "acknowledged"), ("end", "cleared")]
    seen = [facets(parsed(e)) for e in events]
    assert [f["MDC_ATTR_EVENT_PHASE"] for f in seen] == ["start", "escalate", "update", "end"]
    assert [f["MDC_ATTR_ALARM_STATE"] for f in seen] == ["active", "active", "active", "inactive"]
    inactivation = [f["MDC_ATTR_ALARM_INACTIVATION_STATE"] for f in seen]
    assert inactivation == ["enabled", "enabled", "alert-acknowledged", "enabled"]  # the end reports "inactive"
    assert [f["MDC_ATTR_ALARM_PRIORITY"] for f in seen] == ["PL", "PM", "PM", "PM"]
    ended = parsed(events[-1])
    assert ended.obr.obr_8.to_er7() != ""  # the alert's end time


def test_an_unmapped_patient_goes_as_the_stream_id_without_a_location(tmp_path: Path) -> None:
    service, events, clock = lifecycle(tmp_path)
    with service:
        raise_af(service, clock, patient_id="P777")
    message = parsed(events[0])
    assert message.pid.pid_3.to_er7() == "P777^^^ECGCAST^PI"
    assert message.pv1.pv1_3.to_er7() == ""


def test_delimiters_in_the_text_are_escaped_by_the_library(tmp_path: Path) -> None:
    service, events, clock = lifecycle(tmp_path)
    with service:
        raise_af(service, clock)
    text = "HR 96|PAC^6 ~ couplets & runs"
    event = AlertEvent("new", None, events[0].after.model_copy(update={"explanation": text}), "raised")
    er7 = build_report_alert(event, HOSPITAL, "CTL0001", NOW)
    assert len(er7.split("\r")) == 11  # no segment was split
    identity = parse_message(er7, find_groups=False).children.get("OBX")[0]
    assert identity.obx_5.to_er7() == datatype_factory("ST", text, version="2.6").to_er7()
    assert identity.obx_5.to_er7() == r"HR 96\F\PAC\S\6 \R\ couplets \T\ runs"
    assert [flag.to_er7() for flag in identity.children.get("OBX_8")] == ["PL", "SA"]  # OBX-8 still in place


def test_alert_type_codes_name_kind_and_rhythm(tmp_path: Path) -> None:
    service, events, clock = lifecycle(tmp_path)
    with service:
        raise_af(service, clock)
    alert = events[0].after
    present = alert.model_copy(update={"kind": "present_rhythm", "arrhythmia": "vt", "priority": "high"})
    technical = alert.model_copy(update={"kind": "cannot_assess", "arrhythmia": None})
    assert alert_type_code(present).code == "PRESENT_VT"
    assert alert_type_code(technical) == ("CANNOT_ASSESS", "Cannot assess: signal quality", "99ECG")
    identity = parsed(AlertEvent("new", None, present, "raised")).children.get("OBX")[0]
    assert [flag.to_er7() for flag in identity.children.get("OBX_8")] == ["PH", "SP"]


# --- replies from the Alert Manager -----------------------------------------------------------------------------


def test_accept_acks_decode_with_their_code() -> None:
    ok = decode_reply("MSH|^~\\&|AM||ECGCAST||20270115120000||ACK^R40^ACK|A1|P|2.6\rMSA|CA|CTL0001")
    assert ok == AcceptAck("CTL0001", "CA", "") and ok.accepted
    refused = decode_reply("MSH|^~\\&|AM||||||ACK|A2|P|2.6\nMSA|AR|CTL0002|unknown patient\n")
    assert isinstance(refused, AcceptAck) and not refused.accepted and refused.text == "unknown patient"


def test_pcd05_statuses_decode_built_with_the_library() -> None:
    status = decode_reply(alert_status("Accepted", alert_id="3f9c2a7e", control_id="CTL0001"))
    assert status == AlertStatus("CTL0001", "3f9c2a7e", "accepted", "nurse.kim", None)
    assert status.accepted
    delivered = decode_reply(alert_status("delivered", by=None, control_id="CTL0001"))
    assert isinstance(delivered, AlertStatus) and not delivered.accepted and delivered.alert_id is None


def test_a_pcd05_labelled_2_6_with_a_patient_and_crlf_still_decodes() -> None:
    text = (
        "MSH|^~\\&|AM|FAC|ECGCAST|STMARY|20270115120005||ORA^R41^ORA_R41|A3|P|2.6\r\n"
        "MSA|AA|CTL0001\r\nPRT||UC|accepted^Accepted by operator|RO|nurse.kim^Kim^Jane\r\nPID|||MRN-0042^^^HOSP^MR\r\n"
    )
    assert decode_reply(text) == AlertStatus("CTL0001", None, "accepted", "nurse.kim", ("MRN-0042", "MR"))


def test_a_2_7_pcd05_with_the_truncation_delimiter_decodes() -> None:
    text = "MSH|^~\\&#||AM|||20270115120005||ORA^R41^ORA_R41|A4||2.7\rOBR|||3f9c2a7e\rPRT|||Delivered"
    assert decode_reply(text) == AlertStatus(None, "3f9c2a7e", "delivered", None, None)


MSH = "MSH|^~\\&|AM||||||{type}|A9|P|2.6"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "bad_hl7"),
        ("not hl7 at all", "bad_hl7"),
        ("MSH|^^^^|x", "bad_hl7"),
        (MSH.format(type="ADT^A01") + "\rPID|||1", "unsupported"),
        (MSH.format(type="ACK"), "missing_field"),
        (MSH.format(type="ACK") + "\rMSA|XX|CTL1", "bad_field"),
        (MSH.format(type="ACK") + "\rMSA|AA|", "missing_field"),
        (MSH.format(type="ACK") + "\rMSA|AA|CTL\\F\\1", "bad_field"),
        (MSH.format(type="ORA^R41") + "\rPRT||UC|accepted||nurse.kim", "missing_field"),
        (MSH.format(type="ORA^R41") + "\rMSA|AA|CTL1", "missing_field"),
        (MSH.format(type="ORA^R41") + "\rMSA|AA|CTL1\rPRT||UC|accepted||nurse\\F\\kim", "bad_user"),
        (MSH.format(type="ORA^R41") + "\rMSA|AA|CTL1\rPRT||UC|acc\\S\\epted||nurse.kim", "bad_field"),
        (MSH.format(type="ORA^R41") + "\rMSA|AA|CTL1\rPRT||UC|||nurse.kim", "bad_field"),
        (MSH.format(type="ORA^R41") + "\rPRT||UC|accepted||nurse.kim\rOBR|1||a&b", "bad_field"),
    ],
)
def test_untrusted_replies_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_reply(text)
    assert info.value.reason == reason


def test_replies_never_raise_anything_but_protocol_errors() -> None:
    """Byte-level damage to a valid PCD-05 (truncation, deleted and repeated delimiters) is refused or decoded."""
    valid = alert_status("accepted", alert_id="3f9c2a7e", control_id="CTL0001")
    variants = [valid[:cut] for cut in range(0, len(valid), 7)]
    variants += [valid.replace(d, "", 1) for d in "|^~\\&\r"] + [valid.replace(d, d * 2) for d in "|^~\\&\r"]
    for text in variants:
        with contextlib.suppress(ProtocolError):
            decode_reply(text)


# --- MLLP framing -----------------------------------------------------------------------------------------------


def test_frames_split_across_reads_and_junk_between_them() -> None:
    reader = FrameReader(1024)
    data = b"\r\n" + frame("MSH|one") + b"junk" + frame("MSH|twö")
    got = [m for i in range(0, len(data), 5) for m in reader.feed(data[i : i + 5])]
    assert got == ["MSH|one", "MSH|twö"]


def test_an_endless_frame_is_refused() -> None:
    reader = FrameReader(1024)
    reader.feed(b"\x0b" + b"x" * 1000)
    with pytest.raises(ProtocolError, match="oversize"):
        reader.feed(b"x" * 100)


# --- the hospital config section --------------------------------------------------------------------------------


def test_the_default_config_keeps_hl7_off() -> None:
    hospital = load_settings(DEFAULT_CONFIG_PATH, env={}).hospital
    assert not hospital.hl7.enabled
    assert hospital.patients == {}
    assert (hospital.hl7.port, hospital.hl7.queue_size) == (2575, 1000)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("hospital:\n  patients: {P001: {mrn: 'A|B'}}\n", "hospital.patients.P001.mrn"),
        ("hospital:\n  patients: {P001: {mrn: M1, ward: 3}}\n", "hospital.patients.P001.ward"),
        ("hospital:\n  patients: {'bad id': {mrn: M1}}\n", "not a valid patient id"),
        ("hospital:\n  patients: {P001: {mrn: M1}, P002: {mrn: M1}}\n", "share the MRN"),
        ("hospital:\n  hl7: {sending_application: 'A^B'}\n", "hospital.hl7.sending_application"),
        ("hospital:\n  hl7: {reconnect_min_s: 10, reconnect_max_s: 1}\n", "reconnect_max_s"),
    ],
)
def test_bad_hospital_settings_stop_start_up(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        load_settings(path, env={})


def test_identity_lookups_both_ways() -> None:
    assert HOSPITAL.identity("P001") is not None and HOSPITAL.identity("P999") is None
    assert HOSPITAL.patient_of_mrn("MRN-0042") == "P001" and HOSPITAL.patient_of_mrn("X") is None


def test_the_built_message_is_valid_er7_for_an_independent_tolerant_parse(tmp_path: Path) -> None:
    service, events, clock = lifecycle(tmp_path)
    with service:
        raise_af(service, clock)
    er7 = build_report_alert(events[0], HOSPITAL, "CTL0001", NOW)
    grouped = parse_message(er7.replace("ORU^R40^ORU_R40", "ORU^R01^ORU_R01"), validation_level=VALIDATION_LEVEL.STRICT)
    grouped.validate()  # the ORU_R01 structure PCD-04 uses, datatypes and cardinalities checked by hl7apy
