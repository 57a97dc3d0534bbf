"""The agent daemon: wires the stages in data-path order and runs until SIGINT/SIGTERM."""

from __future__ import annotations

import json
import queue
import signal
import threading
import time
from types import FrameType

import structlog

from agent.ingest import Rejection, WaveIngest
from agent.ingest_worker import IngestWorker, WindowSink
from agent.logs import configure_logging
from agent.mqtt_client import MqttConnection
from agent.patient import CompletedWindows
from agent.protocol import PayloadLimits, Topics
from agent.sequencer import Delivery
from agent.settings import Settings

__all__ = ["Agent", "run_daemon"]

log = structlog.get_logger(__name__)


def _limits(settings: Settings) -> PayloadLimits:
    p = settings.protocol
    return PayloadLimits(p.max_payload_bytes, p.max_samples_per_lead, p.max_leads, p.min_fs, p.max_fs)


class Agent:
    """Composition of the running stages: MQTT connection → ingest → ingest worker → window sink."""

    def __init__(self, settings: Settings, sink: WindowSink | None = None) -> None:
        self.settings = settings
        self.topics = Topics(settings.protocol.topic_prefix)
        self.inbox: queue.Queue[Delivery | Rejection] = queue.Queue(maxsize=settings.mqtt.receive_maximum)
        self.connection = MqttConnection(settings.mqtt, self.topics.presence(settings.agent_id), settings.agent_id)
        self.ingest = WaveIngest(self.connection, self.topics, _limits(settings), self.inbox, settings.mqtt.qos)
        self.windows_ready: queue.Queue[CompletedWindows] = queue.Queue(maxsize=100_000)
        self.worker = IngestWorker(settings, self.connection, self.inbox, sink or self._enqueue_windows)

    def _enqueue_windows(self, completed: CompletedWindows) -> None:
        try:
            self.windows_ready.put_nowait(completed)
        except queue.Full:
            log.error("windows_queue_full", patient_id=completed.patient_id)

    def start(self) -> None:
        self.worker.start()
        self.connection.open()
        log.info("agent_started", agent_id=self.settings.agent_id, broker=self.settings.mqtt.url.split("@")[-1])

    def stop(self) -> None:
        """Reverse order with bounded joins: stop taking messages, drain the worker, close the connection."""
        self.worker.stop(timeout=5.0)
        self.connection.close()
        log.info("agent_stopped", **self.worker.summary())

    def publish_summary(self) -> None:
        body = {"schema": "ecgcast.agent_status/1", "agent_id": self.settings.agent_id, "at": time.time()}
        body.update(self.worker.summary())
        topic = f"{self.settings.protocol.topic_prefix}/_agents/{self.settings.agent_id}/status"
        self.connection.publish(topic, json.dumps(body).encode(), qos=1, retain=True)


def run_daemon(settings: Settings, log_format: str | None = None) -> int:
    configure_logging(settings.logging.level, log_format or settings.logging.format)  # type: ignore[arg-type]
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal_received", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    agent = Agent(settings)
    agent.start()
    drain = threading.Thread(target=_drain_windows, args=(agent, stop), name="window-drain", daemon=True)
    drain.start()
    while not stop.wait(settings.status.interval_s):
        if agent.connection.connected:
            agent.publish_summary()
    agent.stop()
    return 0


def _drain_windows(agent: Agent, stop: threading.Event) -> None:
    """Until the encoder stage is wired in, completed windows are counted and dropped here."""
    while not stop.is_set():
        try:
            agent.windows_ready.get(timeout=0.5)
        except queue.Empty:
            continue
