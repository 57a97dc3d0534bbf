"""ForecastScheduler needs no model: hand-made readiness and RunnerOutputs drive its state transitions."""

from __future__ import annotations

from llm_runtime.scheduler import ForecastScheduler, PatientPhase, Readiness, RunnerOutput, SchedulerSettings


def scheduler(**overrides: float) -> ForecastScheduler:
    base = {"cadence_s": 60.0, "min_seconds": 30, "min_valid_fraction": 0.7, "max_batch": 2, "max_stretch": 4.0}
    return ForecastScheduler(SchedulerSettings(**{**base, **overrides}))


def test_warm_up_then_active_then_forecast_on_cadence() -> None:
    s = scheduler()
    s.observe([Readiness("p1", 10, 1.0)], now=0.0)
    assert s.phase("p1") is PatientPhase.WARMING_UP
    assert s.schedule(0.0).patient_ids == []
    s.observe([Readiness("p1", 40, 1.0)], now=30.0)
    assert s.phase("p1") is PatientPhase.ACTIVE
    batch = s.schedule(30.0)
    assert batch.patient_ids == ["p1"] and batch.stretch == 1.0
    s.update(RunnerOutput(["p1"], {"p1": 0.1}, elapsed_s=0.5), now=31.0)
    assert s.schedule(60.0).patient_ids == []
    assert s.schedule(91.0).patient_ids == ["p1"]


def test_poor_signal_is_reported_as_cannot_assess_not_skipped() -> None:
    s = scheduler()
    s.observe([Readiness("p1", 100, 0.2)], now=0.0)
    batch = s.schedule(0.0)
    assert s.phase("p1") is PatientPhase.LEADS_OFF
    assert batch.patient_ids == [] and batch.cannot_assess == ["p1"]
    assert s.schedule(1.0).cannot_assess == []  # reported once per cadence, not every tick


def test_batch_is_capped_and_ordered_by_risk() -> None:
    s = scheduler()
    s.observe([Readiness(p, 100, 1.0) for p in ("a", "b", "c")], now=0.0)
    s.update(RunnerOutput(["a", "b", "c"], {"a": 0.1, "b": 0.9, "c": 0.5}, elapsed_s=0.3), now=0.0)
    batch = s.schedule(1000.0)
    assert batch.patient_ids == ["b", "c"]


def test_falling_behind_stretches_low_risk_cadence_but_not_high_risk() -> None:
    s = scheduler(cadence_s=10.0, utilisation=0.5, high_risk=0.5)
    s.observe([Readiness(p, 100, 1.0) for p in ("low", "high")], now=0.0)
    s.update(RunnerOutput(["low", "high"], {"low": 0.1, "high": 0.8}, elapsed_s=8.0), now=0.0)
    # 2 patients x 4 s each = 8 s of model time per 10 s cadence, budget 5 s: stretch 1.6
    assert abs(s.stretch - 1.6) < 1e-9
    assert s.summary()["degraded"] is True
    assert s.schedule(10.0).patient_ids == ["high"]
    assert s.schedule(16.0).patient_ids == ["high", "low"]
    assert s.capacity() == 1


def test_stretch_is_capped() -> None:
    s = scheduler(cadence_s=1.0, max_stretch=3.0)
    s.observe([Readiness("p", 100, 1.0)], now=0.0)
    s.update(RunnerOutput(["p"], {"p": 0.0}, elapsed_s=100.0), now=0.0)
    assert s.stretch == 3.0


def test_eviction_is_reported_once_and_late_results_are_dropped() -> None:
    s = scheduler()
    s.observe([Readiness("p1", 100, 1.0)], now=0.0)
    s.evict("p1")
    assert s.schedule(0.0).finished_patient_ids == ["p1"]
    assert s.schedule(1.0).finished_patient_ids == []
    s.update(RunnerOutput(["p1"], {"p1": 0.9}, elapsed_s=1.0), now=2.0)
    assert s.phase("p1") is PatientPhase.EVICTED


