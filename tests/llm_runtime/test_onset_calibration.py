"""Onset calibration: the Platt map against hand-computed values, its adapter.json form, and the engine applying it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from core.errors import CheckpointError
from llm_runtime.calibration import OnsetCalibration, PlattScale
from llm_runtime.checkpoints import save_adapter
from llm_runtime.engine import ForecastEngine
from llm_runtime.runner import ScoreRequest
from llm_runtime.settings import LlmSettings
from tests.llm_runtime.conftest import ecg_seconds, make_model


def test_platt_scale_by_hand() -> None:
    assert PlattScale(2.0, 0.0)(0.75) == pytest.approx(0.9)  # logit 0.75 = ln 3; sigmoid(2 ln 3) = 9 / 10
    assert PlattScale(1.0, math.log(1 / 3))(0.5) == pytest.approx(0.25)  # sigmoid(ln 1/3) = 1 / 4
    assert PlattScale(1.0, 0.0)(0.3) == pytest.approx(0.3)  # identity
    assert 0 <= PlattScale(3.0, 0.0)(0.0) < 1e-6 and 1 - 1e-6 < PlattScale(3.0, 0.0)(1.0) <= 1  # clipped, finite


def test_apply_uses_the_arrhythmia_map_then_the_horizon_fallback() -> None:
    cal = OnsetCalibration({300: {"af": PlattScale(2.0, 0.0), "*": PlattScale(1.0, math.log(1 / 3))}})
    out = cal.apply({300: {"af": 0.75, "vt": 0.5}, 60: {"af": 0.2}})
    assert out[300]["af"] == pytest.approx(0.9) and out[300]["vt"] == pytest.approx(0.25)
    assert out[60] == {"af": 0.2}  # a horizon without a map is left as scored


def test_meta_round_trip_and_bad_entries() -> None:
    cal = OnsetCalibration({60: {"*": PlattScale(0.5, -1.25)}, 300: {"af": PlattScale(2.0, 0.5)}}, "val: 6 patients")
    meta = json.loads(json.dumps(cal.to_meta()))  # through adapter.json
    assert OnsetCalibration.from_meta({"calibration": meta}) == cal
    assert OnsetCalibration.from_meta({}) is None
    for bad in (
        {"method": "isotonic", "onset": {}},
        {"method": "platt", "onset": {"soon": {"*": [1, 0]}}},
        {"method": "platt", "onset": {"60": {"*": [-1, 0]}}},
        {"method": "platt", "onset": {"60": {"af": [1]}}},
    ):
        with pytest.raises(CheckpointError, match="calibration"):
            OnsetCalibration.from_meta({"calibration": bad})


def test_engine_applies_the_adapters_calibration(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    save_adapter(make_model(), adapter, {"version": "t", "backbone": "tiny-random"})
    meta = json.loads((adapter / "adapter.json").read_text())
    meta["calibration"] = OnsetCalibration({60: {"*": PlattScale(2.0, 1.0)}}).to_meta()
    (adapter / "adapter.json").write_text(json.dumps(meta))
    settings = LlmSettings(
        backbone="tiny-random", adapter_dir=adapter, window_s=12, slack_s=4, horizons_s=(60,), device="cpu"
    )
    raw, calibrated = (ForecastEngine.load(settings, "rebuild", calibrated=c) for c in (False, True))
    assert raw.calibration is None and calibrated.calibration is not None
    out = []
    for engine in (raw, calibrated):
        with engine.runner as runner:
            runner.prime("p", ecg_seconds(12), 0)
            out.append(engine.forecast([ScoreRequest("p", "heart rate 70 bpm")])[0])
    scale = PlattScale(2.0, 1.0)
    for cls, p in out[0].onset_probs[60].items():
        assert out[1].onset_probs[60][cls] == pytest.approx(scale(p), abs=1e-6)
    assert out[1].rhythm_probs == out[0].rhythm_probs  # only onset probabilities are calibrated
    torch.testing.assert_close(torch.tensor(1.0), torch.tensor(sum(out[1].rhythm_probs[60].values())))


def test_with_rationale_adds_the_explanation_and_keeps_the_scores() -> None:
    """The agent asks for a rationale only when an alert is about to be raised, on an already scored forecast."""
    settings = LlmSettings(backbone="tiny-random", window_s=12, slack_s=4, horizons_s=(60,), device="cpu")
    engine = ForecastEngine.load(settings, "rebuild")
    with engine.runner as runner:
        runner.prime("p", ecg_seconds(12), 0)
        request = ScoreRequest("p", "heart rate 70 bpm")
        (scored,) = engine.forecast([request])
        explained = engine.with_rationale(request, scored)
        (inline,) = engine.forecast([request], explain=True)
    assert scored.explanation is None and scored.explanation_note is None
    assert (explained.explanation is None) != (explained.explanation_note is None)
    assert (explained.explanation, explained.explanation_note) == (inline.explanation, inline.explanation_note)
    assert explained.onset_probs == scored.onset_probs and explained.rhythm_probs == scored.rhythm_probs
    assert explained.latency_ms >= scored.latency_ms
