"""Issue #19 item 2, "who may publish what", against a real mosquitto running the broker security profile
(``LocalMosquitto.secured``: no anonymous access, a password per identity, the ACL of ``agent.broker_profile``).

MQTT does not tell a receiver who published, so these tests ask the broker: an MQTT 5 publish it refuses is
answered "Not authorized" (PUBACK reason 0x87) and never delivered. A monitor writes only its own patient's wave;
a nurse acknowledges only under her own name; nobody but an agent writes its presence; and the running agent
records an ack with the user of the topic the broker let it arrive on, refusing a payload that claims another name
or a time far from receipt. A last test checks the shipped ACL file against the generator.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from agent.broker_profile import BrokerUser, acl_text, example_users
from agent.daemon import Agent
from agent.local_broker import LocalMosquitto
from agent.settings import Settings
from agent.station import StationServer, StationSettings
from core.errors import BrokerError
from core.protocol import Topics, WaveChunk, encode_wave
from core.settings import MqttSettings

from .alerts.alert_builders import evidence
from .station.test_station_http import request

ROOT = Path(__file__).resolve().parents[2]
TOPICS = Topics("ecg/v1")
AGENT = BrokerUser("ecgcast-agent", "agent-pw", agent_id="agent-sec")
OTHER_AGENT = BrokerUser("agent-2", "agent2-pw", agent_id="agent-2")
STATION = BrokerUser("ward-station", "station-pw", station_client_id="ecgcast-station")
MONITOR = BrokerUser("monitor-bed-1", "monitor-pw", patient_id="bed-1")
KIM = BrokerUser("nurse.kim", "kim-pw")
LEE = BrokerUser("nurse.lee", "lee-pw")
USERS = (AGENT, OTHER_AGENT, STATION, MONITOR, KIM, LEE)
ALLOWED, DENIED = "allowed", "denied"
NOT_AUTHORIZED = 0x87
LEADS_OFF = evidence(hr_bpm=None, usable_fraction=0.1, signal_quality={"II": "leads_off", "V1": "leads_off"})


@pytest.fixture(scope="module")
def secured() -> Iterator[LocalMosquitto]:
    with LocalMosquitto.secured(TOPICS.prefix, USERS, persistence=False) as broker:
        yield broker


class Identity:
    """One MQTT 5 client signed in as ``user``; :meth:`publish` returns the broker's verdict on the message:
    ``allowed`` (any success code, "No matching subscribers" included), ``denied`` ("Not authorized"), or the
    reason of any other refusal."""

    def __init__(self, broker: LocalMosquitto, user: BrokerUser) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"sec-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(user.name, user.password)
        self.connack: queue.Queue[ReasonCode] = queue.Queue()
        self.verdicts: dict[int, str] = {}
        self.received: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._acked = threading.Condition()
        self.client.on_connect = lambda c, u, flags, reason, props: self.connack.put(reason)
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda c, u, m: self.received.put((m.topic, json.loads(m.payload)))
        self.client.connect_async("127.0.0.1", broker.port)  # connect() would open a socket pair loop_start leaks
        self.client.loop_start()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: ReasonCode, props: Any) -> None:
        verdict = ALLOWED if not reason.is_failure else DENIED if reason.value == NOT_AUTHORIZED else str(reason)
        with self._acked:
            self.verdicts[mid] = verdict
            self._acked.notify_all()

    def connected(self) -> bool:
        return not self.connack.get(timeout=10).is_failure

    def publish(self, topic: str, body: dict[str, Any] | bytes, retain: bool = False) -> str:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        with self._acked:
            assert self._acked.wait_for(lambda: info.mid in self.verdicts, 10), f"no PUBACK for {topic}"
            return self.verdicts[info.mid]

    def subscribe(self, topic_filter: str) -> None:
        ready = threading.Event()
        self.client.on_subscribe = lambda c, u, mid, reasons, props: ready.set()
        self.client.subscribe(topic_filter, 1)
        assert ready.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def sign_in(secured: LocalMosquitto) -> Iterator[Callable[[BrokerUser], Identity]]:
    opened: list[Identity] = []

    def open_as(user: BrokerUser) -> Identity:
        identity = Identity(secured, user)
        opened.append(identity)
        assert identity.connected(), user.name
        return identity

    yield open_as
    for identity in opened:
        identity.close()


def wave(patient_id: str, seq: int = 0) -> bytes:
    samples = np.zeros((2, 250), np.float32)
    return encode_wave(WaveChunk(patient_id, "mon-1", seq, time.time(), 250.0, ("II", "V1"), samples), "b64")


FORGED_ALERT = {"schema": "ecgcast.alert/1", "type": "new", "reason": "raised", "before": None, "after": {}}


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.mark.e2e
def test_no_anonymous_client_and_no_wrong_password(secured: LocalMosquitto) -> None:
    """mosquitto_pub, as an operator would try it: refused at sign-in, before any topic is looked at."""
    base = ["mosquitto_pub", "-p", str(secured.port), "-V", "mqttv5", "-q", "1", "-t", TOPICS.wave("bed-1"), "-m", "{}"]
    for credentials in ([], ["-u", KIM.name, "-P", "guess"], ["-u", "nobody", "-P", KIM.password]):
        result = subprocess.run([*base, *credentials], capture_output=True, text=True, timeout=30)
        assert result.returncode != 0 and "not authori" in result.stderr.lower(), (credentials, result.stderr)
    monitor = [*base, "-u", MONITOR.name, "-P", MONITOR.password]
    assert subprocess.run(monitor, capture_output=True, timeout=30).returncode == 0


@pytest.mark.e2e
def test_a_monitor_writes_only_its_own_patients_wave(sign_in: Callable[[BrokerUser], Identity]) -> None:
    monitor = sign_in(MONITOR)
    assert monitor.publish(TOPICS.wave("bed-1"), wave("bed-1")) == ALLOWED
    assert monitor.publish(TOPICS.wave("bed-2"), wave("bed-2")) == DENIED
    assert monitor.publish(TOPICS.alert("bed-1"), FORGED_ALERT) == DENIED
    for kind in ("status", "forecast", "alert/muted"):
        assert monitor.publish(f"{TOPICS.prefix}/bed-1/{kind}", b"{}", retain=True) == DENIED, kind
    assert monitor.publish(TOPICS.alert_ack("bed-1", "nurse.kim"), b"{}") == DENIED


@pytest.mark.e2e
def test_a_nurse_acknowledges_and_mutes_only_under_her_own_name(sign_in: Callable[[BrokerUser], Identity]) -> None:
    kim = sign_in(KIM)
    assert kim.publish(TOPICS.alert_ack("bed-1", "nurse.kim"), b"{}") == ALLOWED
    assert kim.publish(TOPICS.alert_mute("bed-1", "nurse.kim"), b"{}") == ALLOWED
    assert kim.publish(TOPICS.alert_ack("bed-1", "nurse.lee"), b"{}") == DENIED
    assert kim.publish(TOPICS.alert_mute("bed-1", "nurse.lee"), b"{}") == DENIED
    assert kim.publish(TOPICS.alert_ack("bed-1", "nurse.kim") + "/x", b"{}") == DENIED
    assert kim.publish(TOPICS.wave("bed-1"), wave("bed-1")) == DENIED
    assert kim.publish(TOPICS.alert("bed-1"), FORGED_ALERT) == DENIED
    assert kim.publish(TOPICS.alert_muted("bed-1"), b"{}", retain=True) == DENIED


@pytest.mark.e2e
def test_the_station_relays_for_any_user_and_writes_nothing_else(sign_in: Callable[[BrokerUser], Identity]) -> None:
    station = sign_in(STATION)
    assert station.publish(TOPICS.alert_ack("bed-1", "nurse.lee"), b"{}") == ALLOWED
    assert station.publish(TOPICS.alert_mute("bed-1", "nurse.kim"), b"{}") == ALLOWED
    assert station.publish(TOPICS.station_presence("ecgcast-station"), b"{}", retain=True) == ALLOWED
    assert station.publish(TOPICS.alert("bed-1"), FORGED_ALERT) == DENIED
    assert station.publish(TOPICS.wave("bed-1"), wave("bed-1")) == DENIED
    assert station.publish(TOPICS.presence("agent-sec"), b"{}", retain=True) == DENIED


@pytest.mark.e2e
def test_a_forged_presence_is_refused_and_the_agents_own_word_stands(
    sign_in: Callable[[BrokerUser], Identity],
) -> None:
    """The issue's attack: a retained fake "online" on a dead agent's presence topic hid its banner."""
    offline = {"schema": "ecgcast.presence/1", "agent_id": "agent-sec", "state": "offline", "at": time.time()}
    online = {**offline, "state": "online"}
    assert sign_in(AGENT).publish(TOPICS.presence("agent-sec"), offline, retain=True) == ALLOWED
    for user in (KIM, MONITOR, STATION, OTHER_AGENT):
        forger = sign_in(user)
        assert forger.publish(TOPICS.presence("agent-sec"), online, retain=True) == DENIED, user.name
        assert forger.publish(TOPICS.agent_status("agent-sec"), b"{}", retain=True) == DENIED, user.name
    watcher = sign_in(LEE)
    watcher.subscribe(TOPICS.presence("+"))
    topic, body = watcher.received.get(timeout=10)
    assert (topic, body["state"]) == (TOPICS.presence("agent-sec"), "offline")
    assert watcher.received.empty()


@pytest.mark.e2e
def test_the_agent_records_an_ack_with_the_identity_of_its_topic(
    secured: LocalMosquitto,
    sign_in: Callable[[BrokerUser], Identity],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real agent (no model: alerts only) behind the profile: it streams, alerts and reads acks with its own
    identity; a nurse's ack naming someone else, or dated far from now, is refused; hers is recorded as hers."""
    monkeypatch.setattr(Agent, "_load_model", lambda self: self._model_done.set())
    settings = Settings.model_validate(
        {
            "agent_id": "agent-sec",
            "mqtt": {
                "url": secured.url,
                "username": AGENT.name,
                "password": AGENT.password,
                "client_id": f"agent-{uuid.uuid4().hex[:6]}",
            },
            "llm": {"backbone": "tiny-random"},
            "alerts": {"store_path": str(tmp_path / "alerts.sqlite3")},
            "http": {"port": 0},
        }
    )
    agent = Agent(settings)
    kim = sign_in(KIM)
    kim.subscribe(TOPICS.alert("+"))
    agent.start()
    try:
        assert agent.connection.wait_connected(10)
        monitor = sign_in(MONITOR)
        assert monitor.publish(TOPICS.wave("bed-1"), wave("bed-1")) == ALLOWED
        assert monitor.publish(TOPICS.wave("bed-2"), wave("bed-2")) == DENIED
        wait_for(lambda: "bed-1" in agent.worker.patients)
        assert "bed-2" not in agent.worker.patients

        assert agent.alerts is not None
        (raised,) = agent.alerts.on_cannot_assess("bed-1", LEADS_OFF)  # published with the agent's identity
        topic, event = kim.received.get(timeout=10)
        assert (topic, event["type"], event["after"]["alert_id"]) == (
            TOPICS.alert("bed-1"),
            "new",
            raised.after.alert_id,
        )

        ack = {"schema": "ecgcast.alert_ack/1", "alert_id": raised.after.alert_id}
        assert kim.publish(TOPICS.alert_ack("bed-1", "nurse.lee"), {**ack, "by": "nurse.lee"}) == DENIED
        assert kim.publish(TOPICS.alert_ack("bed-1", "nurse.kim"), {**ack, "by": "nurse.lee"}) == ALLOWED
        assert kim.publish(TOPICS.alert_ack("bed-1", "nurse.kim"), {**ack, "at": 0}) == ALLOWED
        assert kim.publish(TOPICS.alert_ack("bed-1", "nurse.kim"), {**ack, "at": 4_102_444_800.0}) == ALLOWED
        assert kim.publish(TOPICS.alert_ack("bed-1", "nurse.kim"), ack) == ALLOWED

        topic, event = kim.received.get(timeout=10)  # the first ack the agent applied, in publish order
        after = event["after"]
        assert (event["reason"], after["state"], after["acknowledged_by"]) == (
            "acknowledged",
            "acknowledged",
            "nurse.kim",
        )
        assert abs(after["acknowledged_at"] - time.time()) < 30  # receipt time: the message named none
        assert [step["by"] for step in after["history"] if step["state"] == "acknowledged"] == ["nurse.kim"]
    finally:
        agent.stop()


