"""The ``alerts`` config section: this unit's alert policy, per-patient overrides, and where history is kept.

Why per-patient overrides are plain mappings merged onto the unit defaults: a clinician changes one or two keys for
one patient (a lower AF threshold after cardiac surgery); the merged result is validated as a full policy at
start-up, so a bad override fails with ``alerts.patients.<id>`` in the message, like every other config error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from core.config import StrictModel
from core.protocol import PATIENT_ID_PATTERN

__all__ = [
    "AfDetection",
    "AlertSettings",
    "ArrhythmiaPolicy",
    "EctopyAdvisory",
    "EscalationSettings",
    "PolicySettings",
    "PresentRhythmSettings",
    "Priority",
    "QualityGate",
    "VtDetection",
]

Priority = Literal["low", "medium", "high"]
PRIORITY_ORDER: tuple[Priority, ...] = ("low", "medium", "high")
ARRHYTHMIAS: tuple[str, ...] = ("af", "flutter", "vt")  # the keys of Forecast.onset_probs
PRESENT_RHYTHMS: tuple[str, ...] = ("af", "vt")  # rhythms measured under way; flutter cannot be told from the RR
SPAN_S = 10.0  # core.measurements.RHYTHM_SPAN_S: durations are measured in whole spans of this length
FORECAST_CEILING: Priority = "medium"
"""Highest priority a forecast alert may have, raised or escalated. A forecast is an advisory (IHE source SA): high
priority (red, flashing fast, the loudest tone) is kept for a rhythm measured now ("VT now"), so a prediction never
looks or sounds like the life-threatening alarm it predicts (docs/ALERTS.md section 4, docs/STATION.md)."""


class ArrhythmiaPolicy(StrictModel):
    """Thresholds and priorities for one forecast arrhythmia (af, flutter or vt)."""

    enabled: bool = Field(True, description="Raise forecast alerts for this arrhythmia at all")
    raise_at: float = Field(0.5, gt=0, le=1, description="Onset probability at or above which a forecast is positive")
    raise_at_by_horizon: dict[int, float] = Field(
        default_factory=dict, description="Horizon (s) -> threshold, overriding raise_at for that horizon"
    )
    priority: Priority = Field("low", description="Priority when raised (forecasts are advisories: low or medium)")
    max_priority: Priority = Field(
        "medium", description="Highest priority escalation may reach (at most medium: forecasts are advisories)"
    )

    @field_validator("raise_at_by_horizon")
    @classmethod
    def _valid_horizons(cls, value: dict[int, float]) -> dict[int, float]:
        bad = {h: p for h, p in value.items() if h <= 0 or not 0 < p <= 1}
        if bad:
            raise ValueError(f"horizons must be positive seconds and thresholds in (0, 1], got {bad}")
        return value

    @field_validator("priority", "max_priority")
    @classmethod
    def _advisory(cls, value: Priority) -> Priority:
        """A forecast never reaches high priority, whatever the config says (see FORECAST_CEILING)."""
        if PRIORITY_ORDER.index(value) > PRIORITY_ORDER.index(FORECAST_CEILING):
            raise ValueError(
                f"{value!r}: forecast alerts are advisories, at most {FORECAST_CEILING!r} priority "
                "(high is for rhythms measured now, alerts.defaults.present_rhythm)"
            )
        return value

    @model_validator(mode="after")
    def _priority_order(self) -> ArrhythmiaPolicy:
        if PRIORITY_ORDER.index(self.max_priority) < PRIORITY_ORDER.index(self.priority):
            raise ValueError(f"max_priority {self.max_priority!r} is below priority {self.priority!r}")
        return self

    def threshold(self, horizon_s: int) -> float:
        return self.raise_at_by_horizon.get(horizon_s, self.raise_at)


class EscalationSettings(StrictModel):
    """When a raised alert's risk keeps rising, its priority goes up one level (at most to max_priority)."""

    rising_forecasts: int = Field(
        3, ge=2, le=20, description="Consecutive positive forecasts whose margin above threshold strictly rises"
    )
    min_rise: float = Field(0.1, gt=0, le=1, description="Total rise of the margin over those forecasts")


