"""decode_ack: every malformed acknowledgement is rejected with a stable reason code and the field."""

from __future__ import annotations

import json

import pytest

from agent.alerts import SCHEMA_ALERT_ACK, decode_ack
from core.errors import ProtocolError


def payload(**fields: object) -> bytes:
    return json.dumps({"schema": SCHEMA_ALERT_ACK, "alert_id": "a1b2", "by": "nurse.kim", **fields}).encode()


def test_valid_ack() -> None:
    ack = decode_ack(payload(at=1_800_000_000.5, patient_id="P001"), "P001")
    assert (ack.patient_id, ack.alert_id, ack.by, ack.at) == ("P001", "a1b2", "nurse.kim", 1_800_000_000.5)
    assert decode_ack(payload(), "P001").at is None


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        (b"{not json", "bad_json", None),
        (b"\xff\xfe", "bad_json", None),
        (b"[1, 2]", "not_object", None),
        (b"x" * 5000, "oversize", None),
        (json.dumps({"alert_id": "a1", "by": "x"}).encode(), "bad_schema", "schema"),
        (payload(schema="ecgcast.alert_ack/2"), "bad_schema", "schema"),
        (json.dumps({"schema": SCHEMA_ALERT_ACK, "by": "x"}).encode(), "missing_field", "alert_id"),
        (json.dumps({"schema": SCHEMA_ALERT_ACK, "alert_id": "a1"}).encode(), "missing_field", "by"),
        (payload(by=""), "bad_field", "by"),
        (payload(by="   "), "bad_field", "by"),
        (payload(by="x\u0000y"), "bad_field", "by"),
        (payload(by=42), "bad_field", "by"),
        (payload(alert_id="../../etc"), "bad_field", "alert_id"),
        (payload(at="yesterday"), "bad_field", "at"),
        (payload(at=True), "bad_field", "at"),
        (payload(at=-1), "bad_field", "at"),
        (payload(patient_id="P002"), "wrong_patient", "patient_id"),
        (payload(action="silence"), "unknown_field", "action"),
    ],
)
def test_rejections(raw: bytes, reason: str, field: str | None) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_ack(raw, "P001")
    assert (info.value.reason, info.value.field) == (reason, field)
