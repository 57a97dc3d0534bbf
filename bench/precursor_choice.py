"""Why the head's onset risk goes through the precursor state: onset AUROC on validation patients of read-outs of the
same trend features, every validation input of the yardstick (no LM pass; SYNTHETIC data, generator v2).

    python main.py eval precursor-table --split train --out runs/probe/precursor-train.npz
    python main.py eval precursor-table --split val --out runs/probe/precursor-val.npz
    python bench/precursor_choice.py --train runs/probe/precursor-train.npz --val runs/probe/precursor-val.npz

Compared, per horizon and arrhythmia (mean AUROC over the benchmark's windows): a logistic regression fitted on the
onset label itself (class-balanced, the columns the head reads), the precursor read-out with a plain and with a
class-balanced state classifier, and the oracle that is told the state (the read-out's ceiling). Writes
``bench/results/precursor_choice.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.metrics import auroc
from llm_runtime.precursor import PrecursorReadout
from llm_runtime.probe import PROBE_HORIZONS
from llm_runtime.prompts import ARRHYTHMIAS
from training.precursor import fit_precursor_readout
from training.probe import load_features

Table = dict[str, npt.NDArray[Any]]


def mean_auroc(score: npt.NDArray[np.float64], label: npt.NDArray[np.int64], window: npt.NDArray[Any]) -> float:
    values = [auroc(label[(window == w) & (label >= 0)], score[(window == w) & (label >= 0)]) for w in set(window)]
    return round(float(np.mean([v for v in values if v is not None])), 3)


def onset_logistic(readout: PrecursorReadout, train: Table, val: Table, label: str) -> npt.NDArray[np.float64]:
    """The baseline read-out: the onset label fitted directly from the read-out's own input columns."""
    from sklearn.linear_model import LogisticRegression

    known = train[label] >= 0
    x_train = readout.standardised(train["trends"], train["window_s"])
    x_val = readout.standardised(val["trends"], val["window_s"])
    fit = LogisticRegression(C=0.1, class_weight="balanced", max_iter=3000).fit(x_train[known], train[label][known])
    out: npt.NDArray[np.float64] = fit.decision_function(x_val)
    return out


def oracle(readout: PrecursorReadout, val: Table) -> npt.NDArray[np.float64]:
    """(B, H, A): the conversion rate of the state each validation input was really in."""
    told = np.eye(len(readout.states))[np.searchsorted(readout.states, val["state"].astype(str))]
    return readout.expected_rate(told, val["window_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--val", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("bench/results/precursor_choice.json"))
    args = parser.parse_args(argv)
    train, val = load_features(args.train), load_features(args.val)
    balanced = fit_precursor_readout(train, PROBE_HORIZONS)
    plain = fit_precursor_readout(train, PROBE_HORIZONS, class_weight=None)
    scores = {
        "precursor read-out, balanced states (shipped)": balanced.onset_risk(val["trends"], val["window_s"]),
        "precursor read-out, unweighted states": plain.onset_risk(val["trends"], val["window_s"]),
        "oracle told the state": oracle(balanced, val),
    }
    rows: dict[str, dict[str, float]] = {}
    for i, h in enumerate(PROBE_HORIZONS):
        for j, name in enumerate(ARRHYTHMIAS):
            label = f"onset_{name}_{h}"
            cell = {
                "onset logistic": mean_auroc(onset_logistic(balanced, train, val, label), val[label], val["window_s"])
            }
            cell |= {k: mean_auroc(v[:, i, j], val[label], val["window_s"]) for k, v in scores.items()}
            rows[f"{name} h={h}"] = cell
            print(f"{name:8s} h={h:3d}  " + "  ".join(f"{k}: {v:.3f}" for k, v in cell.items()), flush=True)
    report = {
        "synthetic": True,
        "train": str(args.train),
        "val": str(args.val),
        "val_inputs": len(val["state"]),
        "mean_auroc_over_windows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
