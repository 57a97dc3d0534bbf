"""The agent's MQTT connection: paho-mqtt 2.x with a persistent session, manual QoS 1 acks, will and birth.

Callback discipline (paho's examples, STYLE.md §3): subscriptions are (re)made in ``on_connect``; a refused
connection returns without marking us connected; message callbacks registered per topic family do only
match → check → enqueue (wave payloads are decoded later, in batches, by the ingest worker), and catch per message
because paho re-raises callback exceptions on its network thread.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.mqtt_socket import BufferedReadClient
from core.config import mask_secrets
from core.errors import BrokerError, LifecycleError
from core.mqtt import apply_credentials
from core.protocol import SCHEMA_PRESENCE
from core.settings import MqttSettings
from core.tls import connection_failure

__all__ = [
    "ConnectionState",
    "MessageHandler",
    "MqttConnection",
    "PublishFilter",
    "filter_pattern",
]

log = structlog.get_logger(__name__)

MessageHandler = Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None]  # paho's on_message signature
PublishFilter = Callable[[str, bytes], bytes | None]  # (topic, payload) -> payload to send, or None to withhold


class ConnectionState(Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


def filter_pattern(topic_filter: str) -> re.Pattern[str]:
    """An MQTT topic filter as a regex: '+' is one level, a final '#' the parent level and anything below it.

    As the MQTT spec says, a filter that starts with a wildcard does not match topics starting with '$'.
    """
    levels = topic_filter.split("/")
    multi = levels[-1] == "#"
    body = "/".join("[^/]*" if level == "+" else re.escape(level) for level in (levels[:-1] if multi else levels))
    if multi:
        body = f"{body}(?:/.*)?" if body else ".*"
    guard = "(?!\\$)" if topic_filter[:1] in ("+", "#") else ""
    return re.compile(f"{guard}{body}")


@dataclass(frozen=True)
class _Subscription:
    topic_filter: str
    qos: int
    handler: MessageHandler
    pattern: re.Pattern[str]


def _presence(agent_id: str, state: str) -> bytes:
    return json.dumps({"schema": SCHEMA_PRESENCE, "agent_id": agent_id, "state": state, "at": time.time()}).encode()


class MqttConnection:
    """One broker connection. ``open()`` returns at once; paho connects and reconnects in its own thread."""

    def __init__(self, settings: MqttSettings, presence_topic: str, agent_id: str, manual_ack: bool = True) -> None:
        self._settings = settings
        self._presence_topic = presence_topic
        self._agent_id = agent_id
        self._subscriptions: list[_Subscription] = []
        self._connected = threading.Event()
        self._pending_lock = threading.Lock()
        self._pending_subacks: set[int] = set()
        self.state = ConnectionState.UNOPENED
        self.connects = 0
        self._last_failure: str | None = None  # why the last connection attempt failed, until one succeeds
        self._refused: dict[int, str] = {}  # mid -> the broker's reason for refusing it, until its publisher asks
        self._refused_lock = threading.Lock()
        self.publish_filter: PublishFilter | None = None  # a cluster replica withholds outputs it no longer owns
        self.withheld = 0
        v5 = settings.protocol == "5"
        self._v5 = v5
        self._client = BufferedReadClient(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=manual_ack,
        )
        self._configure()

    def _configure(self) -> None:
        s, c = self._settings, self._client
        apply_credentials(c, s)
        c.will_set(self._presence_topic, _presence(self._agent_id, "offline"), qos=1, retain=True)
        c.reconnect_delay_set(min_delay=max(1, round(s.reconnect_min_s)), max_delay=max(1, round(s.reconnect_max_s)))
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_publish = self._on_publish
        c.on_socket_error = self._on_socket_error
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.on_message = self._dispatch

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def topic_filters(self) -> list[str]:
        """The topic filters subscribed (again on every connect), in registration order."""
        return [sub.topic_filter for sub in self._subscriptions]

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected *and* every subscription is acknowledged, so nothing published after this
        returns can miss us."""
        return self._connected.wait(timeout)

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int | None = None) -> None:
        """Register a topic family; the subscription is (re)made on every connect."""
        qos = self._settings.qos if qos is None else qos
        sub = _Subscription(topic_filter, qos, handler, filter_pattern(topic_filter))
        self._subscriptions.append(sub)
        if self.connected:
            self._client.subscribe(topic_filter, sub.qos)

    def _dispatch(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """Hand a message to every subscription whose filter matches its topic.

        Why not paho's ``message_callback_add``: its topic trie walks a recursive generator per message, a
        measurable share of the network thread's time at thousands of messages per second; one precompiled regex
        per subscription does the same matching (``filter_pattern``) for a fraction of it. A message no handler
        wants (a subscription overlap the broker still delivered) is acknowledged, so it cannot hold a slot of
        the receive window forever.
        """
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = ""
        handled = False
        for sub in self._subscriptions:
            if sub.pattern.fullmatch(topic):
                sub.handler(client, userdata, message)
                handled = True
        if not handled:
            log.warning("mqtt_unrouted_message", topic=topic[:200])
            self.ack(message.mid, message.qos)

    def _on_socket_error(self, exc: OSError) -> None:
        """A connection attempt failed before MQTT began (TCP or TLS), on paho's thread, which retries. The reason is
        an error when it is new and a warning (rate-limited) while the same one repeats at every retry."""
        reason = connection_failure(exc)
        repeated = reason == self._last_failure
        self._last_failure = reason
        s = self._settings
        (log.warning if repeated else log.error)(
            "mqtt_connect_failed", host=s.host, port=s.port, tls=s.use_tls, reason=reason, retry_max_s=s.reconnect_max_s
        )

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Properties | None
    ) -> None:
        if reason.is_failure:
            log.error("mqtt_connect_refused", reason=str(reason), host=self._settings.host, port=self._settings.port)
            return
        self._last_failure = None
        self.connects += 1
        log.info(
            "mqtt_connected", host=self._settings.host, port=self._settings.port, session_present=flags.session_present
        )
        client.publish(self._presence_topic, _presence(self._agent_id, "online"), qos=1, retain=True)
        with self._pending_lock:
            mids = [client.subscribe(sub.topic_filter, sub.qos)[1] for sub in self._subscriptions]
            self._pending_subacks = {mid for mid in mids if mid is not None}  # None: the client is not connected
            if not self._pending_subacks:
                self._connected.set()

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], props: Properties | None
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("mqtt_subscribe_refused", reasons=refused)
        with self._pending_lock:
            self._pending_subacks.discard(mid)
            if not self._pending_subacks and not refused:
                self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Properties | None
    ) -> None:
        self._connected.clear()
        if self.state is ConnectionState.OPENED:
            log.warning("mqtt_disconnected", reason=str(reason))

    def open(self) -> MqttConnection:
        if self.state is not ConnectionState.UNOPENED:
            raise LifecycleError(f"MqttConnection is {self.state.value}; a closed connection cannot be reopened")
        props = None
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves __init__ unannotated
            props.SessionExpiryInterval = self._settings.session_expiry_s
            props.ReceiveMaximum = self._settings.receive_maximum
        try:
            self._client.connect_async(
                self._settings.host,
                self._settings.port,
                keepalive=self._settings.keepalive_s,
                clean_start=False if self._v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                properties=props,
            )
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot connect to {mask_secrets(self._settings.url)}: {exc}") from exc
        self._client.loop_start()
        self.state = ConnectionState.OPENED
        return self

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> mqtt.MQTTMessageInfo:
        if self.state is not ConnectionState.OPENED:
            raise LifecycleError(f"publish on a {self.state.value} MqttConnection")
        if self.publish_filter is not None:
            filtered = self.publish_filter(topic, payload)
            if filtered is None:
                self.withheld += 1
                info = mqtt.MQTTMessageInfo(0)
                info._set_as_published()  # nothing is owed: callers waiting on it must not block
                return info
            payload = filtered
        return self._client.publish(topic, payload, qos=qos, retain=retain)

    def publish_confirmed(self, topic: str, payload: bytes, timeout_s: float, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's verdict. Raises BrokerError naming the broker's reason when it
        refused the message (MQTT 5 "Not authorized": the ACL of the broker security profile), LifecycleError when
        it was not sent or not confirmed in time. (An MQTT 3.1.1 broker drops a refused message without a word.)"""
        info = self.publish(topic, payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError) as exc:  # paho: not queued (not connected, queue full)
            raise LifecycleError(f"the message was not sent: {exc}") from exc
        if not info.is_published():
            raise LifecycleError(f"broker did not confirm the message within {timeout_s} s")
        with self._refused_lock:
            refused = self._refused.pop(info.mid, None)
        if refused is not None:
            raise BrokerError(f"the broker refused the message on {topic[:200]} ({refused}); it was not delivered")

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Properties | None
    ) -> None:
        """The broker's verdict on a QoS 1 message (PUBACK). paho calls this before it marks the message published,
        so :meth:`publish_confirmed` finds a refusal here once its wait returns. A later success on the same (reused)
        mid clears a refusal nobody asked about, so this holds at most one entry per mid."""
        with self._refused_lock:
            if reason.is_failure:
                self._refused[mid] = str(reason)
            else:
                self._refused.pop(mid, None)

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a QoS 1/2 message once its content is safely stored (manual-ack mode)."""
        if qos > 0 and self.state is ConnectionState.OPENED:
            self._client.ack(mid, qos)

    def close(self, timeout: float = 5.0) -> None:
        """Publish 'offline', disconnect and stop the network thread. Idempotent."""
        if self.state is not ConnectionState.OPENED:
            self.state = ConnectionState.CLOSED
            return
        if self.connected:
            info = self._client.publish(self._presence_topic, _presence(self._agent_id, "offline"), qos=1, retain=True)
            deadline = time.monotonic() + timeout
            while not info.is_published() and time.monotonic() < deadline and self.connected:
                time.sleep(0.01)
        self.state = ConnectionState.CLOSED
        self._client.disconnect()
        self._client.loop_stop()
        self._client.close_sockets()

    def __enter__(self) -> MqttConnection:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