def test_overdue_is_measured_for_active_patients_only() -> None:
    s = scheduler()
    s.observe([Readiness("on", 100, 1.0), Readiness("off", 100, 0.1)], now=0.0)
    assert s.max_overdue(0.0) == 0.0
    assert s.max_overdue(25.0) == 25.0  # "on" was due at 0 and not forecast; "off" cannot be assessed


def test_cache_upkeep_counts_against_capacity_and_is_not_stretched() -> None:
    """Upkeep runs every second whatever the cadence: only the forecasts' share of the budget can be stretched."""
    s = scheduler(cadence_s=10.0, utilisation=0.5)
    s.observe([Readiness(p, 100, 1.0) for p in ("a", "b")], now=0.0)
    s.record_upkeep(0.05)  # 0.5 s per patient per 10 s cadence: 1 s of the 5 s budget for two patients
    s.update(RunnerOutput(["a", "b"], {"a": 0.1, "b": 0.1}, elapsed_s=4.0), now=0.0)
    assert abs(s.stretch - 1.0) < 1e-9  # 2 x 2 s of forecasts into the 4 s left: on cadence
    assert s.capacity() == 2  # 5 s / (2 s + 0.5 s)
    report = s.summary()["capacity"]
    assert report == {
        "measured": True,
        "patients_at_base_cadence": 2,
        "model_s_per_patient_minute": 15.0,  # (2 s + 0.5 s) x 6 cadences per minute
        "forecast_s_per_patient_minute": 12.0,
        "upkeep_s_per_patient_minute": 3.0,
        "budget_s_per_minute": 30.0,
        "over_capacity": False,
    }
    s.record_upkeep(0.15)  # 1.5 s per patient per cadence: 2 s left for 4 s of forecasts
    s.update(RunnerOutput([], {}, elapsed_s=0.0), now=1.0)
    assert abs(s.stretch - 2.0) < 1e-9 and s.capacity() == 1 and s.summary()["capacity"]["over_capacity"] is True  # type: ignore[index]
    s.record_upkeep(0.3)  # upkeep alone (6 s) passes the budget: stretched to the cap
    s.update(RunnerOutput([], {}, elapsed_s=0.0), now=2.0)
    assert s.stretch == 4.0


def test_a_late_forecast_does_not_push_the_next_one_back() -> None:
    """Due times keep to the patient's grid: intervals average the cadence, not the cadence plus the model's time."""
    s = scheduler()
    s.observe([Readiness("p", 100, 1.0)], now=0.0)
    s.update(RunnerOutput(["p"], {"p": 0.1}, elapsed_s=1.0), now=1.0)  # first forecast: grid at 1, 61, 121, ...
    assert s.schedule(60.9).patient_ids == [] and s.schedule(61.0).patient_ids == ["p"]
    s.update(RunnerOutput(["p"], {"p": 0.1}, elapsed_s=1.0), now=66.0)  # 5 s late
    assert s.schedule(120.9).patient_ids == [] and s.schedule(121.0).patient_ids == ["p"]
    s.update(RunnerOutput(["p"], {"p": 0.1}, elapsed_s=1.0), now=170.0)  # 49 s late: a new grid, half a cadence on
    assert s.schedule(199.9).patient_ids == [] and s.schedule(200.0).patient_ids == ["p"]


def test_due_patients_are_served_earliest_due_first_after_high_risk_ones() -> None:
    s = scheduler(max_batch=3)
    s.observe([Readiness(p, 100, 1.0) for p in ("a", "b", "c", "d")], now=0.0)
    for pid, t, risk in (("a", 5.0, 0.3), ("b", 1.0, 0.1), ("c", 3.0, 0.2), ("d", 9.0, 0.9)):
        s.update(RunnerOutput([pid], {pid: risk}, elapsed_s=0.5), now=t)
    # due at 65, 61, 63, 69: all due at 100; "d" (high risk) first, then the low-risk ones by due time, not by risk
    assert s.schedule(100.0).patient_ids == ["d", "b", "c"]
