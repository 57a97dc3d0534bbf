"""The agent against a real (private) mosquitto: ingest, acks, status, bad input, restarts, auth."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from agent.daemon import Agent
from agent.local_broker import LocalMosquitto, free_port
from agent.mqtt_client import MqttConnection
from agent.settings import BufferSettings, HttpSettings, Settings, StatusSettings
from core.protocol import Topics, WaveChunk, encode_wave
from core.settings import MqttSettings

FS = 250.0
TOPICS = Topics("ecg/v1")


def agent_settings(url: str, **mqtt: object) -> Settings:
    return Settings(
        mqtt=MqttSettings(
            url=url, client_id=f"agent-{uuid.uuid4().hex[:8]}", reconnect_min_s=0.5, reconnect_max_s=1.0, **mqtt
        ),
        status=StatusSettings(interval_s=0.3),
        buffer=BufferSettings(reorder_timeout_s=0.5),
        http=HttpSettings(port=0),
    )


def publisher(url_port: int, **kwargs: object) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", clean_session=False)
    client.reconnect_delay_set(1, 1)
    if kwargs.get("user"):
        client.username_pw_set(str(kwargs["user"]), str(kwargs["password"]))
    client.connect("127.0.0.1", url_port)
    client.loop_start()
    return client


def chunk(
    patient: str, seq: int, n: int = 125, stream: str = "dev-1", leads: tuple[str, ...] = ("II", "V1")
) -> WaveChunk:
    t = (np.arange(n) + seq * n) / FS
    samples = np.vstack([np.sin(2 * np.pi * 1.1 * t + k) for k in range(len(leads))]).astype(np.float32)
    return WaveChunk(patient, stream, seq, 1_700_000_000.0 + seq * n / FS, FS, leads, samples)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


class StatusWatcher:
    """Subscribes to every status topic and keeps the latest message per patient."""

    def __init__(self, port: int) -> None:
        self.latest: dict[str, dict] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("ecg/v1/+/status", 1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.latest[msg.topic.split("/")[2]] = json.loads(msg.payload)

    def get(self, patient: str) -> dict:
        with self._lock:
            return self.latest.get(patient, {})

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def running_agent(broker: LocalMosquitto) -> Iterator[Agent]:
    agent = Agent(with_model=False, settings=agent_settings(broker.url))
    agent.start()
    assert agent.connection.wait_connected(10)
    yield agent
    agent.stop()


def samples_of(agent: Agent, patient: str) -> int:
    stream = agent.worker.patients.get(patient)
    return stream.samples_received["II"] if stream else 0


def test_chunks_reach_buffer_windows_and_status(broker: LocalMosquitto, running_agent: Agent) -> None:
    watcher = StatusWatcher(broker.port)
    pub = publisher(broker.port)
    for seq in range(8):
        pub.publish(TOPICS.wave("bed-1"), encode_wave(chunk("bed-1", seq)), qos=1).wait_for_publish(5)
    wait_for(lambda: running_agent.worker.windows_emitted == 8)  # counted once the windows are handed on
    patient = running_agent.worker.patients["bed-1"]
    assert patient.segment is not None and patient.segment.buffer.fill == 1000
    np.testing.assert_allclose(patient.segment.buffer.latest(125)[0], chunk("bed-1", 7).samples[0], atol=6e-5)
    batches = [running_agent.windows_ready.get() for _ in range(running_agent.windows_ready.qsize())]
    windows = [w for batch in batches for w in batch.windows]
    assert [(w.second, w.lead) for w in windows] == [(s, lead) for s in range(4) for lead in ("II", "V1")]
    wait_for(lambda: watcher.get("bed-1").get("samples_received", {}).get("II") == 1000)
    status = watcher.get("bed-1")
    assert status["samples_received"] == {"II": 1000, "V1": 1000}
    assert set(status["signal_quality"]) == {"II", "V1"}
    assert status["buffer_fill_s"] == 4.0
    pub.loop_stop()
    watcher.close()


def test_malformed_messages_are_rejected_and_other_patients_unharmed(
    broker: LocalMosquitto, running_agent: Agent
) -> None:
    pub = publisher(broker.port)
    good = [pub.publish(TOPICS.wave("bed-2"), encode_wave(chunk("bed-2", s)), qos=1) for s in range(2)]
    bad_payloads = {
        "bad_json": (TOPICS.wave("bed-3"), b"{nope"),
        "unknown_schema": (TOPICS.wave("bed-3"), encode_wave(chunk("bed-3", 0)).replace(b"wave/1", b"wave/9")),
        "patient_mismatch": (TOPICS.wave("bed-3"), encode_wave(chunk("bed-2", 0))),
        "oversize": (TOPICS.wave("bed-3"), b"x" * 300_000),
        "bad_patient_id": ("ecg/v1/$bad/wave", encode_wave(chunk("bed-3", 0))),
    }
    for topic, payload in bad_payloads.values():
        pub.publish(topic, payload, qos=1).wait_for_publish(5)
    good += [pub.publish(TOPICS.wave("bed-2"), encode_wave(chunk("bed-2", s)), qos=1) for s in range(2, 4)]
    for info in good:
        info.wait_for_publish(5)
    wait_for(lambda: samples_of(running_agent, "bed-2") == 500)
    wait_for(lambda: sum(running_agent.worker.rejected.values()) == len(bad_payloads))
    assert set(running_agent.worker.rejected) == set(bad_payloads)
    assert "bed-3" not in running_agent.worker.patients
    assert running_agent.worker.patients["bed-2"].counters["gaps"] == 0
    pub.loop_stop()


def test_duplicates_and_device_restart_are_reported(broker: LocalMosquitto, running_agent: Agent) -> None:
    pub = publisher(broker.port)
    for seq in [0, 1, 1, 2]:
        pub.publish(TOPICS.wave("bed-4"), encode_wave(chunk("bed-4", seq)), qos=1).wait_for_publish(5)
    pub.publish(TOPICS.wave("bed-4"), encode_wave(chunk("bed-4", 0, stream="dev-2")), qos=1).wait_for_publish(5)
    wait_for(
        lambda: (
            running_agent.worker.patients.get("bed-4") is not None
            and running_agent.worker.patients["bed-4"].counters["segments"] == 2
        )
    )
    status = running_agent.worker.patients["bed-4"].status(time.time())
    assert status["duplicates"] == 1
    assert status["segment_reason"] == "new_stream" and status["stream_id"] == "dev-2"
    assert status["samples_received"]["II"] == 4 * 125
    pub.loop_stop()


def test_broker_restart_mid_stream_loses_no_acknowledged_sample(broker: LocalMosquitto, running_agent: Agent) -> None:
    pub = publisher(broker.port)
    infos = [pub.publish(TOPICS.wave("bed-5"), encode_wave(chunk("bed-5", s)), qos=1) for s in range(20)]
    for info in infos:
        info.wait_for_publish(5)
    broker.restart(down_s=1.0)
    wait_for(pub.is_connected, timeout=20)
    # The agent may still be reconnecting: its persistent session makes the broker queue these for it.
    for s in range(20, 40):
        pub.publish(TOPICS.wave("bed-5"), encode_wave(chunk("bed-5", s)), qos=1).wait_for_publish(5)
    wait_for(lambda: samples_of(running_agent, "bed-5") == 40 * 125, timeout=20)
    patient = running_agent.worker.patients["bed-5"]
    assert patient.counters["gaps"] == 0 and patient.counters["late"] == 0
    assert running_agent.connection.connects >= 2
    pub.loop_stop()


def test_hand_written_message_via_mosquitto_pub_is_accepted(broker: LocalMosquitto, running_agent: Agent) -> None:
    watcher = StatusWatcher(broker.port)
    payload = (
        '{"schema":"ecgcast.wave/1","patient_id":"bed-7","stream_id":"monitor-7a","seq":0,'
        '"t0":1767225600.0,"fs":250,"leads":["II"],"units":"mV","samples":[[0.01,0.02,0.05,0.12,0.30]]}'
    )
    subprocess.run(
        ["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-t", "ecg/v1/bed-7/wave", "-m", payload], check=True
    )
    wait_for(lambda: watcher.get("bed-7").get("samples_received") == {"II": 5})
    assert watcher.get("bed-7")["patient_id"] == "bed-7"
    watcher.close()


def test_username_password_auth() -> None:
    with LocalMosquitto(users={"agent": "s3cret", "pub": "pw"}) as secured:
        refused = Agent(with_model=False, settings=agent_settings(secured.url, username="agent", password="wrong"))
        refused.start()
        assert not refused.connection.wait_connected(1.5)
        refused.stop()
        agent = Agent(with_model=False, settings=agent_settings(f"mqtt://agent:s3cret@127.0.0.1:{secured.port}"))
        agent.start()
        assert agent.connection.wait_connected(10)
        pub = publisher(secured.port, user="pub", password="pw")
        pub.publish(TOPICS.wave("bed-8"), encode_wave(chunk("bed-8", 0)), qos=1).wait_for_publish(5)
        wait_for(lambda: samples_of(agent, "bed-8") == 125)
        pub.loop_stop()
        agent.stop()


def test_subscribes_exactly_the_wave_family() -> None:
    agent = Agent(with_model=False, settings=agent_settings("mqtt://127.0.0.1:1"))
    assert agent.connection.topic_filters == ["ecg/v1/+/wave"]


def test_mqtt_311_is_selectable(broker: LocalMosquitto) -> None:
    agent = Agent(agent_settings(broker.url, protocol="3.1.1"), with_model=False)
    agent.start()
    try:
        assert agent.connection.wait_connected(10)
        pub = publisher(broker.port)
        pub.publish(TOPICS.wave("bed-9"), encode_wave(chunk("bed-9", 0)), qos=1).wait_for_publish(5)
        wait_for(lambda: samples_of(agent, "bed-9") == 125)
        pub.loop_stop()
    finally:
        agent.stop()


def _self_signed(tmp: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with the openssl CLI."""
    ca_key, ca, key, csr, cert = (tmp / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "1",
        "-subj",
        "/CN=ecgcast-test-ca",
    )
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext = tmp / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "1",
        "-extfile",
        str(ext),
    )
    return ca, cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_tls_connection_with_ca_verification(tmp_path: Path) -> None:
    ca, cert, key = _self_signed(tmp_path)
    tls_port = free_port()
    extra = f"listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\nallow_anonymous true\n"
    with LocalMosquitto(extra_config=extra) as secured:
        agent = Agent(agent_settings(f"mqtts://127.0.0.1:{tls_port}", tls_ca_file=ca), with_model=False)
        agent.start()
        try:
            assert agent.connection.wait_connected(10)
            pub = publisher(secured.port)  # plain listener of the same broker
            pub.publish(TOPICS.wave("bed-10"), encode_wave(chunk("bed-10", 0)), qos=1).wait_for_publish(5)
            wait_for(lambda: samples_of(agent, "bed-10") == 125)
            pub.loop_stop()
        finally:
            agent.stop()


