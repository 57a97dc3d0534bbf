"""/healthz, /readyz and /metrics of a running agent (ingest only: no model needed to test the endpoints)."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.alerts import AlertStore
from agent.daemon import Agent
from agent.ingest import RawWave, Rejection
from agent.local_broker import LocalMosquitto, free_port
from agent.sequencer import Delivery
from agent.settings import HttpSettings, Settings
from core.protocol import Topics, WaveChunk
from core.settings import MqttSettings

from .alerts.alert_builders import evidence


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:  # holds the connection open until closed
            return exc.code, exc.read().decode()


def test_health_readiness_and_metrics(broker: LocalMosquitto) -> None:
    port = free_port()
    settings = Settings(
        mqtt=MqttSettings(url=broker.url, client_id=f"agent-{uuid.uuid4().hex[:6]}"),
        http=HttpSettings(port=port),
    )
    agent = Agent(settings, with_model=False)
    base = f"http://127.0.0.1:{port}"
    assert agent.health is not None
    agent.start()
    try:
        assert agent.connection.wait_connected(10)
        assert get(f"{base}/healthz")[0] == 200
        code, body = get(f"{base}/readyz")
        assert code == 200 and json.loads(body)["checks"]["broker_connected"] is True
        pub = mqtt.Client(CallbackAPIVersion.VERSION2)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        pub.publish(Topics().wave("bed-1"), b"{not json", qos=1).wait_for_publish(5)
        pub.loop_stop()
        for _ in range(50):
            code, metrics = get(f"{base}/metrics")
            if 'ecgcast_wave_rejects_total{reason="bad_json"} 1.0' in metrics:
                break
            time.sleep(0.1)
        assert 'ecgcast_wave_rejects_total{reason="bad_json"} 1.0' in metrics
        assert "ecgcast_patients 0.0" in metrics
        assert get(f"{base}/nope")[0] == 404
    finally:
        agent.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{base}/healthz", timeout=2)


def test_not_ready_without_broker() -> None:
    port = free_port()
    settings = Settings(mqtt=MqttSettings(url=f"mqtt://127.0.0.1:{free_port()}"), http=HttpSettings(port=port))
    agent = Agent(settings, with_model=False)
    agent.start()
    try:
        code, body = get(f"http://127.0.0.1:{port}/readyz")
        assert code == 503 and json.loads(body)["checks"]["broker_connected"] is False
    finally:
        agent.stop()


@pytest.mark.parametrize("queued", ["raw", "delivery"])
def test_readiness_measures_ingest_lag_from_the_oldest_waiting_message(queued: str, broker: LocalMosquitto) -> None:
    """The MQTT path queues undecoded ``RawWave``s (the cluster path ``Delivery``s): either one, waiting longer than
    http.max_ingest_lag_s, must fail /readyz. A rejection at the head carries no arrival time and counts as no lag."""
    settings = Settings(mqtt=MqttSettings(url=broker.url), http=HttpSettings(port=0, max_ingest_lag_s=5.0))
    agent = Agent(settings, with_model=False)
    agent.connection.open()  # connected, but no worker drains the inbox
    try:
        assert agent.connection.wait_connected(10)
        agent.inbox.put_nowait(Rejection("bed-0", "bad_json"))
        assert agent.readiness().checks["ingest_lag_s"] == 0.0
        agent.inbox.take_batch(1, timeout=0.1, linger=0.0)
        arrived = time.monotonic() - 12.0
        if queued == "raw":
            agent.inbox.put_nowait(RawWave("bed-1", b"{}", mid=1, qos=1, received_mono=arrived))
        else:
            chunk = WaveChunk("bed-1", "s", 0, 0.0, 250.0, ("II",), np.zeros((1, 250), np.float32))
            agent.inbox.put_nowait(Delivery(chunk, 1, 1, arrived))
        readiness = agent.readiness()
        assert readiness.checks["ingest_lag_s"] >= 12.0
        assert readiness.checks["broker_connected"] is True and not readiness.ready
    finally:
        agent.connection.close()


def test_a_failing_alert_store_fails_readyz_and_raises_the_stations_technical_alarm(
    broker: LocalMosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #19 item 5: with the alert store refusing writes (a full disk), /readyz answers 503 naming the store
    and why, the embedded station shows a technical alarm, and both clear once the store takes writes again. The
    alert itself is published all along. (No model: the agent is judged on broker, ingest and alert store.)"""
    monkeypatch.setattr(Agent, "_load_model", lambda self: self._model_done.set())
    monkeypatch.setattr("agent.alerts._service.STORE_RETRY_S", 0.0)
    store = tmp_path / "alerts.sqlite3"
    port = free_port()
    settings = Settings.model_validate(
        {
            "mqtt": {"url": broker.url, "client_id": f"agent-{uuid.uuid4().hex[:6]}"},
            "llm": {"backbone": "tiny-random"},
            "alerts": {"store_path": str(store)},
            "http": {"port": port},
            "station": {
                "enabled": True,
                "port": 0,
                "client_id": f"st-{uuid.uuid4().hex[:6]}",
                "proxy_user_header": "X-User",
                "trusted_proxies": ["127.0.0.1"],
            },
        }
    )
    agent = Agent(settings)
    monkeypatch.setattr(agent, "_with_model", False)  # ready without a model: only the alert store can fail it
    assert agent.alerts is not None and agent.station is not None
    state = agent.station.state
    agent.start()
    try:
        assert agent.connection.wait_connected(10)
        wait_until(lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 200)
        works = AlertStore._write
        monkeypatch.setattr(AlertStore, "_write", _disk_full)
        (event,) = agent.alerts.on_cannot_assess("bed-1", LEADS_OFF)
        assert event.type == "new"  # decided and published without the store

        code, body = get(f"http://127.0.0.1:{port}/readyz")
        check = json.loads(body)["checks"]["alert_store"]
        assert (code, check["ok"], check["store"], check["unsaved"]) == (503, False, str(store), 1)
        assert "database or disk is full" in check["reason"]
        wait_until(lambda: any(a["source"] == "alert_store" for a in state.technical()))

        monkeypatch.setattr(AlertStore, "_write", works)
        wait_until(lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 200)
        wait_until(lambda: not state.technical())
        assert [a.alert_id for a in agent.alerts.history("bed-1")] == [event.after.alert_id]
    finally:
        agent.stop()


LEADS_OFF = evidence(hr_bpm=None, usable_fraction=0.1, signal_quality={"II": "leads_off", "V1": "leads_off"})


def _disk_full(self: AlertStore, *args: object) -> None:
    raise sqlite3.OperationalError("database or disk is full")


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
