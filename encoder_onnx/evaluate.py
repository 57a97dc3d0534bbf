"""Evaluation of a pretrained encoder on held-out synthetic patients: reconstruction error and linear probes.

All numbers come from the synthetic scenario generator (held-out seeds) and say nothing about clinical ECG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from encoder_onnx.data import WindowSet
from encoder_onnx.model import ConvAutoencoder, ConvEncoder

__all__ = ["ProbeResult", "embed", "linear_probe", "probe_report", "reconstruction_table"]

BLOCK_S = 10
"""Seconds pooled per example in the block-level rhythm probe (single seconds hold one or two beats)."""


@dataclass(frozen=True)
class ProbeResult:
    task: str
    features: str
    n_train: int
    n_test: int
    classes: list[str]
    accuracy: float
    macro_f1: float
    chance_accuracy: float  # always predicting the majority training class
    chance_macro_f1: float  # that same constant predictor's macro-F1 on the test set


@torch.no_grad()
def embed(encoder: ConvEncoder, windows: npt.NDArray[np.float32], batch: int = 8192) -> npt.NDArray[np.float32]:
    """Frozen embeddings (N, 64) of windows (N, 256) mV."""
    encoder.eval()
    parts = [encoder(torch.from_numpy(windows[i : i + batch])).numpy() for i in range(0, len(windows), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 64), np.float32)


def reconstruction_table(model: ConvAutoencoder, data: WindowSet, idx: npt.NDArray[np.int64]) -> dict[str, Any]:
    """Held-out reconstruction MSE (mV²) overall, per rhythm and per noise level, with window counts."""
    from encoder_onnx.train import evaluate_reconstruction

    mse = evaluate_reconstruction(model, data.windows[idx])
    power = (np.clip(data.windows[idx], -model.enc.config.clip_mv, model.enc.config.clip_mv) ** 2).mean(axis=1)

    def group(labels: npt.NDArray[np.str_]) -> dict[str, dict[str, float]]:
        return {
            str(v): {
                "mse": float(mse[labels == v].mean()),
                "n": int((labels == v).sum()),
                "rel_mse": float(mse[labels == v].sum() / max(power[labels == v].sum(), 1e-12)),
            }
            for v in np.unique(labels)
        }

    return {
        "overall": {"mse": float(mse.mean()), "n": len(idx), "rel_mse": float(mse.sum() / power.sum())},
        "by_rhythm": group(data.rhythm[idx]),
        "by_noise": group(data.noise[idx]),
    }


def _fit_predict(
    x_train: npt.NDArray[np.float32], y_train: npt.NDArray[np.str_], x_test: npt.NDArray[np.float32]
) -> npt.NDArray[np.str_]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
    clf.fit(x_train, y_train)
    return np.asarray(clf.predict(x_test))


def linear_probe(
    task: str,
    features: str,
    x_train: npt.NDArray[np.float32],
    y_train: npt.NDArray[np.str_],
    x_test: npt.NDArray[np.float32],
    y_test: npt.NDArray[np.str_],
) -> ProbeResult:
    """Logistic regression on frozen features; reports accuracy and macro-F1 against a majority-class predictor."""
    from sklearn.metrics import accuracy_score, f1_score

    classes = sorted(set(y_train.tolist()) & set(y_test.tolist()))
    keep_train, keep_test = np.isin(y_train, classes), np.isin(y_test, classes)
    x_train, y_train, x_test, y_test = x_train[keep_train], y_train[keep_train], x_test[keep_test], y_test[keep_test]
    pred = _fit_predict(x_train, y_train, x_test)
    values, counts = np.unique(y_train, return_counts=True)
    majority = np.full(len(y_test), values[np.argmax(counts)])
    return ProbeResult(
        task,
        features,
        len(y_train),
        len(y_test),
        classes,
        float(accuracy_score(y_test, pred)),
        float(f1_score(y_test, pred, average="macro", labels=classes)),
        float(accuracy_score(y_test, majority)),
        float(f1_score(y_test, majority, average="macro", labels=classes, zero_division=0)),
    )


def _blocks(
    data: WindowSet, idx: npt.NDArray[np.int64], emb: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.str_]]:
    """Pool BLOCK_S consecutive seconds of both leads: mean and std of each lead's embeddings, concatenated."""
    feats, labels = [], []
    key = data.record[idx].astype(np.int64) * 1_000_000 + data.second[idx] // BLOCK_S
    order = np.argsort(key, kind="stable")
    for sel in np.split(order, np.flatnonzero(np.diff(key[order])) + 1):
        leads = np.unique(data.lead[idx][sel])
        if len(sel) < 2 * BLOCK_S or len(leads) != 2:
            continue
        per_lead = [emb[sel][data.lead[idx][sel] == lead] for lead in leads]
        feats.append(np.concatenate([np.concatenate([e.mean(0), e.std(0)]) for e in per_lead]))
        values, counts = np.unique(data.rhythm[idx][sel], return_counts=True)
        labels.append(values[np.argmax(counts)])
    return np.asarray(feats, dtype=np.float32), np.asarray(labels)


def probe_report(
    encoder: ConvEncoder,
    data: WindowSet,
    train_idx: npt.NDArray[np.int64],
    test_idx: npt.NDArray[np.int64],
    max_train: int = 60_000,
    seed: int = 0,
) -> list[ProbeResult]:
    """Rhythm and beat-type probes on held-out patients: per lead-second (64-d) and per 10-s block (256-d)."""
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.choice(train_idx, size=min(max_train, len(train_idx)), replace=False))
    emb_train, emb_test = embed(encoder, data.windows[sub]), embed(encoder, data.windows[test_idx])
    results = [
        linear_probe("rhythm", "lead-second 64-d", emb_train, data.rhythm[sub], emb_test, data.rhythm[test_idx]),
        linear_probe("beat type", "lead-second 64-d", emb_train, data.beat[sub], emb_test, data.beat[test_idx]),
    ]
    all_train = embed(encoder, data.windows[train_idx])
    xb_train, yb_train = _blocks(data, train_idx, all_train)
    xb_test, yb_test = _blocks(data, test_idx, emb_test)
    results.append(
        linear_probe("rhythm", f"{BLOCK_S}-s block, 2 leads, mean+std 256-d", xb_train, yb_train, xb_test, yb_test)
    )
    return results