class QualityGate(StrictModel):
    """When the signal is too poor to judge, forecasts are suppressed and 'cannot assess' is published instead."""

    acceptable_verdicts: tuple[str, ...] = Field(
        ("good",), min_length=1, description="Per-lead ingest verdicts that count as assessable"
    )
    min_good_leads: int = Field(1, ge=1, le=12, description="Leads with an acceptable verdict needed to assess")
    min_usable_fraction: float = Field(
        0.5, ge=0, le=1, description="Share of the measured strip that must be usable (not flat, saturated, missing)"
    )
    priority: Priority = Field("low", description="Priority of the 'cannot assess: signal quality' alert")

    @field_validator("acceptable_verdicts")
    @classmethod
    def _known_verdicts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = {"good", "noisy", "leads_off", "saturated", "gap", "invalid_samples", "unknown"}
        bad = sorted(set(value) - known)
        if bad:
            raise ValueError(f"unknown verdicts {bad}; known: {sorted(known)}")
        return value


class AfDetection(StrictModel):
    """When the measured rhythm counts as atrial fibrillation under way (an "AF now" alert)."""

    enabled: bool = Field(True, description="Raise 'AF now' alerts at all")
    min_duration_s: float = Field(
        30.0, ge=SPAN_S, le=600, description="Irregularly irregular for at least this long (whole 10-s spans)"
    )
    min_irregular_index: float = Field(
        0.08, gt=0, le=1, description="A 10-s span is AF-like when its NN irregular index is at or above this"
    )
    hold_irregular_index: float = Field(
        0.06, gt=0, le=1, description="While 'AF now' is active a span still counts as AF down to this (hysteresis)"
    )
    priority: Priority = Field("medium", description="Priority when raised (bedside monitors: AF is medium)")

    @model_validator(mode="after")
    def _hold_below_raise(self) -> AfDetection:
        if self.hold_irregular_index > self.min_irregular_index:
            raise ValueError(
                f"hold_irregular_index {self.hold_irregular_index} is above min_irregular_index "
                f"{self.min_irregular_index}: an alert could clear on the spans that raised it"
            )
        return self


class VtDetection(StrictModel):
    """When the measured rhythm counts as ventricular tachycardia under way (a "VT now" alert)."""

    enabled: bool = Field(True, description="Raise 'VT now' alerts at all")
    min_duration_s: float = Field(
        10.0, ge=SPAN_S, le=600, description="Ventricular rhythm for at least this long (whole 10-s spans)"
    )
    min_rate_bpm: float = Field(100.0, ge=60, le=250, description="A VT-like span is at least this fast")
    min_ventricular_fraction: float = Field(
        0.8, gt=0.5, le=1, description="... and at least this share of its beats are ventricular ('V')"
    )
    priority: Priority = Field("high", description="Priority when raised (bedside monitors: VT is high)")


class PresentRhythmSettings(StrictModel):
    """Present-rhythm alerts: a rhythm measured under way now, not a forecast; the matching forecast stands down."""

    af: AfDetection = Field(default_factory=lambda: AfDetection.model_validate({}))
    vt: VtDetection = Field(default_factory=lambda: VtDetection.model_validate({}))
    clear_after_s: float = Field(
        30.0, ge=SPAN_S, le=600, description="An alert clears once its rhythm has been absent this long"
    )

    def rhythm(self, name: str) -> AfDetection | VtDetection:
        detection: AfDetection | VtDetection = getattr(self, name)
        return detection


class EctopyAdvisory(StrictModel):
    """When the measured ventricular ectopy burden is high enough for a "PVC burden high" advisory (docs/ALERTS.md
    section 14), judged on the rhythm monitor's shortest window (``monitor.windows_s``, 60 s shipped)."""

    enabled: bool = Field(True, description="Raise 'PVC burden high' advisories at all")
    raise_at: float = Field(
        0.10, gt=0, le=1, description="Share of beats that are PVCs at or above which a refresh counts as high"
    )
    clear_below: float = Field(
        0.07, ge=0, le=1, description="While raised, a refresh still counts as high down to this (hysteresis)"
    )
    min_duration_s: float = Field(
        60.0, ge=0, le=3600, description="High at every refresh for this long (stream seconds) before it is raised"
    )
    clear_after_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="An active advisory clears once the burden has been under clear_below this long",
    )
    min_beats: int = Field(
        30, ge=5, le=1000, description="A window with fewer beats counted is not judged (neither raises nor clears)"
    )
    priority: Priority = Field("low", description="Priority when raised (bedside monitors: 'PVCs/min high' is low)")

    @model_validator(mode="after")
    def _clear_below_raise(self) -> EctopyAdvisory:
        if self.clear_below >= self.raise_at:
            raise ValueError(
                f"clear_below {self.clear_below} is not under raise_at {self.raise_at}: the advisory could clear on "
                "the burden that raised it"
            )
        return self


