"""The station's web server against a private mosquitto: sign-in, cookies, static files, the API, the event
stream, acknowledgements on the MQTT ack topic, the reverse-proxy header and HTTPS."""

from __future__ import annotations

import http.client
import json
import queue
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.alerts import decode_ack
from agent.local_broker import LocalMosquitto
from agent.station import StationServer, StationSettings, hash_password
from core.errors import LifecycleError
from core.protocol import Topics
from core.settings import MqttSettings

PASSWORD = "pw-for-tests"


def start_station(broker: LocalMosquitto, **fields: object) -> StationServer:
    settings = StationSettings.model_validate({"enabled": True, "port": 0, **fields})
    return StationServer(settings, MqttSettings(url=broker.url), Topics("ecg/v1"))


@pytest.fixture
def station(broker: LocalMosquitto) -> Iterator[StationServer]:
    with start_station(broker, users={"kim": hash_password(PASSWORD)}) as s:
        assert s.feed.connection.wait_connected(10)
        with pytest.raises(LifecycleError, match="already"):
            s.start()
        yield s


def request(
    station: StationServer, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    parts = urlsplit(station.url)
    if parts.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=10, context=context
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    return conn.getresponse()


def sign_in(station: StationServer, user: str = "kim", password: str = PASSWORD) -> tuple[int, str, str]:
    """(status, Location, Set-Cookie) of a sign-in form post."""
    body = f"username={user}&password={password}".encode()
    res = request(station, "POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
    return res.status, res.getheader("Location") or "", res.getheader("Set-Cookie") or ""


def cookie_of(set_cookie: str) -> dict[str, str]:
    return {"Cookie": set_cookie.split(";")[0]}


def test_everything_but_sign_in_and_assets_needs_a_session(station: StationServer) -> None:
    res = request(station, "GET", "/")
    assert res.status == 303 and res.getheader("Location") == "/login"
    for path in ("/api/state", "/api/me", "/api/events", "/api/patient/P1"):
        assert request(station, "GET", path).status == 401, path
    assert request(station, "POST", "/api/ack", b"{}", {"Content-Type": "application/json"}).status == 401
    login = request(station, "GET", "/login")
    assert login.status == 200 and b"<form" in login.read()
    assert "default-src 'self'" in (login.getheader("Content-Security-Policy") or "")
    assert request(station, "GET", "/static/station.js").status == 200
    for path in ("/static/../settings.py", "/static/%2e%2e/_auth.py", "/static/missing.js"):
        assert request(station, "GET", path).status == 404, path


def test_sign_in_sets_a_strict_http_only_cookie(station: StationServer) -> None:
    status, location, _ = sign_in(station, password="wrong")
    assert (status, location) == (303, "/login?failed=1")
    assert sign_in(station, user="nobody")[1] == "/login?failed=1"
    status, location, set_cookie = sign_in(station)
    assert (status, location) == (303, "/")
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Secure" not in set_cookie
    me = request(station, "GET", "/api/me", headers=cookie_of(set_cookie))
    assert json.loads(me.read()) == {"user": "kim", "sound": True, "audio_pause_s": 120.0}
    assert request(station, "GET", "/", headers=cookie_of(set_cookie)).status == 200
    out = request(station, "POST", "/logout", headers=cookie_of(set_cookie))
    assert out.status == 303 and "Max-Age=0" in (out.getheader("Set-Cookie") or "")
    assert request(station, "GET", "/api/me", headers=cookie_of(set_cookie)).status == 401


def test_ack_from_the_page_is_the_mqtt_ack_message_with_the_signed_in_user(
    station: StationServer, broker: LocalMosquitto
) -> None:
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pager-{uuid.uuid4().hex[:6]}")
    client.on_message = lambda c, u, m: received.put(m)
    client.connect("127.0.0.1", broker.port)
    client.subscribe("ecg/v1/+/alert/ack/+", 1)
    client.loop_start()
    try:
        time.sleep(0.3)
        headers = {**cookie_of(sign_in(station)[2]), "Content-Type": "application/json"}
        body = json.dumps({"patient_id": "P007", "alert_id": "a" * 32}).encode()
        res = request(station, "POST", "/api/ack", body, headers)
        assert res.status == 202 and json.loads(res.read())["by"] == "kim"
        message = received.get(timeout=5)
        assert message.topic == "ecg/v1/P007/alert/ack/kim"  # the signed-in user's own ack topic
        ack = decode_ack(message.payload, "P007", "kim", received_at=time.time())  # what the agent's path accepts
        assert (ack.alert_id, ack.by) == ("a" * 32, "kim")

        bad_patient = json.dumps({"patient_id": "P/#", "alert_id": "x"}).encode()
        assert request(station, "POST", "/api/ack", bad_patient, headers).status == 400
        assert request(station, "POST", "/api/ack", b"{}", headers).status == 400
        form = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
        assert request(station, "POST", "/api/ack", body, form).status == 415  # no cross-site form posts
    finally:
        client.loop_stop()
        client.disconnect()


def test_event_stream_starts_with_a_snapshot_and_pushes_changes(station: StationServer, broker: LocalMosquitto) -> None:
    res = request(station, "GET", "/api/events", headers=cookie_of(sign_in(station)[2]))
    assert res.status == 200 and res.getheader("Content-Type") == "text/event-stream"
    assert res.readline() == b"retry: 2000\n"
    res.readline()
    assert res.readline() == b"event: snapshot\n"
    assert json.loads(res.readline().removeprefix(b"data: "))["tiles"] == []
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    status = {"schema": "ecgcast.status/1", "patient_id": "P9", "signal_quality": {"II": "leads_off"}}
    publisher.publish("ecg/v1/P9/status", json.dumps(status), qos=1).wait_for_publish(5)
    publisher.publish("ecg/v1/P9/forecast", b"not json", qos=1).wait_for_publish(5)  # logged, ignored
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = res.readline()
            if line == b"event: tile\n":
                tile = json.loads(res.readline().removeprefix(b"data: "))
                assert tile["patient_id"] == "P9" and tile["quality"] == "leads off"
                break
        else:
            raise AssertionError("no tile event")
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        res.close()


def test_reverse_proxy_header_names_the_user(broker: LocalMosquitto) -> None:
    with start_station(broker, proxy_user_header="X-Remote-User", trusted_proxies=["127.0.0.0/8"]) as station:
        assert request(station, "GET", "/api/me").status == 401
        me = request(station, "GET", "/api/me", headers={"X-Remote-User": "dr.who"})
        assert json.loads(me.read())["user"] == "dr.who"


def test_https_with_configured_certificate(broker: LocalMosquitto, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    users = {"kim": hash_password(PASSWORD)}
    with start_station(broker, users=users, tls_cert_file=str(cert), tls_key_file=str(key)) as station:
        assert station.url.startswith("https://")
        _, _, set_cookie = sign_in(station)
        assert "Secure" in set_cookie
        assert request(station, "GET", "/api/state", headers=cookie_of(set_cookie)).status == 200


def test_station_recovers_after_the_broker_restarts(station: StationServer, broker: LocalMosquitto) -> None:
    broker.restart()
    assert station.feed.connection.wait_connected(15)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not station.state.patients:
            body = {"schema": "ecgcast.status/1", "patient_id": "P5", "state": "streaming"}
            publisher.publish("ecg/v1/P5/status", json.dumps(body), qos=1).wait_for_publish(5)
            time.sleep(0.2)
        assert "P5" in station.state.patients
    finally:
        publisher.loop_stop()
        publisher.disconnect()


def raw_request(station: StationServer, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """(status, body) of a hand-written request: http.client refuses to send the malformed ones under test."""
    parts = urlsplit(station.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head + b"\r\n\r\n" + body)
        sock.shutdown(socket.SHUT_WR)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_malformed_requests_get_a_short_4xx_not_a_500(station: StationServer) -> None:
    """Issue 19: ``Content-Length: abc``, a NUL in the path and 4,000-deep JSON each gave a 500 with a traceback."""
    cookie = cookie_of(sign_in(station)[2])["Cookie"].encode()
    status, body = raw_request(station, b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: abc", b"username=kim")
    assert status == 400 and b"Content-Length" in body and b"Traceback" not in body
    status, body = raw_request(station, b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: -5")
    assert status == 400
    for path in (b"/static/station\x00.js", b"/static/\x00", b"/api/patient/P1\x00", b"/\x00"):
        status, body = raw_request(station, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nCookie: " + cookie)
        assert status == 400 and json.loads(body) == {"error": "bad request path"}, path
    deep = b"[" * 4000 + b"]" * 4000
    head = b"POST /api/ack HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nCookie: " + cookie
    status, body = raw_request(station, head + b"\r\nContent-Length: " + str(len(deep)).encode(), deep)
    assert status == 400 and b"Traceback" not in body
    nested = b"[" * 4000  # under the 4 KiB body cap, and deep enough for json.loads to raise RecursionError
    status, body = raw_request(station, head + b"\r\nContent-Length: " + str(len(nested)).encode(), nested)
    assert status == 400 and json.loads(body) == {"error": "body nests too deeply"}
    assert station.feed.alive


def test_ack_with_a_newline_in_the_patient_id_is_refused_and_nothing_is_published(
    station: StationServer, broker: LocalMosquitto
) -> None:
    """Issue 19: "P001\\n" passed ``PATIENT_ID_PATTERN.match``; mosquitto then dropped the station's connection on
    the topic, and paho resent the held QoS 1 message on every reconnect."""
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pager-{uuid.uuid4().hex[:6]}")
    client.on_message = lambda c, u, m: received.put(m)
    client.connect("127.0.0.1", broker.port)
    client.subscribe("ecg/v1/+/alert/ack/+", 1)  # "+" matches a level with a newline in it too
    client.loop_start()
    try:
        time.sleep(0.3)
        headers = {**cookie_of(sign_in(station)[2]), "Content-Type": "application/json"}
        for patient_id, alert_id in [("P001\n", "a" * 32), ("P001", "a" * 32 + "\n"), ("P001", "a b")]:
            body = json.dumps({"patient_id": patient_id, "alert_id": alert_id}).encode()
            res = request(station, "POST", "/api/ack", body, headers)
            assert res.status == 400, (patient_id, alert_id)
        assert request(station, "POST", "/api/ack", b'{"patient_id": 1, "alert_id": 2}', headers).status == 400
        time.sleep(0.5)
        assert received.empty() and station.feed.connection.connected
    finally:
        client.loop_stop()
        client.disconnect()
