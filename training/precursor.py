"""Fit the forecast head's precursor read-out (``llm_runtime.precursor``) and mix it into the head's onset outputs.

Two steps, both cheap (no LM pass):

1. On every training input (``python main.py eval precursor-table``): a class-balanced multinomial logistic
   regression from the trend columns and the window's bin to the scripted precursor state, and, per horizon,
   arrhythmia, window bin and state, the share of training inputs followed by that onset (add-half smoothed).
2. On the validation inputs of the LM features (``eval probe-features --split val``): per horizon and arrhythmia,
   a logistic regression of the onset label on the LM read-out's raw logit and the logit of the read-out's risk;
   it replaces the head's Platt scaling, so validation decides how much each source counts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from llm_runtime.precursor import PrecursorReadout, readout_inputs, window_bins
from llm_runtime.probe import ProbeHead
from llm_runtime.prompts import ARRHYTHMIAS
from training.probe import load_features, load_split, operating_points

__all__ = ["attach_precursor_readout", "fit_mix", "fit_precursor_readout"]

log = structlog.get_logger(__name__)

Floats = npt.NDArray[np.float64]


def _conversion_rates(
    table: dict[str, npt.NDArray[Any]], states: Sequence[str], windows_s: Floats, horizons: Sequence[int]
) -> Floats:
    """(H, A, W, K): share of the training inputs in state k and window bin w followed by the onset within h."""
    bins = window_bins(windows_s, table["window_s"])
    rates = np.zeros((len(horizons), len(ARRHYTHMIAS), len(windows_s), len(states)))
    for i, h in enumerate(horizons):
        for j, name in enumerate(ARRHYTHMIAS):
            label = table[f"onset_{name}_{h}"]
            for b in range(len(windows_s)):
                for k, state in enumerate(states):
                    rows = (bins == b) & (table["state"] == state) & (label >= 0)
                    rates[i, j, b, k] = (label[rows].sum() + 0.5) / (rows.sum() + 1.0)
    return rates


def fit_precursor_readout(
    table: dict[str, npt.NDArray[Any]],
    horizons: Sequence[int],
    c: float = 0.1,
    class_weight: str | None = "balanced",
    seed: int = 0,
) -> PrecursorReadout:
    """The read-out from a precursor table (``evaluation.precursor_table``). States are class-balanced by default:
    the precursor kinds are each 4-6 % of the inputs, and unweighted the softmax leans on "none" (validation
    AUROC of AF onset at h = 300 s 0.746 balanced vs 0.728 unweighted: bench/precursor_choice.py)."""
    from sklearn.linear_model import LogisticRegression

    states = tuple(sorted({str(s) for s in table["state"]}))
    if len(states) < 2:
        raise ValueError("the precursor table holds one state only: nothing to learn (is it a synthetic benchmark?)")
    windows_s = np.array(sorted({float(w) for w in table["window_s"]}))
    trends = np.asarray(table["trends"], dtype=np.float64)
    fill = np.nan_to_num(np.nanmedian(trends, axis=0))
    rows = readout_inputs(trends, table["window_s"], fill, windows_s)
    mean, scale = rows.mean(0), rows.std(0) + 1e-6
    target = np.searchsorted(states, table["state"].astype(str))
    fit = LogisticRegression(C=c, class_weight=class_weight, max_iter=5000, random_state=seed)
    fit.fit((rows - mean) / scale, target)
    weights, bias = fit.coef_, fit.intercept_
    if len(states) == 2:  # one row for two classes: the logit of states[1] against states[0]
        weights, bias = np.vstack([np.zeros_like(weights), weights]), np.array([0.0, bias[0]])
    rates = _conversion_rates(table, states, windows_s, horizons)
    return PrecursorReadout(states, windows_s, fill, mean, scale, weights, bias, rates)


def fit_mix(head: ProbeHead, readout: PrecursorReadout, val: dict[str, npt.NDArray[Any]]) -> Floats:
    """(H, A, 3) per horizon and arrhythmia: onset logit = a * LM raw logit + b * logit(read-out risk) + c, fitted on
    validation; a horizon without both labels keeps the read-out's risk as it is."""
    from sklearn.linear_model import LogisticRegression

    raw = head.onset_raw(head.standardised(val["x"], val["trends"]))
    risk_logit = readout.risk_logit(val["trends"], val["window_s"])
    mix = np.tile([0.0, 1.0, 0.0], (len(head.horizons_s), len(ARRHYTHMIAS), 1))
    for i, h in enumerate(head.horizons_s):
        for j, name in enumerate(ARRHYTHMIAS):
            label = val[f"onset_{name}_{h}"]
            seen = label >= 0
            if len(np.unique(label[seen])) < 2:
                continue
            pair = np.stack([raw[seen, i, j], risk_logit[seen, i, j]], axis=1)
            fit = LogisticRegression(C=1e4, max_iter=1000).fit(pair, label[seen])
            mix[i, j] = [fit.coef_[0, 0], fit.coef_[0, 1], fit.intercept_[0]]
    return mix


def attach_precursor_readout(adapter_dir: Path, table_path: Path, features_dir: Path, c: float = 0.1) -> Path:
    """Fit the read-out on ``table_path``, its mix on ``features_dir``'s validation split, and save the head of
    ``adapter_dir`` with both (its LM read-outs unchanged) and operating points recomputed."""
    head = ProbeHead.load(adapter_dir)
    if not head.reads_trends:
        raise ValueError(f"{adapter_dir}: the head reads no trend features; the precursor read-out needs them")
    table, val = load_features(table_path), load_split(features_dir, "val")
    readout = fit_precursor_readout(table, head.horizons_s, c)
    mixed = replace(head, precursor=readout, mix=fit_mix(head, readout, val))
    meta = json.loads((adapter_dir / "probe_head.json").read_text(encoding="utf-8"))
    for key in ("horizons_s", "layers", "trend_features", "precursor_states"):
        meta.pop(key, None)
    meta["precursor"] = {"c": c, "table": str(table_path), "n_table": len(table["state"]), "class_weight": "balanced"}
    meta["operating_points"] = operating_points(mixed, val)
    path = mixed.save(adapter_dir, meta)
    log.info("precursor_readout_attached", states=readout.states, path=str(path))
    return path
