"""decode_ack: every malformed acknowledgement is rejected with a stable reason code and the field; who acknowledged
is the topic's user, and ``at`` must lie near receipt (issue #19, "who may publish what")."""

from __future__ import annotations

import json

import pytest

from agent.alerts import MAX_ACK_SKEW_S, SCHEMA_ALERT_ACK, decode_ack
from core.errors import ProtocolError

NOW = 1_800_000_000.0


def payload(**fields: object) -> bytes:
    return json.dumps({"schema": SCHEMA_ALERT_ACK, "alert_id": "a1b2", "by": "nurse.kim", **fields}).encode()


def test_valid_ack() -> None:
    ack = decode_ack(payload(at=NOW - 3.5, patient_id="P001"), "P001", "nurse.kim", received_at=NOW)
    assert (ack.patient_id, ack.alert_id, ack.by, ack.at) == ("P001", "a1b2", "nurse.kim", NOW - 3.5)
    assert decode_ack(payload(), "P001", "nurse.kim", received_at=NOW).at is None  # receipt time is used


def test_the_topics_user_is_who_acknowledged() -> None:
    """The payload's ``by`` is optional; the identity is the topic's user, which the broker ties to a sign-in."""
    body = json.dumps({"schema": SCHEMA_ALERT_ACK, "alert_id": "a1b2"}).encode()
    assert decode_ack(body, "P001", "kim@ward7", received_at=NOW).by == "kim@ward7"


@pytest.mark.parametrize("offset", [-MAX_ACK_SKEW_S, 0.0, MAX_ACK_SKEW_S])
def test_at_within_the_skew_of_receipt_is_kept(offset: float) -> None:
    assert decode_ack(payload(at=NOW + offset), "P001", "nurse.kim", received_at=NOW).at == NOW + offset


@pytest.mark.parametrize(
    "at",
    [
        0,  # the "at: 0"
        NOW - MAX_ACK_SKEW_S - 1,  # back-dated
        NOW + MAX_ACK_SKEW_S + 1,  # from a clock running ahead
        4_102_444_800.0,  # 2100-01-01
    ],
)
def test_at_far_from_receipt_is_refused_as_clock_skew(at: float) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_ack(payload(at=at), "P001", "nurse.kim", received_at=NOW)
    assert (info.value.reason, info.value.field) == ("clock_skew", "at")
    assert "clock" in info.value.detail


def test_the_skew_is_the_callers_to_set() -> None:
    assert decode_ack(payload(at=NOW - 600), "P001", "nurse.kim", received_at=NOW, max_skew_s=900).at == NOW - 600


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
        (payload(by="nurse.lee"), "wrong_user", "by"),  # the ack "under any name"
        (payload(by="nurse\u202ekim"), "wrong_user", "by"),  # right-to-left override
        (payload(by=" nurse.kim "), "wrong_user", "by"),
        (payload(by=""), "wrong_user", "by"),
        (payload(by=None), "wrong_user", "by"),
        (payload(by=42), "wrong_user", "by"),
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
        decode_ack(raw, "P001", "nurse.kim", received_at=NOW)
    assert (info.value.reason, info.value.field) == (reason, field)


@pytest.mark.parametrize("user", ["", "nurse kim", "nurse\u202ekim", "kim\n", "kim/lee", "+", "#", "kim:x", "k" * 129])
def test_a_user_that_is_not_a_broker_user_name_is_refused(user: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_ack(payload(by=user), "P001", user, received_at=NOW)
    assert info.value.reason == "bad_user"
