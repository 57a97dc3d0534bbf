"""The alert policy: a pure function from (previous patient state, observation) to (new state, lifecycle events).

No MQTT, no SQLite, no clock: the service feeds observations stamped with the time and persists and publishes what
comes back, so every rule (threshold, k-of-n persistence, hysteresis, quality suppression, de-duplication,
re-notification, escalation, acknowledgement, per-patient forecast mute, present rhythms and the forecast they stand
down) is tested by calling :meth:`AlertPolicy.decide` directly.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, assert_never

from core.errors import ProtocolError

from ._ectopy import Judgement, ectopy_evidence, ectopy_text, judge
from ._evidence import Evidence, quality_problem
from ._explain import RHYTHM_NAMES, cannot_assess_text, forecast_text, present_text
from ._model import Ack, Alert, AlertEvent, AlertWindow, Mute, MuteRequest, present_key
from ._present import RhythmRun, absent_s, measured_run
from .settings import (
    ARRHYTHMIAS,
    FORECAST_CEILING,
    PRESENT_RHYTHMS,
    PRIORITY_ORDER,
    AfDetection,
    AlertSettings,
    ArrhythmiaPolicy,
    EctopyAdvisory,
    PolicySettings,
    VtDetection,
)

if TYPE_CHECKING:  # annotations only: importing them at run time pulls in transformers and scipy
    from core.measurements import EctopyBurden
    from llm_runtime.forecast import Forecast

__all__ = [
    "CANNOT_ASSESS",
    "ECTOPY",
    "AckReceived",
    "AlertPolicy",
    "CannotAssess",
    "EctopyMeasured",
    "ForecastSeen",
    "MuteRequested",
    "Observation",
    "PatientAlerts",
    "PatientResolved",
    "TimerTick",
    "Track",
]

CANNOT_ASSESS = "cannot_assess"  # track key of the signal-quality alert, beside af / flutter / vt
ECTOPY = "ectopy"  # track key of the "PVC burden high" advisory (the key of an alert of kind "ectopy")


@dataclass(frozen=True)
class Track:
    """Policy memory for one patient and one arrhythmia (or the signal-quality track)."""

    recent: tuple[bool, ...] = ()  # positivity of the last persistence_n assessable forecasts, newest last
    margins: tuple[float, ...] = ()  # strictly rising margins above threshold since the last escalation
    below: int = 0  # consecutive forecasts under the clearing level while active
    alert: Alert | None = None  # the one active alert of this track (de-duplication)
    since_s: float | None = None  # present rhythm, ectopy: stream time the tracked run began (of the rhythm or the
    #                                high burden before it is raised, of its absence while the alert is active)
    seen_s: float | None = None  # present rhythm, ectopy: stream time of the end of the last window judged


@dataclass(frozen=True)
class PatientAlerts:
    """Everything the policy remembers about one patient."""

    patient_id: str
    tracks: Mapping[str, Track] = field(default_factory=dict)
    mute: Mute | None = None  # the latest change of the patient's forecast mute, if any

    def track(self, key: str) -> Track:
        return self.tracks.get(key, Track())

    def with_track(self, key: str, track: Track) -> PatientAlerts:
        return replace(self, tracks={**self.tracks, key: track})

    def active(self) -> list[Alert]:
        return [t.alert for t in self.tracks.values() if t.alert is not None]

    def muted(self, at: float) -> bool:
        """Whether forecast alerts are muted at ``at`` (technical alerts never are)."""
        return self.mute is not None and self.mute.active(at)

    @classmethod
    def from_active(cls, patient_id: str, alerts: Iterable[Alert], mute: Mute | None = None) -> PatientAlerts:
        """State after a restart: the stored active alerts and mute, with empty persistence windows."""
        return cls(patient_id, {a.key: Track(alert=a) for a in alerts}, mute)


@dataclass(frozen=True)
class ForecastSeen:
    at: float  # wall-clock seconds
    forecast: Forecast
    evidence: Evidence


@dataclass(frozen=True)
class CannotAssess:
    at: float
    evidence: Evidence
    problem: str | None = None  # plain-words reason; derived from the evidence when None


@dataclass(frozen=True)
class TimerTick:
    at: float


@dataclass(frozen=True)
class AckReceived:
    at: float
    ack: Ack


@dataclass(frozen=True)
class PatientResolved:
    """The patient left monitoring (discharged, stream evicted): every active alert is resolved."""

    at: float
    reason: str


@dataclass(frozen=True)
class MuteRequested:
    """A nurse mutes the patient's forecast alerts for a while (known paroxysmal AF, a paced patient), or unmutes."""

    at: float
    request: MuteRequest


