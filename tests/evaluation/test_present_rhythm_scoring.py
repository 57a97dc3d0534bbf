"""Present-rhythm scoring on whole records: episodes from class changes, what counts as detected, the delay, and
which raises are false (and over how much time)."""

from __future__ import annotations

from evaluation.present_rhythm import (
    Episode,
    PresentEvent,
    RecordScore,
    agent_config,
    episodes,
    summarise,
)


def _score(
    changes: list[tuple[float, str]], events: list[tuple[str, str, float]], duration: float = 2400.0
) -> RecordScore:
    return RecordScore("r", "g", duration, episodes(changes, duration), [PresentEvent(*e) for e in events])


def test_episodes_are_the_non_sinus_stretches_the_last_running_to_the_end() -> None:
    got = episodes([(0.0, "sinus"), (100.0, "vt"), (130.0, "sinus"), (1000.0, "af")], 2400.0)
    assert got == [Episode("vt", 100.0, 130.0), Episode("af", 1000.0, 2400.0)]


def test_the_agent_config_is_the_shipped_cadence_and_the_detectors_minimum_durations() -> None:
    config = agent_config()
    assert (config.window_s, config.every_s, config.min_seconds) == (300, 60, 60)
    assert (config.min_duration_s("af"), config.min_duration_s("flutter"), config.min_duration_s("vt")) == (30, 30, 10)


def test_a_raise_inside_the_episode_or_one_span_after_it_detects_it_with_its_delay() -> None:
    score = _score([(0.0, "sinus"), (1000.0, "vt"), (1045.0, "sinus")], [("new", "vt", 1050.0)])
    outcome = score.outcome(score.episodes[0])
    assert (outcome["detected"], outcome["delay_s"]) == (True, 50.0)
    late = _score([(0.0, "sinus"), (1000.0, "vt"), (1045.0, "sinus")], [("new", "vt", 1080.0)])
    assert late.outcome(late.episodes[0])["detected"] is False
    assert late.false_raises("vt") == [(1080.0, "sinus")]


def test_an_alert_still_active_at_onset_covers_the_episode_and_a_cleared_one_does_not() -> None:
    changes = [(0.0, "sinus"), (100.0, "af"), (400.0, "sinus"), (420.0, "af")]
    active = _score(changes, [("new", "af", 180.0)])
    assert active.outcome(active.episodes[1])["already_active"] is True
    cleared = _score(changes, [("new", "af", 180.0), ("end", "af", 410.0)])
    assert cleared.outcome(cleared.episodes[1])["detected"] is False


def test_af_now_during_flutter_detects_the_flutter_row_and_is_a_false_af_detection() -> None:
    score = _score([(0.0, "sinus"), (600.0, "flutter")], [("new", "af", 720.0)], duration=1200.0)
    summary = summarise([score], agent_config())
    assert (summary["flutter"]["episodes"], summary["flutter"]["detected"]) == (1, 1)
    assert summary["flutter"]["median_delay_s"] == 120.0
    false = summary["af"]["false"]
    assert (false["false_detections"], false["during"]["flutter"]) == (1, 1)
    assert false["exposure_h"] == round(1200.0 / 3600.0, 2)  # no AF in the record: all of it is exposed
    assert summary["af"]["episodes"] == 0 and summary["af"]["sensitivity"] is None


def test_episodes_shorter_than_the_minimum_are_reported_apart_and_never_false() -> None:
    score = _score([(0.0, "sinus"), (500.0, "vt"), (505.0, "sinus")], [("new", "vt", 510.0)])
    row = summarise([score], agent_config())["vt"]
    assert (row["episodes"], row["shorter_episodes"], row["shorter_detected"]) == (0, 1, 1)
    assert row["false"]["false_detections"] == 0
    assert row["false"]["exposure_h"] == round((2400.0 - 5.0) / 3600.0, 2)


def test_an_episode_between_two_measurements_is_counted_as_not_measured_inside() -> None:
    # the agent measures at 60, 120, 180, ... s: a VT from 425.5 to 436.3 s has no measurement inside it
    between = _score([(0.0, "sinus"), (425.5, "vt"), (436.3, "sinus")], [])
    spanning = _score([(0.0, "sinus"), (100.0, "vt"), (200.0, "sinus")], [])
    row = summarise([between, spanning], agent_config())["vt"]
    assert [o["measurements_inside"] for o in row["outcomes"]] == [0, 2]
    assert (row["episodes"], row["episodes_measured_inside"]) == (2, 1)
