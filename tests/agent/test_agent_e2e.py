"""The whole agent through a private broker with the tiny random backbone: forecasts, cannot-assess alerts,
acknowledgement, restart persistence, and SIGTERM. (Forecast *quality* needs the trained model: see the demo.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from agent.daemon import Agent
from agent.local_broker import LocalMosquitto
from agent.settings import Settings
from core.protocol import Topics, WaveChunk, encode_wave
from simulators.scenarios import generate_scenario

FS = 250.0
TOPICS = Topics("ecg/v1")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def encoder_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random (untrained) encoder weights: the pipeline, not the accuracy, is under test here."""
    import torch

    from encoder_onnx.model import ConvEncoder, EncoderConfig
    from encoder_onnx.weights import save_encoder_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("encoder") / "encoder.pt"
    save_encoder_weights(path, ConvEncoder(EncoderConfig()), {"note": "random weights for tests"})
    return path


def settings_dict(url: str, encoder: Path, store: Path) -> dict:
    return {
        "agent_id": "agent-e2e",
        "mqtt": {
            "url": url,
            "client_id": f"agent-{uuid.uuid4().hex[:6]}",
            "reconnect_min_s": 0.5,
            "reconnect_max_s": 1,
        },
        "status": {"interval_s": 0.5},
        "encoder": {"weights_path": str(encoder), "onnx_path": str(encoder.with_suffix(".onnx"))},
        "llm": {"backbone": "tiny-random", "window_s": 20, "slack_s": 10, "horizons_s": [60], "num_threads": 1},
        "forecast": {"cadence_s": 3.0, "min_seconds": 10},
        "alerts": {"store_path": str(store)},
        "http": {"port": 0},
    }


