"""What an agent adds to become one replica of a cluster: ownership, epochs, the super stream source, the gate.

The daemon builds one when ``ingest.source`` is ``rabbitmq-superstream`` and hands its parts to the stages that need
them (the inbox to the source, ``fence`` to the alert service, ``replaying`` to the model worker, the gate to the
MQTT connection); no other stage knows which source feeds it.
"""

from __future__ import annotations

import queue

from agent.alerts import Fence
from agent.ingest import RawWave, Rejection
from agent.mqtt_client import MqttConnection
from agent.sequencer import Delivery
from agent.settings import Settings
from core.errors import ConfigError
from core.protocol import PayloadLimits

from ._epochs import EpochLedger
from ._gate import PublishGate
from ._ownership import PartitionOwnership
from ._source import Release, SuperStreamSource

__all__ = ["ClusterReplica"]


class ClusterReplica:
    def __init__(
        self,
        settings: Settings,
        limits: PayloadLimits,
        inbox: queue.Queue[RawWave | Delivery | Rejection],
        connection: MqttConnection,
        release: Release,
    ) -> None:
        s = settings.ingest.superstream
        if settings.alerts.store_url is None:
            raise ConfigError(
                "ingest.source rabbitmq-superstream needs alerts.store_url (postgresql://…): alert state must survive "
                "a handover, and partition epochs are kept beside it"
            )
        self.scope = s.super_stream
        self.ownership = PartitionOwnership()
        self.epochs = EpochLedger(settings.alerts.store_url, s.super_stream, settings.agent_id)
        replay_s = 60 * settings.buffer.minutes + s.replay_margin_s
        self.source = SuperStreamSource(
            s, replay_s, limits, inbox, self.ownership, self.epochs, release, name=settings.agent_id
        )
        connection.publish_filter = PublishGate(settings.protocol.topic_prefix, self.ownership, settings.agent_id)

    def fence(self, patient_id: str) -> Fence | None:
        """This replica's claim on a patient for alert writes; None when another replica owns it."""
        stamp = self.ownership.stamp(patient_id)
        return Fence(self.scope, *stamp) if stamp is not None else None

    def replaying(self, patient_id: str) -> bool:
        return self.ownership.replaying(patient_id)

    def start(self) -> None:
        self.source.start()

    def stop(self) -> None:
        """Leave the consumer group first, so the other replicas take over while this one shuts down."""
        self.source.stop()
        self.epochs.close()

    def summary(self) -> dict[str, object]:
        return {
            **self.ownership.summary(),
            "epochs": self.ownership.partitions(),
            "admitted": self.source.admitted,
            "dropped_not_owned": self.source.dropped_not_owned,
        }
