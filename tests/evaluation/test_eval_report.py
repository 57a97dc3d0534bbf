"""Merging runs of different methods: only runs on the same benchmark and the same sample sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evaluation.report import merge_results, write_report


def _run(method: str, n: int, sha: str = "abc") -> dict[str, Any]:
    return {
        "dataset": {"index_sha256": sha},
        "sets": {"lm": {"w10_h60": n}},
        "results": {"lm": {method: {"cells": {}}}},
        "lm": {method: {"inputs_scored": n}},
        "replay": {"method": method} if method == "shipped" else None,
    }


def test_merge_keeps_every_method_and_the_replay() -> None:
    merged = merge_results([_run("gbt", 5), _run("shipped", 5)])
    assert set(merged["results"]["lm"]) == {"gbt", "shipped"}
    assert merged["replay"] == {"method": "shipped"}
    assert set(merged["lm"]) == {"gbt", "shipped"}


def test_merge_refuses_other_samples_or_another_benchmark() -> None:
    with pytest.raises(ValueError, match="not the same samples"):
        merge_results([_run("gbt", 5), _run("shipped", 6)])
    with pytest.raises(ValueError, match="different benchmarks"):
        merge_results([_run("gbt", 5), _run("shipped", 5, sha="other")])


def test_a_replay_only_run_writes_its_tables_without_plots(tmp_path: Path) -> None:
    replay = {
        "config": {"cadence_s": 60, "lookback_s": 300},
        "onsets": [],
        "per_arrhythmia": {"af": {"onsets": 1, "alerted": 0, "alerted_2min_ahead": 0, "median_lead_time_s": None}},
        "non_converting_records": 1,
        "non_converting_hours": 0.5,
        "false_alerts": 0,
        "false_alerts_per_patient_day": 0.0,
        "records": [],
        "method": "shipped",
        "model_id": "m",
        "model_version": "v",
        "window_s": 300,
        "horizons_s": [60, 300],
    }
    results = {"synthetic": True, "dataset": {"name": "x"}, "results": {"full": {}, "lm": {}}, "replay": replay}
    write_report(results, tmp_path)  # --lm-windows "" with no cheap method: no cells to plot
    assert "Alert-level replay" in (tmp_path / "tables.md").read_text()
    assert not (tmp_path / "eval_f1_window.png").exists()
