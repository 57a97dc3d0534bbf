"""``eval transfer``: does what a baseline learns on one source hold on another? Train on each source's training
patients, score on every source's test patients: the in-source cells of the matrix are the usual evaluation, the
off-diagonal ones say how much of it was the generator's regularities (docs/EVALUATION.md, "Cross-source").

Record ids of the sources must not collide (synthetic v2 ids are opaque hashes, WFDB ids are record names); one
``SourceUnion`` serves records of every source to the feature extractors and the CNN.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from core.errors import SignalError
from evaluation.baselines import FeatureSource, TabularBaseline, beat_features, gbt, without_trends
from evaluation.cnn import CnnBaseline, CnnConfig
from evaluation.data import Cell, EvalData, Record, Sample, open_benchmark
from evaluation.predictions import Predictions
from evaluation.scoring import af_onset_aurocs, cell_metrics, mean_over_cells

__all__ = ["SourceUnion", "TransferConfig", "run_transfer", "transfer_table"]

log = structlog.get_logger(__name__)

METHODS = ("gbt", "gbt_no_trend", "cnn")


@dataclass(frozen=True)
class TransferConfig:
    sources: tuple[str, ...]  # spec names, built benchmark dirs or WFDB dirs; names the rows and columns
    out: Path
    bench_dir: Path = Path("runs/bench")
    methods: tuple[str, ...] = ("gbt", "cnn")
    windows_s: tuple[int, ...] = (10, 30, 60, 120, 300, 600)
    horizons_s: tuple[int, ...] = (60, 180, 300, 600)
    train_cap: int = 0  # training samples per cell (0: all)
    seed: int = 0
    n_boot: int = 200
    threads: int = 1
    cnn: CnnConfig = field(default_factory=CnnConfig)


class SourceUnion:
    """``record(record_id)`` over several benchmarks, as :class:`EvalData` offers it for one."""

    def __init__(self, sources: Sequence[EvalData]) -> None:
        self._owner: dict[str, EvalData] = {}
        for data in sources:
            for split in ("train", "val", "test"):
                for record_id in data.record_ids(split):
                    if record_id in self._owner and self._owner[record_id] is not data:
                        raise SignalError(f"record id {record_id!r} occurs in two sources; rename one source's")
                    self._owner[record_id] = data

    def record(self, record_id: str) -> Record:
        return self._owner[record_id].record(record_id)


def _predict_tabular(
    features: FeatureSource, train: dict[Cell, list[Sample]], tests: dict[str, dict[Cell, list[Sample]]], seed: int
) -> dict[str, dict[Cell, Predictions]]:
    """One fit per cell on ``train``, predictions for every test source's samples of that cell."""
    out: dict[str, dict[Cell, Predictions]] = {name: {} for name in tests}
    for cell, samples in train.items():
        test_lists = [tests[name].get(cell, []) for name in tests]
        both = [s for lst in test_lists for s in lst]
        if not samples or not both:
            continue
        pred = TabularBaseline(gbt(seed), features).fit_predict(samples, both)
        start = 0
        for name, lst in zip(tests, test_lists, strict=True):
            out[name][cell] = pred.rows(start, start + len(lst))
            start += len(lst)
    return out


def _summary(cells: dict[Cell, list[Sample]], preds: dict[Cell, Predictions], n_boot: int, seed: int) -> dict[str, Any]:
    pairs = [(cells[c], preds[c]) for c in cells if c in preds and cells[c]]
    per_cell = {f"w{w}_h{h}": cell_metrics(cells[(w, h)], preds[(w, h)], n_boot, seed) for (w, h) in preds}
    af300 = af_onset_aurocs(per_cell, 300)
    return {
        "mean": mean_over_cells(pairs, n_boot, seed),
        "af_onset_auroc_h300": float(np.mean(af300)) if af300 else None,
        "cells": per_cell,
    }


def run_transfer(config: TransferConfig) -> dict[str, Any]:
    """Every (method, train source, test source) of the matrix; writes transfer.json and transfer.md."""
    torch.set_num_threads(config.threads)
    datas = {name: EvalData(open_benchmark(name, config.bench_dir)) for name in config.sources}
    union = SourceUnion(list(datas.values()))
    cells = [(w, h) for h in config.horizons_s for w in config.windows_s]
    cap = config.train_cap or None
    tests = {name: {c: d.samples("test", c) for c in cells} for name, d in datas.items()}
    beats = beat_features(union)
    matrix: dict[str, dict[str, dict[str, Any]]] = {}
    for train_name, data in datas.items():
        train = {c: data.samples("train", c, cap, config.seed) for c in cells}
        preds: dict[str, dict[str, dict[Cell, Predictions]]] = {}
        if "gbt" in config.methods:
            preds["gbt"] = _predict_tabular(beats, train, tests, config.seed)
        if "gbt_no_trend" in config.methods:
            preds["gbt_no_trend"] = _predict_tabular(without_trends(beats), train, tests, config.seed)
        if "cnn" in config.methods:
            cnn = CnnBaseline(union, config.cnn)
            cnn.fit([s for samples in train.values() for s in samples])
            preds["cnn"] = {name: {c: cnn.predict(s) for c, s in t.items() if s} for name, t in tests.items()}
        for method, by_test in preds.items():
            for test_name, cell_preds in by_test.items():
                summary = _summary(tests[test_name], cell_preds, config.n_boot, config.seed)
                matrix.setdefault(method, {}).setdefault(train_name, {})[test_name] = summary
                log.info("transfer_done", method=method, train=train_name, test=test_name, **summary["mean"])
    results = {
        "synthetic": True,
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "sources": {
            name: {k: d.meta.get(k) for k in ("source", "spec", "generator_version")} for name, d in datas.items()
        },
        "matrix": matrix,
    }
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "transfer.json").write_text(json.dumps(results, indent=1))
    (config.out / "transfer.md").write_text(transfer_table(results))
    return results


def transfer_table(results: dict[str, Any]) -> str:
    """Markdown: one row per (method, trained on), one column per test source: mean macro-F1 [95 % CI] and the
    mean AF-onset AUROC at h = 300 s."""
    sources = list(results["sources"])
    lines = [
        "| method | trained on | " + " | ".join(f"tested on {s}" for s in sources) + " |",
        "|---|---|" + "---|" * len(sources),
    ]
    for method, by_train in results["matrix"].items():
        for train_name, by_test in by_train.items():
            row = []
            for test_name in sources:
                m = by_test.get(test_name)
                if m is None or m["mean"].get("mean_macro_f1") is None:
                    row.append("–")
                    continue
                lo, hi = m["mean"]["mean_macro_f1_ci"] or (float("nan"), float("nan"))
                auroc = m["af_onset_auroc_h300"]
                auroc_text = f"{auroc:.2f}" if auroc is not None else "–"
                row.append(f"{100 * m['mean']['mean_macro_f1']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] / {auroc_text}")
            lines.append(f"| {method} | {train_name} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