def test_released_patients_are_dropped_without_an_evicted_status(broker: LocalMosquitto, running_agent: Agent) -> None:
    """A patient handed to another replica loses its state here, and the model stages are told to free theirs."""
    told: list[str] = []
    running_agent.worker.on_evicted = told.append
    pub = publisher(broker.port)
    watcher = StatusWatcher(broker.port)
    try:
        for pid in ("keep-1", "gone-1"):
            pub.publish(TOPICS.wave(pid), encode_wave(chunk(pid, 0)), qos=1).wait_for_publish(5)
        wait_for(lambda: samples_of(running_agent, "gone-1") > 0 and samples_of(running_agent, "keep-1") > 0)
        wait_for(lambda: bool(watcher.get("gone-1")))
        running_agent.worker.release(["gone-1", "never-seen"])
        assert "gone-1" not in running_agent.worker.patients
        assert "keep-1" in running_agent.worker.patients
        assert running_agent.worker.take_evicted() == ["gone-1"]
        time.sleep(0.5)
        assert watcher.get("gone-1").get("state") != "evicted"
        assert told == []  # the new owner continues its alerts: a release must not end them
    finally:
        watcher.close()
        pub.loop_stop()


def test_an_idle_patient_is_evicted_and_the_alert_path_is_told(broker: LocalMosquitto) -> None:
    settings = agent_settings(broker.url).model_copy(update={"buffer": BufferSettings(idle_evict_s=0.5)})
    agent = Agent(settings, with_model=False)
    told: list[str] = []
    agent.worker.on_evicted = told.append
    agent.start()
    pub = publisher(broker.port)
    watcher = StatusWatcher(broker.port)
    try:
        assert agent.connection.wait_connected(10)
        pub.publish(TOPICS.wave("idle-1"), encode_wave(chunk("idle-1", 0)), qos=1).wait_for_publish(5)
        wait_for(lambda: watcher.get("idle-1").get("state") == "evicted")
        assert told == ["idle-1"] and "idle-1" not in agent.worker.patients
    finally:
        watcher.close()
        pub.loop_stop()
        agent.stop()
        pub.disconnect()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_tls_connect_failures_are_logged_with_their_reason_and_no_secret(tmp_path: Path) -> None:
    """Issue #19 item 6: a wrong host name or an unknown CA logged nothing (paho retries in silence). Now each
    failed attempt says why, the first as an error and its repeats as warnings; the URL's password never shows."""
    ca, cert, key = _self_signed(tmp_path)
    tls_port = free_port()
    extra = f"listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\nallow_anonymous true\n"
    cases = {
        "unknown CA": (f"mqtts://kim:S3cret-PW@127.0.0.1:{tls_port}", {}, "certificate verify failed"),
        "wrong host": (f"mqtts://kim:S3cret-PW@localhost:{tls_port}", {"tls_ca_file": ca}, "hostname mismatch"),
    }
    with LocalMosquitto(extra_config=extra), structlog.testing.capture_logs() as logs:
        for url, tls, expected in cases.values():
            settings = MqttSettings(url=url, client_id=f"c-{uuid.uuid4().hex[:6]}", reconnect_max_s=1.0, **tls)
            connection = MqttConnection(settings, "ecg/v1/_agents/t/presence", "t")
            connection.open()
            try:
                wait_for(lambda: sum(expected in e.get("reason", "") for e in logs) >= 2)  # noqa: B023
                assert not connection.connected
            finally:
                connection.close()
    failed = [e for e in logs if e["event"] == "mqtt_connect_failed"]
    for url, _, expected in cases.values():
        mine = [e for e in failed if expected in e["reason"]]
        assert [e["log_level"] for e in mine[:2]] == ["error", "warning"], mine
        assert mine[0]["tls"] is True and mine[0]["host"] == url.split("@")[1].split(":")[0]
    assert "S3cret-PW" not in repr(logs)
