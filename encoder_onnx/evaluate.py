"""Evaluation of a pretrained encoder on held-out synthetic patients: reconstruction error and linear probes.

All numbers come from the synthetic scenario generator (held-out seeds) and say nothing about clinical ECG.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from agent.errors import SignalError
from encoder_onnx.data import WindowSet, load_or_build
from encoder_onnx.model import ConvAutoencoder, ConvEncoder
from encoder_onnx.train import TrainConfig, evaluate_reconstruction, split_records

__all__ = [
    "RHYTHM_CLASSES",
    "ProbeResult",
    "embed",
    "evaluate_run",
    "linear_probe",
    "markdown_report",
    "probe_report",
    "reconstruction_table",
]

BLOCK_S = 10
"""Seconds pooled per example in the block-level rhythm probe (a single second holds one or two beats)."""

RHYTHM_CLASSES = {"(N": "sinus", "(SBR": "sinus", "(ST": "sinus", "(AFIB": "AF", "(AFL": "AFL", "(VT": "VT"}
"""The forecast classes. Bigeminy/trigeminy ('(B', '(T') and atrial runs ('(SVTA') are left out of the rhythm probe:
they are ectopy patterns over sinus, which the beat-type probe covers."""


@dataclass(frozen=True)
class ProbeResult:
    task: str
    features: str
    n_train: int
    n_test: int
    classes: list[str]
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    chance_accuracy: float  # always predicting the majority training class
    chance_balanced_accuracy: float  # 1 / number of classes
    chance_macro_f1: float  # the majority predictor's macro-F1 on the test set
    recall: dict[str, float]  # per class, in the order of ``classes``


@torch.no_grad()
def embed(encoder: ConvEncoder, windows: npt.NDArray[np.float32], batch: int = 8192) -> npt.NDArray[np.float32]:
    """Frozen embeddings (N, 64) of windows (N, 256) mV."""
    encoder.eval()
    parts = [encoder(torch.from_numpy(windows[i : i + batch])).numpy() for i in range(0, len(windows), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 64), np.float32)


def reconstruction_table(model: ConvAutoencoder, data: WindowSet, idx: npt.NDArray[np.int64]) -> dict[str, Any]:
    """Held-out reconstruction MSE (mV²) overall, per rhythm and per noise level, with window counts.

    ``rel_mse`` is the error energy over the (clipped) signal energy of the same windows.
    """
    mse = evaluate_reconstruction(model, data.windows[idx])
    clip = model.enc.config.clip_mv
    power = (np.clip(data.windows[idx], -clip, clip) ** 2).mean(axis=1)

    def row(mask: npt.NDArray[np.bool_]) -> dict[str, float]:
        return {
            "mse": float(mse[mask].mean()),
            "n": int(mask.sum()),
            "rel_mse": float(mse[mask].sum() / power[mask].sum()),
        }

    def group(labels: npt.NDArray[np.str_]) -> dict[str, dict[str, float]]:
        return {str(v): row(labels == v) for v in np.unique(labels)}

    everything = np.ones(len(idx), dtype=bool)
    return {"overall": row(everything), "by_rhythm": group(data.rhythm[idx]), "by_noise": group(data.noise[idx])}


def linear_probe(
    task: str,
    features: str,
    train: tuple[npt.NDArray[np.float32], npt.NDArray[np.str_]],
    test: tuple[npt.NDArray[np.float32], npt.NDArray[np.str_]],
) -> ProbeResult:
    """Class-balanced logistic regression on frozen features, scored against a majority-class predictor."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (x_train, y_train), (x_test, y_test) = train, test
    classes = sorted((set(y_train.tolist()) & set(y_test.tolist())) - {""})
    if len(classes) < 2:
        raise SignalError(f"probe {task!r} ({features}): fewer than two classes in both train and test: {classes}")
    keep_train, keep_test = np.isin(y_train, classes), np.isin(y_test, classes)
    x_train, y_train, x_test, y_test = x_train[keep_train], y_train[keep_train], x_test[keep_test], y_test[keep_test]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, class_weight="balanced"))
    pred = np.asarray(clf.fit(x_train, y_train).predict(x_test))
    values, counts = np.unique(y_train, return_counts=True)
    majority = np.full(len(y_test), values[np.argmax(counts)])
    return ProbeResult(
        task=task,
        features=features,
        n_train=len(y_train),
        n_test=len(y_test),
        classes=classes,
        accuracy=float(accuracy_score(y_test, pred)),
        balanced_accuracy=float(balanced_accuracy_score(y_test, pred)),
        macro_f1=float(f1_score(y_test, pred, average="macro", labels=classes)),
        chance_accuracy=float(accuracy_score(y_test, majority)),
        chance_balanced_accuracy=1.0 / len(classes),
        chance_macro_f1=float(f1_score(y_test, majority, average="macro", labels=classes, zero_division=0)),
        recall=dict(zip(classes, map(float, recall_score(y_test, pred, labels=classes, average=None)), strict=True)),
    )