@dataclass(frozen=True)
class EctopyMeasured:
    """A rhythm monitor refresh: its windows (shortest first) and the lead their newest beats were labelled on."""

    at: float
    lead: str | None
    windows: tuple[EctopyBurden, ...]


Observation = ForecastSeen | CannotAssess | TimerTick | AckReceived | PatientResolved | MuteRequested | EctopyMeasured
Decision = tuple[PatientAlerts, list[AlertEvent]]


@dataclass(frozen=True)
class _Reading:
    """One forecast seen through one arrhythmia's thresholds."""

    horizon_s: int  # most urgent horizon over threshold, else the one with the largest margin
    probability: float
    threshold: float
    margin: float  # max over horizons of probability minus threshold
    positive: bool  # some horizon at or over its threshold
    clearing: bool  # every horizon under its threshold minus the hysteresis


def _read(forecast: Forecast, arrhythmia: str, policy: ArrhythmiaPolicy, hysteresis: float) -> _Reading:
    rows = [(h, forecast.onset_probs[h][arrhythmia], policy.threshold(h)) for h in sorted(forecast.horizons_s)]
    over = [row for row in rows if row[1] >= row[2]]
    h, p, t = over[0] if over else max(rows, key=lambda row: row[1] - row[2])
    return _Reading(
        horizon_s=h,
        probability=p,
        threshold=t,
        margin=max(p_ - t_ for _, p_, t_ in rows),
        positive=bool(over),
        clearing=all(p_ < t_ - hysteresis for _, p_, t_ in rows),
    )


