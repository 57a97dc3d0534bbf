"""The probe variant: its prompt, its features on the streaming cache, its head, and the engine that uses them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import CheckpointError, ConfigError
from core.measurements import TREND_FEATURE_NAMES
from llm_runtime.backbones import load_backbone
from llm_runtime.checkpoints import save_adapter
from llm_runtime.engine import ForecastEngine
from llm_runtime.model import EcgLanguageModel, EcgLmConfig
from llm_runtime.probe import ProbeHead
from llm_runtime.prompts import CHAT_FORMATS, PROBE_QUERY, PromptBook
from llm_runtime.runner import ModelRunner, RunnerConfig, ScoreRequest
from llm_runtime.settings import LlmSettings

LAYERS = (1, -1)
HORIZONS = (60, 300)


def _model(seed: int = 0) -> EcgLanguageModel:
    backbone = load_backbone("tiny-random")
    torch.manual_seed(seed)
    return EcgLanguageModel(backbone.lm, EcgLmConfig(hidden_size=backbone.lm.config.hidden_size, lora=None)).eval()


def _runner(window_s: int = 12) -> ModelRunner:
    backbone = load_backbone("tiny-random")
    prompts = PromptBook(backbone.tokenizer, CHAT_FORMATS["gemma"], ("ii",), ())
    return ModelRunner(_model(), prompts, RunnerConfig("streaming", window_s, 4, "rebuild"))


def _seconds(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 64, generator=torch.Generator().manual_seed(seed))


def _head(n_features: int, seed: int = 0, n_trends: int = 0) -> ProbeHead:
    """A random head over ``n_features`` LM features (and ``n_trends`` trend features: 3 input columns each)."""
    rng = np.random.default_rng(seed)
    n_h, n_in = len(HORIZONS), n_features + 3 * n_trends
    return ProbeHead(
        HORIZONS,
        LAYERS,
        mean=rng.normal(size=n_in),
        scale=np.ones(n_in),
        rhythm_w=rng.normal(size=(n_h, 4, n_in)),
        rhythm_b=np.zeros((n_h, 4)),
        onset_w=rng.normal(size=(n_h, 3, n_in)),
        onset_b=np.zeros((n_h, 3)),
        platt=np.tile([1.0, 0.0], (n_h, 3, 1)),
        trend_fill=np.zeros(n_trends),
    )


def test_probe_prompt_has_no_questions_and_ends_with_the_query() -> None:
    runner = _runner()
    prompts = runner.prompts
    assert prompts.probe
    head = prompts.tokenizer.decode(prompts.head)
    assert "Q1" not in head and "Answer these questions" not in head
    context = prompts.tokenizer.decode(prompts.context(30, "heart rate 72 bpm"))
    assert PROBE_QUERY in context and context.rstrip().endswith("model")


def test_features_on_the_streaming_cache_equal_those_of_one_prefill() -> None:
    seconds = _seconds(10)
    request = ScoreRequest("p", "heart rate 72 bpm")
    with _runner() as live, _runner() as primed:
        for t in range(10):
            live.extend("p", seconds[t], t)
        primed.prime("p", seconds, 0)
        a = live.probe_features([request], LAYERS)
        b = primed.probe_features([request], LAYERS)
    assert a.shape == (1, 2 * 64)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_features_come_with_the_span_of_the_window_they_read() -> None:
    """Window 12 s + slack 4 s, rebuilt inline: after 20 seconds the cache holds a rebuilt prefix, and the span
    reported with the features is that prefix's, not the 20 seconds streamed."""
    request = ScoreRequest("p", "heart rate 72 bpm")
    with _runner() as runner:
        for t, second in enumerate(_seconds(20)):
            runner.extend("p", second, t)
        features, spans = runner.probe_read([request], LAYERS)
        assert spans == [runner.window_span("p")]
        last, n = spans[0]
        assert last == 19 and 12 <= n <= 16
        torch.testing.assert_close(features, runner.probe_features([request], LAYERS))