@pytest.mark.e2e
def test_the_station_reports_an_ack_the_broker_refused(secured: LocalMosquitto) -> None:
    """The station did not read the PUBACK: with an identity the ACL does not let relay (here it signs in as a
    nurse, a misconfiguration), it answered "published" and the alert never changed on screen. Now the broker's
    "Not authorized" reaches the nurse as the reason her acknowledgement failed."""
    settings = StationSettings.model_validate(
        {
            "enabled": True,
            "port": 0,
            "client_id": f"st-{uuid.uuid4().hex[:6]}",
            "proxy_user_header": "X-User",
            "trusted_proxies": ["127.0.0.1"],
        }
    )
    mqtt_settings = MqttSettings(url=secured.url, username=KIM.name, password=KIM.password)
    with StationServer(settings, mqtt_settings, TOPICS) as station:
        assert station.feed.connection.wait_connected(10)
        station.feed.publish_ack("bed-1", "a" * 32, "nurse.kim")  # her own topic: the broker takes it
        with pytest.raises(BrokerError, match=r"refused the message .*\(Not authorized\); it was not delivered"):
            station.feed.publish_ack("bed-1", "a" * 32, "nurse.lee")
        body = json.dumps({"patient_id": "bed-1", "alert_id": "a" * 32}).encode()
        headers = {"Content-Type": "application/json", "X-User": "nurse.lee"}
        answer = request(station, "POST", "/api/ack", body, headers)
        assert answer.status == 503
        assert "Not authorized" in json.loads(answer.read())["error"]


