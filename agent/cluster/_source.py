"""The ``rabbitmq-superstream`` ingest source: this replica's share of the partitioned wave streams → the inbox.

rstream is asyncio-only, so the source runs its own event loop on a thread. Per message it does what the MQTT
callback does (decode, validate, enqueue as ``Delivery(qos=0)`` or ``Rejection``); a full inbox is waited for in an
executor, which holds back this partition's credit instead of blocking the loop (heartbeats and other partitions'
activations go on). Stream offsets are not acknowledged: the broker keeps retention, and a new owner replays.

Single active consumer, per partition: the broker activates one replica of the group. On activation the replica
takes a new epoch and starts from a timestamp offset (now − buffer − margin) so it rebuilds ring buffers, encoder
embeddings and LM caches; until the replay reaches messages written after the activation its patients are held in
"warming up". On deactivation, or when the connection drops (no deactivation arrives then), the partition's patients
are released at once and its outputs stop (:class:`agent.cluster.PublishGate`).
"""

from __future__ import annotations

import asyncio
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from rstream import (
    AMQPMessage,
    ConsumerOffsetSpecification,
    EventContext,
    MessageContext,
    OffsetType,
    SuperStreamConsumer,
    amqp_decoder,
)
from rstream.recovery import IReliableEntity, RecoveryStrategy
from rstream.schema import OffsetSpecification
from rstream.utils import OnClosedErrorInfo

from agent.ingest import RawWave, Rejection
from agent.sequencer import Delivery
from agent.settings import SuperStreamSettings
from core.errors import BrokerError, ProtocolError
from core.protocol import PATIENT_ID_PATTERN, PayloadLimits, decode_wave

from ._epochs import EpochLedger
from ._ownership import PartitionOwnership
from ._topology import partition_index

__all__ = ["Release", "SteadyRecovery", "SuperStreamSource"]

log = structlog.get_logger(__name__)

Release = Callable[[list[str]], None]  # drop patients another replica owns now (ingest, model and alert state)
_LATE_RELEASE_S = (0.5, 2.0)  # deliveries already queued when a partition left are released again after these


class SteadyRecovery(RecoveryStrategy):
    """Re-subscribe a lost partition every 1–3 s until it works or the source stops.

    rstream's default back-off shares one delay across all partitions (every failure doubles it, so a broker restart
    left partitions unsubscribed for tens of seconds here) and gives up after 10 attempts, which would leave a
    partition without a consumer in this replica for good while the replica looks healthy.
    """

    def __init__(self, stopping: Callable[[], bool]) -> None:
        super().__init__(enable=True, max_retries=0)
        self._stopping = stopping

    async def recover(
        self, entity: IReliableEntity, stream: str, error: Exception, attempt: int, recovery_fun: Any
    ) -> None:
        while not self._stopping():
            await asyncio.sleep(random.uniform(1.0, 3.0))  # jitter: replicas do not all retry at once
            try:
                if not await entity.stream_exists(stream):
                    log.error("partition_stream_gone", stream=stream)
                    return
                await entity.clean_list(stream)
                await recovery_fun()
                log.info("partition_resubscribed", stream=stream, attempts=attempt)
                return
            except Exception as exc:  # any failure of the attempt: the broker may still be starting
                log.info("partition_resubscribe_failed", stream=stream, attempt=attempt, error=repr(exc)[:200])
                attempt += 1


