"""What the alert service decided and published while its store failed, held until the store takes it again.

Why hold rather than drop or stop: an alert is published before it can be stored when the store fails (a nurse
must hear it now; docs/ALERTS.md section 9), and the stored row is what a restart continues from. So every row the
store refused is kept here, newest version per alert, with the mute changes in order, and written back as soon as
the store works. Ended alerts are history only: past ``max_ended`` of them the oldest are forgotten (counted), so
an outage of days cannot grow the agent without bound; an active alert is never dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._model import Alert, Mute

__all__ = ["StoreHealth", "UnsavedChanges"]

MAX_ENDED_HELD = 10_000  # ended alerts' rows held through an outage (a few kB each)


@dataclass(frozen=True)
class StoreHealth:
    """The alert store as ``/readyz``, the agent status and the technical alarm report it."""

    ok: bool
    store: str  # the file or the database (no credentials)
    reason: str | None = None  # the last failure, e.g. "attempt to write a readonly database"
    since: float | None = None  # Unix time the outage began
    unsaved: int = 0  # alert rows and mute changes held in memory, not yet stored
    failures: int = 0  # failed store operations since start
    dropped: int = 0  # ended alerts' rows forgotten because too many were held

    def as_check(self) -> dict[str, Any]:
        """The readiness check: names the store, and while it fails, why and since when."""
        check: dict[str, Any] = {"ok": self.ok, "store": self.store, "failures": self.failures}
        if not self.ok:
            check.update(reason=self.reason, since=self.since, unsaved=self.unsaved, dropped=self.dropped)
        return check


class UnsavedChanges:
    """Alert rows (latest version per alert id) and mute changes (in order) not yet stored. Not thread-safe: the
    alert service holds its lock around every call."""

    def __init__(self, max_ended: int = MAX_ENDED_HELD) -> None:
        self._alerts: OrderedDict[str, Alert] = OrderedDict()  # oldest change first
        self._mutes: list[Mute] = []
        self._max_ended = max_ended
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._alerts) + len(self._mutes)

    def add(self, alerts: Iterable[Alert], mutes: Iterable[Mute]) -> None:
        for alert in alerts:
            self._alerts.pop(alert.alert_id, None)
            self._alerts[alert.alert_id] = alert
        self._mutes.extend(mutes)
        self._forget_oldest_ended()

    def _forget_oldest_ended(self) -> None:
        if len(self._alerts) <= self._max_ended:
            return
        excess = sum(not a.active for a in self._alerts.values()) - self._max_ended
        for alert_id in [k for k, a in self._alerts.items() if not a.active][: max(0, excess)]:
            del self._alerts[alert_id]
            self.dropped += 1

    def patients(self) -> list[str]:
        """Patients with something unsaved, in the order their first unsaved change was made."""
        seen = dict.fromkeys([a.patient_id for a in self._alerts.values()] + [m.patient_id for m in self._mutes])
        return list(seen)

    def of(self, patient_id: str) -> tuple[list[Alert], list[Mute]]:
        """One patient's unsaved alert rows and mute changes, to write in one transaction."""
        alerts = [a for a in self._alerts.values() if a.patient_id == patient_id]
        return alerts, [m for m in self._mutes if m.patient_id == patient_id]

    def discard(self, patient_id: str) -> None:
        """Forget a patient's changes: written, or no longer this agent's to write."""
        for alert_id in [k for k, a in self._alerts.items() if a.patient_id == patient_id]:
            del self._alerts[alert_id]
        self._mutes = [m for m in self._mutes if m.patient_id != patient_id]

    def find(self, alert_id: str) -> Alert | None:
        return self._alerts.get(alert_id)

    def latest_mute(self, patient_id: str) -> Mute | None:
        """The patient's newest unsaved mute change: its mute state while the store cannot be read."""
        return next((m for m in reversed(self._mutes) if m.patient_id == patient_id), None)
