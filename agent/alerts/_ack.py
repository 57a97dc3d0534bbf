"""Decoding what nurses send the agent: acknowledgements from ``<prefix>/<patient_id>/alert/ack/<user>`` (schema
``ecgcast.alert_ack/1``) and forecast mute requests from ``<prefix>/<patient_id>/alert/mute/<user>`` (schema
``ecgcast.alert_mute/1``).

Who sent a request is the topic's ``<user>``, never the payload's ``by``: MQTT does not tell a receiver who
published, but the broker security profile (docs/SECURITY.md) lets only that user, or the station relaying for its
signed-in user, write the topic. A payload ``by`` is optional and must name the same user.

The payload is untrusted: every failure raises :class:`ProtocolError` with a stable reason code and the field, and
nothing from a rejected payload is echoed anywhere but the log. Whether the alert exists, belongs to this patient
and is still active is checked by :meth:`AlertService.acknowledge`, which owns the store.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

from core.errors import ProtocolError
from core.protocol import USER_ID_PATTERN

from ._model import MAX_REASON_CHARS, SCHEMA_ALERT_ACK, SCHEMA_ALERT_MUTE, Ack, MuteRequest

__all__ = [
    "MAX_ACK_BYTES",
    "MAX_ACK_SKEW_S",
    "MAX_MUTE_S",
    "MAX_REASON_CHARS",
    "MIN_MUTE_S",
    "decode_ack",
    "decode_mute",
]

MAX_ACK_BYTES: Final = 4096
MAX_ACK_SKEW_S: Final = 120.0
"""How far an ack's ``at`` may lie from its receipt: clocks of synchronised hosts plus the broker's hand-over.
A sender cannot date an ack hours back (``at: 0``) or in 2100; an ack queued longer than this (the agent was down)
is refused, and the alert keeps re-notifying until it is acknowledged again."""
MIN_MUTE_S: Final = 60.0
MAX_MUTE_S: Final = 86_400.0  # a mute outlasting a day (a shift change or two) must be asked for again
_ID: Final = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")  # with fullmatch: "$" would let "a\n" through
_REASON: Final = re.compile(rf"\A[^\x00-\x1f\x7f]{{1,{MAX_REASON_CHARS}}}\Z")
_ACK_FIELDS: Final = frozenset({"schema", "alert_id", "by", "at", "patient_id"})
_MUTE_FIELDS: Final = frozenset({"schema", "action", "by", "reason", "duration_s", "patient_id"})


def decode_ack(
    payload: bytes, topic_patient_id: str, topic_user: str, *, received_at: float, max_skew_s: float = MAX_ACK_SKEW_S
) -> Ack:
    """Validate one ack payload received at ``received_at`` (Unix seconds) on ``topic_user``'s ack topic of
    ``topic_patient_id``; the ack is recorded as ``topic_user``'s.

    Reason codes: ``oversize``, ``bad_json``, ``not_object``, ``bad_schema``, ``unknown_field``, ``missing_field``,
    ``bad_field``, ``bad_user``, ``wrong_patient``, ``wrong_user``, ``clock_skew``.
    """
    by = _user(topic_user)
    data = _object(payload, SCHEMA_ALERT_ACK, _ACK_FIELDS, topic_patient_id)
    alert_id = _text(data, "alert_id", _ID)
    _same_user(data, by)
    at = _time(data.get("at"), received_at, max_skew_s)
    return Ack(patient_id=topic_patient_id, alert_id=alert_id, by=by, at=at)


def decode_mute(payload: bytes, topic_patient_id: str, topic_user: str) -> MuteRequest:
    """Validate one mute request received on ``topic_user``'s mute topic of ``topic_patient_id``; the request is
    recorded as ``topic_user``'s.

    ``action`` "mute" needs ``reason`` (at most :data:`MAX_REASON_CHARS` printable characters) and ``duration_s``
    in [:data:`MIN_MUTE_S`, :data:`MAX_MUTE_S`]; "unmute" takes an optional reason, never a duration. Reason codes
    are :func:`decode_ack`'s but ``clock_skew`` (a mute has no ``at``: the agent stamps the time).
    """
    by = _user(topic_user)
    data = _object(payload, SCHEMA_ALERT_MUTE, _MUTE_FIELDS, topic_patient_id)
    action = data.get("action")
    if action is None:
        raise ProtocolError("missing_field", "action is required", "action")
    if action not in ("mute", "unmute"):
        raise ProtocolError("bad_field", "action must be 'mute' or 'unmute'", "action")
    _same_user(data, by)
    reason = _text(data, "reason", _REASON).strip() if action == "mute" or "reason" in data else None
    if action == "unmute":
        if "duration_s" in data:
            raise ProtocolError("bad_field", "an unmute takes no duration_s", "duration_s")
        return MuteRequest(topic_patient_id, "unmute", by, reason, None)
    return MuteRequest(topic_patient_id, "mute", by, reason, _duration(data.get("duration_s")))


def _object(payload: bytes, schema: str, fields: frozenset[str], topic_patient_id: str) -> dict[str, Any]:
    """The payload as a JSON object of ``schema`` with only ``fields``, about the topic's patient."""
    if len(payload) > MAX_ACK_BYTES:
        raise ProtocolError("oversize", f"message of {len(payload)} bytes exceeds {MAX_ACK_BYTES}")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("bad_json", f"message is not UTF-8 JSON: {exc}") from exc
    except RecursionError as exc:
        raise ProtocolError("bad_json", "message nests too deeply") from exc
    if not isinstance(data, dict):
        raise ProtocolError("not_object", f"message must be a JSON object, got {type(data).__name__}")
    if data.get("schema") != schema:
        raise ProtocolError("bad_schema", f"schema must be {schema!r}", "schema")
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ProtocolError("unknown_field", f"unexpected fields {unknown}", unknown[0])
    if "patient_id" in data and data["patient_id"] != topic_patient_id:
        raise ProtocolError("wrong_patient", "payload patient_id differs from the topic's patient", "patient_id")
    return data


