"""Which partitions this replica owns right now, under which epoch, and which patients it has seen in each.

Shared by the super stream source (asyncio thread: activations, deactivations, messages), the publish gate (any
thread that publishes) and the model worker (its warm-up hold), so every method takes one lock and returns copies.
The epoch is a fencing token handed out by :class:`EpochLedger` on every activation: strictly increasing per
partition across all replicas, so an output or an alert row stamped with an older epoch is recognisably stale.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

__all__ = ["Lease", "PartitionOwnership"]


@dataclass
class Lease:
    """This replica's hold on one partition."""

    partition: int
    epoch: int
    activated_ms: int  # broker-clock-free: our wall clock at activation; replay reaches it when caught up
    caught_up: bool = False
    patients: set[str] = field(default_factory=set)


class PartitionOwnership:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[int, Lease] = {}
        self._patient_partition: dict[str, int] = {}

    def activate(self, partition: int, epoch: int, now_ms: int) -> None:
        with self._lock:
            self._leases[partition] = Lease(partition, epoch, now_ms)

    def deactivate(self, partitions: list[int]) -> list[str]:
        """Give partitions up; returns their patients, whose state the caller must release."""
        released: list[str] = []
        with self._lock:
            for partition in partitions:
                lease = self._leases.pop(partition, None)
                if lease is None:
                    continue
                for pid in lease.patients:
                    if self._patient_partition.get(pid) == partition:
                        del self._patient_partition[pid]
                released.extend(sorted(lease.patients))
        return released

    def admit(self, partition: int, patient_id: str, written_ms: int) -> bool:
        """A message of ``patient_id`` arrived on ``partition``, written by the broker at ``written_ms``. False when
        the partition is not ours (a delivery in flight when it was taken away): the caller drops it."""
        with self._lock:
            lease = self._leases.get(partition)
            if lease is None:
                return False
            lease.patients.add(patient_id)
            self._patient_partition[patient_id] = partition
            if not lease.caught_up and written_ms >= lease.activated_ms:
                lease.caught_up = True  # replay reached messages written after we took over
            return True

    def stamp(self, patient_id: str) -> tuple[int, int] | None:
        """(partition, epoch) when this replica owns the patient now, else None."""
        with self._lock:
            partition = self._patient_partition.get(patient_id)
            lease = self._leases.get(partition) if partition is not None else None
            return (lease.partition, lease.epoch) if lease is not None else None

    def replaying(self, patient_id: str) -> bool:
        """True while the patient's partition is still replaying history (the patient is warming up)."""
        with self._lock:
            partition = self._patient_partition.get(patient_id)
            lease = self._leases.get(partition) if partition is not None else None
            return lease is not None and not lease.caught_up

    def partitions(self) -> dict[int, int]:
        """partition -> epoch of every partition held now."""
        with self._lock:
            return {p: lease.epoch for p, lease in self._leases.items()}

    def summary(self) -> dict[str, object]:
        with self._lock:
            return {
                "partitions": sorted(self._leases),
                "replaying": sorted(p for p, lease in self._leases.items() if not lease.caught_up),
                "patients": len(self._patient_partition),
            }
