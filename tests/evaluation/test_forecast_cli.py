"""``python main.py forecast`` end to end on the tiny backbone: scenario -> windows -> encoder -> LM -> JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import yaml

from llm_runtime.forecast import Forecast
from main import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The CLI configures logging onto pytest's captured stderr, which is closed after the test: put it back."""
    config, root = structlog.get_config(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)


def test_forecast_cli_prints_a_valid_forecast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On the committed encoder (config/default.yaml's) and the tiny random backbone."""
    config = yaml.safe_load((ROOT / "config" / "default.yaml").read_text())
    config["llm"]["cache_dir"] = str(tmp_path / "cache")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    argv = ["forecast", "--scenario", "af_onset", "--seed", "1", "--at", "60", "--window", "30", "--horizon", "60"]
    argv += ["--backbone", "tiny-random", "--json", "--config", str(tmp_path / "config.yaml")]
    assert main(argv) == 0
    forecast = Forecast.model_validate(json.loads(capsys.readouterr().out))
    assert forecast.window_s == 30 and forecast.t_forecast == 60
    assert forecast.horizons_s == (60,)
    assert sum(forecast.rhythm_probs[60].values()) == pytest.approx(1.0, abs=1e-4)
    assert "UNTRAINED" in forecast.model_id
    assert (forecast.explanation is None) != (forecast.explanation_note is None)


def test_forecast_cli_reports_a_window_outside_the_record(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["forecast", "--scenario", "af_onset", "--at", "10", "--window", "30", "--backbone", "tiny-random"]
    assert main(argv) == 2
    assert "outside the record" in capsys.readouterr().err
