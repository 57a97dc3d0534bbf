"""A directory of WFDB records goes through the same path as a synthetic spec (as a real database would)."""

from __future__ import annotations

from pathlib import Path

from evaluation.data import EvalData, open_benchmark, record_truth
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
    truth = record_truth(data, "r00")
    assert truth.precursor is None  # a WFDB record does not say what preceded its onset
    changes = truth.changes
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


def test_records_of_any_length_are_skipped_per_cell_and_counted(tmp_path: Path) -> None:
    """Issue #22: 1-, 3- and 12-minute records in one folder. A record too short for a cell has no sample there
    (counted per cell in dataset.json and results.json), the data layer selects samples from the others, and the
    cheap baseline runs to the end without a traceback."""
    import json

    from main import main

    records = tmp_path / "db"
    records.mkdir()
    for i, (name, minutes) in enumerate((("af_onset", 3.0), ("sinus_ectopy", 12.0), ("sinus_stable", 1.0))):
        write_record(generate_scenario(name, seed=i, minutes=minutes, fs=250.0, leads=("II",)), records, f"r{i:02d}")
    data = EvalData(open_benchmark(str(records), tmp_path / "bench"))
    skipped = data.meta["records_without_samples"]
    assert skipped["w10_h60"] == 1  # the 1-minute record: no anchor T with T + 60 s inside it
    assert skipped["w300_h60"] == 2 and skipped["w600_h600"] == 3  # 3-minute one too short; no record 20 min long
    assert "w600_h60" in skipped and skipped["w600_h60"] == 2
    for split in ("train", "val", "test"):
        for cell in ((10, 60), (300, 60), (600, 600)):
            samples = data.samples(split, cell, cap=5)
            assert all(data.record(s.record_id).p_signal.shape[0] / 250.0 >= s.anchor_s + s.horizon_s for s in samples)
    assert not any(data.samples(split, (600, 600)) for split in ("train", "val", "test"))

    out = tmp_path / "eval"
    argv = ["eval", "forecast", "--data", str(records), "--bench-dir", str(tmp_path / "bench"), "--out", str(out)]
    argv += ["--methods", "gbt", "--no-replay", "--n-boot", "5", "--windows", "10,300,600", "--horizons", "60,600"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["records_without_samples"] == skipped
    assert "w600_h600" not in results["sets"]["full"] and all(results["sets"]["full"].values())