class Collector:
    """Subscribes to everything under the prefix and keeps messages per topic kind."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"col-{uuid.uuid4().hex[:6]}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("ecg/v1/#", 1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/wave"):
            return
        with self._lock:
            self.messages.append((msg.topic, json.loads(msg.payload)))

    def of(self, patient: str, kind: str) -> list[dict]:
        with self._lock:
            return [body for topic, body in self.messages if topic == f"ecg/v1/{patient}/{kind}"]

    def publish(self, topic: str, body: dict) -> None:
        self.client.publish(topic, json.dumps(body).encode(), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def publish_record(client: mqtt.Client, patient: str, p_signal: np.ndarray, t0: float) -> None:
    """Publish a record in 1-s chunks as fast as the broker takes them (accelerated replay)."""
    for k in range(p_signal.shape[0] // int(FS)):
        block = p_signal[k * int(FS) : (k + 1) * int(FS)].T.astype(np.float32)
        chunk = WaveChunk(patient, "dev-1", k, t0 + k, FS, ("II", "V1"), block)
        client.publish(TOPICS.wave(patient), encode_wave(chunk, "b64"), qos=1).wait_for_publish(5)


@pytest.fixture
def streams(broker: LocalMosquitto) -> Iterator[mqtt.Client]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    yield client
    client.loop_stop()
    client.disconnect()


@pytest.mark.e2e
def test_forecasts_cannot_assess_ack_and_restart(
    broker: LocalMosquitto, streams: mqtt.Client, encoder_weights: Path, tmp_path: Path
) -> None:
    settings = Settings.model_validate(settings_dict(broker.url, encoder_weights, tmp_path / "alerts.sqlite3"))
    collector = Collector(broker.port)
    agent = Agent(settings)
    agent.start()
    try:
        sinus = generate_scenario("sinus_stable", seed=3, minutes=0.75, fs=FS, leads=("II", "V1"), noise="low")
        publish_record(streams, "bed-1", sinus.p_signal, t0=1.7e9)
        flat = np.full((int(45 * FS), 2), 0.2, np.float32)
        publish_record(streams, "bed-2", flat, t0=1.7e9)

        wait_for(lambda: bool(collector.of("bed-1", "forecast")))
        forecast = collector.of("bed-1", "forecast")[-1]
        assert forecast["schema"] == "ecgcast.forecast/1"
        assert set(forecast["rhythm_probs"]["60"]) == {"sinus", "af", "flutter", "vt"}
        assert abs(sum(forecast["rhythm_probs"]["60"].values()) - 1) < 1e-3
        assert forecast["window"]["end"] > forecast["window"]["start"]
        assert "UNTRAINED" in forecast["model_id"]

        wait_for(lambda: any(m["after"]["kind"] == "cannot_assess" for m in collector.of("bed-2", "alert")))
        alert = next(m["after"] for m in collector.of("bed-2", "alert") if m["type"] == "new")
        assert alert["state"] == "raised" and alert["patient_id"] == "bed-2"
        assert "signal quality" in alert["explanation"]
        assert not any(m["after"]["kind"] == "cannot_assess" for m in collector.of("bed-1", "alert"))

        ack = {"schema": "ecgcast.alert_ack/1", "alert_id": alert["alert_id"], "by": "nurse.jones"}
        collector.publish(TOPICS.alert_ack("bed-2", "nurse.jones"), ack)
        wait_for(lambda: any(m["after"]["state"] == "acknowledged" for m in collector.of("bed-2", "alert")))
        wait_for(lambda: any(m.get("embedded_seconds", 0) >= 10 for m in collector.of("bed-1", "status")), 10)
        status = next(m for m in collector.of("bed-1", "status") if m.get("embedded_seconds", 0) >= 10)
        assert status["forecast_phase"] in ("active", "warming_up")
        readiness = agent.readiness()
        assert readiness.ready, readiness.checks
        assert readiness.checks["forecast_lag_s"] <= settings.http.max_forecast_lag_s
        capacity = readiness.checks["forecast"]["capacity"]  # measured by the worker: forecasts and cache upkeep
        assert capacity["measured"] and capacity["upkeep_s_per_patient_minute"] > 0, capacity
        assert capacity["patients_at_base_cadence"] == readiness.checks["forecast"]["capacity_at_base_cadence"]
    finally:
        agent.stop()

    new_before = sum(1 for m in collector.of("bed-2", "alert") if m["type"] == "new")
    restarted = Agent(settings)
    try:
        assert restarted.alerts is not None
        assert [a.state for a in restarted.alerts.active("bed-2")] == ["acknowledged"]
    finally:
        restarted.stop()
    assert sum(1 for m in collector.of("bed-2", "alert") if m["type"] == "new") == new_before
    collector.close()


@pytest.mark.e2e
def test_a_single_lead_patient_is_forecast(
    broker: LocalMosquitto, streams: mqtt.Client, encoder_weights: Path, tmp_path: Path
) -> None:
    """The model reads II and V1; a telemetry stream that carries only II (a MLII Holter, a PhysioNet excerpt) is
    forecast with V1 absent, not parked in leads_off with a "cannot assess" alert."""
    settings = Settings.model_validate(settings_dict(broker.url, encoder_weights, tmp_path / "alerts.sqlite3"))
    collector = Collector(broker.port)
    agent = Agent(settings)
    agent.start()
    try:
        rec = generate_scenario("sinus_stable", seed=4, minutes=0.75, fs=FS, leads=("II",), noise="low")
        for k in range(rec.sig_len // int(FS)):
            block = rec.p_signal[k * int(FS) : (k + 1) * int(FS)].T.astype(np.float32)
            chunk = WaveChunk("bed-7", "dev-1", k, 1.7e9 + k, FS, ("II",), block)
            streams.publish(TOPICS.wave("bed-7"), encode_wave(chunk, "b64"), qos=1).wait_for_publish(5)
        wait_for(lambda: bool(collector.of("bed-7", "forecast")))
        assert collector.of("bed-7", "forecast")[-1]["signal_quality"] == {"II": "good"}
        assert not any(m["after"]["kind"] == "cannot_assess" for m in collector.of("bed-7", "alert"))
    finally:
        agent.stop()
        collector.close()


@pytest.mark.e2e
def test_an_evicted_patients_alerts_are_resolved_and_stay_resolved(
    broker: LocalMosquitto, streams: mqtt.Client, encoder_weights: Path, tmp_path: Path
) -> None:
    """A flat-line patient gets "cannot assess"; when its stream stops for buffer.idle_evict_s the agent evicts it and
    ends that alert (no more re-notification), and a restarted agent does not reload it as active."""
    config = settings_dict(broker.url, encoder_weights, tmp_path / "alerts.sqlite3")
    config["buffer"] = {"idle_evict_s": 3.0}
    settings = Settings.model_validate(config)
    collector = Collector(broker.port)
    agent = Agent(settings)
    agent.start()
    try:
        block = np.full((2, int(FS)), 0.2, np.float32)
        for k in range(120):  # stream 1-s chunks until the alert is up (bounded), then fall silent
            chunk = WaveChunk("bed-9", "dev-1", k, 1.7e9 + k, FS, ("II", "V1"), block)
            streams.publish(TOPICS.wave("bed-9"), encode_wave(chunk, "b64"), qos=1).wait_for_publish(5)
            if any(m["type"] == "new" for m in collector.of("bed-9", "alert")):
                break
            time.sleep(0.1)
        new = next(m["after"] for m in collector.of("bed-9", "alert") if m["type"] == "new")
        assert new["kind"] == "cannot_assess"
        wait_for(lambda: any(m.get("state") == "evicted" for m in collector.of("bed-9", "status")), 30)
        wait_for(lambda: any(m["type"] == "end" for m in collector.of("bed-9", "alert")), 10)
        end = next(m["after"] for m in collector.of("bed-9", "alert") if m["type"] == "end")
        assert (end["alert_id"], end["state"]) == (new["alert_id"], "resolved")
        assert agent.alerts is not None and agent.alerts.active("bed-9") == []
    finally:
        agent.stop()
    restarted = Agent(settings)
    try:
        assert restarted.alerts is not None and restarted.alerts.active("bed-9") == []
    finally:
        restarted.stop()
    collector.close()


@pytest.mark.e2e
def test_sigterm_shuts_down_cleanly_and_publishes_offline(
    broker: LocalMosquitto, encoder_weights: Path, tmp_path: Path
) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump(settings_dict(broker.url, encoder_weights, tmp_path / "alerts.sqlite3")))
    collector = Collector(broker.port)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log_path = tmp_path / "agent.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "run", "--config", str(config), "--log-format", "json"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        presence = "ecg/v1/_agents/agent-e2e/presence"
        wait_for(lambda: any(t == presence and b["state"] == "online" for t, b in collector.messages), 180)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log_path.read_text()[-2000:]
        assert '"event": "agent_stopped"' in log_path.read_text()
        wait_for(lambda: [b["state"] for t, b in collector.messages if t == presence][-1] == "offline", 10)
    finally:
        if proc.poll() is None:
            proc.kill()
        collector.close()


@pytest.mark.e2e
def test_ingest_runs_before_the_model_has_loaded_and_nothing_is_lost(
    broker: LocalMosquitto,
    streams: mqtt.Client,
    encoder_weights: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Order of events, not timing: the LM load is held until the stream has been ingested; meanwhile the agent is
    subscribed, accepts every chunk, says "model loading" and is not ready; once the load ends the backlog is
    encoded and forecast from its first second."""
    from llm_runtime.engine import ForecastEngine

    release, loading = threading.Event(), threading.Event()
    original = ForecastEngine.load

    def held_load(*args: object, **kwargs: object) -> ForecastEngine:
        loading.set()
        assert release.wait(60), "the test never released the load"
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ForecastEngine, "load", staticmethod(held_load))
    settings = Settings.model_validate(settings_dict(broker.url, encoder_weights, tmp_path / "alerts.sqlite3"))
    collector = Collector(broker.port)
    agent = Agent(settings)
    agent.start()
    try:
        assert loading.wait(30)
        sinus = generate_scenario("sinus_stable", seed=5, minutes=0.5, fs=FS, leads=("II", "V1"), noise="low")
        publish_record(streams, "bed-3", sinus.p_signal, t0=1.7e9)
        wait_for(lambda: agent.worker.accepted >= 30, 30)
        assert agent.model is None
        readiness = agent.readiness()
        assert not readiness.ready and readiness.checks["model"] == "loading"
        wait_for(lambda: any(m.get("forecast_phase") == "model_loading" for m in collector.of("bed-3", "status")), 10)

        release.set()
        model = agent.wait_for_model(60)
        wait_for(lambda: bool(collector.of("bed-3", "forecast")))
        wait_for(lambda: model.stage.embedded_seconds("bed-3") >= 29, 10)  # the load's backlog, kept and encoded
        assert agent.readiness().checks["model"] == "loaded"
    finally:
        release.set()
        agent.stop()
        collector.close()