def test_features_depend_on_the_ecg_and_on_the_evidence() -> None:
    with _runner() as runner:
        runner.prime("a", _seconds(10, seed=1), 0)
        runner.prime("b", _seconds(10, seed=2), 0)
        base = runner.probe_features([ScoreRequest("a", "heart rate 72 bpm")], LAYERS)
        other_ecg = runner.probe_features([ScoreRequest("b", "heart rate 72 bpm")], LAYERS)
        other_text = runner.probe_features([ScoreRequest("a", "heart rate 141 bpm, irregular")], LAYERS)
    assert not torch.allclose(base, other_ecg)
    assert not torch.allclose(base, other_text)


def test_head_gives_distributions_and_survives_a_round_trip(tmp_path: Path) -> None:
    head = _head(8)
    x = np.random.default_rng(1).normal(size=(5, 8))
    out = head.predict(x)
    for rhythm, onset in out:
        assert set(rhythm) == set(HORIZONS)
        assert all(abs(sum(p.values()) - 1) < 1e-9 for p in rhythm.values())
        assert all(0 <= v <= 1 for p in onset.values() for v in p.values())
    assert out[0] != out[1]
    head.save(tmp_path, {"note": "test"})
    again = ProbeHead.load(tmp_path)
    assert again.layers == LAYERS and again.predict(x) == out


def test_head_with_wrong_shapes_is_refused(tmp_path: Path) -> None:
    head = _head(8)
    head.save(tmp_path, {})
    info = json.loads((tmp_path / "probe_head.json").read_text())
    (tmp_path / "probe_head.json").write_text(json.dumps({**info, "horizons_s": [60, 300, 600]}))
    with pytest.raises(CheckpointError, match="shapes"):
        ProbeHead.load(tmp_path)


def _probe_adapter(directory: Path, with_head: bool, n_trends: int = 0) -> Path:
    model = _model(seed=3)
    meta = {"backbone": "tiny-random", "prompt": "probe", "leads": ["ii"], "version": "probe/test"}
    save_adapter(model, directory, meta)
    if with_head:
        _head(2 * model.config.hidden_size, n_trends=n_trends).save(directory, {})
    return directory


def _settings(adapter: Path, **extra: object) -> LlmSettings:
    return LlmSettings.model_validate(
        {"backbone": "tiny-random", "adapter_dir": adapter, "leads": ["ii"], "window_s": 12, "horizons_s": HORIZONS}
        | extra
    )


def test_engine_forecasts_with_the_head_and_different_ecg_gives_different_risk(tmp_path: Path) -> None:
    engine = ForecastEngine.load(_settings(_probe_adapter(tmp_path, with_head=True)), slide="rebuild")
    runner = engine.runner
    runner.prime("a", _seconds(12, seed=1), 0)
    runner.prime("b", _seconds(12, seed=2), 0)
    fa, fb = engine.forecast([ScoreRequest("a", "heart rate 72 bpm"), ScoreRequest("b", "heart rate 72 bpm")])
    assert fa.horizons_s == HORIZONS and fa.window_s == 12 and fa.t_forecast == 12.0
    assert fa.onset_probs != fb.onset_probs
    features = engine.probe_features([ScoreRequest("a", "heart rate 72 bpm")]).numpy()
    expected_rhythm, _ = engine.probe.predict(features)[0]  # type: ignore[union-attr]
    assert fa.rhythm_probs == {h: expected_rhythm[h] for h in HORIZONS}


def test_forecasts_carry_the_version_adapter_json_names(tmp_path: Path) -> None:
    """A new head ships by replacing probe_head.* and bumping adapter.json's version, not the weights file: the
    forecasts must say which head made them."""
    adapter = _probe_adapter(tmp_path, with_head=True)
    assert ForecastEngine.load(_settings(adapter), slide="rebuild").model_version.endswith("/probe/test")
    meta_path = adapter / "adapter.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "version": "probe/test-head2"}))
    assert ForecastEngine.load(_settings(adapter), slide="rebuild").model_version.endswith("/probe/test-head2")


