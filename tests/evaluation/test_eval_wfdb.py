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
