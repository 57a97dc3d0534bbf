"""Fit the forecast head's slide shift (``llm_runtime.slide_shift``) on validation slide pairs and save it beside
the head.

The pairs come from ``python main.py eval probe-features --split val --slide-parity``: per input the probe
features of the agent's slid cache and of a fresh prefill of the same seconds, and the slid cache's staleness.
Validation patients only: the test split's pairs are what ``eval slide-parity`` scores the correction on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import structlog

from llm_runtime.slide_shift import SlideShift

__all__ = ["attach_slide_shift"]

log = structlog.get_logger(__name__)


def attach_slide_shift(adapter_dir: Path, slid_pairs: Path, version: str | None = None) -> Path:
    """``slid_pairs`` (``…-slide.npz``, its ``…-slide-fresh.npz`` beside it) -> ``adapter_dir/slide_shift.npz``;
    with ``version``, the adapter's version in adapter.json is set to it (the head's input changed)."""
    fresh_pairs = slid_pairs.with_name(f"{slid_pairs.stem}-fresh.npz")
    with np.load(slid_pairs, allow_pickle=False) as slid, np.load(fresh_pairs, allow_pickle=False) as fresh:
        if not np.array_equal(slid["record_id"], fresh["record_id"]):
            raise ValueError(f"{slid_pairs} and {fresh_pairs} hold different inputs")
        staleness = np.asarray(slid["staleness"], dtype=np.float64)
        fitted_on = {
            "pairs": str(slid_pairs),
            "inputs": int(staleness.shape[0]),
            "staleness_min_max": [float(staleness.min()), float(staleness.max())],
            "windows_s": sorted({int(w) for w in slid["window_s"]}),
        }
        shift = SlideShift.fit(
            np.asarray(slid["x"], np.float64), np.asarray(fresh["x"], np.float64), staleness, fitted_on
        )
    path = shift.save(adapter_dir)
    if version is not None:
        meta_path = adapter_dir / "adapter.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["version"] = version
        meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    log.info("slide_shift_attached", path=str(path), inputs=fitted_on["inputs"], version=version)
    return path