@pytest.mark.e2e
def test_a_model_that_fails_to_load_is_reported_and_ends_the_daemon(
    broker: LocalMosquitto, encoder_weights: Path, tmp_path: Path
) -> None:
    config = settings_dict(broker.url, encoder_weights, tmp_path / "alerts.sqlite3")
    config["llm"]["adapter_dir"] = str(tmp_path / "no-such-adapter")
    agent = Agent(Settings.model_validate(config))
    agent.start()
    try:
        with pytest.raises(Exception, match="no-such-adapter"):
            agent.wait_for_model(60)
        assert agent.readiness().checks["model"] == "failed" and not agent.readiness().ready
    finally:
        agent.stop()


@pytest.mark.e2e
def test_forecasts_publish_while_the_alert_store_refuses_writes(
    broker: LocalMosquitto,
    streams: mqtt.Client,
    encoder_weights: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hostile-input issue's finding: with the database unwritable, no forecast was published (the alert write
    failed and took the batch with it) while /readyz said ready. Now forecasts and alerts go out, /readyz names the
    store, and the held alerts are written once the store takes writes again."""
    import sqlite3

    from agent.alerts._store import AlertStore

    refusing = threading.Event()
    real_write = AlertStore._write

    def write(self: AlertStore, rows: list, changes: list) -> None:
        if refusing.is_set():
            raise sqlite3.OperationalError("attempt to write a readonly database")
        real_write(self, rows, changes)

    monkeypatch.setattr(AlertStore, "_write", write)
    settings = Settings.model_validate(settings_dict(broker.url, encoder_weights, tmp_path / "alerts.sqlite3"))
    collector = Collector(broker.port)
    agent = Agent(settings)
    agent.start()
    try:
        refusing.set()
        sinus = generate_scenario("sinus_stable", seed=5, minutes=0.75, fs=FS, leads=("II", "V1"), noise="low")
        publish_record(streams, "bed-3", sinus.p_signal, t0=1.7e9)
        publish_record(streams, "bed-4", np.full((int(45 * FS), 2), 0.2, np.float32), t0=1.7e9)  # leads off
        wait_for(lambda: len(collector.of("bed-3", "forecast")) >= 2)
        wait_for(lambda: any(m["after"]["kind"] == "cannot_assess" for m in collector.of("bed-4", "alert")))
        readiness = agent.readiness()
        assert not readiness.ready and "alert_store" in readiness.checks, readiness.checks
        refusing.clear()
        wait_for(lambda: agent.readiness().ready, 30)
        assert agent.alerts is not None
        stored = [a.kind for a in AlertStore(tmp_path / "alerts.sqlite3").active_for("bed-4")]
        assert stored == ["cannot_assess"]
    finally:
        agent.stop()
        collector.close()