@pytest.mark.e2e
def test_the_alert_cli_acks_as_its_own_user_and_reports_a_refusal(
    secured: LocalMosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``alerts ack`` publishes as ``--by`` (default: its MQTT user); the broker's "Not authorized" is an error."""
    import structlog

    import main

    config = tmp_path / "kim.yaml"
    config.write_text(f"mqtt:\n  url: {secured.url}\n  username: {KIM.name}\n  password: {KIM.password}\n")
    ack = ["alerts", "ack", "--config", str(config), "bed-1", "a" * 32]
    try:
        assert main.main(ack) == 0
        assert f"published on {TOPICS.alert_ack('bed-1', 'nurse.kim')}" in capsys.readouterr().out
        assert main.main([*ack, "--by", "nurse.lee"]) == 1
        assert (
            "the broker refused a message on ecg/v1/bed-1/alert/ack/nurse.lee (Not authorized)"
            in capsys.readouterr().err
        )
    finally:
        structlog.reset_defaults()  # the command pointed logging at this test's captured stderr


def test_the_shipped_acl_file_is_the_generators() -> None:
    """config/mosquitto/ecgcast.acl is documentation and a template: it must say what the code enforces."""
    shipped = (ROOT / "config" / "mosquitto" / "ecgcast.acl").read_text()
    assert shipped == acl_text("ecg/v1", example_users())
    assert "pattern write ecg/v1/+/alert/ack/%u" in shipped
    assert "%c" not in shipped.replace("%c (the client id) is never used", "")
