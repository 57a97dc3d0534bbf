"""The station's view of the broker: its own MQTT client on the agent's topics, and the push hub for browsers.

Callbacks only match and enqueue (STYLE.md §3); one feed thread decodes, updates :class:`StationState`, and every
``push_interval_s`` turns what changed into Server-Sent Events for every connected page. Acknowledgements and
forecast mutes from the page are published as the same ``ecgcast.alert_ack/1`` and ``ecgcast.alert_mute/1``
messages a pager or the CLI would send, so they go through the agent's one path and state machine. They go on the
signed-in user's own request topic (``…/alert/ack/<user>``): under the broker security profile the station is the
one identity trusted to relay for the users it authenticated (docs/SECURITY.md).

Any client on the broker can publish anything, retained, so every message is validated against its typed model
and a bad one costs only itself: refused, counted, logged once per topic and reason. The feed thread is supervised:
a failure outside one message restarts its loop and raises a technical alarm that every page shows.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any, Final

import paho.mqtt.client as mqtt
import structlog

from agent.alerts import SCHEMA_ALERT_ACK, SCHEMA_ALERT_MUTE, decode_ack, decode_mute
from agent.mqtt_client import MqttConnection
from agent.station._messages import decode_alert, decode_forecast, decode_mute_state
from agent.station._state import StationState
from agent.station.settings import StationSettings
from core.errors import BrokerError, ProtocolError
from core.protocol import PATIENT_ID_PATTERN, PayloadLimits, Topics, decode_wave
from core.settings import MqttSettings
from core.wire import decode_presence, decode_status

__all__ = ["PushHub", "StationFeed", "sse_frame"]

log = structlog.get_logger(__name__)

KINDS = ("status", "forecast", "alert", "alert/muted", "wave")
HEARTBEAT_S = 2.0  # the page calls the stream stale after missing a few of these
RESTART_DELAY_S: Final = 1.0  # between a feed loop failure and its restart: a failure per message cannot spin
RECOVERED_AFTER_S: Final = 60.0  # the feed's technical alarm clears after this long without another failure
FEED_ALARM: Final = "station_feed"


def sse_frame(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class PushHub:
    """One bounded queue of SSE frames per connected page; a page that cannot keep up is dropped (it reconnects)."""

    def __init__(self, max_frames: int = 500) -> None:
        self._clients: set[queue.Queue[bytes]] = set()
        self._lock = threading.Lock()
        self._max_frames = max_frames

    def connect(self, first: bytes) -> queue.Queue[bytes]:
        q: queue.Queue[bytes] = queue.Queue(maxsize=self._max_frames)
        q.put_nowait(first)
        with self._lock:
            self._clients.add(q)
        return q

    def disconnect(self, q: queue.Queue[bytes]) -> None:
        with self._lock:
            self._clients.discard(q)

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def broadcast(self, frame: bytes) -> None:
        with self._lock:
            clients = list(self._clients)
        for q in clients:
            try:
                q.put_nowait(frame)
            except queue.Full:
                self.disconnect(q)
                log.warning("station_client_dropped", reason="push queue full")


class RejectionLog:
    """Logs a refused message once per (topic, reason, field): a retained bad message comes back on every
    reconnect and a flood repeats one mistake, and neither should drown the log. The state counts every one."""

    def __init__(self, max_keys: int = 1024) -> None:
        self._seen: set[tuple[str, str, str | None]] = set()
        self._max_keys = max_keys

    def first(self, topic: str, reason: str, field: str | None) -> bool:
        """Whether this is the first such rejection (remembered for up to ``max_keys`` distinct ones at a time)."""
        key = (topic[:200], reason, field)
        if key in self._seen:
            return False
        if len(self._seen) >= self._max_keys:
            self._seen.clear()
        self._seen.add(key)
        return True


class StationFeed:
    """Subscribes to status, forecast, alert, mute state, wave and agent presence; publishes acknowledgements and
    mute requests."""

    def __init__(
        self,
        settings: StationSettings,
        mqtt_settings: MqttSettings,
        topics: Topics,
        state: StationState,
        hub: PushHub,
        limits: PayloadLimits,
    ) -> None:
        self._settings = settings
        self._topics = topics
        self._state = state
        self._hub = hub
        self._limits = limits
        self._inbox: queue.Queue[tuple[str, str, bytes]] = queue.Queue(maxsize=10_000)
        station_mqtt = mqtt_settings.model_copy(update={"client_id": settings.client_id, "session_expiry_s": 0})
        self.connection = MqttConnection(
            station_mqtt, topics.station_presence(settings.client_id), settings.client_id, False
        )
        for kind in KINDS:
            qos = 0 if kind == "wave" else 1  # a missed strip chunk is a gap on screen; alerts must arrive
            self.connection.subscribe(f"{topics.prefix}/+/{kind}", self._enqueue(kind), qos=qos)
        self.connection.subscribe(f"{topics.prefix}/_agents/+/presence", self._enqueue("presence"), qos=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="station-feed", daemon=True)
        self._rejections = RejectionLog()
        self._failed_at: float | None = None  # monotonic time of the last loop failure, until recovered
        self.restarts = 0

    def _enqueue(self, kind: str) -> Any:
        def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
            try:
                self._inbox.put_nowait((kind, message.topic, bytes(message.payload)))
            except queue.Full:
                log.error("station_inbox_full", topic=message.topic[:200])

        return on_message

    def start(self) -> None:
        self._thread.start()
        self.connection.open()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.connection.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def publish_ack(self, patient_id: str, alert_id: str, by: str, timeout_s: float = 5.0) -> None:
        """Publish the acknowledgement of ``by``, the signed-in user, on their ack topic and wait for the broker to
        take it (QoS 1)."""
        sent_at = time.time()
        body = {"schema": SCHEMA_ALERT_ACK, "alert_id": alert_id, "by": by, "at": sent_at}
        payload = json.dumps(body).encode()
        self._check_patient(patient_id)
        decode_ack(payload, patient_id, by, received_at=sent_at)
        self._publish_confirmed(self._topics.alert_ack(patient_id, by), payload, timeout_s)
        log.info("station_ack_published", patient_id=patient_id, alert_id=alert_id, by=by)

    def publish_mute(self, patient_id: str, fields: dict[str, Any], by: str, timeout_s: float = 5.0) -> None:
        """Publish the forecast mute request (``fields``: action, reason, duration_s) of ``by``, the signed-in
        user, on their mute topic."""
        payload = json.dumps({**fields, "schema": SCHEMA_ALERT_MUTE, "by": by}).encode()
        self._check_patient(patient_id)
        decode_mute(payload, patient_id, by)
        self._publish_confirmed(self._topics.alert_mute(patient_id, by), payload, timeout_s)
        log.info("station_mute_published", patient_id=patient_id, action=fields.get("action"), by=by)

    @staticmethod
    def _check_patient(patient_id: str) -> None:
        """A topic the broker would drop the connection for ("P001\\n") is never sent; nor, checked next with the
        agent's own decoder, a message the agent would refuse. The ProtocolError says why."""
        if not PATIENT_ID_PATTERN.fullmatch(patient_id):
            raise ProtocolError("bad_patient_id", f"patient id {patient_id[:80]!r} is not allowed", "patient_id")

    def _publish_confirmed(self, topic: str, payload: bytes, timeout_s: float) -> None:
        """Publish at QoS 1 and wait for the broker to take it. A refusal (MQTT 5 "Not authorized": the station's
        identity may not write that user's topic) is a BrokerError the nurse is shown, never a "sent"."""
        try:
            self.connection.publish_confirmed(topic, payload, timeout_s)
        except BrokerError as exc:
            log.error("station_publish_refused", topic=topic[:200], error=str(exc))
            raise

    def _run(self) -> None:
        """The feed thread, supervised: the loop is restarted after any failure it did not contain."""
        while not self._stop.is_set():
            try:
                self._loop()
            except Exception as exc:  # whatever it was, every patient's feed depends on this thread going on
                self._on_loop_failure(exc)
                self._stop.wait(RESTART_DELAY_S)

    def _on_loop_failure(self, exc: Exception) -> None:
        self._failed_at = time.monotonic()
        detail = f"station message feed failed ({type(exc).__name__}) and was restarted; see the station log"
        self._state.raise_technical(FEED_ALARM, detail)  # before the count, which observers wait on
        self.restarts += 1
        log.exception("station_feed_restarted", restarts=self.restarts, error=type(exc).__name__)

    def _loop(self) -> None:
        next_push = time.monotonic()
        next_beat = next_push
        while not self._stop.is_set():
            try:
                kind, topic, payload = self._inbox.get(timeout=max(0.0, next_push - time.monotonic()))
                self._apply(kind, topic, payload)
            except queue.Empty:
                pass
            now = time.monotonic()
            if now >= next_push:
                next_push = now + self._settings.push_interval_s
                self._push()
            if now >= next_beat:
                next_beat = now + HEARTBEAT_S
                self._hub.broadcast(sse_frame("heartbeat", self.heartbeat()))
            if self._failed_at is not None and now - self._failed_at >= RECOVERED_AFTER_S:
                self._failed_at = None
                self._state.clear_technical(FEED_ALARM)

    def heartbeat(self) -> dict[str, Any]:
        return {
            "server_time": time.time(),
            "broker_connected": self.connection.connected,
            "agents": self._state.presence(),
            "technical": self._state.technical(),
        }

    def _apply(self, kind: str, topic: str, payload: bytes) -> None:
        """Decode one message into the state; a bad message is refused, counted, logged once, and affects nothing
        else. An unexpected failure on one message (a station bug) is contained the same way."""
        try:
            self._decode_into_state(kind, topic, payload)
        except ProtocolError as exc:
            self._reject(kind, topic, exc.reason, exc.field, exc.detail)
        except Exception as exc:  # a bug must cost this message, not the feed of every patient
            self._reject(kind, topic, "station_error", None, f"{type(exc).__name__}: {exc}", exc_info=True)

    def _decode_into_state(self, kind: str, topic: str, payload: bytes) -> None:
        if kind == "presence":
            agent_id = self._topics.agent_of(topic)
            state = decode_presence(payload, agent_id).state if payload else "offline"  # empty: retained cleared
            self._state.on_presence(agent_id, state)
            return
        pid = self._topics.patient_of(topic, kind)
        if kind == "wave":
            self._state.on_wave(decode_wave(payload, self._limits, pid))
        elif not payload:
            return  # a cleared retained message
        elif kind == "status":
            self._state.on_status(pid, decode_status(payload, pid))
        elif kind == "forecast":
            self._state.on_forecast(pid, decode_forecast(payload, pid))
        elif kind == "alert":
            self._state.on_alert(pid, decode_alert(payload, pid))
        elif kind == "alert/muted":
            self._state.on_mute(pid, decode_mute_state(payload, pid))

    def _reject(
        self, kind: str, topic: str, reason: str, field: str | None, detail: str, exc_info: bool = False
    ) -> None:
        self._state.record_rejection(kind, reason)
        if self._rejections.first(topic, reason, field):
            log.warning(
                "station_message_rejected",
                kind=kind,
                topic=topic[:200],
                reason=reason,
                field=field,
                detail=detail[:300],
                exc_info=exc_info,
                note="logged once per topic, reason and field; /api/state counts every one",
            )

    def _push(self) -> None:
        updates = self._state.take_updates()
        for tile in updates.tiles:
            self._hub.broadcast(sse_frame("tile", tile))
        if updates.order is not None:
            self._hub.broadcast(sse_frame("order", updates.order))
        if updates.waves:
            self._hub.broadcast(sse_frame("waves", updates.waves))
        for alert in updates.new_alerts:
            self._hub.broadcast(sse_frame("new_alert", alert))
