"""Decoding acknowledgements from ``<prefix>/<patient_id>/alert/ack`` (schema ``ecgcast.alert_ack/1``).

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

from ._model import SCHEMA_ALERT_ACK, Ack

__all__ = ["MAX_ACK_BYTES", "decode_ack"]

MAX_ACK_BYTES: Final = 4096
_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")  # used with fullmatch: "$" would let "a\n" through
_PRINTABLE: Final = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_FIELDS: Final = frozenset({"schema", "alert_id", "by", "at", "patient_id"})


def decode_ack(payload: bytes, topic_patient_id: str) -> Ack:
    """Validate one ack payload received on ``topic_patient_id``'s ack topic.

    Reason codes: ``oversize``, ``bad_json``, ``not_object``, ``bad_schema``, ``unknown_field``, ``missing_field``,
    ``bad_field``, ``wrong_patient``.
    """
    if len(payload) > MAX_ACK_BYTES:
        raise ProtocolError("oversize", f"ack of {len(payload)} bytes exceeds {MAX_ACK_BYTES}")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("bad_json", f"ack is not UTF-8 JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProtocolError("not_object", f"ack must be a JSON object, got {type(data).__name__}")
    if data.get("schema") != SCHEMA_ALERT_ACK:
        raise ProtocolError("bad_schema", f"schema must be {SCHEMA_ALERT_ACK!r}", "schema")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ProtocolError("unknown_field", f"unexpected fields {unknown}", unknown[0])
    alert_id = _text(data, "alert_id", _ID)
    by = _text(data, "by", _PRINTABLE)
    if "patient_id" in data and data["patient_id"] != topic_patient_id:
        raise ProtocolError("wrong_patient", "payload patient_id differs from the topic's patient", "patient_id")
    return Ack(patient_id=topic_patient_id, alert_id=alert_id, by=by.strip(), at=_time(data.get("at")))


def _text(data: dict[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value = data.get(name)
    if value is None:
        raise ProtocolError("missing_field", f"{name} is required", name)
    if not isinstance(value, str) or not pattern.fullmatch(value) or not value.strip():
        raise ProtocolError("bad_field", f"{name} must be a short printable string", name)
    return value


def _time(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ProtocolError("bad_field", "at must be Unix seconds (a finite non-negative number)", "at")
    return float(value)
