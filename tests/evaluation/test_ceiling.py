"""The oracle ceiling: what it credits and charges, and that it reads the same onsets the benchmark labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.ceiling import GeneratorTruth, ScriptedPrecursor, alarm_frontier, ranking_ceiling, scripted_precursors
from evaluation.data import EvalData, open_benchmark, record_truth
from simulators.benchmark import BenchSpec, build_from_spec

V2_TINY = BenchSpec(
    "tiny-ceiling",
    "t",
    seed=11,
    patients_per_scenario=3,
    minutes=6.0,
    scenarios=("af_onset", "precursor_no_onset", "sinus_stable"),
    split_fractions=(0.34, 0.0, 0.66),
    generator="2",
)


def _precursor(kind: str, duration_s: float, onset: bool, split: str = "test") -> ScriptedPrecursor:
    return ScriptedPrecursor("r", split, "g", kind, 100.0, duration_s, 100.0 + duration_s if onset else None)


def test_a_decoy_as_long_as_a_warning_costs_the_oracle_a_false_alert() -> None:
    truth = GeneratorTruth(
        [_precursor("pac_rise", 300.0, True), _precursor("pac_rise", 300.0, False)], {}, {"test": 0.5}
    )
    frontier = alarm_frontier(truth, ["test"])
    by_delay = {r["delay_s"]: r for r in frontier["watch_everything"]}
    assert by_delay[0.0]["alerted_2min_ahead"] == 1 and by_delay[0.0]["false_alerts"] == 1
    assert by_delay[0.0]["false_alerts_per_patient_day"] == pytest.approx(2.0)
    assert by_delay[180.0]["alerted_2min_ahead"] == 1  # raised 120 s before the onset: just in time
    assert by_delay[300.0]["alerted_2min_ahead"] == 0 and by_delay[300.0]["false_alerts"] == 1
    assert by_delay[600.0]["false_alerts"] == 0
    assert frontier["most_caught_at_2_per_day"]["false_alerts"] <= 1


def test_watching_only_the_kinds_decoys_lack_avoids_their_false_alerts() -> None:
    truth = GeneratorTruth(
        [_precursor("pac_rise", 600.0, True), _precursor("pvc_rise", 600.0, False)], {}, {"test": 1.0}
    )
    best = alarm_frontier(truth, ["test"])["fewest_false_at_80pct"]
    assert best["kinds"] == ["pac_rise"] and best["false_alerts"] == 0 and best["sensitivity"] == 1.0


@pytest.fixture(scope="module")
def v2_tiny(tmp_path_factory: pytest.TempPathFactory) -> EvalData:
    out: Path = tmp_path_factory.mktemp("bench-v2")
    build_from_spec(V2_TINY, out, workers=1)
    return EvalData(open_benchmark(str(out), out))


def test_scripted_onsets_are_the_onsets_the_benchmark_labels(v2_tiny: EvalData) -> None:
    truth = scripted_precursors(v2_tiny)
    onsets = [p for p in truth.precursors if p.onset_s is not None]
    decoys = [p for p in truth.precursors if p.onset_s is None]
    assert decoys and all(p.group == "precursor_no_onset" for p in decoys)
    assert len(onsets) + sum(truth.onsets_without_precursor.values()) == 3  # one af_onset record per patient
    for p in onsets:
        assert p.onset_s is not None
        labelled = [t for t, cls in record_truth(v2_tiny, p.record_id).changes if cls == "af"]
        assert labelled and abs(labelled[0] - p.onset_s) < 2.0
    assert truth.quiet_days["test"] > 0  # decoys and stable records never convert


def test_ranking_ceiling_scores_every_window(v2_tiny: EvalData) -> None:
    ranking = ranking_ceiling(v2_tiny, scripted_precursors(v2_tiny), "af", 60)
    assert set(ranking["full"]) == {str(w) for w in v2_tiny.windows()}


def test_precursor_table_labels_every_input_with_its_scripted_state(v2_tiny: EvalData) -> None:
    """The precursor read-out's training table: one row per input of the split, the state the script had under way
    at the anchor (what the ceiling reads), and onset labels that agree with the benchmark's samples."""
    from core.measurements import TREND_FEATURE_NAMES
    from evaluation.precursor_table import precursor_table

    table = precursor_table(v2_tiny, "train", (60, 300))
    keys = {s.key for w in v2_tiny.windows() for s in v2_tiny.samples("train", (w, 60))}
    assert len(table["state"]) == len(keys) and table["trends"].shape == (len(keys), len(TREND_FEATURE_NAMES))
    truth = scripted_precursors(v2_tiny)
    for record_id, anchor, state in zip(table["record_id"], table["anchor_s"], table["state"], strict=True):
        under_way = [
            p.kind
            for p in truth.precursors
            if p.record_id == record_id and p.start_s <= anchor < p.start_s + p.duration_s
        ]
        assert state == (under_way[0] if under_way else "none")
    assert set(table["state"]) != {"none"}  # the decoys and warned onsets of the split show up
    by_key = {s.key: s.onset["af"] for w in v2_tiny.windows() for s in v2_tiny.samples("train", (w, 300))}
    for i, key in enumerate(zip(table["record_id"], table["anchor_s"], table["window_s"], strict=True)):
        expected = by_key.get((str(key[0]), float(key[1]), int(key[2])), -1)
        assert table["onset_af_300"][i] == expected
