"""The shipped head on features computed a cheaper way against the features it was fitted on, same inputs.

``python main.py eval probe-features --dtype bfloat16`` reads the LM's features with the ECG-LM in bfloat16 (the
agent's ``llm.dtype: bfloat16``); ``eval feature-parity`` scores both files with the head, per cell with
patient-bootstrap CIs, and the cheaper minus the reference paired: whether the head, fitted on float32 features,
may read the cheaper ones (issue #20 item 4's parity test, on the yardstick's frozen inputs rather than a handful).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evaluation.data import EvalData
from evaluation.probe_eval import ProbeEvalConfig, ProbeInputs, compare_to_reference
from llm_runtime.probe import ProbeHead

__all__ = ["evaluate_feature_parity"]


def evaluate_feature_parity(
    data: EvalData, candidate: Path, reference: Path, config: ProbeEvalConfig
) -> dict[str, Any]:
    """Scores of the adapter's head on ``candidate`` and ``reference`` features (same inputs) and candidate minus
    reference, paired; written to ``config.out / feature_parity.json``."""
    variants = {"reference": ProbeInputs.load(reference), "candidate": ProbeInputs.load(candidate)}
    results: dict[str, Any] = {
        "synthetic": True,
        "dataset": (data.meta.get("spec") or {}).get("name", str(data.bench.root)),
        "adapter": str(config.adapter),
        "candidate_features": str(candidate),
        "reference_features": str(reference),
        **compare_to_reference(data, ProbeHead.load(config.adapter), variants, "reference", config),
    }
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "feature_parity.json").write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    return results