class AlertPolicy:
    """Turns observations into alert lifecycle events. ``new_id`` is injectable so tests get stable ids."""

    def __init__(self, settings: AlertSettings, new_id: Callable[[], str] | None = None) -> None:
        self._settings = settings
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        self._per_patient: dict[str, PolicySettings] = {}

    def for_patient(self, patient_id: str) -> PolicySettings:
        if patient_id not in self._per_patient:
            self._per_patient[patient_id] = self._settings.for_patient(patient_id)
        return self._per_patient[patient_id]

    def decide(self, prev: PatientAlerts, obs: Observation) -> Decision:
        """New state and the lifecycle events to publish (in order). Raises ProtocolError for an invalid ack.

        A mute whose time is up expires first, whatever the observation, so no forecast is judged under it."""
        prev = _expire_mute(prev, obs.at)
        match obs:
            case ForecastSeen():
                return self._forecast(prev, obs)
            case CannotAssess():
                problem = obs.problem or quality_problem(obs.evidence, self.for_patient(prev.patient_id).quality)
                return self._cannot_assess(prev, obs.at, obs.evidence, problem or "scheduler reported insufficient")
            case TimerTick():
                return self._renotify(prev, obs.at)
            case AckReceived():
                return self._acknowledge(prev, obs)
            case PatientResolved():
                return self._resolve_all(prev, obs.at, obs.reason)
            case MuteRequested():
                return _mute(prev, obs)
            case EctopyMeasured():
                return self._ectopy(prev, obs)
            case _:
                assert_never(obs)

    # -- forecasts -------------------------------------------------------------------------------------------------

    def _forecast(self, prev: PatientAlerts, obs: ForecastSeen) -> Decision:
        policy = self.for_patient(prev.patient_id)
        problem = quality_problem(obs.evidence, policy.quality)
        if problem is not None:
            return self._cannot_assess(prev, obs.at, obs.evidence, problem)  # suppressed, never a silent negative
        state, events = prev, list[AlertEvent]()
        quality_alert = prev.track(CANNOT_ASSESS).alert
        if quality_alert is not None:
            ended = quality_alert.transition(obs.at, "cleared", "signal quality recovered", ended_at=obs.at)
            state = state.with_track(CANNOT_ASSESS, Track())
            events.append(AlertEvent("end", quality_alert, ended, "cleared"))
        for rhythm in PRESENT_RHYTHMS:  # never muted: a measured rhythm is not a forecast
            track, new_events = self._present(state.track(present_key(rhythm)), rhythm, policy, obs)
            state = state.with_track(present_key(rhythm), track)
            events.extend(new_events)
        if state.muted(obs.at):
            return state, events  # forecast tracks stay empty until the mute ends: persistence starts afresh
        warm_up = policy.min_forecast_window_s
        if warm_up is not None and obs.forecast.window_s < warm_up:
            return state, events  # a warming-up window: not scored for persistence, active alerts left as they are
        for arrhythmia in ARRHYTHMIAS:
            if not policy.arrhythmia(arrhythmia).enabled:
                track, new_events = _disabled(state.track(arrhythmia), obs.at, DISABLED_REASON)
            elif state.track(present_key(arrhythmia)).alert is not None:
                track, new_events = _stand_down(state.track(arrhythmia), arrhythmia, obs.at)
            else:
                track, new_events = self._step(state.track(arrhythmia), arrhythmia, policy, obs)
            state = state.with_track(arrhythmia, track)
            events.extend(new_events)
        return state, events

    def _step(
        self, track: Track, arrhythmia: str, policy: PolicySettings, obs: ForecastSeen
    ) -> tuple[Track, list[AlertEvent]]:
        reading = _read(obs.forecast, arrhythmia, policy.arrhythmia(arrhythmia), policy.hysteresis)
        if track.alert is None:
            recent = (*track.recent, reading.positive)[-policy.persistence_n :]
            if reading.positive and sum(recent) >= policy.persistence_k:
                alert = self._raise(arrhythmia, policy, reading, obs)
                return Track(margins=(reading.margin,), alert=alert), [AlertEvent("new", None, alert, "raised")]
            return replace(track, recent=recent), []
        below = track.below + 1 if reading.clearing else 0
        refreshed = self._refresh(track.alert, reading, obs)
        if below >= policy.clear_after:
            ended = refreshed.transition(obs.at, "cleared", "risk fell below the clearing level", ended_at=obs.at)
            return Track(), [AlertEvent("end", track.alert, ended, "cleared")]
        margins = _rising(track.margins, reading)
        escalated = self._escalate(refreshed, margins, policy, obs.at)
        if escalated is not None:
            return Track(margins=(reading.margin,), alert=escalated), [
                AlertEvent("update", track.alert, escalated, "escalated")
            ]
        return Track(margins=margins, below=below, alert=refreshed), []

    def _raise(self, arrhythmia: str, policy: PolicySettings, reading: _Reading, obs: ForecastSeen) -> Alert:
        alert = Alert(
            alert_id=self._new_id(),
            patient_id=obs.forecast.patient_id,
            state="raised",
            priority=policy.arrhythmia(arrhythmia).priority,
            kind="forecast",
            arrhythmia=arrhythmia,
            raised_at=obs.at,
            last_notified_at=obs.at,
            **_forecast_fields(arrhythmia, reading, obs),
        )
        return alert.transition(obs.at, "raised", "raised")

    def _refresh(self, alert: Alert, reading: _Reading, obs: ForecastSeen) -> Alert:
        """The alert with this forecast's numbers and evidence; not a lifecycle step, so no transition."""
        assert alert.arrhythmia is not None
        return alert.model_copy(update=_forecast_fields(alert.arrhythmia, reading, obs))

    def _escalate(self, alert: Alert, margins: tuple[float, ...], policy: PolicySettings, at: float) -> Alert | None:
        """One priority level up when risk rose over the configured run of forecasts; the ack is withdrawn."""
        rule = policy.escalation
        configured = PRIORITY_ORDER.index(policy.arrhythmia(alert.arrhythmia or "").max_priority)
        ceiling = min(configured, PRIORITY_ORDER.index(FORECAST_CEILING))  # an advisory never escalates to high
        level = PRIORITY_ORDER.index(alert.priority)
        if len(margins) < rule.rising_forecasts or margins[-1] - margins[0] < rule.min_rise or level >= ceiling:
            return None
        return alert.transition(
            at,
            "raised",
            "escalated",
            priority=PRIORITY_ORDER[level + 1],
            acknowledged_by=None,
            acknowledged_at=None,
            last_notified_at=at,
        )

    # -- present rhythms ---------------------------------------------------------------------------------------------

    def _present(
        self, track: Track, rhythm: str, policy: PolicySettings, obs: ForecastSeen
    ) -> tuple[Track, list[AlertEvent]]:
        """Raise once the rhythm's measured run has lasted ``min_duration_s``; an active alert is held (at the
        lower hold level) until the rhythm has been absent ``clear_after_s``."""
        detection = policy.present_rhythm.rhythm(rhythm)
        if not detection.enabled:
            return _disabled(track, obs.at, PRESENT_DISABLED_REASON)
        if track.alert is not None:
            return _hold(track, rhythm, detection, policy.present_rhythm.clear_after_s, obs)
        run = measured_run(rhythm, obs.evidence.rhythm_spans, detection)
        if not run.present:
            return Track(), []
        end = obs.evidence.t_end_s
        since = _continued(track, run.run_s, end)
        lasted = run.run_s if since is None or end is None else end - since
        if lasted < detection.min_duration_s:
            return Track(since_s=since, seen_s=end), []
        alert = Alert(
            alert_id=self._new_id(),
            patient_id=obs.forecast.patient_id,
            state="raised",
            priority=detection.priority,
            kind="present_rhythm",
            arrhythmia=rhythm,
            raised_at=obs.at,
            last_notified_at=obs.at,
            **_present_fields(rhythm, run, lasted, detection, obs),
        ).transition(obs.at, "raised", "raised")
        return Track(alert=alert), [AlertEvent("new", None, alert, "raised")]

    # -- ectopy burden ----------------------------------------------------------------------------------------------

    def _ectopy(self, prev: PatientAlerts, obs: EctopyMeasured) -> Decision:
        """The "PVC burden high" advisory (docs/ALERTS.md section 14): raised once every refresh for
        ``min_duration_s`` was high, held down to ``clear_below``, cleared once under it for ``clear_after_s``. Never
        muted (it is measured, not a forecast); a refresh that cannot be judged changes nothing."""
        rule = self.for_patient(prev.patient_id).ectopy
        track = prev.track(ECTOPY)
        if not rule.enabled:
            track, events = _disabled(track, obs.at, ECTOPY_DISABLED_REASON)
            return prev.with_track(ECTOPY, track), events
        verdict = judge(obs.windows, rule, holding=track.alert is not None)
        if verdict is None:
            return prev, []
        if track.seen_s is not None and verdict.window.t_end_s < track.seen_s:
            track = Track(alert=track.alert)  # the stream's clock restarted (a new segment): runs start afresh
        if track.alert is not None:
            track, events = _ectopy_hold(track, verdict, rule, obs)
            return prev.with_track(ECTOPY, track), events
        end = verdict.window.t_end_s
        if not verdict.high:
            return prev.with_track(ECTOPY, Track()), []
        since = track.since_s if track.since_s is not None else end
        if end - since < rule.min_duration_s:
            return prev.with_track(ECTOPY, Track(since_s=since, seen_s=end)), []
        alert = Alert(
            alert_id=self._new_id(),
            patient_id=prev.patient_id,
            state="raised",
            priority=rule.priority,
            kind="ectopy",
            raised_at=obs.at,
            last_notified_at=obs.at,
            **_ectopy_fields(verdict, end - since, rule, obs),
        ).transition(obs.at, "raised", "raised")
        return prev.with_track(ECTOPY, Track(alert=alert, seen_s=end)), [AlertEvent("new", None, alert, "raised")]

    # -- signal quality ---------------------------------------------------------------------------------------------

    def _cannot_assess(self, prev: PatientAlerts, at: float, evidence: Evidence, problem: str) -> Decision:
        """One 'cannot assess: signal quality' alert per patient; forecast tracks are left as they are."""
        current = prev.track(CANNOT_ASSESS).alert
        text = cannot_assess_text(problem, evidence)
        if current is not None:
            refreshed = current.model_copy(
                update={"explanation": text, "evidence": evidence.as_dict(), "updated_at": at}
            )
            return prev.with_track(CANNOT_ASSESS, Track(alert=refreshed)), []
        window = None
        if evidence.t_end_s is not None:
            window = AlertWindow(start_s=evidence.t_end_s - evidence.window_s, end_s=evidence.t_end_s)
        alert = Alert(
            alert_id=self._new_id(),
            patient_id=prev.patient_id,
            state="raised",
            priority=self.for_patient(prev.patient_id).quality.priority,
            kind="cannot_assess",
            explanation=text,
            evidence=evidence.as_dict(),
            window=window,
            raised_at=at,
            updated_at=at,
            last_notified_at=at,
        ).transition(at, "raised", "raised")
        return prev.with_track(CANNOT_ASSESS, Track(alert=alert)), [AlertEvent("new", None, alert, "raised")]

    # -- timers, acknowledgements, resolution --------------------------------------------------------------------------

    def _renotify(self, prev: PatientAlerts, at: float) -> Decision:
        policy = self.for_patient(prev.patient_id)
        state, events = prev, list[AlertEvent]()
        for key, track in prev.tracks.items():
            alert = track.alert
            if alert is None or alert.state != "raised" or alert.renotified >= policy.max_renotify:
                continue
            if at - alert.last_notified_at < policy.renotify_after_s:
                continue
            again = alert.transition(at, "raised", "renotified", renotified=alert.renotified + 1, last_notified_at=at)
            state = state.with_track(key, replace(track, alert=again))
            events.append(AlertEvent("update", alert, again, "renotified"))
        return state, events

    def _acknowledge(self, prev: PatientAlerts, obs: AckReceived) -> Decision:
        for key, track in prev.tracks.items():
            alert = track.alert
            if alert is None or alert.alert_id != obs.ack.alert_id:
                continue
            if alert.state == "acknowledged":
                return prev, []  # a redelivered or second ack changes nothing
            acked = alert.transition(
                obs.at,
                "acknowledged",
                "acknowledged",
                by=obs.ack.by,
                acknowledged_by=obs.ack.by,
                acknowledged_at=obs.at,
            )
            return prev.with_track(key, replace(track, alert=acked)), [
                AlertEvent("update", alert, acked, "acknowledged")
            ]
        raise ProtocolError("unknown_alert", f"no active alert {obs.ack.alert_id!r} for patient {prev.patient_id!r}")

    def _resolve_all(self, prev: PatientAlerts, at: float, reason: str) -> Decision:
        """Every active alert ends; a mute stays until it expires (a stream that drops and returns is not a new
        patient)."""
        events = []
        for alert in prev.active():
            ended = alert.transition(at, "resolved", reason, ended_at=at)
            events.append(AlertEvent("end", alert, ended, "resolved"))
        return PatientAlerts(prev.patient_id, mute=prev.mute), events


