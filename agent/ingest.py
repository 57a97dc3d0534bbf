"""MQTT → inbox → chunks: the wave-topic callback, and the batch decoding of what it queued.

The callback runs on paho's network thread and does as little as it can: it checks the topic and queues the raw
payload. The ingest worker decodes and validates a whole batch at once (:func:`decode_batch`), which takes that
work off the thread that reads the socket and lets one numpy call convert every int16 chunk of the same shape. A
malformed message is logged with its reason, counted, acknowledged (so the broker does not redeliver poison
forever) and dropped; only that message is affected.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import structlog

from agent.mqtt_client import MqttConnection
from agent.sequencer import Delivery
from core.errors import ProtocolError
from core.protocol import PayloadLimits, Topics, decode_waves

__all__ = ["RawWave", "Rejection", "WaveIngest", "decode_batch"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Rejection:
    """A refused wave message; ``patient_id`` is None when the topic itself could not be trusted.

    ``qos`` > 0: the message is still to be acknowledged, by whoever applies the rejection (the ingest worker).
    """

    patient_id: str | None
    reason: str
    mid: int = 0
    qos: int = 0


@dataclass(eq=False, slots=True)
class RawWave:
    """A wave message as received: its topic checked, its payload not yet decoded."""

    patient_id: str  # from the topic
    payload: bytes
    mid: int
    qos: int
    received_mono: float


def _log_rejection(exc: ProtocolError, patient_id: str | None, payload_bytes: int, topic: str | None = None) -> None:
    log.warning(
        "wave_rejected",
        reason=exc.reason,
        field=exc.field,
        detail=exc.detail[:200],
        topic=topic,
        patient_id=patient_id,
        payload_bytes=payload_bytes,
    )


def decode_batch(items: list[RawWave | Delivery | Rejection], limits: PayloadLimits) -> list[Delivery | Rejection]:
    """Decode the raw waves among ``items`` together, in order; one that fails validation becomes a logged
    :class:`Rejection` that still carries its ``mid``/``qos`` for acknowledgement. Other items pass through."""
    raws = [item for item in items if isinstance(item, RawWave)]
    decoded = iter(decode_waves([(raw.payload, raw.patient_id) for raw in raws], limits))
    out: list[Delivery | Rejection] = []
    for item in items:
        if not isinstance(item, RawWave):
            out.append(item)
            continue
        result = next(decoded)
        if isinstance(result, ProtocolError):
            _log_rejection(result, item.patient_id, len(item.payload))
            out.append(Rejection(item.patient_id, result.reason, item.mid, item.qos))
        else:
            out.append(Delivery(result, item.mid, item.qos, item.received_mono))
    return out


class WaveIngest:
    """Subscribes to ``<prefix>/+/wave`` and queues each message's payload for the ingest worker."""

    def __init__(
        self,
        connection: MqttConnection,
        topics: Topics,
        out: queue.Queue[RawWave | Delivery | Rejection],
        qos: int,
    ) -> None:
        self._connection = connection
        self._topics = topics
        self._out = out
        self.queue_full = 0
        connection.subscribe(topics.wave_subscription, self.on_wave, qos=qos)

    def _reject(self, message: mqtt.MQTTMessage, exc: ProtocolError) -> None:
        _log_rejection(exc, None, len(message.payload), topic=message.topic[:200])
        try:
            self._out.put_nowait(Rejection(None, exc.reason))
        except queue.Full:
            self.queue_full += 1
        self._connection.ack(message.mid, message.qos)

    def on_wave(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            patient_id = self._topics.patient_of(message.topic, "wave")
        except ProtocolError as exc:
            self._reject(message, exc)
            return
        raw = RawWave(patient_id, bytes(message.payload), message.mid, message.qos, time.monotonic())
        try:
            self._out.put_nowait(raw)
        except queue.Full:
            # Backpressure: block paho's network thread, so it stops reading the socket and TCP pushes back on the
            # broker. Broker-side flow control alone is not enough (mosquitto 2 exceeds the receive maximum
            # once acks flow), and dropping an accepted QoS 1 message is not an option.
            self.queue_full += 1
            self._out.put(raw)
