"""Forecast mute on the station (issue #22): the agent's retained mute state on the tile and in the detail view,
expiry judged by the station itself, and the page's mute request published as the agent's own message."""

from __future__ import annotations

import json
import queue
import time
import uuid
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.alerts import Mute, decode_mute
from agent.local_broker import LocalMosquitto
from agent.station import StationServer, StationSettings, StationState, hash_password
from agent.station._messages import decode_mute_state
from core.errors import ProtocolError

from .test_station_http import PASSWORD, cookie_of, request, sign_in, start_station

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def mute_state(pid: str = "P1", **fields: object) -> bytes:
    body = {"patient_id": pid, "action": "muted", "at": NOW, "by": "nurse.kim", "reason": "paced patient"}
    return Mute.model_validate({**body, "until": NOW + 3600, **fields}).payload()


def test_tile_says_forecasts_muted_until_when_why_and_by_whom_and_expiry_clears_it() -> None:
    clock = Clock()
    state = StationState(StationSettings(forget_after_s=7200), clock=clock)  # no waves here: keep the tile an hour
    state.on_mute("P1", decode_mute_state(mute_state(), "P1"))
    state.on_mute("P1", decode_mute_state(mute_state(), "P1"))  # retained again after a reconnect: one change
    (tile,) = state.take_updates().tiles
    assert tile["mute"] == {
        "action": "muted",
        "at": NOW,
        "by": "nurse.kim",
        "reason": "paced patient",
        "until": NOW + 3600,
    }
    assert not state.take_updates().tiles
    clock.now = NOW + 3601  # the agent's "expired" has not come: the station judges the time itself
    (tile,) = state.take_updates().tiles
    assert tile["mute"] is None
    state.on_mute("P1", decode_mute_state(mute_state(action="expired", at=NOW + 3600, by=None), "P1"))
    detail = state.detail("P1")
    assert detail is not None and [m["action"] for m in detail["mutes"]] == ["expired", "muted"]


def test_an_unmute_ends_the_mute_on_the_tile() -> None:
    state = StationState(StationSettings(), clock=Clock())
    state.on_mute("P1", decode_mute_state(mute_state(), "P1"))
    state.on_mute("P1", decode_mute_state(mute_state(action="unmuted", at=NOW + 60, by="dr.lee", until=None), "P1"))
    (tile,) = state.take_updates().tiles
    assert tile["mute"] is None


@pytest.mark.parametrize(
    ("payload", "reason", "field"),
    [
        (mute_state(pid="P2"), "patient_mismatch", "patient_id"),
        (mute_state().replace(b'"paced patient"', b'"' + b"x" * 201 + b'"'), "bad_field", "reason"),
        (mute_state().replace(b'"action":"muted"', b'"action":"silenced"'), "bad_field", "action"),
        (mute_state().replace(b'"schema":', b'"extra":1,"schema":'), "unknown_field", "extra"),
        (mute_state().replace(str(NOW + 3600).encode(), b"NaN"), "bad_json", None),
    ],
)
def test_forged_mute_states_are_refused(payload: bytes, reason: str, field: str | None) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_mute_state(payload, "P1")
    assert (info.value.reason, info.value.field) == (reason, field)


@pytest.fixture
def station(broker: LocalMosquitto) -> Iterator[StationServer]:
    with start_station(broker, users={"kim": hash_password(PASSWORD)}) as s:
        assert s.feed.connection.wait_connected(10)
        yield s


@pytest.fixture
def client(broker: LocalMosquitto) -> Iterator[tuple[mqtt.Client, queue.Queue[mqtt.MQTTMessage]]]:
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"agent-{uuid.uuid4().hex[:6]}")
    c.on_message = lambda _c, _u, m: received.put(m)
    c.connect("127.0.0.1", broker.port)
    c.subscribe("ecg/v1/+/alert/mute/+", 1)
    c.loop_start()
    c.publish("ecg/v1/ready", b"", qos=1).wait_for_publish(5)
    yield c, received
    c.loop_stop()
    c.disconnect()


def test_mute_from_the_page_is_the_agents_mute_message_with_the_signed_in_user(
    station: StationServer, client: tuple[mqtt.Client, queue.Queue[mqtt.MQTTMessage]]
) -> None:
    _, received = client
    headers = {**cookie_of(sign_in(station)[2]), "Content-Type": "application/json"}
    body = {"patient_id": "P007", "action": "mute", "reason": "known paroxysmal AF", "duration_s": 7200}
    res = request(station, "POST", "/api/mute", json.dumps({**body, "by": "someone.else"}).encode(), headers)
    assert res.status == 202 and json.loads(res.read()) == {"published": True, "by": "kim", "action": "mute"}
    message = received.get(timeout=5)
    assert message.topic == "ecg/v1/P007/alert/mute/kim"  # the signed-in user's own mute topic
    request_ = decode_mute(message.payload, "P007", "kim")  # what the agent's mute path accepts
    assert (request_.by, request_.reason, request_.duration_s) == ("kim", "known paroxysmal AF", 7200.0)
    unmute = json.dumps({"patient_id": "P007", "action": "unmute"}).encode()
    assert request(station, "POST", "/api/mute", unmute, headers).status == 202
    assert decode_mute(received.get(timeout=5).payload, "P007", "kim").action == "unmute"


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"action": "mute", "reason": "known AF", "duration_s": 172800}, "duration_s"),
        ({"action": "mute", "duration_s": 3600}, "reason is required"),
        ({"action": "mute", "reason": "r" * 201, "duration_s": 3600}, "reason"),
        ({"action": "snooze", "reason": "known AF", "duration_s": 3600}, "action"),
        ({"reason": "known AF", "duration_s": 3600}, "action is required"),
    ],
)
def test_a_malformed_mute_is_refused_with_its_reason_and_nothing_is_published(
    station: StationServer,
    client: tuple[mqtt.Client, queue.Queue[mqtt.MQTTMessage]],
    body: dict[str, object],
    said: str,
) -> None:
    _, received = client
    headers = {**cookie_of(sign_in(station)[2]), "Content-Type": "application/json"}
    res = request(station, "POST", "/api/mute", json.dumps({"patient_id": "P007", **body}).encode(), headers)
    assert res.status == 400 and said in json.loads(res.read())["error"]
    bad_id = json.dumps({"patient_id": "P007\n", "action": "unmute"}).encode()
    assert request(station, "POST", "/api/mute", bad_id, headers).status == 400
    form = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    assert request(station, "POST", "/api/mute", b"patient_id=P007", form).status == 415
    assert request(station, "POST", "/api/mute", b"{}", {"Content-Type": "application/json"}).status == 401
    time.sleep(0.3)
    assert received.empty()


def test_the_agents_retained_mute_state_reaches_the_tile(station: StationServer, broker: LocalMosquitto) -> None:
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    until = time.time() + 3600
    payload = Mute(patient_id="P8", action="muted", at=time.time(), by="nurse.kim", reason="paced", until=until)
    try:
        publisher.publish("ecg/v1/P8/alert/muted", payload.payload(), qos=1, retain=True).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "P8" not in station.state.patients:
            time.sleep(0.05)
        detail = station.state.detail("P8")
        assert detail is not None and detail["mute"]["reason"] == "paced" and detail["mute"]["until"] == until
    finally:
        publisher.loop_stop()
        publisher.disconnect()
