"""ForecastScheduler: which patients get a forecast now, and within what budget. CPU policy only, no model.

Split the way vLLM splits its engine: this class decides (per-patient phase, due times, batch, degradation); the
model worker runs the batch and hands back a ``RunnerOutput``; the alert policy turns forecasts into alerts.

Due times keep to each patient's own grid: a forecast that came late does not push the next one back (a patient
forecast at due + 5 s is due again at due + cadence, not at its completion + cadence), so intervals average the
cadence instead of the cadence plus the model's time; due patients are served earliest due first, high-risk ones
before the rest. A patient's first forecast sets its grid at its completion, which spreads a unit that starts at
once (a restart: every patient due together) over the cadence.

Degradation is explicit: when one cadence's worth of forecasts takes longer than ``utilisation`` of the cadence, the
cadence of patients below ``high_risk`` is stretched (up to ``max_stretch``) while high-risk patients keep the base
cadence, and the stretch factor is reported. Nothing queues without bound: a patient is either due or not.

Capacity is measured, not configured: the forecast time per patient comes from the model worker's batches, and the
upkeep (keeping a patient's cache current: encoding, feeding, cache slides) from
:meth:`ForecastScheduler.record_upkeep`.
Upkeep runs every second of signal whatever the cadence, so stretching only divides the forecast part of the
demand; when upkeep alone passes the budget, the stretch is at its cap and the capacity says how far over it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import Field

from core.config import StrictModel

__all__ = [
    "ForecastBatch",
    "ForecastScheduler",
    "PatientPhase",
    "Readiness",
    "RunnerOutput",
    "SchedulerSettings",
]


class SchedulerSettings(StrictModel):
    cadence_s: float = Field(60.0, gt=0, le=3600, description="Forecast each patient this often")
    min_seconds: int = Field(60, ge=1, le=3600, description="Embedded seconds needed before the first forecast")
    min_valid_fraction: float = Field(
        0.7, ge=0, le=1, description="Share of valid lead-seconds in the window needed to assess a patient"
    )
    max_batch: int = Field(8, ge=1, le=256, description="Most patients scored in one model call")
    high_risk: float = Field(0.5, ge=0, le=1, description="Onset risk at or above which a patient keeps full cadence")
    utilisation: float = Field(0.8, gt=0, le=1, description="Share of each cadence the model may be busy")
    max_stretch: float = Field(4.0, ge=1, le=60, description="Largest factor by which the cadence may be stretched")
    feed_every_s: int = Field(
        30,
        ge=1,
        le=600,
        description="New seconds gathered per patient before one forward pass appends them to its LM cache "
        "(a patient due for a forecast is fed first whatever it holds)",
    )


class PatientPhase(StrEnum):
    WARMING_UP = "warming_up"  # not enough embedded signal yet
    ACTIVE = "active"  # forecast on cadence
    LEADS_OFF = "leads_off"  # signal quality insufficient: "cannot assess"
    EVICTED = "evicted"  # gone; its model state is to be freed


@dataclass(frozen=True)
class Readiness:
    """What the scheduler needs to know about one patient, from the encoder stage and the ingest status."""

    patient_id: str
    embedded_seconds: int  # seconds in the patient's embedding ring (current segment)
    valid_fraction: float  # share of valid lead-seconds in the last forecast window


@dataclass(frozen=True)
class ForecastBatch:
    """One scheduling decision."""

    patient_ids: list[str]  # to forecast now: high-risk first, then earliest due; at most max_batch
    cannot_assess: list[str]  # due, but their signal is insufficient: report "cannot assess: signal quality"
    finished_patient_ids: list[str]  # evicted since the last batch: free their model state
    stretch: float  # 1.0 = on cadence; > 1 = degraded, low-risk cadence multiplied by this


@dataclass(frozen=True)
class RunnerOutput:
    patient_ids: list[str]
    onset_risk: dict[str, float]  # patient -> highest onset probability over arrhythmias and horizons
    elapsed_s: float  # wall time of the model call


@dataclass
class _State:
    phase: PatientPhase = PatientPhase.WARMING_UP
    next_due: float = 0.0
    risk: float = 0.0
    forecasts: int = 0


@dataclass
class ForecastScheduler:
    settings: SchedulerSettings
    _patients: dict[str, _State] = field(default_factory=dict)
    _finished: list[str] = field(default_factory=list)
    _seconds_per_patient: float = 0.0  # running estimate of model time per forecast
    _upkeep_per_second: float = 0.0  # model time per patient-second of signal to keep a cache current
    stretch: float = 1.0

    def phase(self, patient_id: str) -> PatientPhase:
        state = self._patients.get(patient_id)
        return state.phase if state else PatientPhase.EVICTED

    def observe(self, readiness: Iterable[Readiness], now: float) -> None:
        """Update every known patient's phase from fresh readiness; new patients start warming up."""
        for r in readiness:
            state = self._patients.setdefault(r.patient_id, _State(next_due=now))
            if r.embedded_seconds < self.settings.min_seconds:
                state.phase = PatientPhase.WARMING_UP
            elif r.valid_fraction < self.settings.min_valid_fraction:
                state.phase = PatientPhase.LEADS_OFF
            else:
                state.phase = PatientPhase.ACTIVE

    def evict(self, patient_id: str) -> None:
        if self._patients.pop(patient_id, None) is not None:
            self._finished.append(patient_id)

    def _cadence(self, state: _State) -> float:
        stretch = 1.0 if state.risk >= self.settings.high_risk else self.stretch
        return self.settings.cadence_s * stretch

    def schedule(self, now: float) -> ForecastBatch:
        """Patients due now: ACTIVE ones most urgent first (capped), LEADS_OFF ones as cannot-assess."""
        due = [(pid, s) for pid, s in self._patients.items() if s.next_due <= now]
        active = sorted((x for x in due if x[1].phase is PatientPhase.ACTIVE), key=lambda x: self._urgency(x[1]))
        cannot = [pid for pid, s in due if s.phase is PatientPhase.LEADS_OFF]
        for pid in cannot:
            self._patients[pid].next_due = now + self.settings.cadence_s
        finished, self._finished = self._finished, []
        chosen = [pid for pid, _ in active[: self.settings.max_batch]]
        return ForecastBatch(chosen, cannot, finished, self.stretch)

    def _urgency(self, state: _State) -> tuple[bool, float, float]:
        """Sort key: high-risk patients first, then the longest overdue, then the higher risk."""
        return state.risk < self.settings.high_risk, state.next_due, -state.risk

    def _next_due(self, state: _State, now: float) -> float:
        """The next point of the patient's grid, at least half a cadence after ``now``: a patient that fell more than
        half a cadence behind (a stretch, a burst of work) starts a new grid rather than being forecast twice in a
        row."""
        cadence = self._cadence(state)
        if state.forecasts == 0:
            return now + cadence
        return max(state.next_due + cadence, now + cadence / 2)

    def update(self, output: RunnerOutput, now: float) -> None:
        """Record risks and the model's speed; re-plan due times and the stretch factor."""
        if output.patient_ids:
            per_patient = output.elapsed_s / len(output.patient_ids)
            alpha = 0.3 if self._seconds_per_patient else 1.0
            self._seconds_per_patient += alpha * (per_patient - self._seconds_per_patient)
        self._replan()
        for pid in output.patient_ids:
            state = self._patients.get(pid)
            if state is None:
                continue  # evicted while the model ran: its result is dropped, its state already queued to free
            state.risk = output.onset_risk.get(pid, 0.0)
            state.next_due = self._next_due(state, now)
            state.forecasts += 1

    def record_upkeep(self, seconds_per_patient_second: float) -> None:
        """The model worker's measured cost of keeping one patient's cache current, per second of its signal."""
        self._upkeep_per_second = max(0.0, seconds_per_patient_second)

    def _active(self) -> int:
        return sum(1 for s in self._patients.values() if s.phase is PatientPhase.ACTIVE)

    def _replan(self) -> None:
        active = self._active()
        forecasting = active * self._seconds_per_patient  # model seconds per cadence at stretch 1
        budget = self.settings.utilisation * self.settings.cadence_s - active * self._upkeep_s_per_cadence()
        if budget <= 0:  # upkeep alone fills the budget: stretching cannot help, only fewer patients per process
            self.stretch = self.settings.max_stretch
        else:
            self.stretch = min(self.settings.max_stretch, max(1.0, forecasting / budget))

    def _upkeep_s_per_cadence(self) -> float:
        return self._upkeep_per_second * self.settings.cadence_s

    def model_s_per_patient(self) -> float:
        """Model seconds one patient costs per base cadence: its forecast plus its cache upkeep."""
        return self._seconds_per_patient + self._upkeep_s_per_cadence()

    def max_overdue(self, now: float) -> float:
        """Longest time an ACTIVE patient's forecast is past due (0 when every one is on time)."""
        overdue = [now - s.next_due for s in self._patients.values() if s.phase is PatientPhase.ACTIVE]
        return max([0.0, *overdue])

    def capacity(self) -> int:
        """Largest patient count forecast on the base cadence at the measured model speed, upkeep included (0
        before the first forecast: until then the cost of one is unknown)."""
        if not self._seconds_per_patient:
            return 0
        return int(self.settings.utilisation * self.settings.cadence_s / self.model_s_per_patient())

    def summary(self) -> dict[str, object]:
        phases: dict[str, int] = {}
        for s in self._patients.values():
            phases[s.phase.value] = phases.get(s.phase.value, 0) + 1
        return {
            "patients": phases,
            "stretch": round(self.stretch, 3),
            "degraded": self.stretch > 1.0,
            "seconds_per_forecast": round(self._seconds_per_patient, 4),
            "capacity_at_base_cadence": self.capacity(),
            "capacity": self._capacity_report(),
        }

    def _capacity_report(self) -> dict[str, object]:
        """What the capacity rests on, per patient and minute of signal, measured on this machine."""
        per_minute = 60.0 / self.settings.cadence_s
        return {
            "measured": bool(self._seconds_per_patient),
            "patients_at_base_cadence": self.capacity(),
            "model_s_per_patient_minute": round(self.model_s_per_patient() * per_minute, 4),
            "forecast_s_per_patient_minute": round(self._seconds_per_patient * per_minute, 4),
            "upkeep_s_per_patient_minute": round(self._upkeep_per_second * 60.0, 4),
            "budget_s_per_minute": round(self.settings.utilisation * 60.0, 2),
            "over_capacity": bool(self._seconds_per_patient) and self._active() > self.capacity(),
        }
