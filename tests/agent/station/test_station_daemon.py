"""The station inside the agent (built with it when enabled, started and stopped with it) and its commands."""

from __future__ import annotations

import http.client
import io
import uuid
from pathlib import Path

import pytest
import yaml

from agent.daemon import Agent
from agent.local_broker import LocalMosquitto
from agent.settings import Settings
from agent.station import hash_password, verify_password
from main import main


def agent_settings(broker: LocalMosquitto, **station: object) -> Settings:
    return Settings.model_validate(
        {
            "mqtt": {"url": broker.url, "client_id": f"agent-{uuid.uuid4().hex[:6]}"},
            "http": {"port": 0},
            "station": {"port": 0, "client_id": f"station-{uuid.uuid4().hex[:6]}", **station},
        }
    )


def test_agent_serves_the_station_only_when_enabled(broker: LocalMosquitto) -> None:
    plain = Agent(agent_settings(broker), with_model=False)
    assert plain.station is None
    plain.stop()
    agent = Agent(agent_settings(broker, enabled=True, users={"kim": hash_password("pw")}), with_model=False)
    assert agent.station is not None
    agent.start()
    try:
        assert agent.station.feed.connection.wait_connected(10)
        conn = http.client.HTTPConnection("127.0.0.1", agent.station.port, timeout=5)
        conn.request("GET", "/login")
        assert conn.getresponse().status == 200
    finally:
        agent.stop()
    conn = http.client.HTTPConnection("127.0.0.1", agent.station.port, timeout=5)
    with pytest.raises(OSError):
        conn.request("GET", "/login")
        conn.getresponse()


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
