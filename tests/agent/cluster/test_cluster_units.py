"""Cluster parts without a broker: partition ownership, the publish gate, topology names, config checks."""

from __future__ import annotations

import asyncio
import json
import queue
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import agent.cluster
from agent.cluster import PartitionOwnership, PublishGate, Topology, partition_index, partition_stream
from agent.cluster import routing_key_prefix as rk_prefix
from agent.settings import SuperStreamSettings, load_settings
from core.errors import ConfigError


def owned(partition: int = 3, epoch: int = 7, patients: tuple[str, ...] = ("P1",)) -> PartitionOwnership:
    ownership = PartitionOwnership()
    ownership.activate(partition, epoch, now_ms=1_000)
    for pid in patients:
        assert ownership.admit(partition, pid, written_ms=500)  # replayed history: written before activation
    return ownership


def test_ownership_lifecycle() -> None:
    ownership = owned()
    assert ownership.stamp("P1") == (3, 7)
    assert ownership.replaying("P1")
    assert ownership.admit(3, "P1", written_ms=1_000)  # first message written after we took over
    assert not ownership.replaying("P1")
    assert ownership.stamp("P2") is None
    assert not ownership.admit(4, "P2", written_ms=2_000)  # not our partition: the caller drops it
    assert ownership.deactivate([3, 4]) == ["P1"]
    assert ownership.stamp("P1") is None
    assert ownership.partitions() == {}


def test_reactivation_starts_a_new_lease() -> None:
    ownership = owned()
    ownership.deactivate([3])
    ownership.activate(3, 9, now_ms=5_000)
    assert ownership.stamp("P1") is None  # patients are learned again from the replay
    ownership.admit(3, "P1", written_ms=4_000)
    assert (ownership.stamp("P1"), ownership.replaying("P1")) == ((3, 9), True)


def test_gate_stamps_owned_outputs_and_withholds_others() -> None:
    gate = PublishGate("ecg/v1", owned(), "agent-a")
    body = json.loads(gate("ecg/v1/P1/forecast", b'{"schema": "ecgcast.forecast/1"}') or b"")
    assert body == {"schema": "ecgcast.forecast/1", "partition": 3, "epoch": 7, "owner": "agent-a"}
    status = json.loads(gate("ecg/v1/P1/status", b"{}") or b"")
    assert status["replaying"] is True
    assert gate("ecg/v1/P2/alert", b"{}") is None  # a patient this replica does not own
    assert gate("ecg/v1/_agents/agent-a/status", b"{}") == b"{}"  # agent-level topics pass
    assert gate("ecg/v1/_agents/agent-a/presence", b"{}") == b"{}"
    assert gate("ecg/v1/P1/alert/ack", b"x") == b"x"


def test_names_and_retention() -> None:
    assert rk_prefix("ecg/v1") == "ecg.v1"
    assert partition_stream("ecg.waves", 12) == "ecg.waves-12"
    assert partition_index("ecg.waves", "ecg.waves-12") == 12
    with pytest.raises(ValueError, match="not a partition"):
        partition_index("ecg.waves", "other-3")
    topology = Topology.from_settings(SuperStreamSettings(partitions=4), "ecg/v1", buffer_minutes=10)
    assert topology.max_age_s == 15 * 60  # buffer plus the default 5-minute margin
    assert topology.wave_binding == "ecg.v1.*.wave"
    assert topology.unroutable_binding == "ecg.v1.#.wave"
    assert topology.streams == ["ecg.waves-0", "ecg.waves-1", "ecg.waves-2", "ecg.waves-3"]


def test_cluster_replica_needs_a_shared_alert_store(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("ingest:\n  source: rabbitmq-superstream\n")
    with pytest.raises(ConfigError, match=r"ingest\.source rabbitmq-superstream needs alerts\.store_url"):
        load_settings(path, env={})
    path.write_text("alerts:\n  store_url: mysql://x\n")
    with pytest.raises(ConfigError, match=r"alerts\.store_url"):
        load_settings(path, env={})
    path.write_text("ingest:\n  superstream:\n    partitions: 0\n")
    with pytest.raises(ConfigError, match=r"ingest\.superstream\.partitions"):
        load_settings(path, env={})


def test_exports() -> None:
    assert set(agent.cluster.__all__) == {
        "DEFAULT_ROOTFS", "BrokerPorts", "ClusterReplica", "EpochLedger", "Lease", "PartitionOwnership",
        "PrivateRabbitMQ", "PublishGate", "SuperStreamSource", "Topology", "declare_topology", "partition_index",
        "partition_stream", "prepare_rootfs", "rootfs_ready", "routing_key_prefix",
    }  # fmt: skip
    assert all(hasattr(agent.cluster, name) for name in agent.cluster.__all__)


class NoLedger:
    """The source under test never activates a partition here; the ledger must not be asked."""

    def next(self, partition: int) -> int:
        raise AssertionError("no activation expected")


def stream_message(patient: str, payload: bytes) -> Any:
    from rstream import AMQPMessage

    return AMQPMessage(body=payload, message_annotations={b"x-routing-key": f"ecg.v1.{patient}.wave".encode()})


def test_source_decodes_like_the_mqtt_callback_and_drops_foreign_partitions() -> None:
    from rstream import MessageContext

    from agent.cluster import SuperStreamSource
    from agent.ingest import Rejection
    from agent.sequencer import Delivery
    from agent.settings import Settings
    from core.protocol import PayloadLimits, WaveChunk, encode_wave

    inbox: queue.Queue[Delivery | Rejection] = queue.Queue()
    ownership = owned(partition=2, epoch=4, patients=())
    released: list[list[str]] = []
    source = SuperStreamSource(
        SuperStreamSettings(super_stream="ecg.waves"), 630.0, PayloadLimits.from_settings(Settings().protocol),
        inbox, ownership,
        NoLedger(), released.append, "agent-a",  # type: ignore[arg-type]
    )  # fmt: skip
    chunk = WaveChunk("P7", "dev-1", 3, 1.7e9, 250.0, ("II",), np.zeros((1, 250), np.float32))

    def deliver(partition: int, patient: str, payload: bytes) -> None:
        context = MessageContext(None, f"ecg.waves-{partition}", 1, None, 0, 2_000)  # type: ignore[arg-type]
        asyncio.run(source._on_message(stream_message(patient, payload), context))

    deliver(2, "P7", encode_wave(chunk, "b64"))
    deliver(2, "P8", b"{not json")
    deliver(5, "P9", encode_wave(chunk, "b64"))  # a partition this replica does not hold
    first, second = inbox.get_nowait(), inbox.get_nowait()
    assert isinstance(first, Delivery) and (first.chunk.patient_id, first.chunk.seq, first.qos) == ("P7", 3, 0)
    assert isinstance(second, Rejection) and second.patient_id == "P8"
    assert inbox.empty() and source.dropped_not_owned == 1
    assert ownership.stamp("P7") == (2, 4) and not ownership.replaying("P7")  # written after the activation
