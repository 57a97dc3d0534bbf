"""Extract the probe variant's LM features for benchmark inputs, with their labels at every horizon.

One LM pass per input (record, anchor, w) through the runtime itself (``LmForecaster.features``: the runner is
primed with the window's encoder tokens, the evidence line is the agent's measurement of the window), so the
features the head is fitted on are the ones the agent computes. Extraction is the costly part (about 400 tokens/s
on one CPU core for Gemma 3 270M): results are written in parts of ``PART`` inputs and a rerun skips the parts
already on disk, so a run stopped by a session's end resumes where it stopped.

Splits: ``train`` and ``val`` take ``per_window`` stratified inputs of each window (``EvalData.inputs``); ``test``
is the yardstick's frozen LM subsample, the rows every method is compared on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from evaluation.data import ONSETS, EvalData, InputKey, frozen_lm_subsample
from evaluation.lm import LmForecaster

__all__ = [
    "PART",
    "draw_weights",
    "evidence_donors",
    "extract",
    "input_keys",
    "labels_of",
    "merge_parts",
]

log = structlog.get_logger(__name__)

PART = 40  # inputs per part file: about a minute of extraction at the longest windows


def input_keys(
    data: EvalData, split: str, windows: Sequence[int], horizons: Sequence[int], per_window: int
) -> list[InputKey]:
    """The inputs of a split, sorted: the frozen LM subsample for ``test``, else a stratified draw per window."""
    if split == "test":
        frozen = frozen_lm_subsample(data.bench)
        if frozen is None:
            raise ValueError("this benchmark has no frozen LM subsample (python main.py eval yardstick)")
        return sorted(k for k in frozen if k[2] in windows)
    return sorted(k for w in windows for k in data.inputs(split, w, horizons, per_window, seed=0))


def labels_of(
    data: EvalData, split: str, keys: Sequence[InputKey], horizons: Sequence[int]
) -> dict[str, npt.NDArray[Any]]:
    """Per horizon: ``rhythm_<h>`` (index into CLASSES) and ``onset_<cls>_<h>`` (0/1), -1 where the record ends
    before the horizon (no sample)."""
    from evaluation.data import CLASSES

    index = {k: i for i, k in enumerate(keys)}
    out: dict[str, npt.NDArray[Any]] = {}
    for h in horizons:
        rhythm = np.full(len(keys), -1, dtype=np.int64)
        onset = {c: np.full(len(keys), -1, dtype=np.int64) for c in ONSETS}
        for w in sorted({k[2] for k in keys}):
            for s in data.samples(split, (w, h)):
                i = index.get(s.key)
                if i is not None:
                    rhythm[i] = CLASSES.index(s.label_class)
                    for c in ONSETS:
                        onset[c][i] = s.onset[c]
        out[f"rhythm_{h}"] = rhythm
        out.update({f"onset_{c}_{h}": v for c, v in onset.items()})
    return out


def evidence_donors(data: EvalData, keys: Sequence[InputKey]) -> dict[InputKey, InputKey]:
    """The evidence-swap ablation's pairing: each input takes the evidence of an input of the same window from
    another patient (the next one in sorted order, so the pairing is fixed)."""
    out: dict[InputKey, InputKey] = {}
    for w in sorted({k[2] for k in keys}):
        group = sorted(k for k in keys if k[2] == w)
        patient = {k: data.record(k[0]).patient_id for k in group}
        for i, key in enumerate(group):
            others = (group[(i + j) % len(group)] for j in range(1, len(group)))
            out[key] = next((o for o in others if patient[o] != patient[key]), key)
    return out


def extract(forecaster: LmForecaster, keys: Sequence[InputKey], parts_dir: Path) -> None:
    """Features of ``keys`` into ``parts_dir/part-NNNN.npz`` (x, record_id, anchor_s, window_s); parts already
    written are skipped."""
    from tqdm import tqdm

    parts_dir.mkdir(parents=True, exist_ok=True)
    chunks = [keys[i : i + PART] for i in range(0, len(keys), PART)]
    for n, chunk in enumerate(tqdm(chunks, desc=f"features {parts_dir.name}", unit="part")):
        path = parts_dir / f"part-{n:04d}.npz"
        if path.exists():
            continue
        x = np.stack([forecaster.features(k) for k in chunk])
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            x=x,
            record_id=np.array([k[0] for k in chunk]),
            anchor_s=np.array([k[1] for k in chunk]),
            window_s=np.array([k[2] for k in chunk]),
        )
        tmp.replace(path)


def draw_weights(
    data: EvalData, split: str, keys: Sequence[InputKey], horizons: Sequence[int]
) -> npt.NDArray[np.float64]:
    """Inverse inclusion probability of each stratified input (``EvalData.input_weights``), in ``keys`` order: what a
    calibration on these inputs needs to reflect the split's own label frequencies."""
    weights: dict[InputKey, float] = {}
    for w in sorted({k[2] for k in keys}):
        weights.update(data.input_weights(split, w, horizons, {k for k in keys if k[2] == w}))
    return np.array([weights[k] for k in keys])


def merge_parts(
    parts_dir: Path, keys: Sequence[InputKey], labels: dict[str, npt.NDArray[Any]], layers: Sequence[int], out: Path
) -> Path:
    """One ``out`` file: features of every key in order, their labels and the layers they came from."""
    rows: dict[InputKey, npt.NDArray[np.float32]] = {}
    for path in sorted(parts_dir.glob("part-*.npz")):
        if path.name.endswith(".tmp.npz"):
            continue
        with np.load(path, allow_pickle=False) as part:
            for i, x in enumerate(part["x"]):
                rows[(str(part["record_id"][i]), float(part["anchor_s"][i]), int(part["window_s"][i]))] = x
    missing = [k for k in keys if k not in rows]
    if missing:
        raise ValueError(f"{len(missing)} of {len(keys)} inputs have no features yet (rerun the extraction)")
    arrays: dict[str, npt.NDArray[Any]] = {
        "x": np.stack([rows[k] for k in keys]),
        "record_id": np.array([k[0] for k in keys]),
        "anchor_s": np.array([k[1] for k in keys]),
        "window_s": np.array([k[2] for k in keys]),
        "layers": np.array(list(layers)),
        **labels,
    }
    np.savez(out, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as the allow_pickle flag
    return out
