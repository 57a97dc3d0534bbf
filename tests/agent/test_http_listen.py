"""A busy HTTP port is a one-line error naming the setting, for the agent's endpoints and for ``main.py run``."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import yaml

from agent.http_listen import listen
from core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield int(held.getsockname()[1])


def test_listen_names_the_setting_and_the_port(busy_port: int) -> None:
    with pytest.raises(ConfigError, match=rf"station\.port {busy_port} on station\.host 127\.0\.0\.1: cannot listen"):
        listen("127.0.0.1", busy_port, BaseHTTPRequestHandler, "station")


def test_run_on_a_busy_port_exits_2_with_a_message_not_a_traceback(busy_port: int, tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(yaml.safe_dump({"mqtt": {"url": "mqtt://127.0.0.1:1"}, "http": {"port": busy_port}}))
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "run", "--config", str(config), "--log-format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert f"agent failed to start: http.port {busy_port}" in done.stderr
    assert "Traceback" not in done.stderr
