"""Metrics of one method on one cell, and the mean over cells with a patient-bootstrap interval."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import numpy.typing as npt

from evaluation.data import CLASSES, CLASSES_CAMEL, ONSETS, Sample
from evaluation.metrics import auprc, auroc, bootstrap_ci, macro_f1, reliability
from evaluation.predictions import Predictions

__all__ = ["af_onset_aurocs", "calibration", "cell_metrics", "f1_camel", "mean_over_cells", "paired_difference"]


class _CellF1:
    """A cell's labels and arg-max guesses as arrays, computed once: the bootstrap asks for F1 on hundreds of
    index resamples of the same cell."""

    def __init__(self, samples: Sequence[Sample], pred: Predictions) -> None:
        self.truth = np.array([s.label_class for s in samples])
        self.camel_rows = np.isin(self.truth, CLASSES_CAMEL)
        self.guess_camel = np.array(pred.predicted(CLASSES_CAMEL))
        self.guess_all = np.array(pred.predicted(CLASSES))

    def camel(self, idx: npt.NDArray[np.int64]) -> float | None:
        """CAMEL's protocol: macro-F1 over sinus / AF / flutter, samples whose label is VT left out, the arg-max
        taken among the three classes."""
        keep = idx[self.camel_rows[idx]]
        return macro_f1(self.truth[keep], self.guess_camel[keep], CLASSES_CAMEL)

    def with_vt(self, idx: npt.NDArray[np.int64]) -> float | None:
        return macro_f1(self.truth[idx], self.guess_all[idx], CLASSES)


def f1_camel(samples: Sequence[Sample], pred: Predictions, idx: npt.NDArray[np.int64]) -> float | None:
    """CAMEL's macro-F1 of the samples ``idx`` of one cell (see :meth:`_CellF1.camel`)."""
    return _CellF1(samples, pred).camel(np.asarray(idx, dtype=np.int64))


def cell_metrics(samples: Sequence[Sample], pred: Predictions, n_boot: int, seed: int) -> dict[str, Any]:
    """Macro-F1 (CAMEL's 3 classes, and with VT) with patient-bootstrap 95% intervals; onset AUROC/AUPRC."""
    patients = [s.patient_id for s in samples]
    every = np.arange(len(samples))
    out: dict[str, Any] = {"n": len(samples), "patients": len(set(patients))}
    out["label_counts"] = {c: sum(s.label_class == c for s in samples) for c in CLASSES}
    f1 = _CellF1(samples, pred)
    out["macro_f1"] = f1.camel(every)
    out["macro_f1_ci"] = bootstrap_ci(patients, f1.camel, n_boot, seed)
    out["macro_f1_vt"] = f1.with_vt(every)
    out["macro_f1_vt_ci"] = bootstrap_ci(patients, f1.with_vt, n_boot, seed)
    guesses = pred.predicted(CLASSES)
    out["accuracy"] = float(np.mean([g == s.label_class for g, s in zip(guesses, samples, strict=True)]))
    for j, cls in enumerate(ONSETS):
        labels = np.array([s.onset[cls] for s in samples])
        out[f"onset_{cls}"] = {
            "positives": int(labels.sum()),
            "auroc": auroc(labels, pred.onset[:, j]),
            "auprc": auprc(labels, pred.onset[:, j]),
            "auroc_ci": bootstrap_ci(patients, _onset_auroc(labels, pred.onset[:, j]), n_boot, seed),
        }
    return out


def af_onset_aurocs(cells: dict[str, dict[str, Any]], horizon_s: int | None = None) -> list[float]:
    """The defined AF-onset AUROCs of ``cell_metrics`` results keyed "w{w}_h{h}" (of one horizon, if given)."""
    return [
        c["onset_af"]["auroc"]
        for key, c in cells.items()
        if c["onset_af"]["auroc"] is not None and (horizon_s is None or key.endswith(f"_h{horizon_s}"))
    ]


def _onset_auroc(
    labels: npt.NDArray[np.int64], scores: npt.NDArray[np.float64]
) -> Callable[[npt.NDArray[np.int64]], float | None]:
    return lambda idx: auroc(labels[idx], scores[idx])


