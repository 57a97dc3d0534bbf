"""A busy HTTP port is a one-line error naming the setting, for the agent's endpoints and for ``main.py run``; the
listener bounds its connections and times out silent clients."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import yaml

from agent.http_listen import BoundedHTTPServer, listen
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


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"hi")

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def small_server() -> Iterator[BoundedHTTPServer]:
    httpd = listen("127.0.0.1", 0, Hello, "http", max_connections=2, timeout_s=2.0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_connections_past_the_cap_are_closed_unserved_and_silent_clients_time_out(
    small_server: BoundedHTTPServer,
) -> None:
    """Issue 19: one thread per connection without bound, and no timeout on reads (both HTTP servers)."""
    address = ("127.0.0.1", small_server.server_address[1])
    silent = [socket.create_connection(address, timeout=10) for _ in range(2)]
    try:
        extra = socket.create_connection(address, timeout=10)
        started = time.monotonic()
        assert extra.recv(1) == b""  # closed at once: both slots are held by the silent clients
        assert time.monotonic() - started < 1.5 and small_server.refused == 1
        extra.close()
        for sock in silent:
            assert sock.recv(1) == b""  # the server gave up on them after timeout_s
    finally:
        for sock in silent:
            sock.close()
    conn = http.client.HTTPConnection(*address, timeout=10)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"hi"  # their slots came back