MUTED_REASON = "forecasts muted"  # the transition reason of a forecast alert ended by a mute


def _mute(prev: PatientAlerts, obs: MuteRequested) -> Decision:
    """Mute: record who, why and until when, and resolve the active forecast alerts (a mute that left them
    re-notifying would silence nothing). Unmute: record who, if a mute is in force; else nothing changes (a
    redelivered request)."""
    req = obs.request
    if req.action == "unmute":
        if not prev.muted(obs.at):
            return prev, []
        unmuted = Mute(patient_id=prev.patient_id, action="unmuted", at=obs.at, by=req.by, reason=req.reason)
        return replace(prev, mute=unmuted), []
    assert req.duration_s is not None
    mute = Mute(
        patient_id=prev.patient_id,
        action="muted",
        at=obs.at,
        by=req.by,
        reason=req.reason,
        until=obs.at + req.duration_s,
    )
    state, events = replace(prev, mute=mute), list[AlertEvent]()
    for arrhythmia in ARRHYTHMIAS:
        alert = state.track(arrhythmia).alert
        if alert is not None:
            ended = alert.transition(obs.at, "resolved", MUTED_REASON, by=req.by, ended_at=obs.at)
            events.append(AlertEvent("end", alert, ended, "resolved"))
        state = state.with_track(arrhythmia, Track())
    return state, events


