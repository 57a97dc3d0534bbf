"""Alert replay scoring: which stretch is replayed, and how onsets and false alerts are counted."""

from __future__ import annotations

from evaluation.replay import RecordReplay, ReplayConfig, replay_span, summarise_replays


def test_replay_span_whole_record_or_a_stretch_before_the_first_onset() -> None:
    whole = ReplayConfig()
    assert replay_span(1800, [(900.0, "af")], 300, whole) == (60, 1801)
    short = ReplayConfig(max_minutes=8)
    # starts lookback (300) + two cadences (120) before the onset, lasts 8 minutes
    assert replay_span(1800, [(900.0, "af")], 300, short) == (480, 960)
    assert replay_span(1800, [], 300, short) == (300, 780)  # never converts: after one full window
    assert replay_span(600, [(200.0, "af")], 300, short) == (60, 540)


def test_onsets_count_alerts_raised_within_the_lookback_only() -> None:
    config = ReplayConfig(lookback_s=300)
    converting = RecordReplay(
        "a", "af_onset", 1800.0, [(1000.0, "af")], alerts=[(600.0, "af", 0.9), (820.0, "af", 0.8)]
    )
    late = RecordReplay("b", "af_onset", 1800.0, [(1000.0, "af")], alerts=[(1010.0, "af", 0.9), (900.0, "vt", 0.7)])
    quiet = RecordReplay("c", "sinus_ectopy", 43200.0, [], alerts=[(100.0, "af", 0.6)])
    summary = summarise_replays([converting, late, quiet], config)
    af = summary["per_arrhythmia"]["af"]
    assert af == {"onsets": 2, "alerted": 1, "alerted_2min_ahead": 1, "median_lead_time_s": 180.0}
    assert summary["false_alerts"] == 1
    assert summary["false_alerts_per_patient_day"] == 2.0  # one alert in half a day