class SuperStreamSource:
    """``start()`` joins the consumer group; ``stop()`` leaves it (its partitions move to the other replicas)."""

    def __init__(
        self,
        settings: SuperStreamSettings,
        replay_s: float,
        limits: PayloadLimits,
        inbox: queue.Queue[RawWave | Delivery | Rejection],
        ownership: PartitionOwnership,
        epochs: EpochLedger,
        release: Release,
        name: str,
    ) -> None:
        self._settings = settings
        self._replay_s = replay_s
        self._limits = limits
        self._inbox = inbox
        self.ownership = ownership
        self._epochs = epochs
        self._release = release
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None  # made by the thread, so an unstarted source holds none
        self._thread = threading.Thread(target=self._run, name="superstream-source", daemon=True)
        self._consumer: SuperStreamConsumer | None = None
        self._started = threading.Event()
        self._stopping = False
        self._failure: BaseException | None = None
        self.queue_full = 0
        self.rejected = 0
        self.admitted = 0
        self.dropped_not_owned = 0
        self.takeovers: list[tuple[int, int, float]] = []  # (partition, epoch, wall time) of every activation

    # --- lifecycle (caller's thread) ----------------------------------------------------------------------

    def start(self, timeout_s: float = 30.0) -> None:
        """Connect and subscribe every partition; raises BrokerError when that fails within ``timeout_s``."""
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise BrokerError(f"super stream consumer did not subscribe within {timeout_s:.0f} s")
        if self._failure is not None:
            raise BrokerError(f"super stream consumer failed to start: {self._failure!r}") from self._failure

    def stop(self, timeout_s: float = 10.0) -> None:
        """Leave the group (idempotent): the broker hands our partitions to another replica."""
        self._stopping = True
        if self._thread.is_alive() and self._loop is not None and self._consumer is not None:
            self._loop.call_soon_threadsafe(self._consumer.stop)
            self._thread.join(timeout_s)
        released = self.ownership.deactivate(list(self.ownership.partitions()))
        if released:
            self._release(released)

    # --- the event loop -----------------------------------------------------------------------------------

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except Exception as exc:  # reported to start() or logged: the thread must not die silently
            self._failure = exc
            log.exception("superstream_consumer_failed")
        finally:
            self._started.set()
            loop.close()

    async def _main(self) -> None:
        s = self._settings
        consumer = SuperStreamConsumer(
            s.host,
            s.stream_port,
            vhost=s.vhost,
            username=s.username,
            password=s.password,
            heartbeat=s.heartbeat_s,
            super_stream=s.super_stream,
            connection_name=self._name,
            on_close_handler=self._on_close,
            recovery_strategy=SteadyRecovery(lambda: self._stopping),
        )
        self._consumer = consumer
        await consumer.start()
        try:
            await consumer.subscribe(
                callback=self._on_message,
                decoder=amqp_decoder,
                offset_specification=ConsumerOffsetSpecification(OffsetType.NEXT, None),
                initial_credit=s.credit,
                # All three are needed: without 'super-stream' every partition goes to the first replica.
                properties={"single-active-consumer": "true", "name": s.consumer_group, "super-stream": s.super_stream},
                consumer_update_listener=self._on_update,
            )
            log.info("superstream_subscribed", super_stream=s.super_stream, group=s.consumer_group, name=self._name)
            self._started.set()
            await consumer.run()
        finally:
            await consumer.close()

    async def _on_update(self, active: bool, context: EventContext) -> OffsetSpecification:
        """The broker made us the active consumer of a partition, or asks us to step down."""
        partition = partition_index(self._settings.super_stream, context.stream)
        loop = asyncio.get_running_loop()
        if not active:
            await loop.run_in_executor(None, self._give_up, [partition], "deactivated")
            return OffsetSpecification(OffsetType.NEXT, 0)
        epoch = await loop.run_in_executor(None, self._epochs.next, partition)
        now_ms = int(time.time() * 1000)
        self.ownership.activate(partition, epoch, now_ms)
        self.takeovers.append((partition, epoch, now_ms / 1000))
        replay_from_ms = now_ms - int(self._replay_s * 1000)
        log.info("partition_activated", partition=partition, epoch=epoch, replay_s=self._replay_s)
        return OffsetSpecification(OffsetType.TIMESTAMP, replay_from_ms)

    def _give_up(self, partitions: list[int], reason: str) -> None:
        """Release the partitions' patients now, and again once deliveries queued before this have drained."""
        released = self.ownership.deactivate(partitions)
        log.info("partitions_released", partitions=partitions, reason=reason, patients=len(released))
        if not released:
            return
        self._release(released)
        for delay in _LATE_RELEASE_S:
            timer = threading.Timer(delay, self._release_if_not_owned, (released,))
            timer.daemon = True
            timer.start()

    def _release_if_not_owned(self, patient_ids: list[str]) -> None:
        stale = [pid for pid in patient_ids if self.ownership.stamp(pid) is None]
        if stale:
            self._release(stale)

    async def _on_close(self, info: OnClosedErrorInfo) -> None:
        """The connection (or a partition's leader) went away: no deactivation will come, so give the partitions
        up now; rstream re-subscribes and the broker activates whoever it chooses, with a fresh epoch."""
        partitions = []
        for stream in info.streams:
            try:
                partitions.append(partition_index(self._settings.super_stream, stream))
            except ValueError:
                continue
        log.warning("superstream_connection_lost", reason=info.reason, partitions=partitions)
        await asyncio.get_running_loop().run_in_executor(None, self._give_up, partitions, "connection_lost")

    async def _on_message(self, message: AMQPMessage, context: MessageContext) -> None:
        partition = partition_index(self._settings.super_stream, context.stream)
        item = self._decode(message)
        patient_id = item.chunk.patient_id if isinstance(item, Delivery) else item.patient_id
        if patient_id is not None and not self.ownership.admit(partition, patient_id, context.timestamp):
            self.dropped_not_owned += 1  # in flight when the partition moved: the new owner replays it
            return
        self.admitted += 1
        try:
            self._inbox.put_nowait(item)
        except queue.Full:
            self.queue_full += 1
            await asyncio.get_running_loop().run_in_executor(None, self._inbox.put, item)

    def _decode(self, message: AMQPMessage) -> Delivery | Rejection:
        """The MQTT payload and its routing key (``<prefix>.<patient>.wave``) → a validated chunk, or a rejection."""
        annotations = message.message_annotations or {}
        routing_key = annotations.get(b"x-routing-key", b"")
        parts = routing_key.decode("utf-8", "replace").split(".") if isinstance(routing_key, bytes) else []
        topic_patient = parts[-2] if len(parts) >= 2 and PATIENT_ID_PATTERN.match(parts[-2]) else None
        body = message.body
        payload = b"".join(body) if isinstance(body, list) else bytes(body)
        try:
            chunk = decode_wave(payload, self._limits, topic_patient_id=topic_patient)
        except ProtocolError as exc:
            self.rejected += 1
            log.warning("wave_rejected", reason=exc.reason, field=exc.field, detail=exc.detail[:200], source="stream")
            return Rejection(topic_patient, exc.reason)
        return Delivery(chunk, 0, 0, time.monotonic())
