"""The alert service: runs the policy, keeps the store in step, and publishes lifecycle messages.

Thin on purpose: every decision is :meth:`AlertPolicy.decide`; this class stamps observations with the clock,
serialises patients' state behind one lock (forecast, ack and timer paths may be different threads), saves what
changed before publishing it (a crash after saving re-publishes nothing twice and loses nothing), and sends each event
to ``<prefix>/<patient_id>/alert`` at QoS 1, not retained. A change of a patient's forecast mute is stored in the
mute history and published retained on ``<prefix>/<patient_id>/alert/muted``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

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
    ForecastSeen,
    MuteRequested,
    Observation,
    PatientAlerts,
    PatientResolved,
    TimerTick,
)
from ._store import AlertStore
from .settings import AlertSettings

if TYPE_CHECKING:  # annotations only: importing it at run time pulls in transformers
    from llm_runtime.forecast import Forecast

__all__ = ["ALERT_QOS", "AlertService", "FenceOf", "Listener", "Publish", "open_alert_store"]

log = structlog.get_logger(__name__)

Publish = Callable[[str, bytes, int, bool], None]  # (topic, payload, qos, retain)
FenceOf = Callable[[str], Fence | None]  # patient id -> this replica's claim on it, None when it is not ours
Listener = Callable[[AlertEvent], None]  # told each published lifecycle event (the HL7 gateway); must not block
ALERT_QOS = 1


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

    def would_raise(self, patient_id: str, forecast: Forecast, evidence: Evidence) -> bool:
        """Whether feeding ``forecast`` now would raise a new forecast alert: the policy's decision on the current
        state, stored and published nowhere. The agent asks before :meth:`on_forecast` so that the costly LM
        rationale is generated only for the forecasts that will carry one into an alert."""
        with self._lock:
            self._check_open()
            _, events = self._policy.decide(self._current(patient_id), ForecastSeen(self._clock(), forecast, evidence))
        return any(e.type == "new" and e.after.kind == "forecast" for e in events)

    def on_cannot_assess(self, patient_id: str, evidence: Evidence, problem: str | None = None) -> list[AlertEvent]:
        """The scheduler found the signal too poor to forecast: publish 'cannot assess', never a silent negative."""
        return self._apply(patient_id, CannotAssess(self._clock(), evidence, problem))

    def tick(self, now: float | None = None) -> list[AlertEvent]:
        """Re-notification timers for every patient (call about once a second)."""
        at = self._clock() if now is None else now
        with self._lock:
            patients = list(self._patients)
        events: list[AlertEvent] = []
        for patient_id in patients:
            events.extend(self._apply(patient_id, TimerTick(at)))
        return events

    def acknowledge(self, ack: Ack) -> Alert:
        """Apply a decoded ack; returns the alert after it. Raises ProtocolError(reason) for an invalid one."""
        with self._lock:
            self._check_open()
            stored = self._store.get(ack.alert_id)
        if stored is None:
            raise ProtocolError("unknown_alert", f"no alert {ack.alert_id!r}", "alert_id")
        if stored.patient_id != ack.patient_id:
            raise ProtocolError("wrong_patient", f"alert {ack.alert_id!r} belongs to another patient", "alert_id")
        if not stored.active:
            raise ProtocolError("already_ended", f"alert {ack.alert_id!r} is already {stored.state}", "alert_id")
        at = ack.at if ack.at is not None else self._clock()
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
        """A patient's stored mute changes, newest first."""
        with self._lock:
            self._check_open()
            return self._store.mute_history(patient_id, limit)

    def resolve_patient(self, patient_id: str, reason: str) -> list[AlertEvent]:
        """End every active alert of a patient who left monitoring (discharge, stream evicted)."""
        return self._apply(patient_id, PatientResolved(self._clock(), reason))

    def release(self, patient_ids: list[str]) -> None:
        """Forget patients another replica took over, without ending their alerts: the new owner continues them."""
        with self._lock:
            for patient_id in patient_ids:
                self._patients.pop(patient_id, None)

    def active(self, patient_id: str) -> list[Alert]:
        with self._lock:
            state = self._patients.get(patient_id)
            return state.active() if state else []

    def history(self, patient_id: str, limit: int = 50) -> list[Alert]:
        """A patient's stored alerts, newest first."""
        with self._lock:
            self._check_open()
            return self._store.history(patient_id, limit)

    def close(self) -> None:
        """Idempotent; the service refuses work afterwards."""
        with self._lock:
            self._closed = True
            self._store.close()

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
                self._store.save(_changed(prev, state, events), fence, mutes)
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
        mute change, if any."""
        latest = self._store.mute_history(patient_id, 1)
        return PatientAlerts.from_active(patient_id, self._store.active_for(patient_id), latest[0] if latest else None)

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


def _changed(prev: PatientAlerts, state: PatientAlerts, events: list[AlertEvent]) -> list[Alert]:
    """Alerts whose row must be rewritten: every event's ``after`` and every silently refreshed active alert."""
    rows = {e.after.alert_id: e.after for e in events}
    for key, track in state.tracks.items():
        if track.alert is not None and track.alert is not prev.track(key).alert:
            rows[track.alert.alert_id] = track.alert
    return list(rows.values())
