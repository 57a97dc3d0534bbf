"""The demo runs to completion in a short accelerated mode and reports what it promised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.local_broker import LocalMosquitto
from agent.settings import Settings
from demo.run import DemoOptions, run_demo


@pytest.mark.e2e
def test_demo_runs_and_summarises(broker: LocalMosquitto, tmp_path: Path) -> None:
    import torch

    from encoder_onnx.model import ConvEncoder, EncoderConfig
    from encoder_onnx.weights import save_encoder_weights

    torch.manual_seed(0)
    weights = tmp_path / "encoder.pt"
    save_encoder_weights(weights, ConvEncoder(EncoderConfig()), {"note": "random weights for tests"})
    settings = Settings.model_validate(
        {
            "mqtt": {"url": broker.url},
            "encoder": {"weights_path": str(weights), "onnx_path": str(tmp_path / "encoder.onnx")},
            "llm": {"window_s": 30, "slack_s": 10, "num_threads": 1},
            "forecast": {"min_seconds": 20},
        }
    )
    out = tmp_path / "summary.json"
    options = DemoOptions(
        patients=4, speed=60.0, minutes=2.5, json_path=out, backbone="tiny-random", view_every_s=1.0, tune_process=False
    )
    summary = run_demo(settings, options)
    assert json.loads(out.read_text()) == summary
    assert summary["totals"]["patients"] == 4
    assert [p["scenario"] for p in summary["patients"]] == ["af_onset", "sinus_stable", "vt_onset", "lead_off"]
    lead_off = summary["patients"][3]
    assert any(a["kind"] == "cannot_assess" for a in lead_off["alerts"])
    assert "synthetic" in summary["data"]
