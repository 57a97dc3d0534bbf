"""A well-behaved MQTT publisher and the wall-clock pacer that replays device actions through it.

paho-mqtt 2.x, QoS 1 by default, a bounded in-flight window (we wait on the oldest ``MQTTMessageInfo`` when it is
full), clean shutdown that flushes what is in flight, and a progress bar or periodic log line for long replays.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Iterable, Iterator
from enum import Enum
from types import TracebackType
from typing import Any, Literal

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from core.errors import BrokerError, LifecycleError
from core.mqtt import apply_credentials
from core.settings import MqttSettings
from simulators.faults import Action, Disconnect

__all__ = ["MqttPublisher", "PublisherState", "ReplayStats", "replay_actions"]

log = structlog.get_logger(__name__)


class PublisherState(Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


class MqttPublisher:
    """``with MqttPublisher(settings) as pub: pub.publish(topic, payload)``; reopening a closed one is refused."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str = "ecgcast-simulator",
        qos: Literal[0, 1, 2] = 1,
        max_inflight: int = 64,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self.qos = qos
        self.max_inflight = max_inflight
        self.connect_timeout_s = connect_timeout_s
        self.state = PublisherState.UNOPENED
        self.connects = 0
        self._connected = threading.Event()
        self._refusal: str | None = None
        self._window = threading.Condition()  # guards the two sets below; notified on every acknowledgement
        self._unacked: set[int] = set()
        self._acked_early: set[int] = set()
        protocol = mqtt.MQTTv5 if settings.protocol == "5" else mqtt.MQTTv311
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.reconnect_delay_set(
            max(1, round(settings.reconnect_min_s)), max(1, round(settings.reconnect_max_s))
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        apply_credentials(self._client, settings)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if reason.is_failure:
            self._refusal = str(reason)
            log.error("publisher_refused", broker=self.settings.host, reason=str(reason))
            return
        self.connects += 1
        self._connected.set()
        log.info("publisher_connected", broker=self.settings.host, port=self.settings.port)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        self._connected.clear()
        log.info("publisher_disconnected", reason=str(reason))

    def _wait_connected(self) -> None:
        if not self._connected.wait(self.connect_timeout_s) or self._refusal:
            why = self._refusal or f"no CONNACK within {self.connect_timeout_s} s"
            raise BrokerError(f"cannot connect to {self.settings.host}:{self.settings.port}: {why}")

    def open(self) -> MqttPublisher:
        if self.state is not PublisherState.UNOPENED:
            raise LifecycleError(f"publisher is {self.state.value}; create a new one instead of reopening")
        try:
            self._client.connect(self.settings.host, self.settings.port, self.settings.keepalive_s)
        except OSError as exc:
            raise BrokerError(f"cannot connect to {self.settings.host}:{self.settings.port}: {exc}") from exc
        self._client.loop_start()
        self.state = PublisherState.OPENED
        try:
            self._wait_connected()
        except BrokerError:
            self.close()
            raise
        return self

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any) -> None:
        """PUBACK (QoS 1), PUBCOMP (QoS 2) or written (QoS 0): the message leaves the in-flight window."""
        with self._window:
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._acked_early.add(mid)  # acknowledged before publish() recorded it
            self._window.notify_all()

    def publish(self, topic: str, payload: bytes, timeout_s: float = 60.0) -> None:
        """Queue one message; blocks while ``max_inflight`` messages are unacknowledged.

        Acknowledgements are tracked through ``on_publish`` rather than ``MQTTMessageInfo.wait_for_publish``,
        which raises for messages queued while the connection is down; paho resends those after it reconnects.
        """
        if self.state is not PublisherState.OPENED:
            raise LifecycleError(f"publish on a {self.state.value} publisher")
        info = self._client.publish(topic, payload, qos=self.qos)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise BrokerError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        with self._window:
            if info.mid in self._acked_early:
                self._acked_early.discard(info.mid)
            else:
                self._unacked.add(info.mid)
            if not self._window.wait_for(lambda: len(self._unacked) < self.max_inflight, timeout=timeout_s):
                raise BrokerError(f"{len(self._unacked)} messages unacknowledged for {timeout_s} s")

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every queued message is acknowledged (QoS 1/2) or written (QoS 0)."""
        with self._window:
            if not self._window.wait_for(lambda: not self._unacked, timeout=timeout_s):
                raise BrokerError(f"{len(self._unacked)} messages still unacknowledged after {timeout_s} s")

    def interrupt(self, pause_s: float) -> None:
        """Fault: drop the connection for ``pause_s`` seconds, then reconnect (the device buffers meanwhile)."""
        self.flush()
        self._client.disconnect()
        self._stop_network_thread()  # a requested disconnect ends paho's network thread; start a fresh one
        time.sleep(pause_s)
        try:
            self._client.reconnect()
        except OSError as exc:
            raise BrokerError(f"reconnect to {self.settings.host}:{self.settings.port} failed: {exc}") from exc
        self._client.loop_start()
        self._wait_connected()

    def close(self) -> None:
        """Flush, disconnect and stop the network loop; safe to call twice."""
        if self.state is PublisherState.CLOSED:
            return
        try:
            if self._connected.is_set():
                self.flush()
        finally:
            self._client.disconnect()
            self._stop_network_thread()
            self.state = PublisherState.CLOSED

    def _stop_network_thread(self) -> None:
        """``loop_stop`` plus closing the wake-up socket pair that paho 2.x's ``loop_start`` opens and never closes
        (each start/stop cycle would otherwise leak two sockets and a ResourceWarning)."""
        self._client.loop_stop()
        self._client._reset_sockets(sockpair_only=True)

    def __enter__(self) -> MqttPublisher:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ReplayStats:
    """Counts of what a replay sent, by action label (chunk, duplicate, reordered, malformed:<kind>, disconnect)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, label: str) -> None:
        self.counts[label] = self.counts.get(label, 0) + 1

    @property
    def chunks(self) -> int:
        return self.counts.get("chunk", 0) + self.counts.get("reordered", 0)


def _merged(streams: Iterable[Iterator[Action]]) -> Iterator[Action]:
    """Interleave several devices by due time (each stream is nearly sorted; reordering is its own business)."""
    return heapq.merge(*streams, key=lambda action: action.due_s)


def replay_actions(
    streams: Iterable[Iterator[Action]],
    publisher: MqttPublisher,
    speed: float,
    total_chunks: int | None = None,
    progress: bool = False,
) -> ReplayStats:
    """Send every action when its signal time comes: wall = start + due_s / speed (+ jitter); speed 0 = no waiting.

    Returns what was sent. A progress bar (tqdm, stderr) when ``progress``; otherwise a log line every 10 s.
    """
    from tqdm import tqdm

    stats = ReplayStats()
    wall0 = time.monotonic()
    last_log = wall0
    with tqdm(total=total_chunks, unit="chunk", disable=not progress, mininterval=0.5) as bar:
        for action in _merged(streams):
            if speed > 0:
                wait = wall0 + action.due_s / speed - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            if isinstance(action, Disconnect):
                publisher.interrupt(action.pause_s)
                stats.add("disconnect")
                continue
            if action.delay_s > 0:
                time.sleep(action.delay_s)
            publisher.publish(action.topic, action.payload)
            stats.add(action.label.split(":")[0] if action.label.startswith("malformed") else action.label)
            if action.label in ("chunk", "reordered"):
                bar.update(1)
            now = time.monotonic()
            if not progress and now - last_log > 10.0:
                log.info("replay_progress", chunks=stats.chunks, total=total_chunks, signal_s=round(action.due_s, 1))
                last_log = now
    publisher.flush()
    return stats
