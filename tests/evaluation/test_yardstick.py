"""The yardstick's machinery: a generator-v2 benchmark, its frozen LM subsample, and the baselines scored on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from encoder_onnx.weights import file_sha256
from evaluation.data import (
    LM_SUBSAMPLE_FILE,
    YARDSTICK,
    EvalData,
    freeze_lm_subsample,
    frozen_lm_subsample,
)
from main import main
from simulators.benchmark import SPECS, BenchDataset, BenchSpec, build_from_spec

TINY_V2 = BenchSpec(
    "tiny-v2-eval", "t", seed=9, patients_per_scenario=3, minutes=12.0, scenarios=("af_onset", "precursor_no_onset"),
    stride_s=120.0, generator="2",
)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-v2")
    build_from_spec(TINY_V2, out, workers=1)
    return out


def test_the_yardstick_spec_meets_the_issue_counts() -> None:
    """>= 60 test patients and >= 12 onsets of each arrhythmia in the test split, by construction of the spec."""
    spec = SPECS[YARDSTICK]
    per_scenario_test = spec.patients_per_scenario - round(spec.split_fractions[0] * spec.patients_per_scenario)
    per_scenario_test -= round(spec.split_fractions[1] * spec.patients_per_scenario)
    assert spec.generator == "2" and len(spec.scenarios) * per_scenario_test >= 60 and per_scenario_test >= 12


def test_frozen_subsample_is_deterministic_and_never_redrawn(tiny_v2: Path, tmp_path: Path) -> None:
    data = EvalData(BenchDataset(tiny_v2))
    path = freeze_lm_subsample(data, 5, (10, 30, 60), (60, 180), seed=0)
    keys = frozen_lm_subsample(data.bench)
    assert keys and {k[2] for k in keys} <= {10, 30, 60}
    assert all(data.record(k[0]).split == "test" for k in keys)
    digest = file_sha256(path)
    assert freeze_lm_subsample(data, 50, (10,), (60,), seed=3) == path and file_sha256(path) == digest  # kept
    other = tmp_path / "copy"
    other.mkdir()
    for name in ("dataset.json", "index.csv"):
        (other / name).write_bytes((tiny_v2 / name).read_bytes())
    (other / "shards").symlink_to(tiny_v2 / "shards")
    assert file_sha256(freeze_lm_subsample(EvalData(BenchDataset(other)), 5, (10, 30, 60), (60, 180))) == digest


def test_baselines_are_scored_on_the_frozen_subsample(tiny_v2: Path, random_encoder: Path, tmp_path: Path) -> None:
    data = EvalData(BenchDataset(tiny_v2))
    freeze_lm_subsample(data, 4, (10, 30), (60,), seed=0)
    out = tmp_path / "eval"
    argv = ["eval", "forecast", "--data", str(tiny_v2), "--out", str(out), "--windows", "10,30", "--horizons", "60"]
    argv += ["--methods", "gbt,gbt_no_trend,linear_probe", "--train-cap", "0", "--n-boot", "5", "--no-replay"]
    argv += ["--encoder", str(random_encoder), "--threads", "1"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    frozen = frozen_lm_subsample(data.bench) or set()
    assert results["sets"]["lm"]["w10_h60"] == sum(1 for k in frozen if k[2] == 10)
    assert set(results["results"]["lm"]) == {"gbt", "gbt_no_trend", "linear_probe"}
    assert results["dataset"]["generator_version"] == "2"
    assert (tiny_v2 / LM_SUBSAMPLE_FILE).exists()


YARDSTICK_INDEX_SHA256 = "25aa33d20b452257c8ff4028f17b394940a6bcdea47d451a4eba260cd03cecad"
YARDSTICK_LM_SUBSAMPLE_SHA256 = "2116fa7ff99c3818ce80036c3b35399565cf2a3127b87b13f535689ef89a9513"
"""docs/EVALUATION.md states both; a change to the generator, the spec or the draw changes them and fails here."""


@pytest.mark.slow
def test_the_yardstick_builds_to_its_documented_sha256(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "yardstick", "--bench-dir", str(tmp_path), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{\n") :])  # after any log line
    assert summary["patients"] == {"train": 304, "val": 104, "test": 104}
    assert summary["records_with_onset"]["test"] == {"af": 13, "flutter": 13, "vt": 13}
    assert summary["lm_subsample_inputs"] == 2400
    assert (summary["index_sha256"], summary["lm_subsample_sha256"]) == (
        YARDSTICK_INDEX_SHA256,
        YARDSTICK_LM_SUBSAMPLE_SHA256,
    )
    root = tmp_path / YARDSTICK
    assert file_sha256(root / "index.csv") == YARDSTICK_INDEX_SHA256


def test_transfer_scores_every_train_test_pair(tiny_v2: Path, tiny_bench: Path, tmp_path: Path) -> None:
    """A 2 x 2 matrix per method: trained on each source, tested on each; in-source cells are the usual ones."""
    out = tmp_path / "transfer"
    argv = ["eval", "transfer", str(tiny_v2), str(tiny_bench), "--out", str(out), "--windows", "10,30"]
    argv += ["--horizons", "60", "--methods", "gbt,cnn", "--cnn-epochs", "1", "--n-boot", "5"]
    assert main(argv) == 0
    results = json.loads((out / "transfer.json").read_text())
    for method in ("gbt", "cnn"):
        assert set(results["matrix"][method]) == {str(tiny_v2), str(tiny_bench)}
        for by_test in results["matrix"][method].values():
            assert set(by_test) == {str(tiny_v2), str(tiny_bench)}
            assert all(0.0 <= m["mean"]["mean_macro_f1"] <= 1.0 for m in by_test.values())
    table = (out / "transfer.md").read_text()
    assert table.count("| gbt |") == 2 and table.count("| cnn |") == 2
