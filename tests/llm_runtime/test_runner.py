"""The streaming cache against full forward passes, batching, cache hygiene and the runner's lifecycle."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from core.errors import LifecycleError, ModelError
from llm_runtime.backbones import Backbone
from llm_runtime.runner import ModelRunner, RunnerConfig, ScoreRequest

ATOL = 1e-4


def feed(runner: ModelRunner, patient_id: str, seconds: torch.Tensor, first: int = 0) -> None:
    for i in range(seconds.shape[0]):
        runner.extend(patient_id, seconds[i], first + i)


def all_logprobs(result: object) -> torch.Tensor:
    return torch.cat([lp for question in result.option_logprobs for lp in question])  # type: ignore[attr-defined]


def test_incremental_equals_full_forward(
    streaming_runner: ModelRunner, ecg_seconds: Callable[..., torch.Tensor]
) -> None:
    feed(streaming_runner, "p1", ecg_seconds(9))
    request = [ScoreRequest("p1", "HR 72 bpm; RR mean 830 ms")]
    cached = streaming_runner.score(request)[0]
    full = streaming_runner.score(request, prefill=True)[0]
    assert cached.window_s == full.window_s == 9
    torch.testing.assert_close(all_logprobs(cached), all_logprobs(full), atol=ATOL, rtol=0)


def test_hidden_states_of_incremental_cache_equal_prefill(
    streaming_runner: ModelRunner, ecg_seconds: Callable[..., torch.Tensor]
) -> None:
    """Second by second, the cached keys equal those of one prefill over the same seconds."""
    seconds = ecg_seconds(6)
    feed(streaming_runner, "p1", seconds)
    incremental = streaming_runner._patients["p1"].prefix
    assert incremental is not None
    prefill = streaming_runner._prefill(list(streaming_runner._patients["p1"].seconds))
    for a, b in zip(incremental.cache.layers, prefill.cache.layers, strict=True):
        torch.testing.assert_close(a.keys, b.keys, atol=ATOL, rtol=0)
        torch.testing.assert_close(a.values, b.values, atol=ATOL, rtol=0)


def test_window_slide_rebuilds_and_stays_exact(
    streaming_runner: ModelRunner, ecg_seconds: Callable[..., torch.Tensor]
) -> None:
    """window 12 + slack 4: at 17 seconds the cache is rebuilt over the last 12, and keeps matching a prefill."""
    feed(streaming_runner, "p1", ecg_seconds(30))
    assert 12 <= streaming_runner.cached_seconds("p1") <= 16
    request = [ScoreRequest("p1", "HR 90 bpm")]
    cached, full = streaming_runner.score(request)[0], streaming_runner.score(request, prefill=True)[0]
    assert cached.t_end_s == 29
    torch.testing.assert_close(all_logprobs(cached), all_logprobs(full), atol=ATOL, rtol=0)


def test_evicting_slide_matches_a_prefill_of_the_same_seconds(
    make_runner: Callable[..., ModelRunner], ecg_seconds: Callable[..., torch.Tensor]
) -> None:
    """window 8 + slack 2: at 11 seconds the oldest 3 are evicted without a prefill. Positions, masks and the first
    layer's keys/values (which read each token alone) equal a fresh prefill's; deeper layers differ only by what
    the kept tokens had read of the evicted ones, so scores stay close, not equal."""
    config = RunnerConfig(layout="streaming", window_s=8, slack_s=2)
    with make_runner(config) as runner:
        seconds = ecg_seconds(11)
        feed(runner, "p1", seconds)
        prefix = runner._patients["p1"].prefix
        assert prefix is not None and (prefix.first_second, prefix.last_second) == (3, 10)
        assert runner.stats.slides == 1 and runner.stats.slid_tokens == 3 * 2  # 3 seconds x 2 leads
        fresh = runner._prefill(list(runner._patients["p1"].seconds)[-8:])
        for a, b in zip(prefix.meta.fields(), fresh.meta.fields(), strict=True):
            assert torch.equal(a, b)
        first_slid, first_fresh = prefix.cache.layers[0], fresh.cache.layers[0]
        torch.testing.assert_close(first_slid.keys, first_fresh.keys, atol=1e-5, rtol=0)
        torch.testing.assert_close(first_slid.values, first_fresh.values, atol=1e-5, rtol=0)
        deeper_slid, deeper_fresh = prefix.cache.layers[-1], fresh.cache.layers[-1]
        assert not torch.allclose(deeper_slid.values, deeper_fresh.values, atol=1e-5)  # what eviction leaves
        request = [ScoreRequest("p1", "HR 60")]
        cached, full = runner.score(request)[0], runner.score(request, prefill=True)[0]
        assert cached.window_s == full.window_s == 8
        for qa, qb in zip(cached.probs, full.probs, strict=True):
            for key in qa:
                assert qa[key] == pytest.approx(qb[key], abs=0.05)


def test_evicting_slide_keeps_the_window_over_a_long_stream(
    make_runner: Callable[..., ModelRunner], ecg_seconds: Callable[..., torch.Tensor]
) -> None:
    """Many slides in a row: the cache never passes window + slack, never prefills again, and its positions
    stay those of a fresh prefill of the seconds it holds."""
    config = RunnerConfig(layout="streaming", window_s=8, slack_s=2)
    with make_runner(config) as runner:
        feed(runner, "p1", ecg_seconds(60))
        assert runner.stats.prefills == 1 and runner.stats.slides > 10
        assert 8 <= runner.cached_seconds("p1") <= 10
        prefix = runner._patients["p1"].prefix
        assert prefix is not None
        fresh = runner._prefill([(t, e) for t, e in runner._patients["p1"].seconds if t >= prefix.first_second])
        assert torch.equal(prefix.meta.pos, fresh.meta.pos) and torch.equal(prefix.meta.second, fresh.meta.second)
        assert prefix.cache.layers[0].keys.shape == fresh.cache.layers[0].keys.shape


def test_batch_equals_single_and_probabilities_sum_to_one(
    streaming_runner: ModelRunner, ecg_seconds: Callable[..., torch.Tensor]
) -> None:
    feed(streaming_runner, "short", ecg_seconds(3, seed=1))
    feed(streaming_runner, "long", ecg_seconds(8, seed=2), first=100)
    requests = [ScoreRequest("short", "HR 150 bpm, irregular"), ScoreRequest("long", "HR 60 bpm")]
    batch = streaming_runner.score(requests)
    for request, batched in zip(requests, batch, strict=True):
        alone = streaming_runner.score([request])[0]
        torch.testing.assert_close(all_logprobs(batched), all_logprobs(alone), atol=ATOL, rtol=0)
        assert len(batched.probs) == 4  # rhythm + three onset questions at one horizon
        for probs in batched.probs:
            assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
            assert all(0 < p < 1 for p in probs.values())
    assert set(batch[0].probs[0]) == {"sinus", "af", "flutter", "vt"}
    assert set(batch[0].probs[1]) == {"yes", "no"}


def test_scoring_and_explaining_leave_the_cache_untouched(
    streaming_runner: ModelRunner, ecg_seconds: Callable[..., torch.Tensor]
) -> None:
    feed(streaming_runner, "p1", ecg_seconds(5))
    prefix = streaming_runner._patients["p1"].prefix
    assert prefix is not None
    before = [layer.keys.clone() for layer in prefix.cache.layers]
    length = prefix.meta.length
    streaming_runner.score([ScoreRequest("p1", "HR 80")])
    streaming_runner.explain(ScoreRequest("p1", "HR 80"), "sinus likely", max_new_tokens=3)
    assert prefix.meta.length == length
    for old, layer in zip(before, prefix.cache.layers, strict=True):
        assert torch.equal(old, layer.keys)


def test_camel_layout_scores_from_stored_seconds(
    tiny: Backbone, ecg_seconds: Callable[..., torch.Tensor], make_runner: Callable[..., ModelRunner]
) -> None:
    with make_runner(RunnerConfig(layout="camel", window_s=6, slack_s=2)) as runner:
        feed(runner, "p1", ecg_seconds(10))
        assert runner.cached_seconds("p1") == 0  # nothing cached in CAMEL's layout
        result = runner.score([ScoreRequest("p1", "HR 70")])[0]
        assert result.window_s == 6
        assert sum(result.probs[0].values()) == pytest.approx(1.0, abs=1e-5)


def test_generation_stops_at_limit_or_stop_token(
    streaming_runner: ModelRunner, ecg_seconds: Callable[..., torch.Tensor]
) -> None:
    feed(streaming_runner, "p1", ecg_seconds(4))
    request = ScoreRequest("p1", "HR 80")
    limited = streaming_runner.explain(request, "sinus likely", max_new_tokens=5)
    assert len(limited.token_ids) == 5 and not limited.stopped
    first = limited.token_ids[0]
    streaming_runner.prompts.__dict__["stop_ids"] = frozenset({first})  # make the first greedy token a stop token
    stopped = streaming_runner.explain(request, "sinus likely", max_new_tokens=5)
    assert stopped.stopped and stopped.token_ids == ()


def test_input_checks_and_lifecycle(tiny: Backbone, make_runner: Callable[..., ModelRunner]) -> None:
    runner = make_runner(RunnerConfig(window_s=10, slack_s=2, slide="rebuild"))
    with pytest.raises(ModelError, match="n_leads=2"):
        runner.extend("p1", torch.zeros(3, 64), 0)
    runner.extend("p1", torch.zeros(2, 64), 5)
    with pytest.raises(ModelError, match="not after"):
        runner.extend("p1", torch.zeros(2, 64), 5)
    with pytest.raises(ModelError, match="no ECG seconds"):
        runner.score([ScoreRequest("nobody", "")])
    runner.finish(["p1"])
    assert runner.patient_ids == ()
    runner.close()
    runner.close()
    with pytest.raises(LifecycleError):
        runner.extend("p1", torch.zeros(2, 64), 6)


def test_prime_equals_second_by_second_feeding(
    make_runner: Callable[..., ModelRunner], ecg_seconds: Callable[..., torch.Tensor]
) -> None:
    config = RunnerConfig(layout="streaming", window_s=6, slack_s=3, slide="rebuild")
    seconds = ecg_seconds(6)
    with make_runner(config) as fed, make_runner(config) as primed:
        feed(fed, "p1", seconds, first=40)
        primed.prime("p1", seconds, first_second=40)
        request = [ScoreRequest("p1", "HR 75")]
        a, b = fed.score(request)[0], primed.score(request)[0]
        assert a.t_end_s == b.t_end_s == 45
        torch.testing.assert_close(all_logprobs(a), all_logprobs(b), atol=ATOL, rtol=0)
        primed.extend("p1", seconds[0], 46)  # extends normally afterwards
        assert primed.cached_seconds("p1") == 7


def test_extending_several_seconds_at_once_equals_one_by_one(
    streaming_runner: ModelRunner, ecg_seconds: Callable[..., torch.Tensor]
) -> None:
    """The agent feeds whatever completed since its last step in one call; the cache must not care."""
    seconds = ecg_seconds(8)
    feed(streaming_runner, "one", seconds)
    streaming_runner.extend_seconds("many", seconds[:1], 0)
    streaming_runner.extend_seconds("many", seconds[1:5], 1)
    streaming_runner.extend_seconds("many", seconds[5:], 5)
    one, many = streaming_runner._patients["one"].prefix, streaming_runner._patients["many"].prefix
    assert one is not None and many is not None and many.last_second == 7
    for a, b in zip(one.cache.layers, many.cache.layers, strict=True):
        torch.testing.assert_close(a.keys, b.keys, atol=ATOL, rtol=0)
        torch.testing.assert_close(a.values, b.values, atol=ATOL, rtol=0)
    with pytest.raises(ModelError, match="is not after"):
        streaming_runner.extend_seconds("many", seconds[:2], 7)
