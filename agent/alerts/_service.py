"""The alert service: runs the policy, keeps the store in step, and publishes lifecycle messages.

Thin on purpose: every decision is :meth:`AlertPolicy.decide`; this class stamps observations with the clock,
serialises patients' state behind one lock (forecast, ack and timer paths may be different threads), saves what
changed before publishing it (a crash after saving re-publishes nothing twice and loses nothing), and sends each event
to ``<prefix>/<patient_id>/alert`` at QoS 1, not retained. A change of a patient's forecast mute is stored in the
mute history and published retained on ``<prefix>/<patient_id>/alert/muted``.

When the store fails (disk full, file locked, unwritable or removed, database unreachable) the alert path goes on:
a nurse must hear an alert whether or not it could be written. Decisions are made from the state in memory, events
are published, and what the store refused is held (:class:`UnsavedChanges`) and written back once a retry, every
``STORE_RETRY_S`` from :meth:`tick`, finds the store working; :meth:`store_health` says which, for ``/readyz``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

import structlog

from core.errors import BrokerError, LifecycleError, ProtocolError
from core.protocol import Topics

from ._evidence import Evidence
from ._model import Ack, Alert, AlertEvent, Mute, MuteRequest
from ._pg_store import Fence, PostgresAlertStore, StaleEpochError
from ._policy import (
    AckReceived,
    AlertPolicy,
    CannotAssess,
    EctopyMeasured,
    ForecastSeen,
    MuteRequested,
    Observation,
    PatientAlerts,
    PatientResolved,
    TimerTick,
)
from ._store import AlertStore, StoreUnavailable
from ._unsaved import StoreHealth, UnsavedChanges
from .settings import AlertSettings

if TYPE_CHECKING:  # annotations only: importing them at run time pulls in transformers and scipy
    from core.measurements import EctopyBurden
    from llm_runtime.forecast import Forecast

__all__ = [
    "ALERT_QOS",
    "STORE_RETRY_S",
    "AlertService",
    "FenceOf",
    "Listener",
    "Publish",
    "StoreWatcher",
    "open_alert_store",
]

log = structlog.get_logger(__name__)

Publish = Callable[[str, bytes, int, bool], None]  # (topic, payload, qos, retain)
FenceOf = Callable[[str], Fence | None]  # patient id -> this replica's claim on it, None when it is not ours
Listener = Callable[[AlertEvent], None]  # told each published lifecycle event (the HL7 gateway); must not block
StoreWatcher = Callable[[StoreHealth], None]  # told when the store fails and when it recovers; must not block
ALERT_QOS = 1
STORE_RETRY_S: Final = 5.0  # between attempts to reopen a failed store and write back what it refused


@dataclass
class _Outage:
    """The store failed at ``since`` (service clock) and is retried at ``retry_at``."""

    reason: str
    since: float
    retry_at: float


def open_alert_store(settings: AlertSettings, store_path: Path | str | None = None) -> AlertStore | PostgresAlertStore:
    """The shared PostgreSQL store when ``alerts.store_url`` is set, else the SQLite file (``store_path`` wins)."""
    if settings.store_url is not None and store_path is None:
        return PostgresAlertStore(settings.store_url)
    return AlertStore(settings.store_path if store_path is None else store_path)


class AlertService:
    """Alert lifecycle for every patient of this agent. Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        settings: AlertSettings,
        store_path: Path | str | None,
        publish: Publish,
        topics: Topics,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] | None = None,
        fence: FenceOf | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        """Open the store and reload active alerts and mutes, so a restart neither loses them nor raises them again.

        With ``fence`` (a cluster replica) nothing is preloaded: a patient's active alerts are read from the shared
        store when this replica first handles it, observations of patients it does not own are ignored, and every
        write carries the owner's epoch so a replica that lost the partition cannot overwrite the new owner's state.

        ``listeners`` are told every lifecycle event after it is stored and published (the HL7 gateway queues it).
        """
        self._policy = AlertPolicy(settings, new_id)
        self._store = open_alert_store(settings, store_path)
        self._fence = fence
        self._listeners = tuple(listeners)
        self._publish = publish
        self._topics = topics
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        self._patients: dict[str, PatientAlerts] = {}
        self._unsaved = UnsavedChanges()  # what the store refused, until it takes it
        self._outage: _Outage | None = None
        self._failures = 0
        self._blind: set[str] = set()  # patients first met while the store could not be read
        self._watchers: list[StoreWatcher] = []
        self._told_ok = True  # the store health the watchers were last told
        by_patient: dict[str, list[Alert]] = {}
        for alert in self._store.active() if fence is None else []:
            by_patient.setdefault(alert.patient_id, []).append(alert)
        mutes = {m.patient_id: m for m in self._store.active_mutes(clock())} if fence is None else {}
        for patient_id in by_patient.keys() | mutes.keys():
            alerts = by_patient.get(patient_id, [])
            self._patients[patient_id] = PatientAlerts.from_active(patient_id, alerts, mutes.get(patient_id))
        active = sum(map(len, by_patient.values()))
        log.info("alerts_reloaded", patients=len(self._patients), active=active, muted=len(mutes))

    def __enter__(self) -> AlertService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def on_forecast(self, patient_id: str, forecast: Forecast, evidence: Evidence) -> list[AlertEvent]:
        """Feed one validated forecast; returns the lifecycle events published (often none)."""
        if forecast.patient_id != patient_id:
            raise ProtocolError("wrong_patient", f"forecast for {forecast.patient_id!r} fed as {patient_id!r}")
        return self._apply(patient_id, ForecastSeen(self._clock(), forecast, evidence))

    def would_raise(self, patient_id: str, forecast: Forecast, evidence: Evidence) -> str | None:
        """The arrhythmia of the new forecast alert that feeding ``forecast`` now would raise (None: none): the
        policy's decision on the current state, stored and published nowhere. The agent asks before
        :meth:`on_forecast` so that the costly LM rationale is generated only for the forecasts that will carry one
        into an alert, and about that alert's arrhythmia."""
        with self._lock:
            self._check_open()
            _, events = self._policy.decide(self._current(patient_id), ForecastSeen(self._clock(), forecast, evidence))
        raised = [e.after.arrhythmia for e in events if e.type == "new" and e.after.kind == "forecast"]
        return next((a for a in raised if a is not None), None)

    def on_cannot_assess(self, patient_id: str, evidence: Evidence, problem: str | None = None) -> list[AlertEvent]:
        """The scheduler found the signal too poor to forecast: publish 'cannot assess', never a silent negative."""
        return self._apply(patient_id, CannotAssess(self._clock(), evidence, problem))

    def on_ectopy(self, patient_id: str, windows: Sequence[EctopyBurden], lead: str | None = None) -> list[AlertEvent]:
        """Feed one rhythm monitor refresh (its windows, shortest first): the "PVC burden high" advisory."""
        return self._apply(patient_id, EctopyMeasured(self._clock(), lead, tuple(windows)))

    def tick(self, now: float | None = None) -> list[AlertEvent]:
        """Re-notification timers for every patient (call about once a second)."""
        at = self._clock() if now is None else now
        self._recover_store()
        with self._lock:
            patients = list(self._patients)
        events: list[AlertEvent] = []
        for patient_id in patients:
            events.extend(self._apply(patient_id, TimerTick(at)))
        self._tell_watchers()
        return events

    def acknowledge(self, ack: Ack) -> Alert:
        """Apply a decoded ack; returns the alert after it. Raises ProtocolError(reason) for an invalid one."""
        with self._lock:
            self._check_open()
            stored = self._find(ack.alert_id, ack.patient_id)
        if stored is None:
            raise ProtocolError("unknown_alert", f"no alert {ack.alert_id!r}", "alert_id")
        if stored.patient_id != ack.patient_id:
            raise ProtocolError("wrong_patient", f"alert {ack.alert_id!r} belongs to another patient", "alert_id")
        if not stored.active:
            raise ProtocolError("already_ended", f"alert {ack.alert_id!r} is already {stored.state}", "alert_id")
        at = ack.at if ack.at is not None else self._clock()
        if at < stored.raised_at:
            detail = f"the ack is dated {stored.raised_at - at:.1f} s before alert {ack.alert_id!r} was raised"
            raise ProtocolError("before_raised", detail, "at")
        events = self._apply(ack.patient_id, AckReceived(at, ack))
        if events:
            return events[0].after
        return stored  # already acknowledged: the ack changed nothing

    def mute(self, request: MuteRequest) -> Mute | None:
        """Apply a decoded mute or unmute request, stamped with this service's clock; returns the patient's mute
        state after it (None when it was never muted, or when another replica owns the patient)."""
        self._apply(request.patient_id, MuteRequested(self._clock(), request))
        return self.mute_state(request.patient_id)

    def mute_state(self, patient_id: str) -> Mute | None:
        """The latest change of the patient's forecast mute that this service holds."""
        with self._lock:
            state = self._patients.get(patient_id)
            return state.mute if state else None

    def mute_history(self, patient_id: str, limit: int = 50) -> list[Mute]:
        """A patient's stored mute changes, newest first; while the store fails, those held in memory."""
        with self._lock:
            self._check_open()
            if self._outage is None:
                try:
                    return self._store.mute_history(patient_id, limit)
                except StoreUnavailable as exc:
                    self._fault(exc)
            held = list(reversed(self._unsaved.of(patient_id)[1]))
            state = self._patients.get(patient_id)
            return (held or ([state.mute] if state and state.mute else []))[:limit]

    def resolve_patient(self, patient_id: str, reason: str) -> list[AlertEvent]:
        """End every active alert of a patient who left monitoring (discharge, stream evicted)."""
        return self._apply(patient_id, PatientResolved(self._clock(), reason))

    def release(self, patient_ids: list[str]) -> None:
        """Forget patients another replica took over, without ending their alerts: the new owner continues them."""
        with self._lock:
            for patient_id in patient_ids:
                self._patients.pop(patient_id, None)
                self._blind.discard(patient_id)

    def active(self, patient_id: str) -> list[Alert]:
        with self._lock:
            state = self._patients.get(patient_id)
            return state.active() if state else []

    def history(self, patient_id: str, limit: int = 50) -> list[Alert]:
        """A patient's stored alerts, newest first; while the store fails, the alerts held in memory (active, and
        those changed since the failure), so the station's detail view still lists what is going on."""
        with self._lock:
            self._check_open()
            if self._outage is None:
                try:
                    return self._store.history(patient_id, limit)
                except StoreUnavailable as exc:
                    self._fault(exc)
            held = {a.alert_id: a for a in self._unsaved.of(patient_id)[0]}
            state = self._patients.get(patient_id)
            held.update((a.alert_id, a) for a in (state.active() if state else []))
            return sorted(held.values(), key=lambda a: -a.raised_at)[:limit]

    def store_health(self) -> StoreHealth:
        """Whether the store takes writes now; while it does not, why, since when and how much is held."""
        with self._lock:
            outage = self._outage
            return StoreHealth(
                ok=outage is None,
                store=str(self._store.path),
                reason=outage.reason if outage else None,
                since=outage.since if outage else None,
                unsaved=len(self._unsaved),
                failures=self._failures,
                dropped=self._unsaved.dropped,
            )

    def watch_store(self, watcher: StoreWatcher) -> None:
        """Tell ``watcher`` each time the store fails or recovers (from :meth:`tick`, outside the service's lock, so
        it may call back into this service or into the station)."""
        with self._lock:
            self._watchers.append(watcher)

    def close(self) -> None:
        """Idempotent; the service refuses work afterwards. What a failed store still refuses is logged as lost."""
        with self._lock:
            if not self._closed and self._outage is not None:
                self._last_write_back()
            self._closed = True
            self._store.close()

    def _last_write_back(self) -> None:
        """One more try at shutdown; a failure costs the held changes (the alerts were published), said loudly."""
        try:
            self._store.reopen()
            self._write_back()
        except StoreUnavailable as exc:
            log.error(
                "alert_store_unsaved_lost", store=str(self._store.path), unsaved=len(self._unsaved), reason=str(exc)
            )

    def _apply(self, patient_id: str, obs: Observation) -> list[AlertEvent]:
        fence = self._fence(patient_id) if self._fence is not None else None
        if self._fence is not None and fence is None:
            self.release([patient_id])
            return []  # another replica owns this patient now: it alone decides and speaks
        with self._lock:
            self._check_open()
            prev = self._current(patient_id)
            state, events = self._policy.decide(prev, obs)
            mutes = [state.mute] if state.mute is not None and state.mute is not prev.mute else []
            try:
                self._save(_changed(prev, state, events), fence, mutes)
            except StaleEpochError as exc:
                self._patients.pop(patient_id, None)
                log.warning("alert_write_fenced", patient_id=patient_id, detail=str(exc))
                return []
            if isinstance(obs, PatientResolved):
                self._patients.pop(patient_id, None)  # forget a patient who left, persistence windows included
            else:
                self._patients[patient_id] = state
            for event in events:
                self._send(event)
            for mute in mutes:
                self._send_mute(mute)
        return events

    def _current(self, patient_id: str) -> PatientAlerts:
        """The patient's alert state: in memory, else its stored active alerts. Call with the lock held."""
        return self._patients.get(patient_id) or self._load(patient_id)

    def _load(self, patient_id: str) -> PatientAlerts:
        """A patient met for the first time (or again after a handover): its stored active alerts and its latest
        mute change, if any. While the store cannot be read, what memory holds of it (often nothing): the patient is
        then reconciled with the store on recovery."""
        if self._outage is None:
            try:
                latest = self._store.mute_history(patient_id, 1)
                active = self._store.active_for(patient_id)
                return PatientAlerts.from_active(patient_id, active, latest[0] if latest else None)
            except StoreUnavailable as exc:
                self._fault(exc)
        self._blind.add(patient_id)
        held = [a for a in self._unsaved.of(patient_id)[0] if a.active]
        return PatientAlerts.from_active(patient_id, held, self._unsaved.latest_mute(patient_id))

    def _find(self, alert_id: str, patient_id: str) -> Alert | None:
        """The alert an ack names: the patient's active alerts in memory first (they are current, and need no
        store), then the store. Call with the lock held."""
        state = self._patients.get(patient_id)
        held = next((a for a in state.active() if a.alert_id == alert_id), None) if state else None
        held = held or self._unsaved.find(alert_id)
        if held is not None:
            return held
        if self._outage is None:
            try:
                return self._store.get(alert_id)
            except StoreUnavailable as exc:
                self._fault(exc)
        raise ProtocolError("store_unavailable", "the alert store is failing and this alert is not active", "alert_id")

    # --- store faults -------------------------------------------------------------------------------------------

    def _save(self, rows: list[Alert], fence: Fence | None, mutes: list[Mute]) -> None:
        """Store what changed; while the store fails, hold it. StaleEpochError (a fenced replica) still raises."""
        if not rows and not mutes:
            return
        if self._outage is None:
            try:
                self._store.save(rows, fence, mutes)
                return
            except StoreUnavailable as exc:
                self._fault(exc)
        self._unsaved.add(rows, mutes)

    def _fault(self, exc: StoreUnavailable) -> None:
        """Note a store failure: the first of an outage is an error event, a failed retry a (rate-limited) warning.
        Call with the lock held."""
        self._failures += 1
        now = self._clock()
        store = str(self._store.path)
        if self._outage is None:
            self._outage = _Outage(str(exc), now, now + STORE_RETRY_S)
            note = "forecasts and alerts go on; changes are held in memory until the store takes them"
            log.error("alert_store_failed", store=store, reason=str(exc), note=note)
            return
        self._outage = replace(self._outage, reason=str(exc), retry_at=now + STORE_RETRY_S)
        log.warning("alert_store_still_failing", store=store, reason=str(exc), unsaved=len(self._unsaved))

    def _recover_store(self) -> None:
        """If a retry is due: reopen the store (outside the lock: a reconnect may take seconds, and nothing touches
        the store during an outage), then write back what it refused and reconcile."""
        with self._lock:
            outage = self._outage
            if self._closed or outage is None or self._clock() < outage.retry_at:
                return
            outage.retry_at = self._clock() + STORE_RETRY_S  # claimed: one retry at a time
        try:
            self._store.reopen()
        except StoreUnavailable as exc:
            with self._lock:
                self._fault(exc)
            return
        except LifecycleError:
            return  # closed meanwhile
        with self._lock:
            try:
                written = self._write_back()
            except StoreUnavailable as exc:
                self._fault(exc)
                return
            self._outage = None
            log.info(
                "alert_store_recovered",
                store=str(self._store.path),
                outage_s=round(self._clock() - outage.since, 1),
                written=written,
            )

    def _write_back(self) -> int:
        """After a reopen: what the store refused, then the patients decided blind, then every active alert; how
        many held changes were written. Raises StoreUnavailable."""
        written = self._flush()
        self._reconcile_blind()
        self._write_back_active()
        return written

    def _flush(self) -> int:
        """Write the held changes; how many were written. Raises StoreUnavailable, keeping what is not written."""
        if self._fence is None:  # one agent, one file: one transaction
            patients = self._unsaved.patients()
            changes = [self._unsaved.of(p) for p in patients]
            alerts, mutes = [a for c in changes for a in c[0]], [m for c in changes for m in c[1]]
            self._store.save(alerts, None, mutes)
            for patient_id in patients:
                self._unsaved.discard(patient_id)
            return len(alerts) + len(mutes)
        fence_of = self._fence
        return sum(self._flush_fenced(pid, fence_of(pid)) for pid in self._unsaved.patients())

    def _flush_fenced(self, patient_id: str, fence: Fence | None) -> int:
        """A replica writes each patient under its own fence (None: another replica owns the patient now, so what
        is held is dropped: the new owner decides)."""
        alerts, mutes = self._unsaved.of(patient_id)
        written = 0
        if fence is None:
            log.warning("alert_unsaved_dropped", patient_id=patient_id, rows=len(alerts) + len(mutes))
        else:
            try:
                self._store.save(alerts, fence, mutes)
                written = len(alerts) + len(mutes)
            except StaleEpochError as exc:
                self._patients.pop(patient_id, None)
                log.warning("alert_write_fenced", patient_id=patient_id, detail=str(exc))
        self._unsaved.discard(patient_id)
        return written

    def _reconcile_blind(self) -> None:
        """Patients first met while the store could not be read were decided from memory alone: adopt the stored
        active alerts of tracks memory has none on, and the stored mute where memory has none."""
        for patient_id in sorted(self._blind):
            state = self._patients.get(patient_id)
            if state is not None:
                latest = self._store.mute_history(patient_id, 1)
                self._patients[patient_id] = _adopt(state, self._store.active_for(patient_id), latest)
        self._blind.clear()

    def _write_back_active(self) -> None:
        """Every active alert and mute in force as memory holds them: a store file that was removed and created
        anew (or replaced) has lost them, and an upsert of what is already there changes nothing. A replica leaves
        this to its shared database, which is not recreated under it."""
        if self._fence is not None:
            return
        alerts = [a for state in self._patients.values() for a in state.active()]
        mutes = [
            state.mute
            for pid, state in self._patients.items()
            if state.mute is not None and self._store.mute_history(pid, 1) != [state.mute]
        ]
        self._store.save(alerts, None, mutes)

    def _tell_watchers(self) -> None:
        """Tell the watchers of a change of the store's health; outside the lock (see :meth:`watch_store`)."""
        health = self.store_health()
        with self._lock:
            if health.ok == self._told_ok:
                return
            self._told_ok = health.ok
            watchers = list(self._watchers)
        for watcher in watchers:
            try:
                watcher(health)
            except Exception:  # a watcher's bug must not stop re-notification
                log.exception("alert_store_watcher_failed")

    def _send(self, event: AlertEvent) -> None:
        after = event.after
        log.info(
            "alert_event",
            patient_id=after.patient_id,
            alert_id=after.alert_id,
            type=event.type,
            reason=event.reason,
            state=after.state,
            priority=after.priority,
            arrhythmia=after.arrhythmia,
        )
        topic = self._topics.alert(after.patient_id)
        self._publish_stored(topic, event.payload(), False, patient_id=after.patient_id, alert_id=after.alert_id)
        self._notify(event)

    def _notify(self, event: AlertEvent) -> None:
        """Tell the listeners (the HL7 gateway): one that fails is logged and never reaches the alert path."""
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a listener's bug must not stop MQTT alerts or the store
                log.exception("alert_listener_failed", alert_id=event.after.alert_id)

    def _send_mute(self, mute: Mute) -> None:
        """Retained, so a screen that connects later still reads "forecasts muted until ..."."""
        log.info("alert_mute", patient_id=mute.patient_id, action=mute.action, by=mute.by, until=mute.until)
        self._publish_stored(
            self._topics.alert_muted(mute.patient_id), mute.payload(), True, patient_id=mute.patient_id
        )

    def _publish_stored(self, topic: str, payload: bytes, retain: bool, **context: object) -> None:
        """Publish what is already stored: a broker failure is logged, and re-notification (or the next change)
        still reaches the nurse once the broker is back."""
        try:
            self._publish(topic, payload, ALERT_QOS, retain)
        except (BrokerError, LifecycleError, OSError) as exc:
            log.error("alert_publish_failed", topic=topic, error=str(exc), **context)

    def _check_open(self) -> None:
        if self._closed:
            raise LifecycleError("alert service is closed")


def _adopt(state: PatientAlerts, stored: list[Alert], latest_mute: list[Mute]) -> PatientAlerts:
    """``state`` with the stored active alerts on tracks it holds none on, and the stored mute if it has none. A
    stored alert on a track that memory raised anew meanwhile is logged and left as it is."""
    for alert in stored:
        held = state.track(alert.key).alert
        if held is None:
            state = state.with_track(alert.key, replace(state.track(alert.key), alert=alert))
        elif held.alert_id != alert.alert_id:
            log.warning("alert_store_conflict", patient_id=state.patient_id, kept=held.alert_id, stored=alert.alert_id)
    if state.mute is None and latest_mute:
        state = replace(state, mute=latest_mute[0])
    return state


def _changed(prev: PatientAlerts, state: PatientAlerts, events: list[AlertEvent]) -> list[Alert]:
    """Alerts whose row must be rewritten: every event's ``after`` and every silently refreshed active alert."""
    rows = {e.after.alert_id: e.after for e in events}
    for key, track in state.tracks.items():
        if track.alert is not None and track.alert is not prev.track(key).alert:
            rows[track.alert.alert_id] = track.alert
    return list(rows.values())
