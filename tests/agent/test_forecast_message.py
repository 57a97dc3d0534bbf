"""Issue #19 item 1: the agent publishes each forecast from the typed model the station parses it with
(``agent.forecast_message``), not from a patched dict. The JSON on the wire keeps every field name and value it had;
a message that model refuses is never sent, and neither it nor a broker failure stops the forecast's alerts."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from agent.encoder_stage import EncoderStage, PatientEmbeddings
from agent.forecast_message import ForecastWindow, decode_forecast, forecast_message
from agent.forecasting import ModelWorker
from agent.station._messages import decode_forecast as station_decode_forecast
from core.errors import BrokerError
from core.measurements import Measurements, measure
from core.protocol import Topics
from encoder_onnx.embedding_ring import EmbeddingRing

from .alerts.alert_builders import forecast

T0 = 1_700_000_000.0
Sent = list[tuple[str, bytes, int, bool]]


def measured(recent: Measurements | None) -> Any:
    """What ``_publish_forecast`` reads of the model worker's measurements: the snapshot's quality, the recent ones."""
    return SimpleNamespace(snapshot=SimpleNamespace(quality={"II": "good", "V1": "noisy"}), recent=recent)


def measured_strip() -> Measurements:
    t = np.arange(2500) / 250.0
    return measure(np.sin(2 * np.pi * 1.2 * t) ** 15, 250.0)


def publishing_worker(sent: Sent, seconds: int = 0, fail: Exception | None = None) -> ModelWorker:
    """A model worker with only what publishing touches: an encoder stage holding ``seconds`` of patient P001
    (from ``T0``, segment 2), the topics, and a publish that records or raises ``fail``."""

    def publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if fail is not None:
            raise fail
        sent.append((topic, payload, qos, retain))

    stage = EncoderStage(runtime=None, capacity_s=600)  # never encodes here: no runtime needed
    if seconds:
        ring = EmbeddingRing(1, 600, 4)
        for s in range(seconds):
            ring.put(0, s, T0 + s, np.zeros(4, np.float32))
        stage.patients["P001"] = PatientEmbeddings(2, ("II",), ring)
    worker: Any = object.__new__(ModelWorker)  # no engine, scheduler or thread: publishing needs none
    worker.stage, worker._publish, worker._topics = stage, publish, Topics("ecg/v1")
    return worker


def test_the_forecast_goes_out_as_the_model_the_station_parses() -> None:
    sent: Sent = []
    before = time.time()
    recent = measured_strip()
    publishing_worker(sent, seconds=400)._publish_forecast(forecast(af=0.4), measured(recent))
    ((topic, payload, qos, retain),) = sent
    assert (topic, qos, retain) == ("ecg/v1/P001/forecast", 1, True)

    parsed = station_decode_forecast(payload, "P001")
    assert parsed.window == ForecastWindow(start=T0 + 100, end=T0 + 400, segment=2)  # the 300 s read
    assert parsed.measurements == recent and parsed.peak_risk["af"] == 0.4
    assert before <= parsed.published_at <= time.time()

    body = json.loads(payload)  # the fields and values of the old patched dict, exactly
    old: dict[str, Any] = json.loads(forecast(af=0.4).to_json())
    old.update(
        window={"start": T0 + 100, "end": T0 + 400, "segment": 2},
        published_at=body["published_at"],
        signal_quality={"II": "good", "V1": "noisy"},
        measurements=recent.as_dict(),
    )
    assert body == old


def test_without_a_window_or_measurements_the_fields_are_as_before() -> None:
    """An evicted patient's ring is gone: ``window`` is left out, as it was; ``measurements`` is null."""
    sent: Sent = []
    publishing_worker(sent)._publish_forecast(forecast(), measured(None))
    body = json.loads(sent[0][1])
    assert "window" not in body and body["measurements"] is None
    assert decode_forecast(sent[0][1], "P001").window is None


def test_a_message_the_model_refuses_is_not_sent() -> None:
    """A NaN in the measurements would have gone out as invalid JSON (``NaN``) that every consumer refuses; now it
    is refused where it is made, logged, and the caller goes on to the alerts."""
    sent: Sent = []
    broken = replace(measured_strip(), usable_fraction=float("nan"))
    with pytest.raises(ValueError, match="finite number"):
        forecast_message(forecast(), published_at=1.0, window=None, signal_quality={}, measurements=broken)
    publishing_worker(sent)._publish_forecast(forecast(), measured(broken))
    assert sent == []


def test_a_broker_failure_is_contained() -> None:
    publishing_worker([], fail=BrokerError("not connected"))._publish_forecast(forecast(), measured(None))
