"""The agent's slid KV cache against a fresh prefill of the same seconds, on the yardstick's frozen inputs.

A patient monitored for longer than ``window_s`` has a cache that was slid by eviction (``llm_runtime.cache_slide``):
its kept tokens were computed while they read seconds now gone. For each input (record, anchor, w) this feeds the
runner as the agent does, ``feed_every_s`` seconds at a time from ``2 * w`` seconds before the anchor (or the record's
start), so that every kept token was computed with a full-length past; reads the probe features; then primes the
very seconds the slid cache holds afresh and reads them again. Both come from one process and one request (same
evidence line and trends), so the pair differs only by the cache.

``python main.py eval probe-features --slide-parity`` writes the pairs; ``python main.py train slide-shift`` fits
the head's correction (``llm_runtime.slide_shift``) on validation pairs; :func:`evaluate_slide` scores the slid
half (corrected, and as read) and the fresh half with the head, per cell and paired (``eval slide-parity``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from evaluation.data import EvalData, InputKey
from evaluation.lm import LmForecaster, input_evidence
from evaluation.probe_eval import ProbeEvalConfig, ProbeInputs, compare_to_reference
from llm_runtime.cache_slide import ContextLedger, slide_point
from llm_runtime.probe import ProbeHead
from llm_runtime.runner import ScoreRequest
from llm_runtime.slide_shift import SlideShift

__all__ = ["SlidFeatures", "SlideSchedule", "evaluate_slide", "split_pairs"]

PATIENT = "eval"


@dataclass(frozen=True)
class SlideSchedule:
    """How an input's slid cache is fed: ``feed_every_s`` seconds at a time from ``2 * w`` before its anchor, in a
    runner of window ``w`` and slack ``slack_s`` (the agent's defaults)."""

    feed_every_s: int = 30  # the agent's default (forecast.feed_every_s)
    slack_s: int = 60

    def span(self, data: EvalData, key: InputKey) -> tuple[int, int]:
        """Seconds [start, end) streamed for ``key``."""
        record = data.record(key[0])
        end = min(int(key[1]), int(record.p_signal.shape[0] // record.fs))
        return max(0, end - 2 * key[2]), end

    def staleness(self, start: int, end: int, window_s: int) -> float:
        """The slid cache's staleness at ``end``, replayed from the feeding schedule alone (it does not depend on
        the model): what the runner's own ledger reads after the same feeds."""
        ledger, first = ContextLedger(), start
        for chunk_start in range(start, end, self.feed_every_s):
            chunk = list(range(chunk_start, min(chunk_start + self.feed_every_s, end)))
            ledger.append(chunk, first)
            kept = slide_point(first, chunk[-1], window_s, self.slack_s)
            if kept is not None:
                ledger.evict_before(kept)
                first = kept
        return ledger.staleness(first, window_s)


class SlidFeatures:
    """``features(key)``: (2F,) the slid cache's probe features, then a fresh prefill's of the same seconds."""

    def __init__(self, forecaster: LmForecaster, feed_every_s: int) -> None:
        config = forecaster.engine.runner.config
        if config.slide != "evict":
            raise ValueError("slide parity needs an engine whose runner slides by eviction")
        self.forecaster = forecaster
        self.schedule = SlideSchedule(feed_every_s, config.slack_s)
        self.slid_inputs = 0  # inputs whose cache was slid at least once (the others equal a prefill)
        self.last_staleness = 0.0

    def features(self, key: InputKey) -> npt.NDArray[np.float32]:
        engine, runner = self.forecaster.engine, self.forecaster.engine.runner
        embedded = self.forecaster.embedder(self.forecaster.data.record(key[0]))
        start, end = self.schedule.span(self.forecaster.data, key)
        seconds = torch.from_numpy(embedded.lm_seconds(tuple(engine.settings.leads), start, end))
        evidence = input_evidence(self.forecaster.data, key)
        request = ScoreRequest(PATIENT, evidence.text, evidence.trends)
        slides = runner.stats.slides
        try:
            every = self.schedule.feed_every_s
            for first in range(0, seconds.shape[0], every):
                runner.extend_seconds(PATIENT, seconds[first : first + every], start + first)
            self.last_staleness = runner.staleness(PATIENT)
            slid = engine.probe_features([request])[0]
            _, held = runner.window_span(PATIENT)
            runner.prime(PATIENT, seconds[-held:], end - held)
            fresh = engine.probe_features([request])[0]
        finally:
            runner.finish([PATIENT])
        self.slid_inputs += runner.stats.slides > slides
        return torch.cat([slid, fresh]).numpy()


def split_pairs(pairs: Path, staleness: npt.NDArray[np.float64]) -> tuple[Path, Path]:
    """``X.npz`` of concatenated pairs -> ``X.npz`` (slid half) and ``X-fresh.npz`` (fresh half), same rows, both
    carrying each row's slid-cache ``staleness`` (what the slide shift is fitted on)."""
    with np.load(pairs, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    if arrays["x"].shape[1] % 2:
        raise ValueError(f"{pairs}: not slide pairs (odd feature count); was it split already?")
    arrays["staleness"] = np.asarray(staleness, dtype=np.float64)
    half = arrays["x"].shape[1] // 2
    fresh_path = pairs.with_name(f"{pairs.stem}-fresh.npz")
    np.savez(fresh_path, **{**arrays, "x": arrays["x"][:, half:]})
    np.savez(pairs, **{**arrays, "x": arrays["x"][:, :half]})
    return pairs, fresh_path


def evaluate_slide(data: EvalData, slid: Path, fresh: Path, config: ProbeEvalConfig) -> dict[str, Any]:
    """The head's scores on the fresh features, on the slid ones corrected by the adapter's slide shift (when it
    has one) and on the slid ones as read, per cell with patient-bootstrap CIs, each slid variant minus fresh
    paired; written to ``config.out / slide_parity.json``."""
    head = ProbeHead.load(config.adapter)
    shift = SlideShift.load(config.adapter)
    slid_inputs, fresh_inputs = ProbeInputs.load(slid), ProbeInputs.load(fresh)
    with np.load(slid, allow_pickle=False) as pairs:
        staleness = np.asarray(pairs["staleness"], dtype=np.float64)
    variants = {"fresh": fresh_inputs, "slid_as_read": slid_inputs}
    if shift is not None:
        variants["slid_corrected"] = replace(slid_inputs, x=shift.correct(slid_inputs.x, staleness))
    results: dict[str, Any] = {
        "synthetic": True,
        "dataset": (data.meta.get("spec") or {}).get("name", str(data.bench.root)),
        "adapter": str(config.adapter),
        "slide_shift": None if shift is None else shift.fitted_on,
        "staleness": {
            "min": float(staleness.min()),
            "median": float(np.median(staleness)),
            "max": float(staleness.max()),
        },
        **compare_to_reference(data, head, variants, "fresh", config),
    }
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "slide_parity.json").write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    return results
