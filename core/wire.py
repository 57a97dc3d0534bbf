"""Typed models of the JSON messages the agent publishes besides waves, and the one strict way to parse them.

Every consumer of an MQTT topic reads hostile input: any client on the broker can publish anything, retained. So a
message is parsed as written (no ``"12"`` for 12, no ``true`` for 1, no ``NaN``, ``Infinity`` or a float that
overflows, bounded size and nesting) into a frozen model, and every failure is a :class:`ProtocolError` whose
``field`` is the dotted path of the first bad field, without echoing the value. docs/PROTOCOL.md is the prose twin.

The wave message has its own hand-written decoder (core/protocol.py) because it is on the hot path; the forecast
and alert messages extend models owned by higher layers (``llm_runtime.forecast.Forecast``, ``agent.alerts.Alert``)
and are parsed with :func:`parse_message` too.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import ProtocolError

__all__ = [
    "MAX_MESSAGE_BYTES",
    "ClusterStamp",
    "MeasuredRhythm",
    "MeasuredWindow",
    "PresenceMessage",
    "StatusMessage",
    "WireModel",
    "check_same",
    "decode_presence",
    "decode_status",
    "parse_from_topic",
    "parse_message",
]

MAX_MESSAGE_BYTES: Final = 65_536
"""A status, forecast or alert message is a few kB; anything larger is refused before it is parsed."""
_MAX_INT_DIGITS: Final = 20  # no ecgcast message has an integer beyond 64 bits; a longer one overflows a float field

MessageT = TypeVar("MessageT", bound=BaseModel)


class WireModel(BaseModel):
    """Base of the wire models: unknown fields are errors, the parsed message is immutable, numbers are finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ClusterStamp(WireModel):
    """What a cluster replica's publish gate adds to each per-patient message (agent/cluster/_gate.py): the
    patient's partition, the lease epoch and the replica that spoke, so a consumer can drop an epoch older than the
    newest it saw. A single agent's messages carry none of them."""

    partition: int | None = Field(None, ge=0)
    epoch: int | None = Field(None, ge=0)
    owner: str | None = Field(None, min_length=1, max_length=64)


MeasuredQuality = Literal["good", "degraded", "poor"]


class MeasuredWindow(WireModel):
    """One window of the agent's rhythm monitor (``core.measurements.EctopyBurden``; docs/PROTOCOL.md)."""

    window_s: float = Field(gt=0)
    t_end_s: float
    covered_s: float = Field(ge=0)
    clean_s: float = Field(ge=0)
    quality: MeasuredQuality
    beats: int = Field(ge=0)
    hr_bpm: float | None = Field(None, gt=0)
    pvc: int = Field(ge=0)
    pac: int = Field(ge=0)
    pvc_burden: float | None = Field(None, ge=0, le=1)
    pac_burden: float | None = Field(None, ge=0, le=1)
    pvc_per_min: float | None = Field(None, ge=0)
    pac_per_min: float | None = Field(None, ge=0)
    couplets: int = Field(ge=0)
    ventricular_runs: int = Field(ge=0)
    longest_ventricular_run: int = Field(ge=0)


class MeasuredRhythm(WireModel):
    """The ``measured`` field of a status: the rhythm monitor's latest refresh (agent/rhythm_monitor.py)."""

    lead: str | None = Field(None, max_length=16)
    quality: MeasuredQuality | None = None
    t_end_s: float
    measured_at: float
    interval_s: float = Field(gt=0)
    windows: tuple[MeasuredWindow, ...] = Field((), max_length=8)