def _expire_mute(prev: PatientAlerts, at: float) -> PatientAlerts:
    """The state with a mute whose time is up recorded as expired (at its ``until``, not when noticed)."""
    mute = prev.mute
    if mute is None or mute.action != "muted" or mute.active(at):
        return prev
    expired = mute.model_copy(update={"action": "expired", "at": mute.until, "by": None})
    return replace(prev, mute=expired)


def _forecast_fields(arrhythmia: str, reading: _Reading, obs: ForecastSeen) -> dict[str, Any]:
    """What a forecast alert takes from one forecast: numbers, explanation, evidence, window and model."""
    f = obs.forecast
    explanation = forecast_text(
        arrhythmia,
        reading.horizon_s,
        reading.probability,
        reading.threshold,
        obs.evidence,
        f.explanation,
        f.explanation_note,
    )
    return {
        "horizon_s": reading.horizon_s,
        "probability": reading.probability,
        "threshold": reading.threshold,
        "explanation": explanation.text,
        "rationale_note": explanation.rationale_note,
        "evidence": obs.evidence.as_dict(),
        "window": AlertWindow(start_s=f.t_forecast - f.window_s, end_s=f.t_forecast),
        "model_id": f.model_id,
        "model_version": f.model_version,
        "updated_at": obs.at,
    }


