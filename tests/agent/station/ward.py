"""A synthetic ward on a private broker for the station tests and screenshots.

Waveforms are synthetic scenarios (``simulators.generate_scenario``) streamed in real time; status and forecast
messages are hand-built in the wire formats of docs/PROTOCOL.md, with forecast probabilities chosen by the test
(labelled ``synthetic-ward``, not a model's output). Alerts, acknowledgements and forecast mutes go through the
agent's real alert half: ``AlertService`` (policy, state machine, store, publishing), ``decode_ack`` and
``decode_mute`` on their topics and the daemon's ``AlertWorker``, the same objects ``Agent`` wires.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.alerts import Ack, AlertService, AlertSettings, MuteRequest, build_evidence, decode_ack, decode_mute
from agent.daemon import AlertWorker
from agent.forecast_message import ForecastWindow, forecast_message
from core.measurements import measure_leads
from core.protocol import Topics, WaveChunk, encode_wave
from llm_runtime.forecast import Forecast
from simulators import generate_scenario

FS = 250.0
CHUNK_S = 0.25
TOPICS = Topics("ecg/v1")
AGENT_ID = "agent-ward"


@dataclass
class Bed:
    patient_id: str
    bed: str
    scenario: str
    seed: int
    lead_off: bool = False
    silent: bool = False  # the electrodes' data stop (the status goes on): what the station must show as stale
    p_signal: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    seq: int = 0


def forecast_for(patient_id: str, af: float, flutter: float, vt: float, t_forecast: float) -> Forecast:
    """A valid ``ecgcast.forecast/1`` with the given onset probabilities at both horizons (synthetic)."""
    onset = {h: {"af": af, "flutter": flutter, "vt": vt} for h in (60, 300)}
    rhythm = {
        h: {"sinus": 1 - (af + flutter + vt) / 2, "af": af / 2, "flutter": flutter / 2, "vt": vt / 2} for h in onset
    }
    return Forecast.model_validate(
        {
            "patient_id": patient_id,
            "t_forecast": t_forecast,
            "window_s": 60,
            "horizons_s": (60, 300),
            "rhythm_probs": rhythm,
            "onset_probs": onset,
            "model_id": "synthetic-ward",
            "model_version": "test",
            "latency_ms": 0.0,
        }
    )


class Ward:
    """Streams beds, publishes their status and forecasts, and runs the agent's alert half."""

    def __init__(self, port: int, store: Path, beds: list[Bed]) -> None:
        self.beds = {b.patient_id: b for b in beds}
        for b in beds:
            record = generate_scenario(b.scenario, seed=b.seed, minutes=1.0, fs=FS, leads=("II", "V1"), noise="low")
            b.p_signal = record.p_signal.astype(np.float32)
            if b.lead_off:
                b.p_signal[:, 1] = 0.0  # V1 electrode off: a flat line
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ward-{uuid.uuid4().hex[:6]}")
        self.client.will_set(self._presence_topic, self._presence("offline"), qos=1, retain=True)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.alerts = AlertService(AlertSettings(store_path=store), store, self._publish, TOPICS)
        self.acks: queue.Queue[Ack | MuteRequest] = queue.Queue()
        self.alert_worker = AlertWorker(self.alerts, self.acks, queue.SimpleQueue())
        self.client.message_callback_add(TOPICS.ack_subscription, self._on_ack)
        self.client.subscribe(TOPICS.ack_subscription, 1)
        self.client.message_callback_add(TOPICS.mute_subscription, self._on_mute)
        self.client.subscribe(TOPICS.mute_subscription, 1)
        self.start_time = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._stream, daemon=True)

    _presence_topic = TOPICS.presence(AGENT_ID)

    @staticmethod
    def _presence(state: str) -> bytes:
        return json.dumps({"schema": "ecgcast.presence/1", "agent_id": AGENT_ID, "state": state}).encode()

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain)

    def _on_ack(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        patient_id, user = TOPICS.request_of(message.topic, "alert/ack")
        self.acks.put(decode_ack(message.payload, patient_id, user, received_at=time.time()))

    def _on_mute(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.acks.put(decode_mute(message.payload, *TOPICS.request_of(message.topic, "alert/mute")))

    def start(self) -> Ward:
        self.publish_presence("online")
        self.alert_worker.start()
        self._thread.start()
        return self

    def publish_presence(self, state: str) -> None:
        self.client.publish(self._presence_topic, self._presence(state), qos=1, retain=True).wait_for_publish(5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.alert_worker.stop()
        self.alerts.close()
        self.client.loop_stop()
        self.client.disconnect()

    def _stream(self) -> None:
        """Real-time chunks for every bed, and a retained status per bed every second."""
        n = round(CHUNK_S * FS)
        k = 0
        while not self._stop.is_set():
            t0 = self.start_time + k * CHUNK_S
            for b in self.beds.values():
                start = (k * n) % (b.p_signal.shape[0] - n)
                chunk = WaveChunk(b.patient_id, "ward", b.seq, t0, FS, ("II", "V1"), b.p_signal[start : start + n].T)
                if not b.silent:
                    self.client.publish(TOPICS.wave(b.patient_id), encode_wave(chunk, "b64"), qos=0)
                b.seq += 1
                if k % round(1 / CHUNK_S) == 0:
                    self._publish(TOPICS.status(b.patient_id), json.dumps(self.status(b)).encode(), 1, True)
            k += 1
            self._stop.wait(max(0.0, self.start_time + k * CHUNK_S - time.time()))

    def status(self, b: Bed) -> dict[str, Any]:
        return {
            "schema": "ecgcast.status/1",
            "patient_id": b.patient_id,
            "state": "streaming",
            "stream_id": "ward",
            "fs": FS,
            "leads": ["II", "V1"],
            "signal_quality": {"II": "good", "V1": "leads_off" if b.lead_off else "good"},
            "published_at": time.time(),
        }

    def backfill_forecasts(
        self, patient_id: str, vt_from: float, vt_to: float, n: int = 12, every_s: float = 300
    ) -> None:
        """Forecasts of the past hour (risk rising linearly), published for the trend only: they went by before
        the alert service of this test started, as a restarted station would have missed them."""
        now = time.time()
        for k in range(n):
            vt = vt_from + (vt_to - vt_from) * k / max(n - 1, 1)
            at = now - (n - k) * every_s
            forecast = forecast_for(patient_id, 0.05, 0.03, vt, at - self.start_time)
            message = forecast_message(forecast, published_at=at, window=None, signal_quality={}, measurements=None)
            self._publish(TOPICS.forecast(patient_id), message.payload(), 1, False)

    def publish_forecast(self, patient_id: str, af: float = 0.05, flutter: float = 0.03, vt: float = 0.02) -> None:
        """Publish a forecast with these onset probabilities and pass it to the alert service, as the agent does."""
        b = self.beds[patient_id]
        now = time.time()
        forecast = forecast_for(patient_id, af, flutter, vt, now - self.start_time)
        strip = b.p_signal[: round(30 * FS)]
        recent = measure_leads(strip, FS, ("II", "V1"))
        quality = self.status(b)["signal_quality"]
        window = ForecastWindow(start=now - 60.0, end=now, segment=1)
        message = forecast_message(
            forecast, published_at=now, window=window, signal_quality=quality, measurements=recent
        )
        self._publish(TOPICS.forecast(patient_id), message.payload(), 1, True)
        self.alerts.on_forecast(patient_id, forecast, build_evidence(recent, None, quality, 30.0))


def fail_updates_once(station: Any, monkeypatch: Any) -> None:
    """The station's feed loop meets one failure outside any message (its next ``take_updates`` raises), then
    runs as before: what the loop's supervisor must survive with a technical alarm."""
    real = station.state.take_updates
    failures = iter([RuntimeError("injected")])

    def failing_once() -> Any:
        for exc in failures:
            raise exc
        return real()

    monkeypatch.setattr(station.state, "take_updates", failing_once)
