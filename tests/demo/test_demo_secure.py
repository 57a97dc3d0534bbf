"""``python main.py demo --secure-broker``: the whole demo through a private mosquitto that runs the broker security
profile, every process signed in as its own identity (issue #19 item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.settings import Settings
from demo.run import DemoOptions, run_demo


@pytest.mark.e2e
def test_the_demo_runs_end_to_end_on_a_secured_broker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from encoder_onnx.model import ConvEncoder, EncoderConfig
    from encoder_onnx.weights import save_encoder_weights

    torch.manual_seed(0)
    weights = tmp_path / "encoder.pt"
    save_encoder_weights(weights, ConvEncoder(EncoderConfig()), {"note": "random weights for tests"})
    settings = Settings.model_validate(
        {
            "mqtt": {"url": "mqtt://127.0.0.1:9"},  # never used: the secured demo always runs its own broker
            "encoder": {"weights_path": str(weights), "onnx_path": str(tmp_path / "encoder.onnx")},
            "llm": {"window_s": 30, "slack_s": 10, "num_threads": 1},
            "forecast": {"min_seconds": 20},
        }
    )
    options = DemoOptions(
        patients=4,
        speed=60.0,
        minutes=2.5,
        backbone="tiny-random",
        view_every_s=1.0,
        tune_process=False,
        secure_broker=True,
    )
    summary = run_demo(settings, options)
    out = capsys.readouterr().out
    assert "broker security profile: no anonymous access" in out
    assert "ecgcast-agent (agent)" in out and "demo-gateway" in out and "nurse.demo" in out
    # The simulator's waves reached the agent, its alerts reached the view: the lead-off patient's technical alert.
    lead_off = summary["patients"][3]
    assert lead_off["scenario"] == "lead_off"
    assert any(a["kind"] == "cannot_assess" for a in lead_off["alerts"])
