"""Topic routing of the agent's MQTT connection: filter semantics and dispatch to every matching handler."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
import pytest

from agent.mqtt_client import MqttConnection, filter_pattern
from core.settings import MqttSettings


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("ecg/v1/+/wave", "ecg/v1/bed-1/wave", True),
        ("ecg/v1/+/wave", "ecg/v1/bed-1/x/wave", False),
        ("ecg/v1/+/wave", "ecg/v1/bed-1/wave/x", False),
        ("ecg/v1/+/wave", "ecg/v1//wave", True),  # '+' matches an empty level, as in MQTT
        ("ecg/v1/+/alert/ack", "ecg/v1/bed-1/alert/ack", True),
        ("ecg/v1/#", "ecg/v1", True),  # '#' includes the parent level
        ("ecg/v1/#", "ecg/v1/a/b/c", True),
        ("ecg/v1/#", "ecg/v10/a", False),
        ("ecg.v1/+", "ecgXv1/a", False),  # other characters are literal
        ("#", "a/b", True),
        ("#", "$SYS/broker/uptime", False),  # wildcards at the root never match '$' topics
        ("+/status", "$SYS/status", False),
        ("$SYS/#", "$SYS/broker/uptime", True),
    ],
)
def test_filter_pattern_follows_mqtt_matching(topic_filter: str, topic: str, matches: bool) -> None:
    assert bool(filter_pattern(topic_filter).fullmatch(topic)) is matches
    assert mqtt.topic_matches_sub(topic_filter, topic) is matches  # paho's own matcher agrees


def _message(topic: str, mid: int) -> mqtt.MQTTMessage:
    message = mqtt.MQTTMessage(mid, topic.encode())
    message.qos = 1
    return message


def test_dispatch_calls_every_matching_handler_and_acks_unrouted(monkeypatch: pytest.MonkeyPatch) -> None:
    connection = MqttConnection(MqttSettings(url="mqtt://127.0.0.1:1"), "ecg/v1/_agents/a/presence", "a")
    seen: list[tuple[str, str]] = []
    acked: list[int] = []
    monkeypatch.setattr(connection, "ack", lambda mid, qos: acked.append(mid))

    def handler(name: str) -> Any:
        return lambda client, userdata, message: seen.append((name, message.topic))

    connection.subscribe("ecg/v1/+/wave", handler("wave"))
    connection.subscribe("ecg/v1/#", handler("all"))
    connection._dispatch(connection._client, None, _message("ecg/v1/bed-1/wave", 1))
    connection._dispatch(connection._client, None, _message("ecg/v1/bed-1/status", 2))
    connection._dispatch(connection._client, None, _message("other/topic", 3))
    assert seen == [("wave", "ecg/v1/bed-1/wave"), ("all", "ecg/v1/bed-1/wave"), ("all", "ecg/v1/bed-1/status")]
    assert acked == [3]  # only the message no handler took is acknowledged by the dispatcher
