"""The publish gate a cluster replica installs on its MQTT connection: outputs only for patients it owns now.

Every per-patient output (status, forecast, alert) passes here on its way out. A patient whose partition this
replica does not hold (never had, gave up, or lost with the connection) is withheld, so a replica that was paused
and wakes up after a takeover cannot publish stale forecasts or alerts as current. What goes out carries the
partition, its epoch and the replica's agent id, so a consumer can also drop anything older than the newest epoch it
saw for a partition.
"""

from __future__ import annotations

import json

import structlog

from ._ownership import PartitionOwnership

__all__ = ["PublishGate"]

log = structlog.get_logger(__name__)

_PATIENT_KINDS = frozenset({"status", "forecast", "alert"})


class PublishGate:
    """``connection.publish_filter = PublishGate(prefix, ownership, agent_id)``; topics other than
    ``<prefix>/<patient>/<kind>`` for those kinds (presence, agent status, acknowledgements) pass unchanged."""

    def __init__(self, topic_prefix: str, ownership: PartitionOwnership, owner: str) -> None:
        self._prefix = topic_prefix.rstrip("/") + "/"
        self._ownership = ownership
        self._owner = owner

    def _patient(self, topic: str) -> str | None:
        if not topic.startswith(self._prefix):
            return None
        parts = topic[len(self._prefix) :].split("/")
        if len(parts) != 2 or parts[1] not in _PATIENT_KINDS or parts[0].startswith("_"):
            return None
        return parts[0]

    def __call__(self, topic: str, payload: bytes) -> bytes | None:
        patient_id = self._patient(topic)
        if patient_id is None:
            return payload
        stamp = self._ownership.stamp(patient_id)
        if stamp is None:
            log.debug("output_withheld", patient_id=patient_id, topic=topic)
            return None
        try:
            body = json.loads(payload) if payload else None
        except ValueError:
            return payload  # not ours to rewrite; ownership was still checked
        if not isinstance(body, dict):
            return payload
        body["partition"], body["epoch"] = stamp
        body["owner"] = self._owner  # the replica that spoke: an audit of "one owner per epoch" needs it
        if topic.endswith("/status"):
            body["replaying"] = self._ownership.replaying(patient_id)
        return json.dumps(body).encode()
