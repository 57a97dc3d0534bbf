"""``eval forecast`` end to end on the tiny benchmark with the tiny backbone: every method, the report files,
and the alert replay through the agent's AlertService."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from main import main


def test_eval_forecast_writes_results_tables_and_plots(
    tiny_bench: Path, random_encoder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    argv = ["eval", "forecast", "--data", str(tiny_bench), "--out", str(out), "--windows", "10,30"]
    argv += ["--horizons", "60", "--lm-windows", "10", "--lm-cap", "2", "--train-cap", "30", "--cnn-epochs", "1"]
    argv += ["--n-boot", "10", "--backbone", "tiny-random", "--encoder", str(random_encoder)]
    argv += ["--adapter", str(tmp_path / "no-adapter"), "--threads", "1"]
    argv += ["--replay-groups", "af_onset,sinus_stable", "--replay-minutes", "0"]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["synthetic"] is True
    assert results["dataset"]["spec"]["name"] == "tiny-eval"
    full, lm = results["results"]["full"], results["results"]["lm"]
    assert set(full) == {"gbt", "cnn", "linear_probe"}
    assert set(lm) == {"gbt", "cnn", "linear_probe", "zero_shot"}  # no adapter: "shipped" is skipped
    for method in full.values():
        assert set(method["cells"]) == {"w10_h60", "w30_h60"}
        cell = method["cells"]["w10_h60"]
        assert cell["n"] == results["sets"]["full"]["w10_h60"]
        assert 0.0 <= cell["macro_f1"] <= 1.0
    assert set(lm["zero_shot"]["cells"]) == {"w10_h60"}
    assert lm["zero_shot"]["cells"]["w10_h60"]["n"] == lm["gbt"]["cells"]["w10_h60"]["n"]  # identical samples
    assert results["lm"]["zero_shot"]["inputs_scored"] <= 2
    replay = results["replay"]
    assert replay["method"] == "zero_shot"
    assert replay["per_arrhythmia"]["af"]["onsets"] == 1  # the af_onset test patient converts once
    assert replay["onsets"][0]["precursor"] in {"rising ectopy", "none"}  # generator v1's script, regenerated
    assert replay["acceptance"]["forecast_alerts"] == sum(len(r["alerts"]) for r in replay["records"])
    assert replay["non_converting_records"] == 1
    assert all(r["forecasts"] > 0 for r in replay["records"])
    for name in ("tables.md", "eval_f1_window.png", "eval_f1_horizon.png", "eval_calibration.png"):
        assert (out / name).stat().st_size > 0
    tables = (out / "tables.md").read_text()
    assert "| zero_shot |" in tables and "Synthetic data" in tables
    assert "results.json" in capsys.readouterr().out
