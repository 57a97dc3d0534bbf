"""The station inside the agent (built with it when enabled, started and stopped with it) and its commands."""

from __future__ import annotations

import http.client
import io
import time
import uuid
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from agent.daemon import Agent
from agent.local_broker import LocalMosquitto
from agent.settings import Settings
from agent.station import hash_password, verify_password
from core.protocol import WaveChunk, encode_wave
from main import main
from simulators import generate_scenario


def agent_settings(broker: LocalMosquitto, **station: object) -> Settings:
    return Settings.model_validate(
        {
            "mqtt": {"url": broker.url, "client_id": f"agent-{uuid.uuid4().hex[:6]}"},
            "http": {"port": 0},
            "status": {"interval_s": 0.5},
            "station": {"port": 0, "client_id": f"station-{uuid.uuid4().hex[:6]}", **station},
        }
    )


def test_agent_serves_the_station_only_when_enabled(broker: LocalMosquitto) -> None:
    plain = Agent(agent_settings(broker), with_model=False)
    assert plain.station is None
    plain.stop()
    never_started = Agent(
        agent_settings(broker, enabled=True, proxy_user_header="X-User", trusted_proxies=["127.0.0.1"]),
        with_model=False,
    )
    never_started.stop()  # closes the station's socket without waiting for a server loop that never ran
    agent = Agent(agent_settings(broker, enabled=True, users={"kim": hash_password("pw")}), with_model=False)
    assert agent.station is not None
    agent.start()
    try:
        assert agent.station.feed.connection.wait_connected(10)
        conn = http.client.HTTPConnection("127.0.0.1", agent.station.port, timeout=5)
        conn.request("GET", "/login")
        assert conn.getresponse().status == 200
        tile = _tile_from_the_agents_own_status(broker, agent)
        assert tile["state"] == "streaming" and tile["leads"] == ["II", "V1"]
        assert set(tile["quality_by_lead"]) == {"II", "V1"}
    finally:
        agent.stop()
    conn = http.client.HTTPConnection("127.0.0.1", agent.station.port, timeout=5)
    with pytest.raises(OSError):
        conn.request("GET", "/login")
        conn.getresponse()


def _tile_from_the_agents_own_status(broker: LocalMosquitto, agent: Agent) -> dict:
    """Stream 6 s of synthetic sinus to the agent; return the station's tile once the agent's status reached it."""
    assert agent.station is not None
    record = generate_scenario("sinus_stable", seed=2, minutes=0.1, fs=250.0, leads=("II", "V1"))
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"monitor-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        for k in range(6):
            block = record.p_signal[k * 250 : (k + 1) * 250].T.astype(np.float32)
            chunk = WaveChunk("bed-3", "m1", k, 1.7e9 + k, 250.0, ("II", "V1"), block)
            client.publish("ecg/v1/bed-3/wave", encode_wave(chunk, "b64"), qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            view = agent.station.state.patients.get("bed-3")
            if view is not None and view.status is not None and view.status.signal_quality:
                return agent.station.state.snapshot()["tiles"][0]
            time.sleep(0.2)
        raise AssertionError("the agent's status never reached the station")
    finally:
        client.loop_stop()
        client.disconnect()


def test_hash_password_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("night shift\n"))
    assert main(["station", "hash-password", "--stdin"]) == 0
    assert verify_password("night shift", capsys.readouterr().out.strip())
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["station", "hash-password", "--stdin"]) == 1


def test_station_run_refuses_a_config_nobody_can_sign_in_to(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "station.yaml"
    config.write_text(yaml.safe_dump({"station": {"port": 0}}))
    assert main(["station", "run", "--config", str(config)]) == 2
    assert "station.users or station.proxy_user_header" in capsys.readouterr().err
    config.write_text(yaml.safe_dump({"station": {"enabled": True}}))
    assert main(["station", "run", "--config", str(config)]) == 2
