"""``python main.py eval calibrate``: fit the onset-probability calibration of an adapter on VALIDATION patients.

The LM's P("yes") is not calibrated, and the agent compares it with fixed thresholds. This scores the benchmark's
validation inputs with the raw runtime (``ForecastEngine.load(calibrated=False)``), fits a Platt scale per horizon
(pooled over arrhythmias, ``"*"``) and per arrhythmia where both outcomes have at least ``min_per_outcome``
samples, and reports reliability before and after: in-sample, and cross-fitted by patient (each validation
patient's probabilities mapped by a scale fitted on the other patients), which is the honest "after". With
``--write`` the map goes into ``adapter.json`` (``llm_runtime.calibration``), where the runtime applies it. The test
patients are never read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from evaluation.data import ONSETS, EvalData, InputKey, Sample, open_benchmark
from evaluation.metrics import reliability
from evaluation.predictions import Predictions
from llm_runtime.calibration import ANY_ARRHYTHMIA, OnsetCalibration, PlattScale

__all__ = ["OnsetSample", "fit_onset_calibration", "fit_platt", "onset_samples", "run_calibration"]

log = structlog.get_logger(__name__)

MIN_SLOPE = 0.01  # a fitted slope at or below zero (no usable ranking) becomes this: ~ the base rate everywhere


@dataclass(frozen=True)
class OnsetSample:
    horizon_s: int
    arrhythmia: str
    patient_id: str
    p: float  # the raw scored P(onset within h)
    y: int  # the label
    weight: float = 1.0  # inverse inclusion probability of its input (the draw keeps rare labels first)


def _logit(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


def _penalised_loss(
    a: float, b: float, x: npt.NDArray[np.float64], t: npt.NDArray[np.float64], v: npt.NDArray[np.float64], l2: float
) -> float:
    z = a * x + b
    nll = v @ (np.logaddexp(0.0, z) - t * z)
    return float(nll + 0.5 * l2 * ((a - 1) ** 2 + b**2))


def fit_platt(
    p: Sequence[float],
    y: Sequence[int],
    weights: Sequence[float] | None = None,
    l2: float = 1.0,
    iterations: int = 100,
) -> PlattScale:
    """Maximum-likelihood ``sigmoid(a * logit(p) + b)`` by damped Newton (every step lowers the objective), sample
    ``weights`` normalised to a mean of 1, with an L2 pull of ``l2`` (about one sample's worth) towards the identity
    (a = 1, b = 0): scores squeezed into a narrow range are nearly separable, and without the pull and the damping
    the slope runs off to thousands."""
    x, t = _logit(np.asarray(p, float)), np.asarray(y, float)
    if x.size == 0:
        raise ValueError("fit_platt: no samples")
    v = np.ones_like(x) if weights is None else np.asarray(weights, float) / np.mean(weights)
    a, b = 1.0, 0.0
    loss = _penalised_loss(a, b, x, t, v, l2)
    for _ in range(iterations):
        s = 1 / (1 + np.exp(-(a * x + b)))
        r = v * (s - t)
        grad = np.array([r @ x + l2 * (a - 1), r.sum() + l2 * b])
        w = v * s * (1 - s)
        hess = np.array([[w @ (x * x) + l2, w @ x], [w @ x, w.sum() + l2]])
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-8:
            na, nb = a - scale * float(step[0]), b - scale * float(step[1])
            new_loss = _penalised_loss(na, nb, x, t, v, l2)
            if new_loss <= loss:
                break
            scale /= 2
        else:
            break
        moved = max(abs(na - a), abs(nb - b))
        a, b, loss = na, nb, new_loss
        if moved < 1e-10:
            break
    return PlattScale(max(a, MIN_SLOPE), b)


def fit_onset_calibration(
    samples: Sequence[OnsetSample], min_per_outcome: int = 8, fitted_on: str = ""
) -> OnsetCalibration:
    """Per horizon: a pooled scale (``"*"``), plus a scale per arrhythmia with enough positives and negatives."""
    scales: dict[int, dict[str, PlattScale]] = {}
    for h in sorted({s.horizon_s for s in samples}):
        at_h = [s for s in samples if s.horizon_s == h]
        scales[h] = {ANY_ARRHYTHMIA: _fit(at_h)}
        for cls in sorted({s.arrhythmia for s in at_h}):
            own = [s for s in at_h if s.arrhythmia == cls]
            positives = sum(s.y for s in own)
            if min(positives, len(own) - positives) >= min_per_outcome:
                scales[h][cls] = _fit(own)
    return OnsetCalibration(scales, fitted_on)


def _fit(samples: Sequence[OnsetSample]) -> PlattScale:
    return fit_platt([s.p for s in samples], [s.y for s in samples], [s.weight for s in samples])


def onset_samples(
    samples: Sequence[Sample], pred: Predictions, weights: dict[InputKey, float] | None = None
) -> list[OnsetSample]:
    return [
        OnsetSample(
            s.horizon_s, cls, s.patient_id, float(pred.onset[i, j]), int(s.onset[cls]), (weights or {}).get(s.key, 1.0)
        )
        for i, s in enumerate(samples)
        for j, cls in enumerate(ONSETS)
    ]


def _mapped(calibration: OnsetCalibration, samples: Sequence[OnsetSample]) -> list[float]:
    return [calibration.apply({s.horizon_s: {s.arrhythmia: s.p}})[s.horizon_s][s.arrhythmia] for s in samples]


def cross_fitted(samples: Sequence[OnsetSample], min_per_outcome: int) -> list[float]:
    """Each patient's probabilities mapped by a calibration fitted on the other patients (leave one patient out)."""
    out = [math.nan] * len(samples)
    for patient in sorted({s.patient_id for s in samples}):
        rest = [s for s in samples if s.patient_id != patient]
        mine = [i for i, s in enumerate(samples) if s.patient_id == patient]
        if not rest:
            continue
        calibration = fit_onset_calibration(rest, min_per_outcome)
        for i, p in zip(mine, _mapped(calibration, [samples[i] for i in mine]), strict=True):
            out[i] = p
    return out


def _reliability_report(samples: Sequence[OnsetSample], probs: Sequence[float]) -> dict[str, Any]:
    by_h: dict[str, Any] = {}
    for h in sorted({s.horizon_s for s in samples}):
        idx = [i for i, s in enumerate(samples) if s.horizon_s == h]
        rel = reliability(
            [samples[i].y for i in idx], [probs[i] for i in idx], weights=[samples[i].weight for i in idx]
        )
        by_h[str(h)] = asdict(rel) if rel else None
    pooled = reliability([s.y for s in samples], probs, weights=[s.weight for s in samples])
    return {"pooled": asdict(pooled) if pooled else None, "by_horizon": by_h}


def operating_point(samples: Sequence[OnsetSample], probs: Sequence[float]) -> dict[str, float] | None:
    """The threshold on (calibrated) probabilities with the largest Youden J (weighted sensitivity + specificity
    - 1) over these samples, with its sensitivity and false-positive rate; None without both outcomes. Candidate
    thresholds are the observed probabilities (a forecast counts as positive at or above the threshold)."""
    y = np.array([s.y for s in samples], bool)
    w = np.array([s.weight for s in samples], float)
    p = np.asarray(probs, float)
    if y.all() or not y.any():
        return None
    best: dict[str, float] | None = None
    for t in np.unique(p):
        hit = p >= t
        tpr, fpr = w[hit & y].sum() / w[y].sum(), w[hit & ~y].sum() / w[~y].sum()
        if best is None or tpr - fpr > best["youden_j"]:
            best = {"threshold": float(t), "sensitivity": float(tpr), "false_positive_rate": float(fpr)}
            best["youden_j"] = float(tpr - fpr)
    return best


def _operating_points(samples: Sequence[OnsetSample], probs: Sequence[float]) -> dict[str, Any]:
    """horizon -> arrhythmia (and "*" pooled) -> operating point of the calibrated probabilities."""
    out: dict[str, Any] = {}
    for h in sorted({s.horizon_s for s in samples}):
        out[str(h)] = {}
        for cls in (ANY_ARRHYTHMIA, *sorted({s.arrhythmia for s in samples})):
            idx = [i for i, s in enumerate(samples) if s.horizon_s == h and cls in (ANY_ARRHYTHMIA, s.arrhythmia)]
            out[str(h)][cls] = operating_point([samples[i] for i in idx], [probs[i] for i in idx])
    return out


def write_calibration(adapter_dir: Path, calibration: OnsetCalibration) -> None:
    """Insert the map into ``adapter.json`` (the file the runtime reads it from), keeping every other key."""
    path = adapter_dir / "adapter.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta["calibration"] = calibration.to_meta()
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class CalibrationConfig:
    adapter_dir: Path
    out: Path
    data: str = "synthetic-v1-small"
    bench_dir: Path = Path("runs/bench")
    split: str = "val"
    windows_s: tuple[int, ...] = (30, 300)
    horizons_s: tuple[int, ...] = (60, 300)
    cap: int = 40  # inputs per window
    seed: int = 0
    min_per_outcome: int = 8
    write: bool = False
    threads: int = 1
    n_boot: int = 200


def run_calibration(config: CalibrationConfig) -> dict[str, Any]:
    """Score the split's inputs with the raw runtime, fit, report; with ``write``, store the map in the adapter."""
    import torch

    from agent.settings import load_settings
    from core.errors import ConfigError
    from evaluation.embed import Embedder
    from evaluation.lm import LmForecaster
    from evaluation.scoring import cell_metrics, mean_over_cells
    from llm_runtime.engine import ForecastEngine
    from llm_runtime.settings import LlmSettings

    if config.split == "test":
        raise ValueError("calibration is fitted on validation patients, never on the test split")
    torch.set_num_threads(config.threads)
    data = EvalData(open_benchmark(config.data, config.bench_dir))
    embedder = Embedder(config.adapter_dir / "encoder.pt")
    try:
        base = load_settings().llm
    except ConfigError as exc:  # someone's half-edited config must not stop a calibration: the section defaults
        log.warning("config_invalid_using_defaults", error=str(exc).splitlines()[-1])
        base = LlmSettings.model_validate({})
    update = {"adapter_dir": config.adapter_dir, "window_s": max(config.windows_s), "horizons_s": config.horizons_s}
    settings = LlmSettings.model_validate(base.model_copy(update=update).model_dump())
    engine = ForecastEngine.load(settings, "rebuild", calibrated=False)  # raw scores: what the map is fitted on
    forecaster = LmForecaster(engine, data, embedder)
    cells: dict[tuple[int, int], tuple[list[Sample], Predictions]] = {}
    weights: dict[InputKey, float] = {}
    for w in config.windows_s:
        chosen = data.inputs(config.split, w, config.horizons_s, config.cap, config.seed)
        weights |= data.input_weights(config.split, w, config.horizons_s, chosen)
        for h in config.horizons_s:
            samples = [s for s in data.samples(config.split, (w, h)) if s.key in chosen]
            if samples:
                cells[(w, h)] = (samples, forecaster.predict(samples))
    engine.runner.close()
    onset = [o for samples, pred in cells.values() for o in onset_samples(samples, pred, weights)]
    fitted_on = (
        f"{data.meta.get('spec', {}).get('name', config.data)} split={config.split}: "
        f"{len({o.patient_id for o in onset})} patients, {len(onset)} onset probabilities, w={list(config.windows_s)}"
    )
    calibration = fit_onset_calibration(onset, config.min_per_outcome, fitted_on)
    raw = [o.p for o in onset]
    result: dict[str, Any] = {
        "synthetic": data.meta.get("source") == "synthetic",
        "adapter": str(config.adapter_dir),
        "model_version": engine.model_version,
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "inputs_scored": forecaster.inputs_scored,
        "calibration": calibration.to_meta(),
        "reliability_raw": _reliability_report(onset, raw),
        "reliability_in_sample": _reliability_report(onset, _mapped(calibration, onset)),
        "reliability_cross_fitted": _reliability_report(onset, cross_fitted(onset, config.min_per_outcome)),
        "operating_points": _operating_points(onset, _mapped(calibration, onset)),
        "cells": {
            f"w{w}_h{h}": cell_metrics(samples, pred, config.n_boot, config.seed)
            for (w, h), (samples, pred) in cells.items()
        },
        "mean": mean_over_cells(list(cells.values()), config.n_boot, config.seed),
        "onset_samples": [asdict(o) for o in onset],
    }
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "calibration.json").write_text(json.dumps(result, indent=1, default=str))
    if config.write:
        write_calibration(config.adapter_dir, calibration)
    return result
