"""End-to-end test support: the simulator streaming records over MQTT, and a client keeping every forecast and
alert message the agent publishes."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from core.protocol import Topics
from core.settings import MqttSettings
from simulators.records import AnnotatedRecord


class Watcher:
    """Keeps every forecast and alert message the agent publishes, per patient id."""

    def __init__(self, port: int) -> None:
        self._lock = threading.Lock()
        self._messages: list[tuple[str, str, dict[str, Any]]] = []
        self.subscribed = threading.Event()  # alerts are not retained: nothing may be published before this
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{uuid.uuid4().hex[:6]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda client, userdata, mid, reasons, props: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([("ecg/v1/+/forecast", 1), ("ecg/v1/+/alert", 1)])
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        _, _, patient, kind = msg.topic.split("/", 3)
        with self._lock:
            self._messages.append((patient, kind, json.loads(msg.payload)))

    def of(self, patient_id: str, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for pid, k, body in self._messages if pid == patient_id and k == kind]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def stream_records(
    mqtt_settings: MqttSettings, records: dict[str, AnnotatedRecord], until_s: float, speed: float
) -> None:
    """The simulator's own path (device_actions → MqttPublisher → replay_actions): the first ``until_s`` signal
    seconds of each patient's record, paced at ``speed``."""
    from simulators.faults import device_actions
    from simulators.publisher import MqttPublisher, replay_actions

    t_start = time.time()
    streams = [
        itertools.takewhile(
            lambda action: action.due_s <= until_s,
            device_actions(
                rec, pid, t_start=t_start, encoding="b64", topics=Topics("ecg/v1"), rng=np.random.default_rng(0)
            ),
        )
        for pid, rec in records.items()
    ]
    with MqttPublisher(mqtt_settings, client_id=f"sim-{uuid.uuid4().hex[:6]}") as publisher:
        replay_actions(streams, publisher, speed)
