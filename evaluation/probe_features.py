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

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import structlog

from evaluation.data import ONSETS, EvalData, InputKey, frozen_lm_subsample
from evaluation.lm import input_evidence

__all__ = [
    "PART",
    "FeatureSource",
    "draw_weights",
    "evidence_donors",
    "extract",
    "input_keys",
    "input_trends",
    "labels_of",
    "merge_parts",
    "parts_complete",
    "source_window",
]

log = structlog.get_logger(__name__)

PART = 40  # inputs per part file: about a minute of extraction at the longest windows


def source_window(data: EvalData, window_s: int) -> int:
    """The benchmark window an input of ``window_s`` is drawn from: itself, or, for a window the benchmark lacks,
    the longest benchmark window below it. The agent's streaming cache reads 300-360 s, between the benchmark's
    300 and 600; such inputs keep their source input's anchor, so their labels (a function of anchor and horizon
    only) are the source's."""
    windows = data.windows()
    if window_s in windows:
        return window_s
    below = [w for w in windows if w < window_s]
    if not below:
        raise ValueError(f"window {window_s} s: the benchmark has no window at or below it ({windows})")
    return below[-1]


def input_keys(
    data: EvalData, split: str, windows: Sequence[int], horizons: Sequence[int], per_window: int
) -> list[InputKey]:
    """The inputs of a split, sorted: the frozen LM subsample for ``test`` where the benchmark has one (the
    yardstick), else a stratified draw of ``per_window`` per window (a second source's test split, for transfer). A
    window the benchmark lacks takes its source window's inputs whose anchor leaves room for it."""
    frozen = frozen_lm_subsample(data.bench) if split == "test" else None
    keys: list[InputKey] = []
    for w in windows:
        src = source_window(data, w)
        drawn = (
            {k for k in frozen if k[2] == src}
            if frozen is not None
            else data.inputs(split, src, horizons, per_window, 0)
        )
        keys += [(r, a, w) for r, a, _ in drawn if a >= w]
    return sorted(keys)


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
            for s in data.samples(split, (source_window(data, w), h)):
                i = index.get((s.record_id, s.anchor_s, w))
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


class FeatureSource(Protocol):
    """What :func:`extract` reads features from: ``LmForecaster`` (a fresh prefill per input) or
    ``slide_parity.SlidFeatures`` (slid-cache and fresh pairs)."""

    def features(self, key: InputKey) -> npt.NDArray[np.float32]: ...


def extract(forecaster: FeatureSource, keys: Sequence[InputKey], parts_dir: Path, from_end: bool = False) -> None:
    """Features of ``keys`` into ``parts_dir/part-NNNN.npz`` (x, record_id, anchor_s, window_s); parts already
    written are skipped, after checking they hold the same inputs (a changed key list must not pass for a resume).
    ``from_end`` walks the parts backwards: a second process (another core) started at any time shares the work
    with a forward one, and the two meet in the middle having computed at most one part twice."""
    from tqdm import tqdm

    parts_dir.mkdir(parents=True, exist_ok=True)
    chunks = list(enumerate(keys[i : i + PART] for i in range(0, len(keys), PART)))
    for n, chunk in tqdm(chunks[::-1] if from_end else chunks, desc=f"features {parts_dir.name}", unit="part"):
        path = parts_dir / f"part-{n:04d}.npz"
        if path.exists():
            _check_part(path, chunk)
            continue
        x = np.stack([forecaster.features(k) for k in chunk])
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            x=x,
            record_id=np.array([k[0] for k in chunk]),
            anchor_s=np.array([k[1] for k in chunk]),
            window_s=np.array([k[2] for k in chunk]),
        )
        tmp.replace(path)


def parts_complete(parts_dir: Path, n_keys: int) -> bool:
    """Whether every part of ``n_keys`` inputs is on disk (another process may still be writing its last one)."""
    return all((parts_dir / f"part-{n:04d}.npz").exists() for n in range((n_keys + PART - 1) // PART))


def _part_keys(part: Any) -> list[InputKey]:
    return [
        (str(r), float(a), int(w))
        for r, a, w in zip(part["record_id"], part["anchor_s"], part["window_s"], strict=True)
    ]


def _check_part(path: Path, chunk: Sequence[InputKey]) -> None:
    with np.load(path, allow_pickle=False) as part:
        if _part_keys(part) != list(chunk):
            raise ValueError(f"{path} holds other inputs than this run's; write to a new --out or delete the parts")


def draw_weights(
    data: EvalData, split: str, keys: Sequence[InputKey], horizons: Sequence[int]
) -> npt.NDArray[np.float64]:
    """Inverse inclusion probability of each stratified input (``EvalData.input_weights``), in ``keys`` order: what a
    calibration on these inputs needs to reflect the split's own label frequencies."""
    weights: dict[InputKey, float] = {}
    for w in sorted({k[2] for k in keys}):
        src = source_window(data, w)
        chosen = {(r, a, src) for r, a, kw in keys if kw == w}
        weights.update({(r, a, w): v for (r, a, _), v in data.input_weights(split, src, horizons, chosen).items()})
    return np.array([weights[k] for k in keys])


def input_trends(
    data: EvalData, keys: Sequence[InputKey], donors: dict[InputKey, InputKey] | None = None
) -> npt.NDArray[np.float64]:
    """(N, E) trend features of each input's window, measured as the LM's evidence line is (``input_evidence``);
    with ``donors`` (the evidence-swap ablation) each input gets its donor's, as its evidence line does."""
    donors = donors or {}
    return np.stack([input_evidence(data, donors.get(k, k)).trends for k in keys])


def merge_parts(
    parts_dir: Path,
    keys: Sequence[InputKey],
    labels: dict[str, npt.NDArray[Any]],
    layers: Sequence[int],
    out: Path,
    trends: npt.NDArray[np.float64],
) -> Path:
    """One ``out`` file: LM features of every key in order, the trend features the head reads beside them, their
    labels and the layers they came from."""
    rows: dict[InputKey, npt.NDArray[np.float32]] = {}
    for path in sorted(parts_dir.glob("part-*.npz")):
        if path.name.endswith(".tmp.npz"):  # a part being written now
            continue
        with np.load(path, allow_pickle=False) as part:
            rows.update(zip(_part_keys(part), part["x"], strict=True))
    missing = [k for k in keys if k not in rows]
    if missing:
        raise ValueError(f"{len(missing)} of {len(keys)} inputs have no features yet (rerun the extraction)")
    arrays: dict[str, npt.NDArray[Any]] = {
        "x": np.stack([rows[k] for k in keys]),
        "trends": trends,
        "record_id": np.array([k[0] for k in keys]),
        "anchor_s": np.array([k[1] for k in keys]),
        "window_s": np.array([k[2] for k in keys]),
        "layers": np.array(list(layers)),
        **labels,
    }
    tmp = out.with_name(f"{out.stem}.{os.getpid()}.tmp.npz")  # two processes may finish together
    np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as the allow_pickle flag
    tmp.replace(out)
    return out