class StatusMessage(ClusterStamp):
    """``ecgcast.status/1``: one patient's stream status, retained (agent/patient.py builds it)."""

    schema_name: Literal["ecgcast.status/1"] = Field(alias="schema")
    patient_id: str = Field(min_length=1, max_length=64)
    state: Literal["streaming", "stale", "evicted"] | None = None
    stream_id: str | None = Field(None, max_length=64)
    segment: int = Field(0, ge=0)
    segment_reason: str | None = Field(None, max_length=64)
    fs: float | None = Field(None, gt=0)
    leads: tuple[str, ...] = ()
    samples_received: dict[str, int] = Field(default_factory=dict)
    last_seq: int | None = None
    last_seen: float | None = None
    buffer_fill_s: float = 0.0
    pending_reorder: int = 0
    chunks: int = 0
    duplicates: int = 0
    late: int = 0
    gaps: int = 0
    gap_seconds: float = 0.0
    clock_jumps: int = 0
    invalid_samples: int = 0
    segments: int = 0
    rejected: dict[str, int] = Field(default_factory=dict)
    signal_quality: dict[str, str] = Field(default_factory=dict, description="lead -> verdict (docs/PROTOCOL.md)")
    events: tuple[dict[str, Any], ...] = ()
    published_at: float | None = None
    measured: MeasuredRhythm | None = Field(None, description="HR, ectopy and measured quality of recent windows")
    replaying: bool | None = Field(None, description="cluster: the owner is replaying the partition's backlog")
    embedded_seconds: int | None = Field(None, ge=0, description="seconds of encoder embeddings held (encoder stage)")
    embedded_windows: int | None = Field(None, ge=0, description="lead-seconds encoded since the stream began")
    embedding_segment: int | None = Field(None, ge=0, description="the stream segment the embeddings belong to")
    forecast_phase: Literal["warming_up", "active", "leads_off", "evicted", "model_loading", "model_failed"] | None = (
        Field(None, description="the forecast scheduler's phase for this patient, or why the model is not there")
    )


class PresenceMessage(WireModel):
    """``ecgcast.presence/1``: an agent's retained online/offline state (its MQTT will says offline)."""

    schema_name: Literal["ecgcast.presence/1"] = Field(alias="schema")
    agent_id: str = Field(min_length=1, max_length=64)
    state: Literal["online", "offline"]
    at: float | None = None


def parse_message(model: type[MessageT], payload: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> MessageT:
    """``payload`` as ``model``, strictly; raises ProtocolError (``oversize``, ``bad_json``, ``unknown_schema``,
    ``missing_field``, ``unknown_field`` or ``bad_field``) naming the first bad field."""
    if len(payload) > max_bytes:
        raise ProtocolError("oversize", f"message of {len(payload)} bytes exceeds {max_bytes}")
    _check_json(payload)
    try:
        return model.model_validate_json(payload, strict=True)
    except ValidationError as exc:
        raise _protocol_error(exc) from None


def parse_from_topic(model: type[MessageT], payload: bytes, field: str, topic_value: str) -> MessageT:
    """:func:`parse_message`, then the payload's ``field`` (``patient_id``, ``agent_id``) must be the topic's."""
    message = parse_message(model, payload)
    check_same(field, getattr(message, field), topic_value)
    return message


def decode_status(payload: bytes, topic_patient_id: str) -> StatusMessage:
    """A status message from ``topic_patient_id``'s status topic; the payload's patient must be the topic's."""
    return parse_from_topic(StatusMessage, payload, "patient_id", topic_patient_id)


def decode_presence(payload: bytes, topic_agent_id: str) -> PresenceMessage:
    """A presence message from ``topic_agent_id``'s presence topic; the payload's agent must be the topic's."""
    return parse_from_topic(PresenceMessage, payload, "agent_id", topic_agent_id)


def check_same(field: str, payload_value: str, topic_value: str) -> None:
    """A message about one patient (or agent) published on another's topic is refused, not filed under either."""
    if payload_value != topic_value:
        raise ProtocolError(f"{field.removesuffix('_id')}_mismatch", f"payload {field} differs from the topic's", field)


def _check_json(payload: bytes) -> None:
    """Refuse what the model parser would let through: NaN, infinities, overflowing numbers, absurd nesting."""
    try:
        json.loads(payload.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite, parse_int=_bounded_int)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("bad_json", f"not UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("bad_json", "JSON nests too deeply") from None
    except ValueError as exc:  # from the hooks below
        raise ProtocolError("bad_json", str(exc)) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number overflows a float")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise ValueError(f"an integer has more than {_MAX_INT_DIGITS} digits")
    return int(text)


_REASONS: Final = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "unexpected_keyword_argument": "unknown_field",
    "json_invalid": "bad_json",
    "json_type": "bad_json",
}


def _protocol_error(exc: ValidationError) -> ProtocolError:
    """The first error as a ProtocolError: reason code, dotted field path, pydantic's message (never the input)."""
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    reason = _REASONS.get(first["type"], "bad_field")
    if field is None and reason == "bad_field":
        reason = "bad_json"  # the top level is not an object
    elif field == "schema" and first["type"] == "literal_error":
        reason = "unknown_schema"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ProtocolError(reason, f"{first['msg']}{more}" if field else f"message: {first['msg']}{more}", field)
