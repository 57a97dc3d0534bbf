"""The forecast and alert messages as the station receives them: typed, strictly parsed, refused when forged.

Status and presence models are shared in ``core.wire``, the forecast message in ``agent.forecast_message`` (the
agent publishes from that same model: ``ForecastMessage``, ``ForecastWindow``, ``decode_forecast`` are re-exported
here); the alert message is :meth:`agent.alerts.AlertEvent.to_message`, the mute state message
:meth:`agent.alerts.Mute.to_message`. They reuse those models rather than restating their fields, so a change there
is a change here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from agent.alerts import Alert, Mute
from agent.forecast_message import ForecastMessage, ForecastWindow, decode_forecast
from core.errors import ProtocolError
from core.wire import ClusterStamp, check_same, parse_from_topic, parse_message

__all__ = [
    "AlertMessage",
    "ForecastMessage",
    "ForecastWindow",
    "MuteMessage",
    "WireAlert",
    "decode_alert",
    "decode_forecast",
    "decode_mute_state",
]

_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class WireAlert(Alert):
    """An alert as published: :meth:`Alert.to_wire` adds the IHE codes, which are derived, so only checked for type."""

    model_config = _STRICT

    ihe: dict[str, str] | None = None


class AlertMessage(ClusterStamp):
    """``ecgcast.alert/1``: one lifecycle event, ``before`` (None for ``new``) and ``after``."""

    model_config = _STRICT

    schema_name: Literal["ecgcast.alert/1"] = Field(alias="schema")
    type: Literal["new", "update", "end"]
    reason: str = Field(max_length=64)
    before: WireAlert | None
    after: WireAlert

    @property
    def announces(self) -> bool:
        """A new alert, an escalation or a re-notification: the page announces it again."""
        return self.type == "new" or self.reason in ("escalated", "renotified")


class MuteMessage(Mute):
    """``ecgcast.alert_mute_state/1`` (retained): the latest change of one patient's forecast mute."""

    model_config = _STRICT

    schema_name: Literal["ecgcast.alert_mute_state/1"] = Field(alias="schema")


def decode_alert(payload: bytes, topic_patient_id: str) -> AlertMessage:
    """An alert lifecycle message from ``topic_patient_id``'s alert topic; both versions must be that patient's."""
    message = parse_message(AlertMessage, payload)
    for alert in (message.before, message.after):
        if alert is not None:
            check_same("patient_id", alert.patient_id, topic_patient_id)
    if message.before is not None and message.before.alert_id != message.after.alert_id:
        raise ProtocolError("bad_field", "before and after are different alerts", "before.alert_id")
    return message


def decode_mute_state(payload: bytes, topic_patient_id: str) -> MuteMessage:
    """A forecast mute state from ``topic_patient_id``'s ``alert/muted`` topic."""
    return parse_from_topic(MuteMessage, payload, "patient_id", topic_patient_id)
