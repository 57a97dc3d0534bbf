"""Stage datasets: patients (seeds) -> scenario records -> strips -> stage items, deterministic from the seeds.

Training patients use seeds ``patient_seed_offset + k``; held-out patients use ``EVAL_SEED_BASE + k`` (a disjoint
range), so the held-out split is by patient, never by window. Everything here is a pure function of the configs,
which is what lets a resumed run rebuild (or reload) exactly the same data.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial

import structlog

from core.settings import QualitySettings, WindowSettings
from llm_runtime.prompts import questions_for
from simulators.records import AnnotatedRecord
from training.config import CurriculumConfig, StageConfig
from training.samples import EVAL_SEED_BASE, cut_strip, patient_record, window_truth
from training.tasks import Dialogue, ForecastItem, classify_turn, converse_turns, forecast_item, measure_turn

__all__ = ["Item", "build_split", "patient_seeds"]

log = structlog.get_logger(__name__)

Item = Dialogue | ForecastItem


@dataclass(frozen=True)
class _Job:
    run: CurriculumConfig
    stage: StageConfig
    seed: int
    held_out: bool


def patient_seeds(run: CurriculumConfig, stage: StageConfig, held_out: bool) -> list[int]:
    if held_out:
        return [EVAL_SEED_BASE + k for k in range(stage.eval_patients)]
    return [run.patient_seed_offset + k for k in range(stage.train_patients)]


def _window_ends(record: AnnotatedRecord, window_s: int, max_horizon_s: int, n: int, rng: random.Random) -> list[int]:
    """Window ends (whole seconds): half near the scripted onset (before and after it) when there is one, the
    rest uniform over the record, always leaving room for the window and the horizon."""
    lo, hi = window_s, int(record.duration_s) - max_horizon_s
    if hi < lo:
        raise ValueError(f"record {record.record_name} too short for window {window_s} s + horizon {max_horizon_s} s")
    onset = min(record.onsets.values()) if record.onsets else None
    ends = []
    for k in range(n):
        if onset is not None and k % 2 == 0:
            at = int(onset + rng.uniform(-max(max_horizon_s, 120), 90))
        else:
            at = rng.randint(lo, hi)
        ends.append(min(max(at, lo), hi))
    return ends


def _patient_items(job: _Job, windows: WindowSettings, quality: QualitySettings) -> list[Item]:
    run, stage = job.run, job.stage
    rng = random.Random(zlib.crc32(f"{job.seed}/{stage.stage}/{run.seed}".encode()))
    forecasting = stage.stage == "forecast"
    leads = run.forecast_leads if forecasting else rng.choice(stage.leads)
    record = patient_record(job.seed, stage.record_minutes, leads, rng.choice(run.noise))
    items: list[Item] = []
    for _ in range(stage.samples_per_patient):
        window_s = stage.eval_window_s if (job.held_out and stage.eval_window_s) else rng.choice(stage.window_s)
        # held-out items ask the runtime's horizons; training items draw a prompt (extra sets only when configured)
        horizons = run.horizons_s if job.held_out or len(run.horizon_sets) == 1 else rng.choice(run.horizon_sets)
        (at,) = _window_ends(record, window_s, max(horizons) if forecasting else 0, 1, rng)
        strip = cut_strip(record, at, window_s, windows, quality)
        truth = window_truth(record, at, window_s)
        if forecasting:
            explain = (not job.held_out) and rng.random() < stage.explain_share
            items.append(forecast_item(record, strip, questions_for(horizons), explain))
        elif stage.stage == "classify":
            question, answer, choices = classify_turn(truth, rng)
            items.append(Dialogue("classify", strip, ((question, answer),), choices=choices))
        elif stage.stage == "measure":
            question, answer, quantity, value = measure_turn(strip.measurements, rng)
            items.append(Dialogue("measure", strip, ((question, answer),), quantity=quantity, value=value))
        else:
            items.append(Dialogue("converse", strip, converse_turns(record, strip, truth, rng)))
    return items


def build_split(run: CurriculumConfig, stage: StageConfig, held_out: bool, workers: int = 1) -> list[Item]:
    """All items of one split of one stage, in patient order. Preprocessing uses the default window and quality
    settings (those of config/default.yaml), as the agent does."""
    jobs = [_Job(run, stage, seed, held_out) for seed in patient_seeds(run, stage, held_out)]
    make = partial(_patient_items, windows=WindowSettings(), quality=QualitySettings())
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            per_patient = list(pool.map(make, jobs))
    else:
        per_patient = [make(job) for job in jobs]
    items = [item for group in per_patient for item in group]
    log.info("split_built", stage=stage.stage, held_out=held_out, patients=len(jobs), items=len(items))
    return items


def select(items: Sequence[Item], n: int) -> list[Item]:
    """The first ``n`` items spread over patients (every k-th), for a fixed periodic-eval subset."""
    step = max(1, len(items) // max(1, n))
    return list(items[::step][:n])