def test_a_head_that_reads_trends_gets_each_requests_own(tmp_path: Path) -> None:
    """The trend features travel with the request: two patients with the same ECG and evidence line but different
    trends get different risks; a request without trends (no measurements) is read as all missing."""
    n = len(TREND_FEATURE_NAMES)
    engine = ForecastEngine.load(_settings(_probe_adapter(tmp_path, True, n_trends=n)), slide="rebuild")
    assert engine.probe is not None and engine.probe.reads_trends
    for pid in ("a", "b", "c"):
        engine.runner.prime(pid, _seconds(12, seed=1), 0)
    rising, steady = np.linspace(0.0, 5.0, n), np.zeros(n)
    requests = [ScoreRequest("a", "72 bpm", rising), ScoreRequest("b", "72 bpm", steady), ScoreRequest("c", "72 bpm")]
    fa, fb, fc = engine.forecast(requests)
    assert fa.onset_probs != fb.onset_probs
    features = engine.probe_features([ScoreRequest("c", "72 bpm")]).numpy()
    _, expected = engine.probe.predict(features, np.full((1, n), np.nan))[0]
    assert fc.onset_probs == {h: expected[h] for h in HORIZONS}


def test_engine_refuses_leads_the_adapter_was_not_trained_on(tmp_path: Path) -> None:
    adapter = _probe_adapter(tmp_path, with_head=True)
    with pytest.raises(ConfigError, match="differ from the adapter"):
        ForecastEngine.load(_settings(adapter, leads=["ii", "v1"]), slide="rebuild")


def test_engine_without_a_head_gives_features_but_refuses_to_forecast(tmp_path: Path) -> None:
    engine = ForecastEngine.load(_settings(_probe_adapter(tmp_path, with_head=False)), slide="rebuild")
    engine.runner.prime("a", _seconds(12), 0)
    assert engine.probe_features([ScoreRequest("a", "x")]).shape == (1, 2 * 64)
    with pytest.raises(ConfigError, match="without a forecast head"):
        engine.forecast([ScoreRequest("a", "x")])