DISABLED_REASON = "alerting disabled for this arrhythmia"
PRESENT_DISABLED_REASON = "present-rhythm alerting disabled for this rhythm"
ECTOPY_DISABLED_REASON = "ectopy advisory disabled"


def _disabled(track: Track, at: float, reason: str) -> tuple[Track, list[AlertEvent]]:
    """An arrhythmia switched off in config (then restarted) resolves its alert instead of leaving it active forever."""
    if track.alert is None:
        return track, []
    ended = track.alert.transition(at, "resolved", reason, ended_at=at)
    return Track(), [AlertEvent("end", track.alert, ended, "resolved")]


def stand_down_reason(arrhythmia: str) -> str:
    """Transition reason of a forecast alert ended because its rhythm is measured under way."""
    return f"{RHYTHM_NAMES[arrhythmia]} under way: present-rhythm alert"


def _stand_down(track: Track, arrhythmia: str, at: float) -> tuple[Track, list[AlertEvent]]:
    """While the rhythm is under way its onset forecast has nothing left to predict: an active forecast alert is
    resolved, and forecasts are not scored for persistence (k fresh positive ones are needed after it ends)."""
    if track.alert is None:
        return Track(), []
    ended = track.alert.transition(at, "resolved", stand_down_reason(arrhythmia), ended_at=at)
    return Track(), [AlertEvent("end", track.alert, ended, "resolved")]


