"""Evaluation of a pretrained encoder on held-out synthetic patients: reconstruction error and linear probes.

All numbers come from the synthetic scenario generator (held-out seeds) and say nothing about clinical ECG.
``python main.py train encoder --out RUN --eval-only`` evaluates a training run (it needs RUN/ckpt.pt for the
decoder); ``python -m encoder_onnx.evaluate --weights FILE --out DIR`` runs the probes alone on an encoder weights
file, e.g. the shipped one, where the run directory is not at hand.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from core.errors import EcgcastError, SignalError
from encoder_onnx.beat_probe import cut_beat_windows
from encoder_onnx.data import WindowSet, load_or_build
from encoder_onnx.model import ConvAutoencoder, ConvEncoder
from encoder_onnx.settings import DEFAULT_WEIGHTS_PATH
from encoder_onnx.train import TrainConfig, apply_overrides, evaluate_reconstruction, split_records
from encoder_onnx.weights import file_sha256, load_encoder_weights

__all__ = [
    "BEAT_FEATURES",
    "RHYTHM_CLASSES",
    "ProbeResult",
    "beat_probe_report",
    "embed",
    "evaluate_run",
    "evaluate_weights",
    "linear_probe",
    "main",
    "markdown_report",
    "probe_report",
    "probe_table",
    "reconstruction_table",
]

BLOCK_S = 10
"""Seconds pooled per example in the block-level rhythm probe (a single second holds one or two beats)."""

BEAT_FEATURES = "beat-centred 1-s, 64-d"
"""Feature name of the beat-centred probes (``encoder_onnx.beat_probe``)."""

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


def _subsample(idx: npt.NDArray[np.int64], size: int, seed: int) -> npt.NDArray[np.int64]:
    """A seeded sorted subsample of at most ``size`` of ``idx`` (the probes' training examples)."""
    return np.sort(np.random.default_rng(seed).choice(idx, size=min(size, len(idx)), replace=False))


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
    sub = _subsample(train_idx, max_train, seed)
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


def beat_probe_report(
    encoder: ConvEncoder,
    beats: WindowSet,
    split: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
    *,
    max_train: int = 30_000,
    seed: int = 0,
) -> list[ProbeResult]:
    """Beat-type (N/A/V) probes on beat-centred windows (``encoder_onnx.beat_probe``): trained on a seeded
    subsample of ``split[0]`` (training patients), tested on all of ``split[1]`` (held-out patients).

    Two rows: every beat; and beats outside VT runs, where V is an isolated PVC or couplet among sinus beats (in
    the generator every VT beat is a V, so the first row's V class is mostly VT).
    """
    train_idx, test_idx = split
    sub = _subsample(train_idx, max_train, seed)
    outside_vt = beats.rhythm != "(VT"  # (N,)
    results = []
    for task, rows_train, rows_test in (
        ("beat type (N/A/V)", sub, test_idx),
        ("beat type (N/A/V), VT runs excluded", sub[outside_vt[sub]], test_idx[outside_vt[test_idx]]),
    ):
        x_train, x_test = embed(encoder, beats.windows[rows_train]), embed(encoder, beats.windows[rows_test])
        labels = (x_train, beats.beat[rows_train]), (x_test, beats.beat[rows_test])
        results.append(linear_probe(task, BEAT_FEATURES, *labels))
    return results


def _random_init(config: TrainConfig) -> ConvEncoder:
    """The baseline: an untrained encoder of the same shape, seeded with the run's seed."""
    torch.manual_seed(config.seed)
    return ConvEncoder(config.encoder)


def _all_probes(encoder: ConvEncoder, config: TrainConfig, data: WindowSet, beats: WindowSet) -> list[dict[str, Any]]:
    """Lead-second, neighbourhood, 10-s block and beat-centred probes, held-out patients vs the training ones."""
    results = probe_report(encoder, data, *split_records(data, config))
    results += beat_probe_report(encoder, beats, split_records(beats, config))
    return [asdict(p) for p in results]


def _beat_set(config: TrainConfig) -> WindowSet:
    """Beat-centred windows of the run's patients, cached beside its lead-second window set."""
    return load_or_build(config.data, config.out_dir / "data", config.workers, cut=cut_beat_windows, stem="beats")


def _beat_counts(beats: WindowSet, config: TrainConfig) -> dict[str, dict[str, int]]:
    """Beat-centred windows per class on each side of the split (before the training subsample)."""
    train_idx, val_idx = split_records(beats, config)
    return {
        side: {str(c): int(n) for c, n in zip(*np.unique(beats.beat[idx], return_counts=True), strict=True)}
        for side, idx in (("train", train_idx), ("val", val_idx))
    }


def _probe_fields(encoder: ConvEncoder, config: TrainConfig) -> tuple[WindowSet, dict[str, Any]]:
    """The run's lead-second window set, and the report fields :func:`evaluate_run` and :func:`evaluate_weights`
    share: split sizes, beat-window counts, and every probe for ``encoder`` and for its random-init baseline."""
    data, beats = load_or_build(config.data, config.out_dir / "data", config.workers), _beat_set(config)
    train_idx, val_idx = split_records(data, config)
    return data, {
        "n_train_windows": len(train_idx),
        "n_val_windows": len(val_idx),
        "n_val_records": len(np.unique(data.record[val_idx])),
        "beat_windows": _beat_counts(beats, config),
        "probes": _all_probes(encoder, config, data, beats),
        "probes_random_init": _all_probes(_random_init(config), config, data, beats),
    }


def evaluate_run(config: TrainConfig, command: str) -> dict[str, Any]:
    """Held-out reconstruction and probe results of the run in ``config.out_dir``; also written to eval.json.

    The probes are repeated on a random-init encoder of the same shape, so the gain from pretraining is visible.
    """
    torch.set_num_threads(config.threads)
    ckpt = torch.load(config.out_dir / "ckpt.pt", map_location="cpu", weights_only=False)
    model = ConvAutoencoder(config.encoder)
    model.load_state_dict(ckpt["model"])
    data, probes = _probe_fields(model.enc, config)
    result = {
        "data": "synthetic scenarios; validation = held-out patients (seeds)",
        **probes,
        "steps": int(ckpt["step"]),
        "history": ckpt["history"],
        "reconstruction": reconstruction_table(model, data, split_records(data, config)[1]),
        "command": command,
    }
    Path(config.out_dir / "eval.json").write_text(json.dumps(result, indent=2))
    return result


def evaluate_weights(weights: Path, config: TrainConfig, command: str) -> dict[str, Any]:
    """The probes of :func:`evaluate_run` for an encoder weights file; also written to ``out_dir/probes.json``.

    For when the training run directory is not at hand (a fresh machine has the shipped ``encoder.pt`` but no
    ``ckpt.pt``): without the decoder there is no reconstruction table. The patients, split and random-init baseline
    are those of ``config``; ``same_data_as_training`` records whether its data spec is the one the weights'
    metadata says they were trained on (held-out patients are held out only then).
    """
    torch.set_num_threads(config.threads)
    encoder, meta = load_encoder_weights(weights)
    spec = json.loads(json.dumps(asdict(config.data)))  # as the weights' metadata stores it (tuples as lists)
    _, probes = _probe_fields(encoder, config)
    result = {
        "data": "synthetic scenarios; validation = held-out patients (seeds)",
        "data_spec": spec,
        "same_data_as_training": meta.get("train_config", {}).get("data") == spec,
        "weights": str(weights),
        "weights_sha256": file_sha256(weights),
        **probes,
        "command": command,
    }
    config.out_dir.mkdir(parents=True, exist_ok=True)
    Path(config.out_dir / "probes.json").write_text(json.dumps(result, indent=2))
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
    return "\n".join([*lines, "", probe_table(result)])


def probe_table(result: dict[str, Any]) -> str:
    """The probes against chance, pretrained rows then random-init rows (of evaluate_run or evaluate_weights)."""
    lines = [
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


def main(argv: list[str] | None = None) -> int:
    """``python -m encoder_onnx.evaluate --weights FILE --out DIR [--set KEY=VALUE ...]``: the probes of a weights
    file (defaults: the shipped encoder on the training run's data spec); prints the probe table."""
    parser = argparse.ArgumentParser(prog="python -m encoder_onnx.evaluate", description=evaluate_weights.__doc__)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_PATH, help="encoder .pt (default: shipped)")
    parser.add_argument("--out", type=Path, required=True, help="directory: data caches and probes.json")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="TrainConfig override"
    )
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "encoder_onnx.evaluate", *(sys.argv[1:] if argv is None else argv)])
    try:
        config = apply_overrides(TrainConfig(), [*args.overrides, f"out_dir={args.out}"])
        result = evaluate_weights(args.weights, config, command)
    except EcgcastError as exc:
        print(f"evaluate failed: {exc}", file=sys.stderr)
        return 1
    print(probe_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
