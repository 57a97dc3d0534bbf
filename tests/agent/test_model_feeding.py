"""Issue #20 items 3 and 6 in the model worker: every due patient's new seconds go to the LM in one batched call, the
caches equal those of feeding each patient alone, and the measured upkeep reaches the scheduler's capacity."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from agent.encoder_stage import EncoderStage, PatientEmbeddings
from agent.forecasting import ModelStats, ModelWorker
from encoder_onnx.embedding_ring import EmbeddingRing
from llm_runtime.runner import ModelRunner, RunnerConfig
from llm_runtime.scheduler import ForecastScheduler, SchedulerSettings
from llm_runtime.scoring import cache_layers
from tests.llm_runtime.conftest import make_runner

CONFIG = RunnerConfig(layout="streaming", window_s=12, slack_s=4, slide="rebuild")
SECONDS = {"P1": 5, "P2": 9, "P3": 14}  # embedded seconds per patient: different cache lengths


def put_seconds(stage: EncoderStage, pid: str, first: int, n: int) -> None:
    """``n`` seconds of random 2-lead embeddings from second ``first`` into the patient's ring."""
    if pid not in stage.patients:
        stage.patients[pid] = PatientEmbeddings(1, ("II", "V1"), EmbeddingRing(2, 60, 64))
    rng = np.random.default_rng(abs(hash((pid, first))) % 2**32)
    for s in range(first, first + n):
        for lead in range(2):
            stage.patients[pid].ring.put(lead, s, 1000.0 + s, rng.standard_normal(64).astype(np.float32))


def feeding_worker(runner: ModelRunner) -> Any:
    """A model worker with only what feeding touches: an encoder stage, the runner, a scheduler and its stats."""
    worker: Any = object.__new__(ModelWorker)  # no encoder runtime, ingest or thread: feeding needs none
    worker.stage = EncoderStage(runtime=None, capacity_s=60)  # type: ignore[arg-type]
    settings = SimpleNamespace(window_s=CONFIG.window_s, leads=("ii", "v1"))
    worker.engine = SimpleNamespace(runner=runner, settings=settings)
    worker.scheduler = ForecastScheduler(SchedulerSettings(feed_every_s=3))
    worker.stats, worker._feeds, worker._leads = ModelStats(), {}, ("ii", "v1")
    return worker


def test_new_seconds_of_all_patients_share_one_forward_and_match_feeding_each_alone() -> None:
    with make_runner(CONFIG) as batched_runner, make_runner(CONFIG) as alone:
        worker = feeding_worker(batched_runner)
        for pid, n in SECONDS.items():
            put_seconds(worker.stage, pid, 0, n)
        worker._feed_new_seconds(3)  # first feed: every patient prefilled from its ring
        for i, pid in enumerate(SECONDS):
            put_seconds(worker.stage, pid, SECONDS[pid], 3 + i)  # 3, 4 and 5 new seconds
        worker._feed_new_seconds(3)
        assert batched_runner.stats.batched_appends == 1
        assert worker.stats.seconds_fed == sum(min(n, CONFIG.window_s) for n in SECONDS.values()) + 12

        for pid, state in worker.stage.patients.items():  # the reference: the same seconds, one patient per call
            first = max(0, SECONDS[pid] - CONFIG.window_s)  # the first feed reads at most a window
            window = state.ring.window(state.ring.newest_second - first + 1).embeddings  # (2, T, 64)
            reference = torch.from_numpy(np.ascontiguousarray(window.transpose(1, 0, 2)))
            cut = SECONDS[pid] - first
            alone.extend_seconds(pid, reference[:cut], first)
            alone.extend_seconds(pid, reference[cut:], SECONDS[pid])
            assert worker._feeds[pid].last_second == state.ring.newest_second
            a, b = batched_runner._patients[pid].prefix, alone._patients[pid].prefix
            assert a is not None and b is not None and a.last_second == b.last_second
            for (ka, _), (kb, _) in zip(cache_layers(a.cache), cache_layers(b.cache), strict=True):
                torch.testing.assert_close(ka, kb, atol=1e-5, rtol=0)

        upkeep = worker.scheduler.summary()["capacity"]["upkeep_s_per_patient_minute"]
        assert upkeep > 0  # measured feeding time per patient-second, reported per patient-minute


def test_a_due_patient_is_fed_alone_whatever_it_holds() -> None:
    with make_runner(CONFIG) as runner:
        worker = feeding_worker(runner)
        for pid in ("P1", "P2"):
            put_seconds(worker.stage, pid, 0, 4)
        worker._feed_new_seconds(1, only={"P2"})
        assert runner.patient_ids == ("P2",) and runner.cached_seconds("P2") == 4
        worker._feed_new_seconds(10)  # P1 holds fewer than 10 new seconds: not fed yet
        assert runner.patient_ids == ("P2",)
