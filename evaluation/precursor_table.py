"""The training table of the forecast head's precursor read-out (``llm_runtime.precursor``): for every input of a
split (record, anchor, window), the window's trend features, the precursor state the generator's script had under
way at the anchor, and the onset labels at every horizon.

Every input of the split is used, not a draw: the read-out is a softmax on 78 columns, cheap to fit on all of them,
and needs no LM pass (the beats of each record are analysed once, about 4 min for the yardstick's 304 training
patients on one core). Synthetic benchmarks only: the states come from the generator's scripts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from evaluation.baselines import beat_features
from evaluation.ceiling import ScriptedPrecursor, precursor_state, scripted_precursors
from evaluation.data import ONSETS, EvalData, InputKey

__all__ = ["precursor_table", "write_precursor_table"]


def _labels(data: EvalData, split: str, keys: Sequence[InputKey], horizons: Sequence[int]) -> dict[str, list[int]]:
    """``onset_<arrhythmia>_<h>`` per key: 0/1, or -1 where the record ends before the horizon (no sample)."""
    found: dict[tuple[InputKey, int], dict[str, int]] = {}
    for w in sorted({k[2] for k in keys}):
        for h in horizons:
            found.update({(s.key, h): s.onset for s in data.samples(split, (w, h))})
    return {
        f"onset_{name}_{h}": [found[(k, h)][name] if (k, h) in found else -1 for k in keys]
        for name in ONSETS
        for h in horizons
    }


def precursor_table(data: EvalData, split: str, horizons: Sequence[int]) -> dict[str, npt.NDArray[np.generic]]:
    """Arrays of one split: ``trends`` (N, E), ``window_s``, ``state`` (the scripted precursor's kind at the
    anchor, or "none"), ``record_id``, ``anchor_s`` and the onset labels."""
    by_record: dict[str, list[ScriptedPrecursor]] = defaultdict(list)
    for p in scripted_precursors(data).precursors:
        by_record[p.record_id].append(p)
    first = min(horizons)  # an input with a label at any horizon has one at the shortest
    samples = sorted((s for w in data.windows() for s in data.samples(split, (w, first))), key=lambda s: s.key)
    keys = [s.key for s in samples]
    return {
        "trends": np.asarray(beat_features(data)(samples), dtype=np.float64),
        "window_s": np.array([k[2] for k in keys]),
        "state": np.array([precursor_state(by_record.get(k[0], []), k[1])[0] for k in keys]),
        "record_id": np.array([k[0] for k in keys]),
        "anchor_s": np.array([k[1] for k in keys]),
        **{name: np.array(v) for name, v in _labels(data, split, keys, horizons).items()},
    }


def write_precursor_table(data: EvalData, split: str, horizons: Sequence[int], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.stem}.tmp.npz")
    np.savez(tmp, **precursor_table(data, split, horizons))  # type: ignore[arg-type]  # numpy's stub: **kwds
    tmp.replace(out)
    return out