def _hold(
    track: Track, rhythm: str, detection: AfDetection | VtDetection, clear_after_s: float, obs: ForecastSeen
) -> tuple[Track, list[AlertEvent]]:
    """An active present-rhythm alert: refreshed while its rhythm holds, cleared once the rhythm has been absent
    ``clear_after_s`` (a gap that reaches back to the previous window continues; a span of the rhythm restarts it)."""
    assert track.alert is not None
    spans, end = obs.evidence.rhythm_spans, obs.evidence.t_end_s
    run = measured_run(rhythm, spans, detection, holding=True)
    if run.present:
        began = track.alert.window.start_s if track.alert.window is not None else None
        lasted = run.run_s if began is None or end is None else end - began
        return Track(alert=track.alert.model_copy(update=_present_fields(rhythm, run, lasted, detection, obs))), []
    gap = absent_s(spans, detection, obs.evidence.window_s)
    since = _continued(track, gap, end)
    absent = gap if since is None or end is None else end - since
    if absent < clear_after_s:
        return Track(alert=track.alert, since_s=since, seen_s=end), []
    reason = f"{RHYTHM_NAMES[rhythm]} no longer measured for {absent:.0f} s"
    ended = track.alert.transition(obs.at, "cleared", reason, ended_at=obs.at)
    return Track(), [AlertEvent("end", track.alert, ended, "cleared")]


def _continued(track: Track, run_s: float, end: float | None) -> float | None:
    """Stream time the unbroken run (of the rhythm, or of its absence) began: the tracked run's start when this
    window's run reaches back to the end of the window that last showed it, else this run's own start. None without
    stream time: one window then decides alone."""
    if end is None:
        return None
    start = end - run_s
    if track.since_s is not None and track.seen_s is not None and start <= track.seen_s:
        return track.since_s
    return start


def _present_fields(
    rhythm: str, run: RhythmRun, lasted: float, detection: AfDetection | VtDetection, obs: ForecastSeen
) -> dict[str, Any]:
    """What a present-rhythm alert takes from one measurement: text, evidence with its run, and window."""
    summary = run.summary(lasted)
    threshold = detection.min_irregular_index if isinstance(detection, AfDetection) else detection.min_rate_bpm
    end = obs.evidence.t_end_s
    return {
        "explanation": present_text(rhythm, summary, threshold, obs.evidence),
        "evidence": {**obs.evidence.as_dict(), "present_rhythm": summary},
        "window": None if end is None else AlertWindow(start_s=end - lasted, end_s=end),
        "updated_at": obs.at,
    }


def _ectopy_hold(
    track: Track, verdict: Judgement, rule: EctopyAdvisory, obs: EctopyMeasured
) -> tuple[Track, list[AlertEvent]]:
    """An active advisory: refreshed while the burden stays at or above ``clear_below``, cleared once it has been
    under that for ``clear_after_s`` (the absence counted from the first refresh under it)."""
    assert track.alert is not None
    alert, end = track.alert, verdict.window.t_end_s
    if verdict.high:
        began = alert.window.start_s + verdict.window.window_s if alert.window is not None else end
        refreshed = alert.model_copy(update=_ectopy_fields(verdict, end - began, rule, obs))
        return Track(alert=refreshed, seen_s=end), []
    since = track.since_s if track.since_s is not None else end
    if end - since < rule.clear_after_s:
        return Track(alert=alert, since_s=since, seen_s=end), []
    reason = f"PVC burden under {100 * rule.clear_below:.0f}% for {end - since:.0f} s"
    ended = alert.transition(obs.at, "cleared", reason, ended_at=obs.at)
    return Track(), [AlertEvent("end", alert, ended, "cleared")]


def _ectopy_fields(verdict: Judgement, lasted_s: float, rule: EctopyAdvisory, obs: EctopyMeasured) -> dict[str, Any]:
    """What an ectopy advisory takes from one refresh: text, evidence and the stretch it rests on (from the start
    of the first high window to the end of the newest)."""
    end = verdict.window.t_end_s
    return {
        "explanation": ectopy_text(obs.lead, obs.windows, lasted_s, rule),
        "evidence": ectopy_evidence(obs.lead, obs.windows, lasted_s),
        "window": AlertWindow(start_s=end - lasted_s - verdict.window.window_s, end_s=end),
        "updated_at": obs.at,
    }


def _rising(margins: tuple[float, ...], reading: _Reading) -> tuple[float, ...]:
    """Extend the run of strictly rising margins, or restart it at this forecast."""
    if not reading.positive:
        return ()
    if margins and reading.margin > margins[-1]:
        return (*margins, reading.margin)
    return (reading.margin,)