class PolicySettings(StrictModel):
    """One unit's alert policy; a patient's effective policy is this with that patient's overrides merged in."""

    af: ArrhythmiaPolicy = Field(
        default_factory=lambda: ArrhythmiaPolicy.model_validate({}), description="Atrial fibrillation onset"
    )
    flutter: ArrhythmiaPolicy = Field(
        default_factory=lambda: ArrhythmiaPolicy.model_validate({}), description="Atrial flutter onset"
    )
    vt: ArrhythmiaPolicy = Field(
        default_factory=lambda: ArrhythmiaPolicy.model_validate(
            {"raise_at": 0.4, "priority": "medium", "max_priority": "medium"}
        ),
        description="Ventricular tachycardia onset",
    )
    persistence_k: int = Field(2, ge=1, le=20, description="Positive forecasts needed among the last n to raise")
    persistence_n: int = Field(3, ge=1, le=20, description="Forecasts looked back over for persistence")
    min_forecast_window_s: float | None = Field(
        None,
        ge=0,
        le=86_400,
        description="Forecasts read from a shorter window (a stream warming up, or after a gap) neither raise nor clear"
        " forecast alerts: the forecaster's thresholds were set on full windows. null: the agent's llm.window_s",
    )
    hysteresis: float = Field(
        0.15, ge=0, lt=1, description="Clearing needs every horizon below its threshold minus this"
    )
    clear_after: int = Field(2, ge=1, le=20, description="Consecutive forecasts below the clearing level to clear")
    renotify_after_s: float = Field(
        300.0, gt=0, le=86_400, description="Re-publish an unacknowledged alert after this many seconds"
    )
    max_renotify: int = Field(6, ge=0, le=1000, description="Re-notifications of one alert at most; 0 disables")
    escalation: EscalationSettings = Field(default_factory=lambda: EscalationSettings.model_validate({}))
    quality: QualityGate = Field(default_factory=lambda: QualityGate.model_validate({}))
    present_rhythm: PresentRhythmSettings = Field(default_factory=lambda: PresentRhythmSettings.model_validate({}))
    ectopy: EctopyAdvisory = Field(default_factory=lambda: EctopyAdvisory.model_validate({}))

    @model_validator(mode="after")
    def _k_of_n(self) -> PolicySettings:
        if self.persistence_k > self.persistence_n:
            raise ValueError(f"persistence_k ({self.persistence_k}) exceeds persistence_n ({self.persistence_n})")
        for name in ARRHYTHMIAS:
            policy = self.arrhythmia(name)
            lowest = min((policy.raise_at, *policy.raise_at_by_horizon.values()))
            if lowest <= self.hysteresis:
                raise ValueError(
                    f"{name}: a threshold of {lowest} minus hysteresis {self.hysteresis} could never clear"
                )
        return self

    def arrhythmia(self, name: str) -> ArrhythmiaPolicy:
        policy: ArrhythmiaPolicy = getattr(self, name)
        return policy


class AlertSettings(StrictModel):
    store_path: Path = Field(
        Path("var/alerts.sqlite3"), description="SQLite alert history; relative paths are under the working dir"
    )
    store_url: str | None = Field(
        None,
        pattern=r"^postgres(ql)?://",
        description="PostgreSQL URL of a store shared by agent replicas; when set it replaces store_path",
    )
    defaults: PolicySettings = Field(
        default_factory=lambda: PolicySettings.model_validate({}), description="This unit's policy"
    )
    patients: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Patient id -> keys of `defaults` to override for that patient"
    )

    @model_validator(mode="after")
    def _overrides_validate(self) -> AlertSettings:
        for patient_id in self.patients:
            if not PATIENT_ID_PATTERN.fullmatch(patient_id):
                raise ValueError(f"alerts.patients: {patient_id!r} is not a valid patient id")
            try:
                self.for_patient(patient_id)
            except ValueError as exc:
                raise ValueError(f"alerts.patients.{patient_id}: {exc}") from exc
        return self

    def for_patient(self, patient_id: str) -> PolicySettings:
        """The unit defaults with this patient's overrides merged in (validated as a whole)."""
        override = self.patients.get(patient_id)
        if not override:
            return self.defaults
        merged = _deep_merge(self.defaults.model_dump(), override)
        return PolicySettings.model_validate(merged)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
