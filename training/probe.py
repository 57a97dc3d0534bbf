"""The probe variant's two fits (docs/TRAINING.md, "Probe variant"): a grounded projector, then the forecast head.

1. **Projector, grounded in the LM's own words.** The frozen LM cannot read an untrained projector's vectors, and
   back-propagating through 18 layers for thousands of windows does not fit our CPU. So the projector is fitted in
   closed form: least squares from each lead-second's token (the supervised encoder) to the LM's input embedding
   of words naming that second (its rhythm and its beat type, from the simulator's labels). Each ECG token then
   sits near the words a cardiologist would use for it, in the vector space the LM already reads.
2. **Head.** The LM's state at the end of the probe prompt (``llm_runtime.probe``) is extracted once per training
   input (``evaluation.probe_features``); per horizon a class-balanced multinomial logistic regression reads the
   rhythm and one balanced logistic regression per arrhythmia reads "onset within h"; onset outputs get a Platt
   calibration on validation patients, so alert thresholds mean probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog
import torch

from encoder_onnx.data import WindowSet
from llm_runtime.probe import PROBE_HORIZONS, ProbeHead, head_inputs
from llm_runtime.prompts import ARRHYTHMIAS, RHYTHMS

__all__ = [
    "PROBE_HORIZONS",
    "WORDS",
    "HeadRecipe",
    "build_probe_adapter",
    "fit_probe_head",
    "grounded_projector",
    "load_features",
    "load_split",
    "operating_points",
    "train_head",
]

log = structlog.get_logger(__name__)

WORDS: dict[str, str] = {
    "sinus": " sinus",
    "af": " fibrillation",
    "flutter": " flutter",
    "vt": " tachycardia",
    "N": " normal",
    "A": " atrial",
    "V": " ventricular",
}
"""The word each label is grounded in (leading space: the form the words take inside a sentence)."""


def _word_vectors(lm: Any, tokenizer: Any) -> dict[str, torch.Tensor]:
    """Each label's word as the LM embeds it (the mean over its tokens, Gemma's input scaling included)."""
    table = lm.get_input_embeddings()
    out = {}
    for label, word in WORDS.items():
        ids = torch.tensor(tokenizer(word, add_special_tokens=False).input_ids)
        out[label] = table(ids).float().mean(0).detach()
    return out


def grounded_projector(
    tokens: npt.NDArray[np.float32], rhythm: Sequence[str], beat: Sequence[str], words: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares (weight (hidden, 64), bias (hidden,)) taking tokens (N, 64) to the mean of the vectors of
    each second's rhythm word and beat word."""
    target = torch.stack([(words[r] + words[b]) / 2 for r, b in zip(rhythm, beat, strict=True)])  # (N, hidden)
    x = torch.cat([torch.from_numpy(tokens).double(), torch.ones(len(tokens), 1, dtype=torch.float64)], 1)
    solution = torch.linalg.lstsq(x, target.double(), driver="gelsd").solution  # (65, hidden)
    return solution[:-1].T.float().contiguous(), solution[-1].float().contiguous()


def build_probe_adapter(
    out_dir: Path, encoder_weights: Path, windows: WindowSet, backbone_name: str, n_windows: int = 60_000
) -> Path:
    """A probe-variant adapter: grounded projector, no LoRA, lead II, and the encoder it was grounded with."""
    import shutil

    from encoder_onnx.weights import file_sha256, load_encoder_weights
    from llm_runtime.backbones import load_backbone
    from llm_runtime.checkpoints import save_adapter
    from llm_runtime.model import EcgLanguageModel, EcgLmConfig
    from simulators.records import rhythm_class

    backbone = load_backbone(backbone_name)
    encoder, _ = load_encoder_weights(encoder_weights)
    usable = np.flatnonzero(windows.valid)
    pick = np.sort(np.random.default_rng(0).choice(usable, size=min(n_windows, len(usable)), replace=False))
    with torch.inference_mode():
        tokens = encoder(torch.from_numpy(windows.windows[pick])).numpy()
    rhythm = [rhythm_class(str(a)) for a in windows.rhythm[pick]]
    words = _word_vectors(backbone.lm, backbone.tokenizer)
    weight, bias = grounded_projector(tokens, rhythm, list(windows.beat[pick]), words)
    model = EcgLanguageModel(backbone.lm, EcgLmConfig(hidden_size=backbone.lm.config.hidden_size, lora=None))
    newline = torch.tensor(backbone.tokenizer("\n", add_special_tokens=False).input_ids)
    with torch.no_grad():
        model.llava_proj.weight.copy_(weight)
        model.llava_proj.bias.copy_(bias)
        model.ecg_special.weight.copy_(
            backbone.lm.get_input_embeddings()(newline).mean(0).expand_as(model.ecg_special.weight)
        )
    meta = {
        "version": f"probe/{out_dir.name}",
        "backbone": backbone_name,
        "layout": "streaming",
        "prompt": "probe",
        "leads": ["ii"],
        "horizons_s": list(PROBE_HORIZONS),
        "encoder_sha256": file_sha256(encoder_weights),
        "projector": "least squares to the LM embeddings of label words (training.probe.grounded_projector)",
        "projector_windows": len(pick),
        "synthetic_data": True,
    }
    save_adapter(model, out_dir, meta)
    shutil.copyfile(encoder_weights, out_dir / "encoder.pt")
    log.info("probe_adapter_built", out=str(out_dir), windows=len(pick))
    return out_dir


