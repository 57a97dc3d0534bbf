"""The probe variant on the yardstick's frozen LM subsample: its scores, the best baseline on the same rows, the
paired non-inferiority margin, and the ablations (ECG tokens zeroed, evidence swapped between patients).

Reads the features ``python main.py eval probe-features`` extracted through the runtime (``test.npz`` and, when
present, the ablations' ``test[-w<grid>]-zero-ecg.npz`` / ``test[-w<grid>]-swap-evidence.npz``, every grid's
rows together) and the head in the adapter; the baseline is trained
here on every training sample of each cell, as in docs/EVALUATION.md's baseline table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from evaluation.baselines import TabularBaseline, beat_features, gbt
from evaluation.data import CLASSES, ONSETS, Cell, EvalData, InputKey, Sample
from evaluation.predictions import Predictions
from evaluation.scoring import af_onset_aurocs, cell_metrics, mean_over_cells, paired_difference
from llm_runtime.probe import ProbeHead

__all__ = [
    "ProbeEvalConfig",
    "ProbeInputs",
    "cells_of",
    "evaluate_probe",
    "frozen_cells",
    "gbt_predictions",
    "head_predictions",
    "paired_cells",
    "probe_summary",
]

log = structlog.get_logger(__name__)

ABLATIONS = ("zero-ecg", "swap-evidence")


@dataclass(frozen=True)
class ProbeEvalConfig:
    adapter: Path
    features: Path
    out: Path
    horizons_s: tuple[int, ...] = (60, 180, 300, 600)
    af_horizon_s: int = 300
    n_boot: int = 200
    seed: int = 0
    baseline: bool = True  # False: the head alone (a second source, where the bar is absolute: transfer)


@dataclass(frozen=True)
class ProbeInputs:
    """One features file's rows: input keys, LM features (N, F) and trend features (N, E) when it carries them."""

    keys: list[InputKey]
    x: npt.NDArray[np.float64]
    trends: npt.NDArray[np.float64] | None

    @staticmethod
    def load(path: Path) -> ProbeInputs:
        with np.load(path, allow_pickle=False) as data:
            keys = [
                (str(r), float(a), int(w))
                for r, a, w in zip(data["record_id"], data["anchor_s"], data["window_s"], strict=True)
            ]
            trends = np.asarray(data["trends"], dtype=np.float64) if "trends" in data.files else None
            return ProbeInputs(keys, np.asarray(data["x"], dtype=np.float64), trends)

    @staticmethod
    def concat(parts: Sequence[ProbeInputs]) -> ProbeInputs:
        trends = [p.trends for p in parts]
        return ProbeInputs(
            [k for p in parts for k in p.keys],
            np.concatenate([p.x for p in parts]),
            None if any(t is None for t in trends) else np.concatenate(trends),  # type: ignore[arg-type]
        )


def head_predictions(head: ProbeHead, inputs: ProbeInputs) -> Callable[[Sequence[Sample]], Predictions]:
    """The head's forecasts, computed once for every input, served per cell: ``samples`` (each an input of
    ``inputs.keys`` at one horizon) -> Predictions."""
    if head.reads_trends and inputs.trends is None:
        raise ValueError("the head reads trend features; these features files carry none (re-run eval probe-features)")
    out = dict(zip(inputs.keys, head.predict(inputs.x, inputs.trends, [k[2] for k in inputs.keys]), strict=True))

    def for_samples(samples: Sequence[Sample]) -> Predictions:
        rhythm = np.array([[out[s.key][0][s.horizon_s][c] for c in CLASSES] for s in samples])
        onset = np.array([[out[s.key][1][s.horizon_s][c] for c in ONSETS] for s in samples])
        return Predictions(rhythm.reshape(-1, len(CLASSES)), onset.reshape(-1, len(ONSETS)))

    return for_samples


def cells_of(data: EvalData, keys: Sequence[InputKey], horizons: Sequence[int]) -> dict[Cell, list[Sample]]:
    wanted = set(keys)
    windows = sorted({k[2] for k in keys})
    cells = {(w, h): [s for s in data.samples("test", (w, h)) if s.key in wanted] for w in windows for h in horizons}
    return {c: s for c, s in cells.items() if s}


def probe_summary(
    cells: dict[Cell, list[Sample]], preds: dict[Cell, Predictions], config: ProbeEvalConfig
) -> dict[str, Any]:
    per_cell = {f"w{w}_h{h}": cell_metrics(s, preds[(w, h)], config.n_boot, config.seed) for (w, h), s in cells.items()}
    mean = mean_over_cells([(s, preds[c]) for c, s in cells.items()], config.n_boot, config.seed)
    at_h = af_onset_aurocs(per_cell, config.af_horizon_s)
    every = af_onset_aurocs(per_cell)
    return {
        **mean,
        "mean_macro_f1_vt": float(
            np.mean([c["macro_f1_vt"] for c in per_cell.values() if c["macro_f1_vt"] is not None])
        ),
        "af_onset_auroc_mean": float(np.mean(every)) if every else None,
        f"af_onset_auroc_h{config.af_horizon_s}": float(np.mean(at_h)) if at_h else None,
        "cells": per_cell,
    }


def paired_cells(
    cells: dict[Cell, list[Sample]], a: dict[Cell, Predictions], b: dict[Cell, Predictions], config: ProbeEvalConfig
) -> dict[str, Any]:
    order = sorted(cells)
    return paired_difference(
        [cells[c] for c in order],
        [a[c] for c in order],
        [b[c] for c in order],
        config.n_boot,
        config.seed,
        config.af_horizon_s,
    )