def _rhythm_class(aux: npt.NDArray[np.str_]) -> npt.NDArray[np.str_]:
    """Forecast rhythm class per window; "" for rhythms outside RHYTHM_CLASSES (dropped from the probe)."""
    return np.array([RHYTHM_CLASSES.get(a, "") for a in aux.tolist()])


def _with_context(
    data: WindowSet, emb: npt.NDArray[np.float32], idx: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Embeddings of seconds t-1, t, t+1 of the same lead, concatenated (192-d), for windows ``idx`` that have both
    neighbours; returns (features, the kept idx). Rows of ``data`` are ordered by record, lead, second."""
    n = len(data.second)
    prev, nxt = np.clip(idx - 1, 0, n - 1), np.clip(idx + 1, 0, n - 1)
    same = (data.record[prev] == data.record[idx]) & (data.lead[prev] == data.lead[idx])
    same &= (data.record[nxt] == data.record[idx]) & (data.lead[nxt] == data.lead[idx])
    same &= (data.second[prev] == data.second[idx] - 1) & (data.second[nxt] == data.second[idx] + 1)
    keep = idx[same]
    return np.concatenate([emb[keep - 1], emb[keep], emb[keep + 1]], axis=1), keep  # (K, 3 x 64)


def _blocks(
    data: WindowSet, idx: npt.NDArray[np.int64], emb: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.str_]]:
    """BLOCK_S-second blocks of both leads: per lead the mean, std and mean |successive difference| of embeddings."""
    feats, labels = [], []
    key = data.record[idx].astype(np.int64) * 1_000_000 + data.second[idx] // BLOCK_S
    order = np.lexsort((data.second[idx], key))
    for sel in np.split(order, np.flatnonzero(np.diff(key[order])) + 1):
        leads = np.unique(data.lead[idx][sel])
        if len(sel) < 2 * BLOCK_S or len(leads) != 2:
            continue  # blocks with invalid seconds are skipped, as the agent would not forecast on them
        per_lead = [emb[idx[sel]][data.lead[idx][sel] == lead] for lead in leads]  # each (BLOCK_S, 64), time order
        stats = [np.concatenate([e.mean(0), e.std(0), np.abs(np.diff(e, axis=0)).mean(0)]) for e in per_lead]
        feats.append(np.concatenate(stats))  # (2 leads x 3 stats x 64,) = (384,)
        values, counts = np.unique(_rhythm_class(data.rhythm[idx][sel]), return_counts=True)
        labels.append(values[np.argmax(counts)])
    return np.asarray(feats, dtype=np.float32), np.asarray(labels)


def probe_report(
    encoder: ConvEncoder,
    data: WindowSet,
    train_idx: npt.NDArray[np.int64],
    test_idx: npt.NDArray[np.int64],
    max_train: int = 30_000,
    seed: int = 0,
) -> list[ProbeResult]:
    """Rhythm and beat-type probes on held-out patients.

    Features: one lead-second (64-d); a lead-second with its neighbours (t-1, t, t+1: 192-d, the RR context a
    single second lacks); and 10-s blocks of both leads (384-d). Training examples are a seeded subsample.
    """
    emb = embed(encoder, data.windows)  # (N, 64): every window, so neighbours are available
    sub = np.sort(np.random.default_rng(seed).choice(train_idx, size=min(max_train, len(train_idx)), replace=False))
    ctx_train, sub_ctx = _with_context(data, emb, sub)
    ctx_test, test_ctx = _with_context(data, emb, test_idx)
    results = []
    for features, (x_train, rows_train), (x_test, rows_test) in (
        ("lead-second, 64-d", (emb[sub], sub), (emb[test_idx], test_idx)),
        ("lead-second with t-1 and t+1, 192-d", (ctx_train, sub_ctx), (ctx_test, test_ctx)),
    ):
        rhythm_train, rhythm_test = _rhythm_class(data.rhythm[rows_train]), _rhythm_class(data.rhythm[rows_test])
        results.append(linear_probe("rhythm", features, (x_train, rhythm_train), (x_test, rhythm_test)))
        beats = (x_train, data.beat[rows_train]), (x_test, data.beat[rows_test])
        results.append(linear_probe("beat type (N/A/V)", features, *beats))
    blocks = _blocks(data, train_idx, emb), _blocks(data, test_idx, emb)
    results.append(linear_probe("rhythm", f"{BLOCK_S}-s block, 2 leads, 384-d", *blocks))
    return results


def evaluate_run(config: TrainConfig, command: str) -> dict[str, Any]:
    """Held-out reconstruction and probe results of the run in ``config.out_dir``; also written to eval.json.

    The probes are repeated on a random-init encoder of the same shape, so the gain from pretraining is visible.
    """
    torch.set_num_threads(config.threads)
    data = load_or_build(config.data, config.out_dir / "data", config.workers)
    train_idx, val_idx = split_records(data, config)
    ckpt = torch.load(config.out_dir / "ckpt.pt", map_location="cpu", weights_only=False)
    model = ConvAutoencoder(config.encoder)
    model.load_state_dict(ckpt["model"])
    torch.manual_seed(config.seed)
    random_init = ConvEncoder(config.encoder)
    result = {
        "data": "synthetic scenarios; validation = held-out patients (seeds)",
        "n_train_windows": len(train_idx),
        "n_val_windows": len(val_idx),
        "n_val_records": len(np.unique(data.record[val_idx])),
        "steps": int(ckpt["step"]),
        "history": ckpt["history"],
        "reconstruction": reconstruction_table(model, data, val_idx),
        "probes": [asdict(p) for p in probe_report(model.enc, data, train_idx, val_idx)],
        "probes_random_init": [asdict(p) for p in probe_report(random_init, data, train_idx, val_idx)],
        "command": command,
    }
    Path(config.out_dir / "eval.json").write_text(json.dumps(result, indent=2))
    return result


def markdown_report(result: dict[str, Any]) -> str:
    """The model card's tables: reconstruction by rhythm and noise level, probes against chance."""
    recon = result["reconstruction"]
    lines = ["| group | value | windows | MSE (mV²) | relative MSE |", "|---|---|---|---|---|"]
    o = recon["overall"]
    lines.append(f"| all | - | {o['n']} | {o['mse']:.5f} | {o['rel_mse']:.3f} |")
    for group, key in (("rhythm", "by_rhythm"), ("noise", "by_noise")):
        for value, r in recon[key].items():
            lines.append(f"| {group} | `{value}` | {r['n']} | {r['mse']:.5f} | {r['rel_mse']:.3f} |")
    lines += [
        "",
        "| task | features | encoder | classes | n train / test | accuracy | balanced acc. | macro-F1 "
        "| chance acc. / bal. / F1 | recall per class |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, key in (("pretrained", "probes"), ("random init", "probes_random_init")):
        for p in result[key]:
            lines.append(
                f"| {p['task']} | {p['features']} | {name} | {', '.join(p['classes'])} | {p['n_train']} / "
                f"{p['n_test']} | {p['accuracy']:.3f} | {p['balanced_accuracy']:.3f} | {p['macro_f1']:.3f} | "
                f"{p['chance_accuracy']:.3f} / {p['chance_balanced_accuracy']:.3f} / {p['chance_macro_f1']:.3f} | "
                + ", ".join(f"{c} {r:.2f}" for c, r in p["recall"].items())
                + " |"
            )
    return "\n".join(lines)
