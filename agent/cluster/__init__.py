"""Scale-out on RabbitMQ 4 (docs/SCALING.md): a consistent-hash super stream of wave messages, one single active
consumer per partition across agent replicas, replay on takeover, partition epochs as fencing tokens.

``cluster init`` declares the topology (:func:`declare_topology`); ``cluster broker`` runs a private RabbitMQ 4 for
development (:class:`PrivateRabbitMQ`); an agent with ``ingest.source: rabbitmq-superstream`` is a
:class:`ClusterReplica`.
"""

from __future__ import annotations

from ._broker import DEFAULT_ROOTFS, BrokerPorts, PrivateRabbitMQ, prepare_rootfs, rootfs_ready
from ._epochs import EpochLedger
from ._gate import PublishGate
from ._ownership import Lease, PartitionOwnership
from ._replica import ClusterReplica
from ._source import SuperStreamSource
from ._topology import Topology, declare_topology, partition_index, partition_stream, routing_key_prefix

__all__ = [
    "DEFAULT_ROOTFS",
    "BrokerPorts",
    "ClusterReplica",
    "EpochLedger",
    "Lease",
    "PartitionOwnership",
    "PrivateRabbitMQ",
    "PublishGate",
    "SuperStreamSource",
    "Topology",
    "declare_topology",
    "partition_index",
    "partition_stream",
    "prepare_rootfs",
    "rootfs_ready",
    "routing_key_prefix",
]