def _logistic(x: npt.NDArray[np.float64], y: npt.NDArray[np.int64], c: float, seed: int, balanced: bool) -> Any:
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        return None
    weight = "balanced" if balanced else None
    return LogisticRegression(C=c, class_weight=weight, max_iter=3000, random_state=seed).fit(x, y)


def _platt(
    raw: npt.NDArray[np.float64], y: npt.NDArray[np.int64], weight: npt.NDArray[np.float64] | None = None
) -> tuple[float, float]:
    """(a, b) of sigmoid(a * raw + b) fitted on validation (weighted back to the split's own label frequencies when
    the inputs were drawn stratified); identity when validation has a single class."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        return 1.0, 0.0
    fit = LogisticRegression(C=1e4, max_iter=1000).fit(raw[:, None], y, sample_weight=weight)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


@dataclass(frozen=True)
class HeadRecipe:
    """How the head is fitted (docs/TRAINING.md gives the validation runs behind the defaults)."""

    c: float = 0.003  # inverse L2 strength of every read-out (validation: docs/TRAINING.md)
    trends: bool = True  # read the window's trend features beside the LM (when the features files carry them)
    balanced_rhythm: bool = False  # class-balanced rhythm read-out (favours rare classes at the cost of macro-F1)
    weighted_calibration: bool = False  # Platt fit weighted back to the split's own label frequencies
    seed: int = 0


def _head_rows(split: dict[str, npt.NDArray[Any]], fill: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return head_inputs(split["x"], split["trends"] if fill.size else None, fill)


def fit_probe_head(
    train: dict[str, npt.NDArray[Any]],
    val: dict[str, npt.NDArray[Any]],
    layers: Sequence[int],
    recipe: HeadRecipe = HeadRecipe(),
) -> ProbeHead:
    """Fit the head on training features and labels (``evaluation.probe_features`` arrays: ``x`` (N, F), ``trends``
    (N, E), ``rhythm_<h>`` class indexes, ``onset_<cls>_<h>`` 0/1), calibrate onsets on ``val``."""
    c, seed = recipe.c, recipe.seed
    fill = np.zeros(0)
    if recipe.trends and "trends" in train:
        fill = np.nan_to_num(np.nanmedian(train["trends"], axis=0))  # a feature never measured: 0
    rows_t, rows_v = _head_rows(train, fill), _head_rows(val, fill)
    mean = rows_t.mean(0)
    scale = rows_t.std(0) + 1e-6
    xt, xv = (rows_t - mean) / scale, (rows_v - mean) / scale
    n_f, n_h = xt.shape[1], len(PROBE_HORIZONS)
    rhythm_w, rhythm_b = np.zeros((n_h, len(RHYTHMS), n_f)), np.full((n_h, len(RHYTHMS)), -30.0)
    onset_w, onset_b = np.zeros((n_h, len(ARRHYTHMIAS), n_f)), np.full((n_h, len(ARRHYTHMIAS)), -30.0)
    platt = np.tile([1.0, 0.0], (n_h, len(ARRHYTHMIAS), 1))
    for i, h in enumerate(PROBE_HORIZONS):
        y, known = train[f"rhythm_{h}"], train[f"rhythm_{h}"] >= 0  # -1: the record ends before the horizon
        fit = _logistic(xt[known], y[known], c, seed, recipe.balanced_rhythm)
        if fit is not None:
            binary = len(fit.classes_) == 2  # one coefficient row: the logit of classes_[1] against classes_[0]
            rows = np.stack([np.zeros_like(fit.coef_[0]), fit.coef_[0]]) if binary else fit.coef_
            bias = np.array([0.0, fit.intercept_[0]]) if binary else fit.intercept_
            for j, cls in enumerate(fit.classes_):
                rhythm_w[i, cls], rhythm_b[i, cls] = rows[j], bias[j]
        for j, name in enumerate(ARRHYTHMIAS):
            y, known = train[f"onset_{name}_{h}"], train[f"onset_{name}_{h}"] >= 0
            fit = _logistic(xt[known], y[known], c, seed, balanced=True)  # ranking; Platt restores the rates
            if fit is None:
                continue
            onset_w[i, j], onset_b[i, j] = fit.coef_[0], fit.intercept_[0]
            yv, seen = val[f"onset_{name}_{h}"], val[f"onset_{name}_{h}"] >= 0
            weight = val["weight"][seen] if recipe.weighted_calibration and "weight" in val else None
            platt[i, j] = _platt(xv[seen] @ onset_w[i, j] + onset_b[i, j], yv[seen], weight)
    return ProbeHead(PROBE_HORIZONS, tuple(layers), mean, scale, rhythm_w, rhythm_b, onset_w, onset_b, platt, fill)


def _weighted_quantile(values: npt.NDArray[np.float64], weights: npt.NDArray[np.float64], q: float) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order]) / weights.sum()
    index = min(int(np.searchsorted(cumulative, q)), len(values) - 1)
    return float(values[order][index])


def operating_points(
    head: ProbeHead,
    val: dict[str, npt.NDArray[Any]],
    alert_horizons: Sequence[int] = (60, 300),
    max_fpr: float = 0.02,
    min_window_s: int = 300,
) -> dict[str, dict[str, float | int]]:
    """Per arrhythmia, the ``raise_at`` that one forecast of the agent (the largest onset probability over
    ``alert_horizons``; windows >= ``min_window_s``, what the streaming cache reads) exceeds on at most ``max_fpr``
    of validation inputs with no onset within the longest alert horizon, weighted back to the split's frequencies;
    with the share of onset inputs it catches at that threshold (sensitivity per forecast, not per onset)."""
    keep = val["window_s"] >= min_window_s
    weight = val["weight"][keep] if "weight" in val else np.ones(int(keep.sum()))
    predicted = head.predict(val["x"][keep], val["trends"][keep] if "trends" in val else None, val["window_s"][keep])
    longest = max(alert_horizons)
    out: dict[str, dict[str, float | int]] = {}
    for name in ARRHYTHMIAS:
        score = np.array([max(onset[h][name] for h in alert_horizons) for _, onset in predicted])
        label = val[f"onset_{name}_{longest}"][keep]
        negative, positive = label == 0, label == 1
        if not negative.any():
            continue
        threshold = _weighted_quantile(score[negative], weight[negative], 1.0 - max_fpr)
        out[name] = {
            "raise_at": round(threshold, 3),
            "fpr_per_forecast": round(float(np.average(score[negative] >= threshold, weights=weight[negative])), 4),
            "tpr_per_forecast": round(float(np.mean(score[positive] >= threshold)), 4) if positive.any() else 0.0,
            "negatives": int(negative.sum()),
            "positives": int(positive.sum()),
        }
    return out


def load_features(path: Path) -> dict[str, npt.NDArray[Any]]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def load_split(features_dir: Path, split: str) -> dict[str, npt.NDArray[Any]]:
    """A split's features: ``SPLIT.npz`` (the benchmark's windows) and any ``SPLIT-w*.npz`` (extra window grids,
    such as the streaming cache's 330 and 360 s), rows concatenated."""
    paths = [features_dir / f"{split}.npz", *sorted(features_dir.glob(f"{split}-w*.npz"))]
    parts = [load_features(p) for p in paths if p.exists()]
    if not parts:
        raise FileNotFoundError(f"no {split}.npz under {features_dir} (python main.py eval probe-features)")
    if any(not np.array_equal(p["layers"], parts[0]["layers"]) for p in parts):
        raise ValueError(f"{features_dir}: the {split} files were extracted from different layers")
    return {k: v if k == "layers" else np.concatenate([p[k] for p in parts]) for k, v in parts[0].items()}


def train_head(features_dir: Path, adapter_dir: Path, recipe: HeadRecipe = HeadRecipe()) -> Path:
    """Fit the head from ``features_dir/{train,val}.npz`` and write it into ``adapter_dir``.

    ``recipe.weighted_calibration`` weights validation inputs back to the split's own label frequencies (the draw
    keeps onsets over-represented). Off for the shipped head: its probabilities are those of the stratified draw,
    which the alert thresholds were set on; weighted, onset risk falls to about 0.07 before an onset."""
    train, val = load_split(features_dir, "train"), load_split(features_dir, "val")
    if recipe.trends and "trends" not in train:
        raise ValueError(f"{features_dir}: the features carry no trend features (re-run eval probe-features)")
    layers = tuple(int(v) for v in train["layers"])
    head = fit_probe_head(train, val, layers, recipe)
    meta: dict[str, Any] = {
        **asdict(recipe),
        "n_train": len(train["x"]),
        "n_val": len(val["x"]),
        "train_windows_s": sorted({int(w) for w in train["window_s"]}),
        "features": str(features_dir),
        "operating_points": operating_points(head, val),
        "synthetic_data": True,
    }
    path = head.save(adapter_dir, meta)
    log.info("probe_head_fitted", **meta, path=str(path))
    return path