def compare_to_reference(
    data: EvalData, head: ProbeHead, variants: dict[str, ProbeInputs], reference: str, config: ProbeEvalConfig
) -> dict[str, Any]:
    """The head's scores on each feature set of the same inputs, and each one minus ``reference``'s, paired; with the
    median feature gap to the reference in units of the head's scale (how far apart the inputs are, before scoring)."""
    ref = variants[reference]
    if any(inputs.keys != ref.keys for inputs in variants.values()):
        raise ValueError(f"the feature sets compared with {reference!r} hold different inputs")
    cells = cells_of(data, ref.keys, config.horizons_s)
    preds = {}
    for name, inputs in variants.items():
        predict = head_predictions(head, inputs)
        preds[name] = {c: predict(s) for c, s in cells.items()}
    others = [name for name in variants if name != reference]
    gaps = {name: float(np.median(np.abs(variants[name].x - ref.x) / head.scale[: ref.x.shape[1]])) for name in others}
    return {
        "inputs": len(ref.keys),
        "feature_gap_over_head_scale_median": gaps,
        **{name: probe_summary(cells, by_cell, config) for name, by_cell in preds.items()},
        **{f"{name}_minus_{reference}": paired_cells(cells, preds[name], preds[reference], config) for name in others},
    }


def gbt_predictions(
    data: EvalData, cells: dict[Cell, list[Sample]], cache: Path, seed: int = 0
) -> dict[Cell, Predictions]:
    """The GBT baseline, trained on every training sample of each cell, on ``cells``' samples. Cached in ``cache``
    (its fits cost minutes per cell, most of it the beat features of 304 training records), keyed by sample."""
    stored: dict[tuple[InputKey, int], tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}
    if cache.exists():
        with np.load(cache, allow_pickle=False) as data_file:
            for i, (r, a, w, h) in enumerate(
                zip(
                    data_file["record_id"],
                    data_file["anchor_s"],
                    data_file["window_s"],
                    data_file["horizon_s"],
                    strict=True,
                )
            ):
                stored[((str(r), float(a), int(w)), int(h))] = (data_file["rhythm"][i], data_file["onset"][i])
    baseline = TabularBaseline(gbt(seed), beat_features(data))
    out = {}
    for c, samples in cells.items():
        if not all((s.key, s.horizon_s) in stored for s in samples):
            pred = baseline.fit_predict(data.samples("train", c), samples)
            stored.update({(s.key, s.horizon_s): (pred.rhythm[i], pred.onset[i]) for i, s in enumerate(samples)})
            log.info("probe_eval_baseline_cell", cell=c, test=len(samples))
        rows = [stored[(s.key, s.horizon_s)] for s in samples]
        out[c] = Predictions(np.array([r for r, _ in rows]), np.array([o for _, o in rows]))
    cache.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(stored)
    np.savez(
        cache,
        record_id=np.array([k[0][0] for k in keys]),
        anchor_s=np.array([k[0][1] for k in keys]),
        window_s=np.array([k[0][2] for k in keys]),
        horizon_s=np.array([k[1] for k in keys]),
        rhythm=np.array([stored[k][0] for k in keys]),
        onset=np.array([stored[k][1] for k in keys]),
    )
    return out


def frozen_cells(data: EvalData, horizons: Sequence[int]) -> dict[Cell, list[Sample]]:
    """Every cell's samples on the frozen LM subsample."""
    from evaluation.data import frozen_lm_subsample

    frozen = frozen_lm_subsample(data.bench)
    if frozen is None:
        raise ValueError("this benchmark has no frozen LM subsample (python main.py eval yardstick)")
    return cells_of(data, sorted(frozen), horizons)


def evaluate_probe(data: EvalData, config: ProbeEvalConfig) -> dict[str, Any]:
    """Scores of the head, the GBT baseline and the ablations on the frozen subsample; written to ``out``."""
    head = ProbeHead.load(config.adapter)
    inputs = ProbeInputs.load(config.features / "test.npz")
    cells = cells_of(data, inputs.keys, config.horizons_s)
    predict = head_predictions(head, inputs)
    probe = {c: predict(s) for c, s in cells.items()}
    results: dict[str, Any] = {
        "synthetic": True,
        "dataset": (data.meta.get("spec") or {}).get("name", str(data.bench.root)),
        "adapter": str(config.adapter),
        "inputs": len(inputs.keys),
        "patients": len({s.patient_id for samples in cells.values() for s in samples}),
        "probe": probe_summary(cells, probe, config),
        "ablations": {},
    }
    if config.baseline:
        best = gbt_predictions(data, cells, config.out / "gbt_predictions.npz", config.seed)
        results["gbt"] = probe_summary(cells, best, config)
        results["probe_minus_gbt"] = paired_cells(cells, probe, best, config)
    for name in ABLATIONS:
        paths = [config.features / f"test-{name}.npz", *sorted(config.features.glob(f"test-w*-{name}.npz"))]
        loaded = [ProbeInputs.load(path) for path in paths if path.exists()]
        if not loaded:
            continue
        ablated_inputs = ProbeInputs.concat(loaded)
        present = set(ablated_inputs.keys)
        ab_cells = {c: [s for s in samples if s.key in present] for c, samples in cells.items()}
        ab_cells = {c: s for c, s in ab_cells.items() if s}
        predict_ablated = head_predictions(head, ablated_inputs)
        full = {c: predict(s) for c, s in ab_cells.items()}
        ablated = {c: predict_ablated(s) for c, s in ab_cells.items()}
        results["ablations"][name] = {
            "windows": sorted({c[0] for c in ab_cells}),
            "full_minus_ablated": paired_cells(ab_cells, full, ablated, config),
            "ablated": {k: v for k, v in probe_summary(ab_cells, ablated, config).items() if k != "cells"},
        }
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "probe_results.json").write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    return results
