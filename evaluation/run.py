"""``eval forecast``: every method on the same held-out samples, then tables, plots and results.json.

Two sample sets per cell, both drawn from the test patients only:

* ``full``: every test sample of the cell; the cheap methods (trees, CNN, linear probe) run here on all 24 cells.
* ``lm``: the benchmark's frozen LM subsample when it has one (the yardstick: every cell), else a capped subsample
  in the LM's windows (rare labels kept first, the rest drawn with the seed); every method runs here, so the LM rows
  and the baseline rows of that table are on identical samples.

Baselines train on training-split samples only (capped per cell, or all of them with ``train_cap`` 0); validation
patients are not used, and nothing is tuned on the test patients.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog
import torch

from agent.alerts.settings import AlertSettings
from evaluation.baselines import (
    TabularBaseline,
    beat_features,
    gbt,
    linear_probe,
    pooled_embeddings,
    without_trends,
)
from evaluation.cnn import CnnBaseline, CnnConfig
from evaluation.data import Cell, EvalData, Sample, frozen_lm_subsample, open_benchmark, record_truth
from evaluation.embed import Embedder
from evaluation.predictions import Predictions
from evaluation.scoring import calibration, cell_metrics, mean_over_cells
from llm_runtime.settings import LlmSettings

__all__ = ["EvalConfig", "run_evaluation"]

log = structlog.get_logger(__name__)

WINDOWS_S = (10, 30, 60, 120, 300, 600)
HORIZONS_S = (60, 180, 300, 600)
CHEAP = ("gbt", "gbt_no_trend", "cnn", "linear_probe")
LM = ("zero_shot", "shipped")


@dataclass(frozen=True)
class EvalConfig:
    data: str = "synthetic-v1-small"
    out: Path = Path("runs/eval")
    bench_dir: Path = Path("runs/bench")  # where a spec or WFDB directory is built (once)
    seed: int = 0
    windows_s: tuple[int, ...] = WINDOWS_S
    horizons_s: tuple[int, ...] = HORIZONS_S
    methods: tuple[str, ...] = (*CHEAP, *LM)
    train_cap: int = 400  # training samples per cell for the trees, the probe and the CNN; 0: every one
    lm_windows_s: tuple[int, ...] = (10, 30)  # windows the LM methods run on (CPU budget; docs/EVALUATION.md)
    lm_horizons_s: tuple[int, ...] = (60, 300)  # horizons the LM scores: the shipped runtime's llm.horizons_s
    lm_cap: int = 9  # LM-subsample inputs per window (each scored once for every horizon)
    replay: bool = True  # the alert-level replay of the test records through the shipped (else zero-shot) LM
    replay_records: int = 0  # 0: every test record
    replay_per_group: int = 0  # > 0: the first N test records (by id) of each replay group, a stratified named set
    replay_groups: tuple[str, ...] = ("af_onset", "sinus_ectopy")  # test records of these groups; none match: all
    replay_minutes: float = 8.0  # 0: whole records; else this long a stretch per record (around the first onset)
    adapter_dir: Path | None = Path("models/forecaster")  # the shipped adapter; None or missing skips "shipped"
    encoder_weights: Path | None = None  # default: the adapter's encoder.pt, else models/encoder/encoder.pt
    backbone: str | None = None  # default: llm.backbone from the config
    n_boot: int = 200
    threads: int = 2
    cnn: CnnConfig = field(default_factory=CnnConfig)


def _runtime_settings(config: EvalConfig) -> tuple[LlmSettings, AlertSettings, str]:
    """The agent's llm and alerts sections from the config file; the sections' defaults (which the shipped
    config/default.yaml repeats) when the file does not validate, said so in results.json."""
    from agent.settings import load_settings
    from core.errors import ConfigError

    try:
        settings = load_settings()
        llm, alerts, source = settings.llm, settings.alerts, "config/default.yaml"
    except ConfigError as exc:
        log.warning("config_invalid_using_defaults", error=str(exc).splitlines()[-1])
        llm, alerts = LlmSettings.model_validate({}), AlertSettings.model_validate({})
        source = "section defaults (config file did not validate)"
    if config.backbone:
        llm = llm.model_copy(update={"backbone": config.backbone})
    return llm, alerts, source


def _adapter(config: EvalConfig) -> Path | None:
    from llm_runtime.checkpoints import ADAPTER_FILE

    path = config.adapter_dir
    return path if path is not None and (path / ADAPTER_FILE).exists() else None


def _encoder_path(config: EvalConfig) -> Path:
    candidates = [config.encoder_weights] if config.encoder_weights else []
    if config.adapter_dir is not None:
        candidates.append(config.adapter_dir / "encoder.pt")
    candidates += [Path("models/encoder/encoder.pt"), Path("models/forecaster/encoder.pt")]
    for path in candidates:
        if path is not None and path.exists():
            return path
    raise FileNotFoundError(f"no encoder weights among {candidates}")


def _sample_sets(data: EvalData, config: EvalConfig) -> dict[str, dict[Cell, list[Sample]]]:
    """Cells without a test sample (records shorter than w + h) are left out, and logged."""
    grid = [(w, h) for h in config.horizons_s for w in config.windows_s]
    full = {cell: samples for cell in grid if (samples := data.samples("test", cell))}
    cells = list(full)
    if len(cells) < len(grid):
        log.warning("cells_without_test_samples", cells=[f"w{w}_h{h}" for w, h in grid if (w, h) not in full])
    frozen = frozen_lm_subsample(data.bench)
    if frozen is not None:
        return {"full": full, "lm": {cell: [s for s in full[cell] if s.key in frozen] for cell in cells}}
    lm_h = [h for h in config.lm_horizons_s if h in config.horizons_s]
    chosen = {w: data.inputs("test", w, lm_h, config.lm_cap, config.seed) for w in config.lm_windows_s}
    lm = {(w, h): [s for s in full[(w, h)] if s.key in chosen[w]] for (w, h) in cells if w in chosen and h in lm_h}
    return {"full": full, "lm": lm}


def _cheap_predictions(
    data: EvalData, config: EvalConfig, embedder: Embedder, sets: dict[str, dict[Cell, list[Sample]]]
) -> dict[str, dict[str, dict[Cell, Predictions]]]:
    """method -> sample set -> cell -> predictions, for the trees, the probe and the CNN."""
    out: dict[str, dict[str, dict[Cell, Predictions]]] = {}
    cap = config.train_cap or None
    train = {cell: data.samples("train", cell, cap, config.seed) for cell in sets["full"]}
    beats = beat_features(data)
    tabular = {
        "gbt": (gbt, beats),
        "gbt_no_trend": (gbt, without_trends(beats)),
        "linear_probe": (linear_probe, pooled_embeddings(data, embedder)),
    }
    for name, (template, features) in tabular.items():
        if name not in config.methods:
            continue
        out[name] = {"full": {}, "lm": {}}
        for cell, samples in sets["full"].items():
            if not train[cell]:
                log.warning("cell_without_training_samples", method=name, cell=cell)
                continue
            both = samples + sets["lm"].get(cell, [])
            pred = TabularBaseline(template(config.seed), features).fit_predict(train[cell], both)
            out[name]["full"][cell] = pred.rows(0, len(samples))
            if cell in sets["lm"]:
                out[name]["lm"][cell] = pred.rows(len(samples), len(both))
            log.info("baseline_cell", method=name, cell=cell, train=len(train[cell]), test=len(samples))
    if "cnn" in config.methods:
        cnn = CnnBaseline(data, config.cnn)
        cnn.fit([s for samples in train.values() for s in samples])
        out["cnn"] = {key: {cell: cnn.predict(s) for cell, s in cells.items()} for key, cells in sets.items()}
    return out


def _lm_predictions(
    data: EvalData, config: EvalConfig, embedder: Embedder, cells: dict[Cell, list[Sample]]
) -> tuple[dict[str, dict[Cell, Predictions]], dict[str, Any]]:
    from evaluation.lm import LmForecaster, load_engine

    base, _, _ = _runtime_settings(config)
    out: dict[str, dict[Cell, Predictions]] = {}
    info: dict[str, Any] = {}
    if not cells:  # --lm-windows "": the replay alone
        return out, info
    for name in LM:
        adapter = _adapter(config) if name == "shipped" else None
        if name not in config.methods or (name == "shipped" and adapter is None):
            continue
        horizons = sorted({h for _, h in cells})
        engine = load_engine(base, adapter, max(w for w, _ in cells), horizons)
        start = time.perf_counter()
        forecaster = LmForecaster(engine, data, embedder)
        out[name] = {cell: forecaster.predict(samples) for cell, samples in cells.items()}
        engine.runner.close()
        info[name] = {
            "model_id": engine.model_id,
            "model_version": engine.model_version,
            "adapter_dir": str(adapter) if adapter else None,
            "inputs_scored": forecaster.inputs_scored,
            "seconds_read": forecaster.seconds_read,
            "wall_s": round(time.perf_counter() - start, 1),
        }
        log.info("lm_method_done", method=name, **info[name])
    return out, info


def _replay_records(data: EvalData, config: EvalConfig) -> list[str]:
    """The replayed test records: of the replay groups (all when none is present, e.g. WFDB), the first
    ``replay_per_group`` by id of each group, else the first ``replay_records`` by id."""
    test = data.record_ids("test")
    groups = [g for g in config.replay_groups if any(data.record(r).group == g for r in test)]
    chosen = [r for r in test if not groups or data.record(r).group in groups]
    if config.replay_per_group and groups:
        return sorted(
            r for g in groups for r in [r for r in chosen if data.record(r).group == g][: config.replay_per_group]
        )
    return chosen[: config.replay_records or None]


def _replay(data: EvalData, config: EvalConfig, embedder: Embedder) -> dict[str, Any] | None:
    from evaluation.lm import load_engine
    from evaluation.replay import ReplayConfig, replay_record, summarise_replays

    base, alerts, source = _runtime_settings(config)
    adapter = _adapter(config)
    method = "shipped" if adapter is not None else "zero_shot"
    if method not in config.methods:
        return None
    engine = load_engine(base, adapter, base.window_s, base.horizons_s)  # the agent's own window and horizons
    replay_config = ReplayConfig(max_minutes=config.replay_minutes)
    replays = []
    for record_id in _replay_records(data, config):
        rec = data.record(record_id)
        replays.append(replay_record(engine, rec, embedder(rec), record_truth(data, record_id), alerts, replay_config))
    engine.runner.close()
    summary = summarise_replays(replays, replay_config)
    summary |= {
        "method": method,
        "model_id": engine.model_id,
        "model_version": engine.model_version,
        "window_s": base.window_s,
        "horizons_s": base.horizons_s,
    }
    summary["settings_source"] = source
    return summary


def _score(
    sets: dict[str, dict[Cell, list[Sample]]], preds: dict[str, dict[str, dict[Cell, Predictions]]], config: EvalConfig
) -> dict[str, Any]:
    """set -> method -> {cells: {"w_h": metrics}, mean, calibration}."""
    results: dict[str, Any] = {}
    for set_name, cells in sets.items():
        results[set_name] = {}
        for method, per_set in preds.items():
            if set_name not in per_set:
                continue
            pairs = [(cells[cell], per_set[set_name][cell]) for cell in cells if cell in per_set[set_name]]
            results[set_name][method] = {
                "cells": {
                    f"w{w}_h{h}": cell_metrics(cells[(w, h)], per_set[set_name][(w, h)], config.n_boot, config.seed)
                    for (w, h) in cells
                    if (w, h) in per_set[set_name]
                },
                "mean": mean_over_cells(pairs, config.n_boot, config.seed),
                "calibration": calibration(pairs),
            }
    return results


def run_evaluation(config: EvalConfig) -> dict[str, Any]:
    """Run every configured method and write results.json, the Markdown tables and the plots under ``out``."""
    from evaluation.report import write_report

    torch.set_num_threads(config.threads)
    started = time.time()
    data = EvalData(open_benchmark(config.data, config.bench_dir))
    embedder = Embedder(_encoder_path(config))
    sets = _sample_sets(data, config)
    preds = _cheap_predictions(data, config, embedder, sets)
    lm_preds, lm_info = _lm_predictions(data, config, embedder, sets["lm"])
    for name, cells in lm_preds.items():
        preds[name] = {"lm": cells}
    results: dict[str, Any] = {
        "synthetic": data.meta.get("source") == "synthetic",
        "dataset": {k: v for k, v in data.meta.items() if k not in ("records", "cell_class_counts")},
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "encoder": {"weights": str(embedder.weights), "sha256": embedder.sha256},
        "lm": lm_info,
        "sets": {name: {f"w{w}_h{h}": len(s) for (w, h), s in cells.items()} for name, cells in sets.items()},
        "results": _score(sets, preds, config),
        "replay": _replay(data, config, embedder) if config.replay else None,
        "hardware": {
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "load_average_at_end": os.getloadavg(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
        },
    }
    results["wall_s"] = round(time.time() - started, 1)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "results.json").write_text(json.dumps(results, indent=1, default=_plain))
    write_report(results, config.out)
    return results


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
