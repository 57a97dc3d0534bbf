"""The alert object, its lifecycle events and the wire shape of ``ecgcast.alert/1`` messages.

An alert is immutable: every change (acknowledged, re-notified, escalated, cleared) makes a new one with a transition
appended to ``history``, so a lifecycle event can carry ``before`` and ``after`` exactly as Frigate's review messages
do, and the stored row is always the last ``after``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from .settings import Priority

__all__ = [
    "ACTIVE_STATES",
    "MAX_REASON_CHARS",
    "SCHEMA_ALERT",
    "SCHEMA_ALERT_ACK",
    "SCHEMA_ALERT_MUTE",
    "SCHEMA_MUTE_STATE",
    "Ack",
    "Alert",
    "AlertEvent",
    "AlertKind",
    "AlertState",
    "AlertWindow",
    "Mute",
    "MuteRequest",
    "Transition",
    "ihe_codes",
    "present_key",
]

SCHEMA_ALERT: Final = "ecgcast.alert/1"
SCHEMA_ALERT_ACK: Final = "ecgcast.alert_ack/1"
SCHEMA_ALERT_MUTE: Final = "ecgcast.alert_mute/1"
SCHEMA_MUTE_STATE: Final = "ecgcast.alert_mute_state/1"
MAX_REASON_CHARS: Final = 200  # a mute's reason: a few words a nurse types, shown on every screen

AlertState = Literal["raised", "acknowledged", "cleared", "resolved"]
AlertKind = Literal["forecast", "cannot_assess", "present_rhythm", "ectopy"]
EventType = Literal["new", "update", "end"]
ACTIVE_STATES: Final[tuple[AlertState, ...]] = ("raised", "acknowledged")

_IHE_PRIORITY: Final[dict[Priority, str]] = {"low": "PL", "medium": "PM", "high": "PH"}
_IHE_SOURCE: Final[dict[AlertKind, str]] = {
    "forecast": "SA",
    "cannot_assess": "ST",
    "present_rhythm": "SP",
    "ectopy": "SP",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Transition(_Frozen):
    """One step of an alert's life: when, into which state and priority, why, and who did it."""

    at: float
    state: AlertState
    priority: Priority
    reason: str  # raised, acknowledged, renotified, escalated, cleared, resolved, reloaded
    by: str | None = None


class AlertWindow(_Frozen):
    """The stretch of the patient's stream (seconds since stream start) the alert rests on."""

    start_s: float
    end_s: float


class Alert(_Frozen):
    alert_id: str
    patient_id: str
    state: AlertState
    priority: Priority
    kind: AlertKind
    arrhythmia: Annotated[str | None, Field(description="af, flutter or vt; None for cannot_assess and ectopy")] = None
    horizon_s: Annotated[
        int | None, Field(description="Most urgent horizon over threshold; None unless a forecast")
    ] = None
    probability: Annotated[float | None, Field(description="Onset probability within horizon_s")] = None
    threshold: Annotated[float | None, Field(description="The threshold probability was compared with")] = None
    explanation: str
    rationale_note: Annotated[str | None, Field(description="Why the model rationale is absent, when it is")] = None
    evidence: dict[str, Any]
    window: AlertWindow | None = None
    model_id: str | None = None
    model_version: str | None = None
    raised_at: float = Field(description="Wall-clock seconds (Unix time)")
    updated_at: float
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    ended_at: float | None = None
    renotified: int = 0
    last_notified_at: float
    history: tuple[Transition, ...] = ()

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def key(self) -> str:
        """De-duplication key within a patient: one active forecast and one present-rhythm alert per arrhythmia,
        one 'cannot assess', one ectopy advisory."""
        if self.kind == "present_rhythm":
            return present_key(self.arrhythmia or "")
        return self.arrhythmia or self.kind

    def transition(self, at: float, state: AlertState, reason: str, by: str | None = None, **changes: Any) -> Alert:
        """A copy in ``state`` with ``changes`` applied and the step recorded in ``history``."""
        priority = changes.get("priority", self.priority)
        step = Transition(at=at, state=state, priority=priority, reason=reason, by=by)
        return self.model_copy(update={**changes, "state": state, "updated_at": at, "history": (*self.history, step)})

    def to_wire(self) -> dict[str, Any]:
        """JSON-ready dict as published: every field plus the IHE ACM codes."""
        return {**self.model_dump(mode="json"), "ihe": ihe_codes(self.kind, self.priority)}


def present_key(arrhythmia: str) -> str:
    """Policy track key of the present-rhythm alert for ``arrhythmia`` (beside its forecast track ``arrhythmia``)."""
    return f"present_{arrhythmia}"


def ihe_codes(kind: AlertKind, priority: Priority) -> dict[str, str]:
    """IHE PCD-04 (ACM) OBX-8 abnormal-flag codes: priority PL/PM/PH, source SA (advisory), ST (technical) or SP
    (physiological: a rhythm measured under way, a measured ectopy burden)."""
    return {"priority": _IHE_PRIORITY[priority], "source": _IHE_SOURCE[kind]}


@dataclass(frozen=True)
class AlertEvent:
    """One lifecycle message: ``new`` (before is None), ``update`` or ``end`` (after is cleared/resolved)."""

    type: EventType
    before: Alert | None
    after: Alert
    reason: str

    def to_message(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_ALERT,
            "type": self.type,
            "reason": self.reason,
            "before": self.before.to_wire() if self.before else None,
            "after": self.after.to_wire(),
        }

    def payload(self) -> bytes:
        return json.dumps(self.to_message(), separators=(",", ":"), allow_nan=False).encode("utf-8")


@dataclass(frozen=True)
class Ack:
    """A validated acknowledgement from ``<prefix>/<patient_id>/alert/ack``."""

    patient_id: str
    alert_id: str
    by: str
    at: float | None  # when the clinician acknowledged (Unix seconds) if the sender said; else receipt time


@dataclass(frozen=True)
class MuteRequest:
    """A validated request from ``<prefix>/<patient_id>/alert/mute``: mute forecast alerts for ``duration_s``
    (with a reason), or lift a mute early. The agent stamps the time on receipt, so a sender's clock cannot
    lengthen or pre-expire a mute."""

    patient_id: str
    action: Literal["mute", "unmute"]
    by: str
    reason: str | None  # required to mute; optional to unmute
    duration_s: float | None  # mute only


class Mute(_Frozen):
    """One change of a patient's forecast mute: ``muted`` (by whom, why, until when), ``unmuted`` early, or
    ``expired``. Every change is a row of the store's mute history; the latest is the patient's current state and
    is published retained as ``ecgcast.alert_mute_state/1``."""

    patient_id: str = Field(max_length=64)
    action: Literal["muted", "unmuted", "expired"]
    at: float = Field(description="Wall-clock seconds (Unix time) of the change")
    by: str | None = Field(None, max_length=128)
    reason: str | None = Field(None, max_length=MAX_REASON_CHARS)
    until: float | None = Field(None, description="When a mute ends by itself (Unix time)")

    def active(self, now: float) -> bool:
        return self.action == "muted" and self.until is not None and now < self.until

    def to_message(self) -> dict[str, Any]:
        return {"schema": SCHEMA_MUTE_STATE, **self.model_dump(mode="json")}

    def payload(self) -> bytes:
        return json.dumps(self.to_message(), separators=(",", ":"), allow_nan=False).encode("utf-8")
