"""The forecast message, ``ecgcast.forecast/1``: one typed model for the agent that publishes it and for the station
(or any consumer) that reads it, so the two cannot drift apart.

It is the model's :class:`~llm_runtime.forecast.Forecast` plus what the agent knows when it publishes: the stretch of
device time the forecast read (``window``), when it was published, the signal quality per lead and the measured
evidence. The agent builds it with :func:`forecast_message`, which validates it as it is built, and sends
:meth:`ForecastMessage.payload`; a consumer parses it with :func:`decode_forecast` (strictly: it is hostile input,
``core.wire``). docs/PROTOCOL.md describes the fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field

from core.measurements import Measurements
from core.wire import ClusterStamp, WireModel, parse_from_topic
from llm_runtime.forecast import SCHEMA, Forecast

__all__ = ["ForecastMessage", "ForecastWindow", "decode_forecast", "forecast_message"]


class ForecastWindow(WireModel):
    """The stretch of device time (wave ``t0`` clock) the forecast read."""

    start: float
    end: float
    segment: int = Field(ge=0)


class ForecastMessage(Forecast, ClusterStamp):
    """``ecgcast.forecast/1`` as published: the forecast and the agent's publishing fields (and, from a cluster
    replica, its stamp)."""

    model_config = WireModel.model_config

    schema_name: Literal["ecgcast.forecast/1"] = Field(alias="schema")
    published_at: float = Field(description="Wall-clock seconds (Unix time) the agent published it")
    window: ForecastWindow | None = None
    signal_quality: dict[str, str] = Field(default_factory=dict)
    measurements: Measurements | None = None

    def payload(self) -> bytes:
        """The JSON sent on ``<prefix>/<patient_id>/forecast``. ``window`` is left out when unknown, as it always
        was (a consumer may test for the key); every other field is always present."""
        exclude = {"window"} if self.window is None else set()
        exclude |= {k for k in ClusterStamp.model_fields if getattr(self, k) is None}  # the gate stamps them
        return self.model_dump_json(by_alias=True, exclude=exclude).encode()


def forecast_message(
    forecast: Forecast,
    *,
    published_at: float,
    window: ForecastWindow | None,
    signal_quality: Mapping[str, str],
    measurements: Measurements | None,
) -> ForecastMessage:
    """The message for ``forecast``; raises pydantic's ValidationError for a field the consumers would refuse (a
    NaN, an infinite value), so such a message is never sent. The measurements go in as their fields, because a
    dataclass instance would be taken as it is, unchecked (and a NaN in it sent as ``null``)."""
    fields = forecast.model_dump(by_alias=True)
    fields.update(schema=SCHEMA, published_at=published_at, window=window, signal_quality=dict(signal_quality))
    return ForecastMessage.model_validate({**fields, "measurements": measurements.as_dict() if measurements else None})


def decode_forecast(payload: bytes, topic_patient_id: str) -> ForecastMessage:
    """A forecast from ``topic_patient_id``'s forecast topic; raises ProtocolError naming the field."""
    return parse_from_topic(ForecastMessage, payload, "patient_id", topic_patient_id)
