"""The agent's slid KV cache against a fresh prefill of the same seconds, on the yardstick's frozen inputs.

A patient monitored for longer than ``window_s`` has a cache that was slid by eviction (``llm_runtime.cache_slide``):
its kept tokens were computed while they read seconds now gone. For each input (record, anchor, w) this feeds the
runner as the agent does, ``feed_every_s`` seconds at a time from ``2 * w`` seconds before the anchor (or the record's
start), so that every kept token was computed with a full-length past; reads the probe features; then primes the
very seconds the slid cache holds afresh and reads them again. Both come from one process and one request (same
evidence line and trends), so the pair differs only by the cache.

``python main.py eval probe-features --slide evict`` writes the pairs; :func:`evaluate_slide` scores both halves
with the shipped head, per cell and paired (``eval slide-parity``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from evaluation.data import EvalData, InputKey
from evaluation.lm import LmForecaster, input_evidence
from evaluation.probe_eval import (
    ProbeEvalConfig,
    ProbeInputs,
    cells_of,
    head_predictions,
    paired_cells,
    probe_summary,
)
from llm_runtime.probe import ProbeHead
from llm_runtime.runner import ScoreRequest

__all__ = ["SlidFeatures", "evaluate_slide", "split_pairs"]

PATIENT = "eval"


class SlidFeatures:
    """``features(key)``: (2F,) the slid cache's probe features, then a fresh prefill's of the same seconds."""

    def __init__(self, forecaster: LmForecaster, feed_every_s: int) -> None:
        if forecaster.engine.runner.config.slide != "evict":
            raise ValueError("slide parity needs an engine whose runner slides by eviction")
        self.forecaster = forecaster
        self.feed_every_s = feed_every_s
        self.slid_inputs = 0  # inputs whose cache was slid at least once (the others equal a prefill)

    def features(self, key: InputKey) -> npt.NDArray[np.float32]:
        engine, runner = self.forecaster.engine, self.forecaster.engine.runner
        record_id, anchor_s, window_s = key
        embedded = self.forecaster.embedder(self.forecaster.data.record(record_id))
        end = min(int(anchor_s), embedded.embeddings.shape[1])
        start = max(0, end - 2 * window_s)
        seconds = torch.from_numpy(embedded.lm_seconds(tuple(engine.settings.leads), start, end))
        evidence = input_evidence(self.forecaster.data, key)
        request = ScoreRequest(PATIENT, evidence.text, evidence.trends)
        slides = runner.stats.slides
        try:
            for first in range(0, seconds.shape[0], self.feed_every_s):
                runner.extend_seconds(PATIENT, seconds[first : first + self.feed_every_s], start + first)
            slid = engine.probe_features([request])[0]
            _, held = runner.window_span(PATIENT)
            runner.prime(PATIENT, seconds[-held:], end - held)
            fresh = engine.probe_features([request])[0]
        finally:
            runner.finish([PATIENT])
        self.slid_inputs += runner.stats.slides > slides
        return torch.cat([slid, fresh]).numpy()


def split_pairs(pairs: Path) -> tuple[Path, Path]:
    """``X.npz`` of concatenated pairs -> ``X.npz`` (slid half) and ``X-fresh.npz`` (fresh half), same rows."""
    with np.load(pairs, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    half = arrays["x"].shape[1] // 2
    fresh_path = pairs.with_name(f"{pairs.stem}-fresh.npz")
    np.savez(fresh_path, **{**arrays, "x": arrays["x"][:, half:]})
    np.savez(pairs, **{**arrays, "x": arrays["x"][:, :half]})
    return pairs, fresh_path


def evaluate_slide(data: EvalData, slid: Path, fresh: Path, config: ProbeEvalConfig) -> dict[str, Any]:
    """The head's scores on the slid and the fresh features of the same inputs, per cell with patient-bootstrap
    CIs, and slid − fresh paired; written to ``config.out / slide_parity.json``."""
    head = ProbeHead.load(config.adapter)
    slid_inputs, fresh_inputs = ProbeInputs.load(slid), ProbeInputs.load(fresh)
    if slid_inputs.keys != fresh_inputs.keys:
        raise ValueError(f"{slid} and {fresh} hold different inputs")
    cells = cells_of(data, slid_inputs.keys, config.horizons_s)
    predict_slid, predict_fresh = head_predictions(head, slid_inputs), head_predictions(head, fresh_inputs)
    by_slid = {c: predict_slid(s) for c, s in cells.items()}
    by_fresh = {c: predict_fresh(s) for c, s in cells.items()}
    gap = np.abs(slid_inputs.x - fresh_inputs.x).max(axis=1) / np.abs(fresh_inputs.x).max(axis=1)
    results = {
        "synthetic": True,
        "dataset": (data.meta.get("spec") or {}).get("name", str(data.bench.root)),
        "adapter": str(config.adapter),
        "inputs": len(slid_inputs.keys),
        "feature_gap_max_over_scale": {"median": float(np.median(gap)), "max": float(gap.max())},
        "slid": probe_summary(cells, by_slid, config),
        "fresh": probe_summary(cells, by_fresh, config),
        "slid_minus_fresh": paired_cells(cells, by_slid, by_fresh, config),
    }
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "slide_parity.json").write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    return results
