"""Alert replay scoring: which stretch is replayed, and how onsets and false alerts are counted."""

from __future__ import annotations

from evaluation.replay import (
    RecordReplay,
    ReplayAlert,
    ReplayConfig,
    poisson_rate,
    replay_span,
    summarise_replays,
    threshold_sweep,
    wilson,
)


def test_replay_span_whole_record_or_a_stretch_before_the_first_onset() -> None:
    whole = ReplayConfig()
    assert replay_span(1800, [(900.0, "af")], 300, whole) == (60, 1801)
    short = ReplayConfig(max_minutes=8)
    # starts lookback (300) + two cadences (120) before the onset, lasts 8 minutes
    assert replay_span(1800, [(900.0, "af")], 300, short) == (480, 960)
    assert replay_span(1800, [], 300, short) == (300, 780)  # never converts: after one full window
    assert replay_span(600, [(200.0, "af")], 300, short) == (60, 540)


def _alerts(*rows: tuple[float, str, float, bool]) -> list[ReplayAlert]:
    return [ReplayAlert(*row) for row in rows]


def test_onsets_count_alerts_raised_within_the_lookback_only() -> None:
    config = ReplayConfig(lookback_s=300)
    converting = RecordReplay(
        "a",
        "af_onset",
        1800.0,
        [(1000.0, "af")],
        alerts=_alerts((600.0, "af", 0.9, True), (820.0, "af", 0.8, True)),
        precursor="pac_rise",
    )
    late = RecordReplay(
        "b",
        "af_onset",
        1800.0,
        [(1000.0, "af")],
        alerts=_alerts((1010.0, "af", 0.9, False), (900.0, "vt", 0.7, True)),
        precursor="hr_drift",
    )
    unwarned = RecordReplay("d", "af_onset", 1800.0, [(1000.0, "af")], precursor="none")
    quiet = RecordReplay("c", "sinus_ectopy", 43200.0, [], alerts=_alerts((100.0, "af", 0.6, False)))
    summary = summarise_replays([converting, late, unwarned, quiet], config)
    af = summary["per_arrhythmia"]["af"]
    assert af == {"onsets": 3, "alerted": 1, "alerted_2min_ahead": 1, "median_lead_time_s": 180.0}
    assert summary["false_alerts"] == 1
    assert summary["false_alerts_per_patient_day"] == 2.0  # one alert in half a day
    acceptance = summary["acceptance"]
    assert acceptance["onsets_with_precursor"] == 2  # the onset scripted with no warning is not counted
    assert acceptance["alerted_2min_ahead"] == 1
    assert acceptance["forecast_alerts"] == 5 and acceptance["with_guarded_rationale"] == 3
    lo, hi = acceptance["false_alerts_per_patient_day_ci"]
    assert lo < 2.0 < hi


def test_intervals_of_counts() -> None:
    assert wilson(0, 0) is None
    lo, hi = wilson(8, 10)
    assert 0.44 < lo < 0.5 and 0.94 < hi < 0.96  # Wilson 95 % for 8/10: [0.490, 0.943]
    assert poisson_rate(0, 1.0) == [0.0, 3.689]  # the rule of three, exactly
    lo, hi = poisson_rate(6, 0.05)
    assert lo < 120.0 < hi


def test_threshold_sweep_replays_persistence_on_the_recorded_risks() -> None:
    config = ReplayConfig(lookback_s=300)
    rising = [
        (float(t), {"af": p, "flutter": 0.0, "vt": 0.0})
        for t, p in zip(range(600, 1000, 60), [0.1, 0.3, 0.35, 0.6, 0.7, 0.8, 0.9], strict=True)
    ]
    converting = RecordReplay("a", "af_onset", 480.0, [(1000.0, "af")], precursor="pac_rise", risks=rising)
    spiky = [
        (float(t), {"af": p, "flutter": 0.0, "vt": 0.0})
        for t, p in zip(range(0, 600, 60), [0.1, 0.45, 0.1, 0.45, 0.45, 0.1, 0.1, 0.1, 0.1, 0.1], strict=True)
    ]
    quiet = RecordReplay("q", "sinus_stable", 600.0, [], risks=spiky)
    rows = {row["raise_at"]: row for row in threshold_sweep([converting, quiet], config)}
    assert rows[0.3]["alerted_2min_ahead"] == 1  # two of three >= 0.3 at 720 s: 280 s ahead
    assert rows[0.3]["false_raises"] == 1  # 0.45 twice in three forecasts, once
    assert rows[0.7]["alerted_2min_ahead"] == 0  # first raised at 900 s: 100 s ahead, too late
    assert rows[0.5]["false_raises"] == 0
