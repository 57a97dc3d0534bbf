"""Issue 19 against a private mosquitto: malformed and forged messages on the agent's topics cost only themselves,
and the station's feed thread survives, or is restarted with a technical alarm when something fails anyway."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from agent.alerts import Alert
from agent.local_broker import LocalMosquitto
from agent.station import StationServer, StationSettings, hash_password
from agent.station import _feed as feed_module
from core.protocol import Topics
from core.settings import MqttSettings

from .test_station_http import PASSWORD, cookie_of, request, sign_in
from .ward import fail_updates_once

ISSUE_FORECAST = b'{"schema":"ecgcast.forecast/1","patient_id":"P777","published_at":[1]}'


def wait_for(predicate: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout} s")


@pytest.fixture
def publisher(broker: LocalMosquitto) -> Iterator[Callable[..., None]]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"forger-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()

    def publish(topic: str, payload: bytes | dict[str, Any], retain: bool = False) -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        client.publish(topic, raw, qos=1, retain=retain).wait_for_publish(5)

    try:
        yield publish
    finally:
        client.loop_stop()
        client.disconnect()


def start_station(broker: LocalMosquitto) -> StationServer:
    settings = StationSettings(enabled=True, port=0, users={"kim": hash_password(PASSWORD)})
    station = StationServer(settings, MqttSettings(url=broker.url), Topics("ecg/v1")).start()
    assert station.feed.connection.wait_connected(10)
    return station


def status(pid: str) -> dict[str, Any]:
    return {"schema": "ecgcast.status/1", "patient_id": pid, "state": "streaming"}


def forged_alert(pid: str, **changes: Any) -> dict[str, Any]:
    alert = Alert.model_validate(
        {
            "alert_id": uuid.uuid4().hex, "patient_id": pid, "state": "raised", "priority": "medium",
            "kind": "forecast", "arrhythmia": "vt", "horizon_s": 300, "probability": 0.7, "threshold": 0.5,
            "explanation": "Forecast advisory", "evidence": {}, "raised_at": time.time(), "updated_at": time.time(),
            "last_notified_at": time.time(),
        }
    ).to_wire()  # fmt: skip
    return {"schema": "ecgcast.alert/1", "type": "new", "reason": "raised", "before": None, "after": alert | changes}


def api_state(station: StationServer, cookie: dict[str, str]) -> dict[str, Any]:
    res = request(station, "GET", "/api/state", headers=cookie)
    assert res.status == 200, res.read()[:300]
    return dict(json.loads(res.read()))


def test_malformed_retained_forecast_and_forged_alert_cost_only_themselves(
    broker: LocalMosquitto, publisher: Callable[..., None]
) -> None:
    """The issue's retained forecast used to kill the feed thread (TypeError) at every start, and an alert with
    ``"raised_at": "yesterday"`` made /api/state and /api/events answer 500 until restart."""
    publisher("ecg/v1/P777/forecast", ISSUE_FORECAST, retain=True)
    with structlog.testing.capture_logs() as logs:
        station = start_station(broker)
        try:
            cookie = cookie_of(sign_in(station)[2])
            publisher("ecg/v1/P778/alert", forged_alert("P778", raised_at="yesterday"))
            for _ in range(3):  # the same mistake again: counted every time, logged once
                publisher("ecg/v1/P777/forecast", ISSUE_FORECAST)
            publisher("ecg/v1/P5/status", status("P5"))
            publisher("ecg/v1/P6/alert", forged_alert("P6"))  # a good alert after the bad ones
            wait_for(lambda: "P6" in station.state.patients, what="messages after the bad ones applied")

            state = api_state(station, cookie)
            assert {t["patient_id"] for t in state["tiles"]} == {"P5", "P6"}
            assert state["rejected"] == {"alert": {"bad_field": 1}, "forecast": {"missing_field": 4}}
            assert state["feed"] == {"alive": True, "restarts": 0} and state["technical"] == []
            events = request(station, "GET", "/api/events", headers=cookie)
            assert events.status == 200
            assert [events.readline() for _ in range(3)][2] == b"event: snapshot\n"
            events.close()
        finally:
            station.close()
    rejected = [e for e in logs if e["event"] == "station_message_rejected"]
    assert [(e["topic"], e["reason"], e["field"]) for e in rejected] == [
        ("ecg/v1/P777/forecast", "missing_field", "t_forecast"),
        ("ecg/v1/P778/alert", "bad_field", "after.raised_at"),
    ]
    assert "yesterday" not in json.dumps(rejected, default=str)


def test_a_forecast_with_a_list_for_published_at_is_refused_by_field(
    broker: LocalMosquitto, publisher: Callable[..., None]
) -> None:
    station = start_station(broker)
    try:
        with structlog.testing.capture_logs() as logs:
            body = {
                "schema": "ecgcast.forecast/1", "patient_id": "P777", "t_forecast": 1.0, "window_s": 60,
                "horizons_s": [60], "rhythm_probs": {"60": {"sinus": 1.0, "af": 0.0, "flutter": 0.0, "vt": 0.0}},
                "onset_probs": {"60": {"af": 0.0, "flutter": 0.0, "vt": 0.0}}, "model_id": "m", "model_version": "v",
                "latency_ms": 0.0, "published_at": [1],
            }  # fmt: skip
            publisher("ecg/v1/P777/forecast", body)
            publisher("ecg/v1/P5/status", status("P5"))
            wait_for(lambda: "P5" in station.state.patients, what="status after the bad forecast")
        (event,) = [e for e in logs if e["event"] == "station_message_rejected"]
        assert (event["kind"], event["topic"], event["field"]) == ("forecast", "ecg/v1/P777/forecast", "published_at")
        assert "P777" not in station.state.patients and station.feed.alive
    finally:
        station.close()


def test_a_feed_failure_outside_any_message_restarts_the_loop_with_a_technical_alarm(
    broker: LocalMosquitto, publisher: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_module, "RESTART_DELAY_S", 0.1)
    monkeypatch.setattr(feed_module, "RECOVERED_AFTER_S", 3600.0)
    station = start_station(broker)
    try:
        cookie = cookie_of(sign_in(station)[2])
        fail_updates_once(station, monkeypatch)
        wait_for(lambda: station.feed.restarts == 1, what="the feed loop restarted")
        state = api_state(station, cookie)
        (alarm,) = state["technical"]
        assert alarm["source"] == "station_feed" and "RuntimeError" in alarm["detail"]
        assert state["feed"] == {"alive": True, "restarts": 1}
        assert station.feed.heartbeat()["technical"] == state["technical"]

        publisher("ecg/v1/P6/status", status("P6"))  # the restarted loop still applies messages
        wait_for(lambda: "P6" in station.state.patients, what="status applied after the restart")
        monkeypatch.setattr(feed_module, "RECOVERED_AFTER_S", 0.0)
        wait_for(lambda: api_state(station, cookie)["technical"] == [], what="alarm cleared once recovered")
    finally:
        station.close()