def _patient_resamples(
    cells: Sequence[Sequence[Sample]], n_boot: int, seed: int
) -> Iterator[list[npt.NDArray[np.int64]]]:
    """Per bootstrap resample of the patients (drawn once for every cell together): each cell's sample indices."""
    patients = sorted({x.patient_id for s in cells for x in s})
    by_patient = []  # per cell: patient -> its sample indices, computed once
    for s in cells:
        ids = np.array([x.patient_id for x in s])
        by_patient.append({p: np.flatnonzero(ids == p) for p in np.unique(ids)})
    empty = np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        drawn = rng.choice(patients, size=len(patients), replace=True)
        yield [np.concatenate([index.get(d, empty) for d in drawn]) for index in by_patient]


def _interval(values: Sequence[float]) -> tuple[float, float] | None:
    return (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))) if values else None


def mean_over_cells(cells: Sequence[tuple[Sequence[Sample], Predictions]], n_boot: int, seed: int) -> dict[str, Any]:
    """Mean CAMEL macro-F1 over cells; the interval resamples patients once for all cells together."""
    f1s = [_CellF1(s, p) for s, p in cells]
    values = [f1.camel(np.arange(len(s))) for f1, (s, _) in zip(f1s, cells, strict=True)]
    defined = [v for v in values if v is not None]
    if not defined:
        return {"mean_macro_f1": None, "cells": 0}
    boots = []
    for indices in _patient_resamples([s for s, _ in cells], n_boot, seed):
        per_cell = [v for f1, idx in zip(f1s, indices, strict=True) if (v := f1.camel(idx)) is not None]
        if per_cell:
            boots.append(float(np.mean(per_cell)))
    return {"mean_macro_f1": float(np.mean(defined)), "mean_macro_f1_ci": _interval(boots), "cells": len(defined)}


def paired_difference(
    cells: Sequence[Sequence[Sample]],
    a: Sequence[Predictions],
    b: Sequence[Predictions],
    n_boot: int,
    seed: int,
    af_horizon_s: int | None = None,
) -> dict[str, Any]:
    """Method a minus method b on identical samples, with a paired patient bootstrap (both methods scored on each
    resample): mean CAMEL macro-F1 over cells, and the mean AF-onset AUROC over the cells of ``af_horizon_s``."""
    f1_a = [_CellF1(s, p) for s, p in zip(cells, a, strict=True)]
    f1_b = [_CellF1(s, p) for s, p in zip(cells, b, strict=True)]
    labels = [np.array([x.onset["af"] for x in s]) for s in cells]
    af_cells = [i for i, s in enumerate(cells) if af_horizon_s is None or (s and s[0].horizon_s == af_horizon_s)]

    def stats(indices: Sequence[npt.NDArray[np.int64]]) -> tuple[float | None, float | None]:
        pairs = [(x.camel(i), y.camel(i)) for x, y, i in zip(f1_a, f1_b, indices, strict=True)]
        f1 = [u - v for u, v in pairs if u is not None and v is not None]
        aucs = []
        for c in af_cells:
            i = indices[c]
            u, v = auroc(labels[c][i], a[c].onset[i, 0]), auroc(labels[c][i], b[c].onset[i, 0])
            if u is not None and v is not None:
                aucs.append(u - v)
        return (float(np.mean(f1)) if f1 else None, float(np.mean(aucs)) if aucs else None)

    f1_diff, auc_diff = stats([np.arange(len(s)) for s in cells])
    boots = [stats(idx) for idx in _patient_resamples(cells, n_boot, seed)]
    return {
        "mean_macro_f1_diff": f1_diff,
        "mean_macro_f1_diff_ci": _interval([f for f, _ in boots if f is not None]),
        "af_onset_auroc_diff": auc_diff,
        "af_onset_auroc_diff_ci": _interval([u for _, u in boots if u is not None]),
        "af_horizon_s": af_horizon_s,
        "n_boot": n_boot,
    }


def calibration(cells: Sequence[tuple[Sequence[Sample], Predictions]]) -> dict[str, Any]:
    """Reliability of the onset probabilities (every cell and arrhythmia pooled) and of the rhythm arg-max."""
    labels, probs, correct, confidence = [], [], [], []
    for samples, pred in cells:
        for j, cls in enumerate(ONSETS):
            labels += [s.onset[cls] for s in samples]
            probs += list(pred.onset[:, j])
        guesses = pred.predicted(CLASSES)
        correct += [g == s.label_class for g, s in zip(guesses, samples, strict=True)]
        confidence += list(pred.rhythm.max(axis=1))
    onset, rhythm = reliability(labels, probs), reliability(correct, confidence)
    return {"onset": asdict(onset) if onset else None, "rhythm_top": asdict(rhythm) if rhythm else None}
