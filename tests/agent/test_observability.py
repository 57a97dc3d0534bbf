"""/healthz, /readyz and /metrics of a running agent (ingest only: no model needed to test the endpoints)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.daemon import Agent
from agent.ingest import RawWave, Rejection
from agent.local_broker import LocalMosquitto, free_port
from agent.sequencer import Delivery
from agent.settings import HttpSettings, Settings
from core.protocol import Topics, WaveChunk
from core.settings import MqttSettings


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
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
