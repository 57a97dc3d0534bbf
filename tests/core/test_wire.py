"""core.wire: the shared status and presence models and the strict parser every MQTT consumer uses (issue 19)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.errors import ProtocolError
from core.protocol import SCHEMA_PRESENCE, SCHEMA_STATUS
from core.wire import MAX_MESSAGE_BYTES, PresenceMessage, StatusMessage, decode_presence, decode_status

STATUS: dict[str, Any] = {
    "schema": "ecgcast.status/1", "patient_id": "bed-12", "state": "streaming", "stream_id": "monitor-7a",
    "segment": 1, "segment_reason": "first", "fs": 250.0, "leads": ["II", "V1"],
    "samples_received": {"II": 150000, "V1": 150000}, "last_seq": 599, "last_seen": 1795818600.2,
    "buffer_fill_s": 600.0, "pending_reorder": 0, "chunks": 600, "duplicates": 2, "late": 0, "gaps": 1,
    "gap_seconds": 1.0, "clock_jumps": 0, "invalid_samples": 0, "segments": 1, "rejected": {"bad_json": 1},
    "signal_quality": {"II": "good", "V1": "noisy"},
    "events": [
        {"event": "segment_start", "segment": 1, "reason": "first"}, {"event": "gap", "seq": 300, "samples": 250}
    ],
    "published_at": 1795818600.5,
}  # fmt: skip
"""The example of docs/PROTOCOL.md."""


def raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def test_schema_literals_match_the_protocol_constants() -> None:
    assert StatusMessage.model_fields["schema_name"].alias == "schema"
    assert decode_status(raw(STATUS), "bed-12").schema_name == SCHEMA_STATUS
    presence = {"schema": SCHEMA_PRESENCE, "agent_id": "agent-1", "state": "online"}
    assert decode_presence(raw(presence), "agent-1") == PresenceMessage.model_validate_json(raw(presence))


def test_the_documented_status_parses_and_a_minimal_one_too() -> None:
    status = decode_status(raw(STATUS), "bed-12")
    assert status.signal_quality == {"II": "good", "V1": "noisy"} and status.leads == ("II", "V1")
    minimal = decode_status(raw({"schema": "ecgcast.status/1", "patient_id": "bed-12"}), "bed-12")
    assert minimal.state is None and minimal.signal_quality == {}


def test_the_status_fields_the_agents_stages_add_are_part_of_the_schema() -> None:
    """A live run found the station refusing every status of an agent with its model loaded (unknown_field): the
    encoder stage and the daemon add fields the schema lacked, and the station's tests feed no model."""
    from agent.encoder_stage import EncoderStage
    from llm_runtime.scheduler import PatientPhase

    added = EncoderStage(None, 300).status_fields("bed-12")  # type: ignore[arg-type]
    for phase in [*(p.value for p in PatientPhase), "model_loading", "model_failed"]:
        status = decode_status(raw({**STATUS, **added, "forecast_phase": phase}), "bed-12")
        assert status.forecast_phase == phase and status.embedded_seconds == 0


@pytest.mark.parametrize(
    ("change", "reason", "field"),
    [
        ({"published_at": [1]}, "bad_field", "published_at"),
        ({"published_at": "yesterday"}, "bad_field", "published_at"),
        ({"published_at": True}, "bad_field", "published_at"),
        ({"fs": "250"}, "bad_field", "fs"),
        ({"state": "dancing"}, "bad_field", "state"),
        ({"signal_quality": {"II": 3}}, "bad_field", "signal_quality.II"),
        ({"signal_quality": ["good"]}, "bad_field", "signal_quality"),
        ({"colour": "red"}, "unknown_field", "colour"),
        ({"schema": "ecgcast.status/2"}, "unknown_schema", "schema"),
        ({"schema": None}, "unknown_schema", "schema"),
        ({"patient_id": "bed-13"}, "patient_mismatch", "patient_id"),
    ],
)
def test_a_bad_status_is_refused_naming_the_field(change: dict[str, Any], reason: str, field: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_status(raw({**STATUS, **change}), "bed-12")
    assert (info.value.reason, info.value.field) == (reason, field)
    assert "yesterday" not in str(info.value)  # the value is never echoed


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "bad_json"),
        (b"{not json", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (b"[1, 2]", "bad_json"),
        (b'{"schema": "ecgcast.status/1", "patient_id": "bed-12", "fs": NaN}', "bad_json"),
        (b'{"schema": "ecgcast.status/1", "patient_id": "bed-12", "fs": Infinity}', "bad_json"),
        (b'{"schema": "ecgcast.status/1", "patient_id": "bed-12", "fs": 1e400}', "bad_json"),
        (b'{"schema": "ecgcast.status/1", "patient_id": "bed-12", "fs": 1' + b"0" * 400 + b"}", "bad_json"),
        (b'{"schema": "ecgcast.status/1", "patient_id": "bed-12", "events": [{"x": NaN}]}', "bad_json"),
        (b"[" * 4000 + b"]" * 4000, "bad_json"),
        (b'{"a": ' * 3000 + b"1" + b"}" * 3000, "bad_json"),
        (b" " * (MAX_MESSAGE_BYTES + 1), "oversize"),
    ],
)
def test_malformed_json_is_refused_before_the_model_sees_it(payload: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_status(payload, "bed-12")
    assert info.value.reason == reason


def test_presence_is_online_or_offline_from_its_own_agent() -> None:
    body = {"schema": "ecgcast.presence/1", "agent_id": "agent-1", "state": "offline", "at": 1.5}
    assert decode_presence(raw(body), "agent-1").state == "offline"
    for change, reason, field in [
        ({"state": "asleep"}, "bad_field", "state"),
        ({"agent_id": "agent-2"}, "agent_mismatch", "agent_id"),
        ({"at": "now"}, "bad_field", "at"),
        ({"schema": "ecgcast.status/1"}, "unknown_schema", "schema"),
    ]:
        with pytest.raises(ProtocolError) as info:
            decode_presence(raw({**body, **change}), "agent-1")
        assert (info.value.reason, info.value.field) == (reason, field), change
