"""The RabbitMQ topology behind the super stream, declared idempotently over AMQP 0-9-1 (``cluster init``).

MQTT plugin → ingress topic exchange ──(binding ``<prefix>.*.wave``)──▶ x-consistent-hash exchange ──▶ P partition
streams (binding key = weight "1", ``x-stream-partition-order: i``). A consistent-hash exchange whose bindings carry a
partition order is what the stream protocol reports as a super stream, so ``rstream.SuperStreamConsumer`` reads it.
Wave messages that match no binding (a malformed topic) go to the ingress exchange's alternate exchange and a bounded
queue, where an operator can look at them instead of losing them silently. Partitions are never removed: removing one
reshuffled about 3/4 of the patients in the verification (issue #9), and every move costs a replay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pika
import pika.exceptions
import structlog

from agent.settings import SuperStreamSettings
from core.errors import BrokerError, ConfigError

__all__ = ["Topology", "declare_topology", "partition_index", "partition_stream", "routing_key_prefix"]

log = structlog.get_logger(__name__)

_UNROUTABLE_MAX_MESSAGES = 100_000  # enough to diagnose a misconfigured publisher, bounded so it cannot fill a disk
_SEGMENT_BYTES = 50_000_000  # retention drops whole segments: small ones keep x-max-age close to what it says


def routing_key_prefix(topic_prefix: str) -> str:
    """The AMQP routing-key form of an MQTT topic prefix: the MQTT plugin maps '/' to '.' (and '.' to '/')."""
    return ".".join(level.replace(".", "/") for level in topic_prefix.split("/"))


def partition_stream(super_stream: str, index: int) -> str:
    """Name of partition ``index`` (the naming RabbitMQ's own super stream tooling uses)."""
    return f"{super_stream}-{index}"


def partition_index(super_stream: str, stream: str) -> int:
    """Inverse of :func:`partition_stream`; raises ValueError for a stream of another super stream."""
    head, _, tail = stream.rpartition("-")
    if head != super_stream or not tail.isdigit():
        raise ValueError(f"stream {stream!r} is not a partition of super stream {super_stream!r}")
    return int(tail)


@dataclass(frozen=True)
class Topology:
    """Everything ``cluster init`` declares, derived from config so every replica and the CLI agree."""

    settings: SuperStreamSettings
    wave_binding: str  # e.g. ecg.v1.*.wave
    max_age_s: int  # stream retention: the ring buffer plus a margin

    @classmethod
    def from_settings(cls, settings: SuperStreamSettings, topic_prefix: str, buffer_minutes: float) -> Topology:
        max_age_s = math.ceil(60 * (buffer_minutes + settings.retention_margin_min))
        return cls(settings, f"{routing_key_prefix(topic_prefix)}.*.wave", max_age_s)

    @property
    def streams(self) -> list[str]:
        return [partition_stream(self.settings.super_stream, i) for i in range(self.settings.partitions)]

    @property
    def unroutable_binding(self) -> str:
        return self.wave_binding.replace(".*.", ".#.")  # a wave topic with extra levels: nothing else took it


def _connect(settings: SuperStreamSettings) -> pika.BlockingConnection:
    params = pika.ConnectionParameters(
        host=settings.host,
        port=settings.amqp_port,
        virtual_host=settings.vhost,
        credentials=pika.PlainCredentials(settings.username, settings.password),
        connection_attempts=3,
        retry_delay=1.0,
    )
    try:
        return pika.BlockingConnection(params)
    except pika.exceptions.AMQPError as exc:
        raise BrokerError(f"cannot connect to RabbitMQ at {settings.host}:{settings.amqp_port}: {exc!r}") from exc


def _refuse_shrinking(connection: pika.BlockingConnection, topology: Topology) -> None:
    """A partition beyond ``partitions`` means the cluster was created larger: shrinking would reshuffle patients."""
    extra = partition_stream(topology.settings.super_stream, topology.settings.partitions)
    channel = connection.channel()
    try:
        channel.queue_declare(extra, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return
        raise
    channel.close()
    raise ConfigError(
        f"ingest.superstream.partitions is {topology.settings.partitions} but stream {extra} exists: partitions are "
        "never removed (it would move most patients); set partitions back to the cluster's count"
    )


def declare_topology(topology: Topology) -> None:
    """Declare (or confirm) every exchange, stream and binding. Safe to run again; a clash with what exists is a
    ConfigError naming the object, never a silent change."""
    s = topology.settings
    connection = _connect(s)
    try:
        _refuse_shrinking(connection, topology)
        channel = connection.channel()
        channel.exchange_declare(s.unroutable_exchange, exchange_type="topic", durable=True)
        channel.queue_declare(
            s.unroutable_exchange,
            durable=True,
            arguments={"x-max-length": _UNROUTABLE_MAX_MESSAGES, "x-overflow": "drop-head"},
        )
        channel.queue_bind(s.unroutable_exchange, s.unroutable_exchange, routing_key=topology.unroutable_binding)
        channel.exchange_declare(
            s.ingress_exchange,
            exchange_type="topic",
            durable=True,
            arguments={"alternate-exchange": s.unroutable_exchange},
        )
        channel.exchange_declare(s.super_stream, exchange_type="x-consistent-hash", durable=True)
        for index, stream in enumerate(topology.streams):
            channel.queue_declare(
                stream,
                durable=True,
                arguments={
                    "x-queue-type": "stream",
                    "x-max-age": f"{topology.max_age_s}s",
                    "x-stream-max-segment-size-bytes": _SEGMENT_BYTES,
                },
            )
            channel.queue_bind(stream, s.super_stream, routing_key="1", arguments={"x-stream-partition-order": index})
        channel.exchange_bind(s.super_stream, s.ingress_exchange, routing_key=topology.wave_binding)
    except pika.exceptions.ChannelClosedByBroker as exc:
        raise ConfigError(
            f"RabbitMQ refused the topology ({exc.reply_code} {exc.reply_text}): an existing object has other "
            "arguments; change it with a policy or delete it on purpose"
        ) from exc
    finally:
        if connection.is_open:
            connection.close()
    log.info(
        "cluster_topology_declared",
        super_stream=s.super_stream,
        partitions=s.partitions,
        max_age_s=topology.max_age_s,
        binding=topology.wave_binding,
    )