def _user(topic_user: str) -> str:
    """The topic's user, who the broker let publish there: the identity an ack or mute is recorded with."""
    if not USER_ID_PATTERN.fullmatch(topic_user):
        raise ProtocolError("bad_user", "the topic's user must be a broker user name (letters, digits, . _ @ -)")
    return topic_user


def _same_user(data: dict[str, Any], user: str) -> None:
    """A payload ``by`` is a claim; the topic is the identity. One naming someone else is refused, not rewritten."""
    if "by" in data and data["by"] != user:
        raise ProtocolError("wrong_user", "by differs from the user of the topic", "by")


def _text(data: dict[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value = data.get(name)
    if value is None:
        raise ProtocolError("missing_field", f"{name} is required", name)
    if not isinstance(value, str) or not pattern.fullmatch(value) or not value.isprintable() or not value.strip():
        raise ProtocolError("bad_field", f"{name} must be a short printable string", name)
    return value


def _time(value: object, received_at: float, max_skew_s: float) -> float | None:
    """The sender's ``at`` when it lies within ``max_skew_s`` of receipt (None when absent: receipt time is used)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ProtocolError("bad_field", "at must be Unix seconds (a finite non-negative number)", "at")
    offset = float(value) - received_at
    if abs(offset) > max_skew_s:
        detail = f"at is {offset:+.0f} s from receipt; it must be within {max_skew_s:.0f} s (check the sender's clock)"
        raise ProtocolError("clock_skew", detail, "at")
    return float(value)


def _duration(value: object) -> float:
    if value is None:
        raise ProtocolError("missing_field", "duration_s is required to mute", "duration_s")
    if isinstance(value, bool) or not isinstance(value, int | float) or not MIN_MUTE_S <= value <= MAX_MUTE_S:
        raise ProtocolError(
            "bad_field",
            f"duration_s must be seconds in [{MIN_MUTE_S:.0f}, {MAX_MUTE_S:.0f}] (at most 24 h)",
            "duration_s",
        )
    return float(value)
