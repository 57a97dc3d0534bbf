"""MQTT → queue: the wave-topic callback. It matches, decodes, validates and enqueues; nothing else.

Runs on paho's network thread, so it never touches numpy state or models. A malformed message is logged with
its reason, counted, acknowledged (so the broker does not redeliver poison forever) and dropped; only that
message is affected.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import structlog

from agent.errors import ProtocolError
from agent.mqtt_client import MqttConnection
from agent.protocol import PayloadLimits, Topics, decode_wave
from agent.sequencer import Delivery

__all__ = ["Rejection", "WaveIngest"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Rejection:
    """A refused wave message; ``patient_id`` is None when the topic itself could not be trusted."""

    patient_id: str | None
    reason: str


class WaveIngest:
    """Subscribes to ``<prefix>/+/wave`` and feeds validated chunks to a bounded queue."""

    def __init__(
        self,
        connection: MqttConnection,
        topics: Topics,
        limits: PayloadLimits,
        out: queue.Queue[Delivery | Rejection],
        qos: int,
    ) -> None:
        self._connection = connection
        self._topics = topics
        self._limits = limits
        self._out = out
        self.queue_full = 0
        connection.subscribe(topics.wave_subscription, self.on_wave, qos=qos)

    def _reject(self, message: mqtt.MQTTMessage, patient_id: str | None, exc: ProtocolError) -> None:
        log.warning(
            "wave_rejected",
            reason=exc.reason,
            field=exc.field,
            detail=exc.detail[:200],
            topic=message.topic[:200],
            patient_id=patient_id,
            payload_bytes=len(message.payload),
        )
        try:
            self._out.put_nowait(Rejection(patient_id, exc.reason))
        except queue.Full:
            self.queue_full += 1
        self._connection.ack(message.mid, message.qos)

    def on_wave(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        patient_id: str | None = None
        try:
            patient_id = self._topics.patient_of(message.topic, "wave")
            chunk = decode_wave(message.payload, self._limits, topic_patient_id=patient_id)
        except ProtocolError as exc:
            self._reject(message, patient_id, exc)
            return
        delivery = Delivery(chunk, message.mid, message.qos, time.monotonic())
        try:
            self._out.put_nowait(delivery)
        except queue.Full:
            # Backpressure: block paho's network thread, so it stops reading the socket and TCP pushes back on the
            # broker. Broker-side flow control alone is not enough (mosquitto 2 exceeds the receive maximum
            # once acks flow), and dropping an accepted QoS 1 message is not an option.
            self.queue_full += 1
            self._out.put(delivery)