def test_the_probe_variant_asks_its_base_lm_for_a_note_and_drops_a_copied_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The frozen base LM gets a few-shot prompt of notes for the alert's arrhythmia, with the patient's evidence
    line last; a generation that copies one of the worked notes is not an explanation."""
    from llm_runtime.prompts import RATIONALE_NOTES
    from llm_runtime.runner import Generation

    engine = ForecastEngine.load(_settings(_probe_adapter(tmp_path, with_head=True)), slide="rebuild")
    engine.runner.prime("a", _seconds(12), 0)
    request = ScoreRequest("a", "Lead II, 300 s: HR 72 bpm; PAC 3, PVC 0, couplets 0; longest V-run 0")
    (forecast,) = engine.forecast([request])
    prompts: list[str] = []

    def answer(text: str) -> object:
        def complete_line(ids: list[int], *_: object) -> Generation:
            prompts.append(str(engine.runner.prompts.tokenizer.decode(ids, skip_special_tokens=True)))
            return Generation(text, (), True)

        return complete_line

    monkeypatch.setattr(engine.runner, "complete_line", answer(RATIONALE_NOTES["vt"][0][1]))
    explained = engine.with_rationale(request, forecast, "vt")
    assert explained.explanation is None and "repeats the prompt" in str(explained.explanation_note)
    assert "ventricular tachycardia" in prompts[0] and "atrial flutter" not in prompts[0]
    assert (
        "HR 72 bpm; PAC 3, PVC 0, couplets 0; longest V-run 0\nForecast: ventricular tachycardia within" in prompts[0]
    )
    fine = "HR 72 bpm, PVC 0 in 300 s with couplets 0 and longest V-run 0: findings that can precede VT."
    monkeypatch.setattr(engine.runner, "complete_line", answer(fine))
    assert engine.with_rationale(request, forecast, "vt").explanation == fine


def test_complete_line_stops_at_the_end_of_the_line_and_leaves_caches_alone(tmp_path: Path) -> None:
    engine = ForecastEngine.load(_settings(_probe_adapter(tmp_path, with_head=True)), slide="rebuild")
    engine.runner.prime("a", _seconds(12), 0)
    before = engine.runner.cached_seconds("a")
    ids = engine.runner.prompts.ids("Note: one\nNote: two\nNote:")
    generation = engine.runner.complete_line(ids, max_new_tokens=6)
    assert len(generation.token_ids) <= 6 and "\n" not in generation.text
    assert engine.runner.cached_seconds("a") == before


def test_a_note_citing_a_number_the_evidence_does_not_say_is_retried_then_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A base LM copies some numbers from the worked note nearest to it: the runtime tries other prompts and keeps
    only a note whose every "NAME number" is the evidence line's."""
    from llm_runtime.engine import RATIONALE_TRIES, ungrounded
    from llm_runtime.runner import Generation

    line = "Lead II, 300 s: HR 104 bpm; irregularity 0.13; PAC 52, PVC 13, couplets 0; longest V-run 1"
    assert ungrounded("HR 104 bpm, PAC 52, PVC 0 in 300 s: findings.", line) == "PVC 0"
    assert ungrounded("HR 104 bpm, PAC 52, PVC 13 in 300 s, irregularity 0.13: findings.", line) is None
    engine = ForecastEngine.load(_settings(_probe_adapter(tmp_path, with_head=True)), slide="rebuild")
    engine.runner.prime("a", _seconds(12), 0)
    request = ScoreRequest("a", line)
    (forecast,) = engine.forecast([request])
    wrong = "HR 104 bpm, PAC 52, PVC 0 in 300 s: findings that can precede atrial fibrillation."
    right = "HR 104 bpm, PAC 52, PVC 13 in 300 s: findings that can precede atrial fibrillation."
    answers = iter([wrong, right])
    monkeypatch.setattr(engine.runner, "complete_line", lambda *a, **k: Generation(next(answers), (), True))
    assert engine.with_rationale(request, forecast, "af").explanation == right
    monkeypatch.setattr(engine.runner, "complete_line", lambda *a, **k: Generation(wrong, (), True))
    dropped = engine.with_rationale(request, forecast, "af")
    assert dropped.explanation is None and "PVC 0, not in the measured evidence" in str(dropped.explanation_note)
    assert len(RATIONALE_TRIES) >= 2


def test_a_slid_cache_is_corrected_by_the_adapters_slide_shift_and_a_fresh_one_is_not(tmp_path: Path) -> None:
    """Window 12 + slack 4, sliding by eviction: after 40 seconds the cache's tokens had read evicted seconds
    (staleness > 0) and the head reads features minus staleness x shift; a freshly primed cache reads as it is."""
    from llm_runtime.slide_shift import SlideShift

    adapter = _probe_adapter(tmp_path, with_head=True)
    plain = ForecastEngine.load(_settings(adapter, slack_s=4), slide="evict")
    width = 2 * plain.runner.model.config.hidden_size
    SlideShift(np.full(width, 3.0), {"note": "test"}).save(adapter)
    shifted = ForecastEngine.load(_settings(adapter, slack_s=4), slide="evict")
    assert shifted.slide_shift is not None and plain.slide_shift is None
    request = ScoreRequest("a", "heart rate 72 bpm")
    for engine in (plain, shifted):
        engine.runner.prime("a", _seconds(12), 0)
    assert plain.runner.staleness("a") == 0.0
    assert plain.forecast([request])[0].onset_probs == shifted.forecast([request])[0].onset_probs
    for engine in (plain, shifted):
        engine.runner.extend_seconds("a", _seconds(28, seed=4), 12)
    staleness = shifted.runner.staleness("a")
    assert staleness > 0.0 and shifted.runner.stats.slides > 0
    features = plain.runner.probe_features([request], plain.probe_layers).numpy().astype(np.float64)
    expected = plain.probe.predict(features - 3.0 * staleness, None, [plain.runner.window_span("a")[1]])  # type: ignore[union-attr]
    (forecast,) = shifted.forecast([request])
    assert forecast.onset_probs[60] == pytest.approx(expected[0][1][60])
    assert forecast.onset_probs != plain.forecast([request])[0].onset_probs
