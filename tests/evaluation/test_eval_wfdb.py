"""A directory of WFDB records goes through the same path as a synthetic spec (as a real database would)."""

from __future__ import annotations

from pathlib import Path

from evaluation.data import EvalData, class_changes_of, open_benchmark
from simulators.scenarios import generate_scenario
from simulators.wfdb_io import write_record


def test_wfdb_directory_is_built_split_by_patient_and_onsets_reread(tmp_path: Path) -> None:
    records = tmp_path / "db"
    records.mkdir()
    for i, name in enumerate(("af_onset", "sinus_stable", "af_onset")):
        write_record(generate_scenario(name, seed=i, minutes=4.0, fs=250.0, leads=("II",)), records, f"r{i:02d}")
    data = EvalData(open_benchmark(str(records), tmp_path / "bench"))
    assert data.meta["source"].startswith("wfdb:")
    assert sorted(data.meta["patients"]["test"] + data.meta["patients"]["train"] + data.meta["patients"]["val"]) == [
        "r00",
        "r01",
        "r02",
    ]
    test_record = data.record_ids("test")[0]
    rec = data.record(test_record)
    assert rec.p_signal.shape[1] == 1 and rec.fs == 250.0
    changes = class_changes_of(data, "r00")
    assert changes[0] == (0.0, "sinus") and changes[-1][1] == "af"
    assert open_benchmark(str(records), tmp_path / "bench").root == data.bench.root  # built once, then reused


def test_eval_forecast_on_records_shorter_than_the_largest_cell(tmp_path: Path) -> None:
    """Issue #22: 12-minute records have no sample in cells whose w + h exceeds 720 s (600 + 180, ...); the run
    skips those cells instead of stopping with an IndexError, and scores the others."""
    import json

    from main import main

    records = tmp_path / "db"
    records.mkdir()
    for i, name in enumerate(("af_onset", "sinus_stable", "af_onset", "sinus_ectopy", "af_onset", "sinus_stable")):
        write_record(generate_scenario(name, seed=i, minutes=12.0, fs=250.0, leads=("II",)), records, f"r{i:02d}")
    out = tmp_path / "eval"
    argv = ["eval", "forecast", "--data", str(records), "--bench-dir", str(tmp_path / "bench"), "--out", str(out)]
    argv += ["--methods", "gbt", "--no-replay", "--n-boot", "5", "--windows", "60,600", "--horizons", "60,180"]
    assert main(argv) == 0
    cells = json.loads((out / "results.json").read_text())["results"]["full"]["gbt"]["cells"]
    assert "w60_h60" in cells and "w600_h180" not in cells
