"""The real Gemma 3 270M, offline: a real (synthetic-scenario) ECG window through encoder and LM.

Marked e2e: the first run assembles the GGUF and saves a bf16 copy in the cache (about a minute or two).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llm_runtime.engine import ForecastEngine
from llm_runtime.runner import ScoreRequest
from llm_runtime.settings import LlmSettings

ROOT = Path(__file__).resolve().parents[2]


def encoded_window(window_s: int) -> tuple[torch.Tensor, str]:
    """(T, 2, 64) embeddings of an AF-onset scenario's last ``window_s`` seconds before 120 s, and its evidence."""
    from core.measurements import measure_leads
    from core.windows import preprocess_record
    from encoder_onnx.weights import load_encoder_weights
    from simulators.scenarios import generate_scenario

    rec = generate_scenario("af_onset", seed=1, minutes=2.5, leads=("II", "V1"))
    segment = rec.p_signal[round((120 - window_s) * rec.fs) : round(120 * rec.fs)]
    windows = preprocess_record(segment, rec.fs, sig_name=list(rec.sig_name)).windows  # (2, T, 256)
    weights = next(p for p in (ROOT / "models/encoder/encoder.pt", ROOT / "models/forecaster/encoder.pt") if p.exists())
    encoder, _ = load_encoder_weights(weights)
    with torch.no_grad():
        flat = encoder(torch.from_numpy(windows.reshape(-1, 256)))  # (2*T, 256) -> (2*T, 64)
    per_lead = flat.reshape(2, windows.shape[1], 64)  # (2*T, 64) -> (2, T, 64)
    return per_lead.permute(1, 0, 2), measure_leads(segment, rec.fs, list(rec.sig_name)).as_prompt_text()


@pytest.mark.e2e
def test_gemma_270m_scores_a_real_window_with_the_streaming_cache() -> None:
    window_s = 20
    seconds, evidence = encoded_window(window_s)
    settings = LlmSettings(window_s=window_s, slack_s=10, horizons_s=(60,), device="cpu", explain_max_tokens=8)
    engine = ForecastEngine.load(settings, slide="rebuild")
    assert engine.runner.model.lm.config.hidden_size == 640
    with engine.runner as runner:
        runner.prime("p1", seconds[:-3], first_second=100)
        for i in range(3):  # the last seconds arrive one by one
            runner.extend("p1", seconds[window_s - 3 + i], 100 + window_s - 3 + i)
        request = [ScoreRequest("p1", evidence)]
        cached, full = runner.score(request)[0], runner.score(request, prefill=True)[0]
        for qa, qb in zip(cached.option_logprobs, full.option_logprobs, strict=True):
            for a, b in zip(qa, qb, strict=True):
                torch.testing.assert_close(a, b, atol=2e-3, rtol=0)
        forecast = engine.forecast(request, explain=True)[0]
    assert forecast.window_s == window_s and forecast.t_forecast == 120
    assert sum(forecast.rhythm_probs[60].values()) == pytest.approx(1.0, abs=1e-4)
    assert "UNTRAINED" in forecast.model_id and forecast.model_version.startswith("gguf-sha256:")
    assert (forecast.explanation is None) != (forecast.explanation_note is None)
