"""Batched feeding (``ModelRunner.extend_batch``) against one ``extend_seconds`` call per patient.

Two runners with the same weights are fed the same seconds, one patient per call and all patients per call; their
caches and forecast probabilities must agree. Patients differ in cache length, in how many seconds they get, and in
what the feed does besides appending (a first prefill, a rebuild, an evicting slide).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from core.errors import ModelError
from llm_runtime.runner import ModelRunner, NewSeconds, RunnerConfig, ScoreRequest
from llm_runtime.scoring import cache_layers

KV_ATOL = 1e-5  # cached keys/values, float32: the padded batch only changes matrix shapes, hence rounding
PROB_ATOL = 1e-6  # forecast probabilities
INLINE = RunnerConfig(layout="streaming", window_s=12, slack_s=4, slide="rebuild")

# patient -> (first second, seconds fed before the batch, new seconds in the batch)
PATIENTS = {
    "short": (0, 2, 1),
    "mid": (100, 7, 4),
    "long": (40, 11, 2),
    "rebuilds": (7, 15, 3),  # 15 + 3 passes window 12 + slack 4: the batch triggers an (inline) rebuild
    "new": (5, 0, 3),  # no cache before the batch: prefilled, one patient per call
}


def warm_up(runner: ModelRunner, ecg_seconds: Callable[..., torch.Tensor]) -> dict[str, NewSeconds]:
    """Feed every patient its first seconds one call each; return the batch each is to be fed next."""
    batch = {}
    for seed, (pid, (first, before, new)) in enumerate(PATIENTS.items()):
        seconds = ecg_seconds(before + new, seed=seed)
        if before:
            runner.extend_seconds(pid, seconds[:before], first)
        batch[pid] = NewSeconds(pid, seconds[before:], first + before)
    return batch


def assert_same_caches(a: ModelRunner, b: ModelRunner, patient_ids: list[str]) -> None:
    for pid in patient_ids:
        pa, pb = a._patients[pid].prefix, b._patients[pid].prefix
        assert pa is not None and pb is not None
        assert (pa.first_second, pa.last_second) == (pb.first_second, pb.last_second)
        for fa, fb in zip(pa.meta.fields(), pb.meta.fields(), strict=True):
            assert torch.equal(fa, fb)
        for (ka, va), (kb, vb) in zip(cache_layers(pa.cache), cache_layers(pb.cache), strict=True):
            torch.testing.assert_close(ka, kb, atol=KV_ATOL, rtol=0)
            torch.testing.assert_close(va, vb, atol=KV_ATOL, rtol=0)


def assert_same_forecasts(a: ModelRunner, b: ModelRunner, patient_ids: list[str]) -> None:
    requests = [ScoreRequest(pid, "HR 80 bpm; RR mean 750 ms") for pid in patient_ids]
    for ra, rb in zip(a.score(requests), b.score(requests), strict=True):
        assert (ra.t_end_s, ra.window_s) == (rb.t_end_s, rb.window_s)
        for qa, qb in zip(ra.probs, rb.probs, strict=True):
            assert qa.keys() == qb.keys()
            for key in qa:
                assert qa[key] == pytest.approx(qb[key], abs=PROB_ATOL)


def test_batched_feeding_equals_one_patient_per_call(
    make_runner: Callable[..., ModelRunner], ecg_seconds: Callable[..., torch.Tensor]
) -> None:
    with make_runner(INLINE) as one_by_one, make_runner(INLINE) as batched:
        singles, feeds = warm_up(one_by_one, ecg_seconds), warm_up(batched, ecg_seconds)
        for feed in singles.values():
            one_by_one.extend_seconds(feed.patient_id, feed.seconds, feed.first_t)
        batched.extend_batch(list(feeds.values()))
        assert batched.stats.batched_appends == 1  # the four patients with a cache shared one forward pass
        assert batched.cached_seconds("rebuilds") == 12  # rebuilt inside the batch, as one by one
        pids = list(PATIENTS)
        assert_same_caches(one_by_one, batched, pids)
        assert_same_forecasts(one_by_one, batched, pids)
        # and the batched caches keep extending exactly, one patient at a time afterwards
        for i, pid in enumerate(pids):
            extra = ecg_seconds(2, seed=50 + i)
            for runner in (one_by_one, batched):
                runner.extend_seconds(pid, extra, runner._patients[pid].seconds[-1][0] + 1)
        assert_same_caches(one_by_one, batched, pids)


def test_batches_are_cut_at_feed_batch(
    make_runner: Callable[..., ModelRunner], ecg_seconds: Callable[..., torch.Tensor]
) -> None:
    """feed_batch 2 and four patients with caches: two padded forward passes, the same caches as one by one."""
    small = RunnerConfig(layout="streaming", window_s=12, slack_s=4, slide="rebuild", feed_batch=2)
    with make_runner(INLINE) as one_by_one, make_runner(small) as batched:
        singles, feeds = warm_up(one_by_one, ecg_seconds), warm_up(batched, ecg_seconds)
        for feed in singles.values():
            one_by_one.extend_seconds(feed.patient_id, feed.seconds, feed.first_t)
        batched.extend_batch(list(feeds.values()))
        assert batched.stats.batched_appends == 2
        assert_same_caches(one_by_one, batched, list(PATIENTS))


def test_an_evicting_slide_inside_a_batch_equals_one_call_per_patient(
    make_runner: Callable[..., ModelRunner], ecg_seconds: Callable[..., torch.Tensor]
) -> None:
    """The batch appends p1's new seconds, then slides its cache (window 8 + slack 2) as one call would."""
    config = RunnerConfig(layout="streaming", window_s=8, slack_s=2)
    seconds = ecg_seconds(20)
    with make_runner(config) as batched, make_runner(config) as alone:
        for runner in (batched, alone):
            runner.extend_seconds("p1", seconds[:9], 0)
            runner.extend_seconds("p2", seconds[:5], 0)
        batched.extend_batch([NewSeconds("p1", seconds[9:13], 9), NewSeconds("p2", seconds[5:9], 5)])
        alone.extend_seconds("p1", seconds[9:13], 9)
        alone.extend_seconds("p2", seconds[5:9], 5)
        assert batched.stats.slides == alone.stats.slides == 1
        for pid in ("p1", "p2"):
            a, b = batched._patients[pid].prefix, alone._patients[pid].prefix
            assert a is not None and b is not None and torch.equal(a.meta.pos, b.meta.pos)
            for (ka, va), (kb, vb) in zip(cache_layers(a.cache), cache_layers(b.cache), strict=True):
                torch.testing.assert_close(ka, kb, atol=KV_ATOL, rtol=0)
                torch.testing.assert_close(va, vb, atol=KV_ATOL, rtol=0)


def test_extend_batch_checks_every_feed_before_changing_any_patient(
    make_runner: Callable[..., ModelRunner], ecg_seconds: Callable[..., torch.Tensor]
) -> None:
    with make_runner(INLINE) as runner:
        runner.extend_seconds("p1", ecg_seconds(3), 0)
        good = NewSeconds("p1", ecg_seconds(2, seed=1), 3)
        with pytest.raises(ModelError, match="n_leads=2"):
            runner.extend_batch([good, NewSeconds("p2", torch.zeros(2, 3, 64), 0)])
        with pytest.raises(ModelError, match="is not after"):
            runner.extend_batch([good, NewSeconds("p1", ecg_seconds(1), 1)])
        with pytest.raises(ModelError, match="appears twice"):
            runner.extend_batch([good, NewSeconds("p1", ecg_seconds(1), 9)])
        assert runner.cached_seconds("p1") == 3 and runner.patient_ids == ("p1",)
        runner.extend_batch([])  # nothing to do
