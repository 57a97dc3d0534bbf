"""``python main.py eval forecast``: the ECGForecastBench-style table, baselines, calibration and alert replay."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register"]

PROBE_WINDOWS = (10, 30, 60, 120, 300, 600)
"""The benchmark's window grid, the default inputs of the probe head's features."""


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("eval", help="evaluate forecasts (see docs/EVALUATION.md)")
    inner = group.add_subparsers(dest="eval_command", required=True, metavar="WHAT")
    p = inner.add_parser("forecast", help="forecast table: shipped model vs baselines on the same held-out samples")
    p.add_argument("--data", default="synthetic-v1-small", help="spec name, built benchmark dir, or WFDB dir")
    p.add_argument("--out", type=Path, required=True, help="writes results.json, tables.md and eval_*.png here")
    p.add_argument("--bench-dir", type=Path, default=Path("runs/bench"), help="where specs / WFDB sets are built")
    p.add_argument("--seed", type=int, default=0, help="sample selection and baseline seeds")
    p.add_argument("--windows", type=_ints, default=(10, 30, 60, 120, 300, 600), help="w grid, seconds")
    p.add_argument("--horizons", type=_ints, default=(60, 180, 300, 600), help="h grid, seconds")
    p.add_argument(
        "--methods",
        default="gbt,cnn,linear_probe,zero_shot,shipped",
        help="comma list from gbt, gbt_no_trend, cnn, linear_probe, zero_shot, shipped",
    )
    p.add_argument(
        "--train-cap", type=int, default=400, help="training samples per cell for trees, probe and CNN; 0: all"
    )
    p.add_argument("--lm-windows", type=_ints, default=(10, 30), help="windows the LM methods run on")
    p.add_argument("--lm-horizons", type=_ints, default=(60, 300), help="horizons the LM methods score")
    p.add_argument(
        "--lm-cap",
        type=int,
        default=9,
        help="LM-subsample inputs (record, anchor) per window, each scored for every horizon",
    )
    p.add_argument("--no-replay", action="store_true", help="skip the alert-level replay")
    p.add_argument("--replay-records", type=int, default=0, help="replay only the first N test records (0: all)")
    p.add_argument(
        "--replay-per-group", type=int, default=0, help="replay the first N test records of each replay group"
    )
    p.add_argument(
        "--replay-groups",
        default="af_onset,sinus_ectopy",
        help="comma list: replay the test records of these scenarios (none present, e.g. WFDB: every test record)",
    )
    p.add_argument(
        "--replay-minutes", type=float, default=8.0, help="replay this long a stretch per record (0: whole records)"
    )
    p.add_argument("--adapter", type=Path, default=Path("models/forecaster"), help="the shipped adapter directory")
    p.add_argument("--encoder", type=Path, default=None, help="encoder weights (default: the adapter's)")
    p.add_argument("--backbone", default=None, help="backbone registry entry (default: llm.backbone)")
    p.add_argument("--cnn-epochs", type=int, default=4, help="CNN baseline training epochs")
    p.add_argument("--n-boot", type=int, default=200, help="patient-bootstrap resamples")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.set_defaults(func=cmd_eval_forecast)

    c = inner.add_parser("calibrate", help="fit an adapter's onset calibration on validation patients")
    c.add_argument("--adapter", type=Path, default=Path("models/forecaster"), help="adapter directory")
    c.add_argument("--out", type=Path, required=True, help="writes calibration.json here")
    c.add_argument("--data", default="synthetic-v1-small", help="spec name or built benchmark dir")
    c.add_argument("--bench-dir", type=Path, default=Path("runs/bench"), help="where specs are built")
    c.add_argument("--split", default="val", choices=["val", "train"], help="patients to fit on (never test)")
    c.add_argument("--windows", type=_ints, default=(30, 300), help="windows scored, seconds")
    c.add_argument("--horizons", type=_ints, default=(60, 300), help="horizons scored (the runtime's llm.horizons_s)")
    c.add_argument("--cap", type=int, default=40, help="inputs per window")
    c.add_argument("--min-per-outcome", type=int, default=8, help="per-arrhythmia map only above this many")
    c.add_argument("--write", action="store_true", help="store the fitted map in ADAPTER/adapter.json")
    c.add_argument("--threads", type=int, default=1, help="torch threads")
    c.set_defaults(func=cmd_eval_calibrate)

    y = inner.add_parser(
        "yardstick", help="build the frozen forecasting yardstick (benchmark + LM subsample), print its sha256s"
    )
    y.add_argument("--bench-dir", type=Path, default=Path("runs/bench"), help="where it is built (cached)")
    y.add_argument("--workers", type=int, default=2, help="processes generating records")
    y.set_defaults(func=cmd_eval_yardstick)

    f = inner.add_parser(
        "probe-features", help="extract a probe adapter's LM features (resumable) for its forecast head"
    )
    f.add_argument("--adapter", type=Path, required=True, help="probe-variant adapter directory")
    f.add_argument("--data", default="synthetic-v2-yardstick", help="spec name or built benchmark dir")
    f.add_argument("--bench-dir", type=Path, default=Path("runs/bench"), help="where specs are built")
    f.add_argument(
        "--split",
        required=True,
        choices=["train", "val", "test"],
        help="test: the frozen LM subsample where the benchmark has one, else --per-window inputs per window",
    )
    f.add_argument("--per-window", type=int, default=500, help="train/val inputs per window")
    f.add_argument(
        "--windows",
        type=_ints,
        default=PROBE_WINDOWS,
        help="w grid, seconds; a window the benchmark lacks (330, 360: the agent's streaming cache) re-keys the "
        "inputs of the benchmark window below it",
    )
    f.add_argument("--out", type=Path, required=True, help="writes SPLIT.npz here (parts under SPLIT-parts/)")
    f.add_argument("--threads", type=int, default=1, help="torch threads")
    f.add_argument(
        "--ablate", choices=["zero-ecg", "swap-evidence"], help="ablation: ECG tokens zeroed, or evidence swapped"
    )
    f.add_argument(
        "--from-end",
        action="store_true",
        help="walk the parts backwards: a second process on another core shares a running extraction",
    )
    f.add_argument(
        "--slide-parity",
        action="store_true",
        help="pairs per input: the agent's slid KV cache (fed from 2w before the anchor) and a fresh prefill of "
        "the same seconds (writes SPLIT[-w<grid>]-slide.npz and -slide-fresh.npz; score with eval slide-parity)",
    )
    f.add_argument(
        "--feed-every-s", type=int, default=30, help="with --slide-parity: seconds per feed (the agent's default)"
    )
    f.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="the ECG-LM's dtype (llm.dtype); bfloat16 writes SPLIT[-w<grid>]-bfloat16.npz (eval feature-parity)",
    )
    f.set_defaults(func=cmd_eval_probe_features)

    fp = inner.add_parser("feature-parity", help="the head on features computed another way vs its own, paired")
    _head_scoring_args(fp, "the candidate features (e.g. -bfloat16.npz)", "writes feature_parity.json here")
    fp.add_argument("--reference", type=Path, required=True, help="the same inputs' features as the head was fitted")
    fp.set_defaults(func=cmd_eval_feature_parity)

    sp = inner.add_parser("slide-parity", help="score the slid-cache and fresh-prefill feature pairs with the head")
    _head_scoring_args(sp, "the -slide.npz written by probe-features", "writes slide_parity.json here")
    sp.set_defaults(func=cmd_eval_slide_parity)

    q = inner.add_parser("probe", help="score a probe adapter's head on the frozen LM subsample vs GBT, with ablations")
    _head_scoring_args(q, "directory with test.npz (and ablation files)", "writes probe_results.json here")
    q.add_argument("--baseline-only", action="store_true", help="only fit and cache the GBT on the frozen subsample")
    q.add_argument("--no-baseline", action="store_true", help="the head alone (a second source's test split: transfer)")
    q.set_defaults(func=cmd_eval_probe)

    g = inner.add_parser(
        "ceiling", help="what an oracle told when each scripted precursor began could reach (synthetic benchmarks)"
    )
    g.add_argument("--data", default="synthetic-v2-yardstick", help="spec name or built benchmark dir")
    g.add_argument("--bench-dir", type=Path, default=Path("runs/bench"), help="where specs are built")
    g.add_argument("--out", type=Path, required=True, help="writes ceiling.json here")
    g.set_defaults(func=cmd_eval_ceiling)

    pt = inner.add_parser(
        "precursor-table", help="trend features, scripted precursor state and onset labels of every input of a split"
    )
    pt.add_argument("--data", default="synthetic-v2-yardstick", help="spec name or built benchmark dir (synthetic)")
    pt.add_argument("--bench-dir", type=Path, default=Path("runs/bench"), help="where specs are built")
    pt.add_argument("--split", default="train", help="benchmark split (default train)")
    pt.add_argument("--out", type=Path, required=True, help="the table's .npz (train precursor-readout reads it)")
    pt.set_defaults(func=cmd_eval_precursor_table)

    t = inner.add_parser(
        "transfer", help="train baselines on each source, score them on every source's test patients (cross-source)"
    )
    t.add_argument("sources", nargs="+", help="two or more: spec names, built benchmark dirs or WFDB dirs")
    t.add_argument("--out", type=Path, required=True, help="writes transfer.json and transfer.md here")
    t.add_argument("--bench-dir", type=Path, default=Path("runs/bench"), help="where specs / WFDB sets are built")
    t.add_argument("--methods", default="gbt,cnn", help="comma list from gbt, gbt_no_trend, cnn")
    t.add_argument("--windows", type=_ints, default=(10, 30, 60, 120, 300, 600), help="w grid, seconds")
    t.add_argument("--horizons", type=_ints, default=(60, 180, 300, 600), help="h grid, seconds")
    t.add_argument("--train-cap", type=int, default=0, help="training samples per cell (0: all)")
    t.add_argument("--cnn-epochs", type=int, default=4, help="CNN training epochs")
    t.add_argument("--n-boot", type=int, default=200, help="patient-bootstrap resamples")
    t.add_argument("--seed", type=int, default=0, help="sample selection and model seeds")
    t.add_argument("--threads", type=int, default=1, help="torch threads")
    t.set_defaults(func=cmd_eval_transfer)


def cmd_eval_forecast(args: argparse.Namespace) -> int:
    from evaluation.cnn import CnnConfig
    from evaluation.report import markdown_report
    from evaluation.run import EvalConfig, run_evaluation

    config = EvalConfig(
        data=args.data,
        out=args.out,
        bench_dir=args.bench_dir,
        seed=args.seed,
        windows_s=args.windows,
        horizons_s=args.horizons,
        methods=tuple(m for m in args.methods.split(",") if m),
        train_cap=args.train_cap,
        lm_windows_s=args.lm_windows,
        lm_horizons_s=args.lm_horizons,
        lm_cap=args.lm_cap,
        replay=not args.no_replay,
        replay_records=args.replay_records,
        replay_per_group=args.replay_per_group,
        replay_minutes=args.replay_minutes,
        replay_groups=tuple(g for g in args.replay_groups.split(",") if g),
        adapter_dir=args.adapter,
        encoder_weights=args.encoder,
        backbone=args.backbone,
        n_boot=args.n_boot,
        threads=args.threads,
        cnn=CnnConfig(horizons_s=args.horizons, epochs=args.cnn_epochs, seed=args.seed),
    )
    results = run_evaluation(config)
    print(markdown_report(results))
    print(json.dumps({"results": str(args.out / "results.json"), "wall_s": results["wall_s"]}))
    return 0


def cmd_eval_calibrate(args: argparse.Namespace) -> int:
    from evaluation.calibrate import CalibrationConfig, run_calibration

    config = CalibrationConfig(
        adapter_dir=args.adapter,
        out=args.out,
        data=args.data,
        bench_dir=args.bench_dir,
        split=args.split,
        windows_s=args.windows,
        horizons_s=args.horizons,
        cap=args.cap,
        min_per_outcome=args.min_per_outcome,
        write=args.write,
        threads=args.threads,
    )
    result = run_calibration(config)
    summary = {k: result[k] for k in ("adapter", "model_version", "inputs_scored", "calibration", "mean")}
    summary["ece_brier"] = {
        name: {k: result[name]["pooled"][k] for k in ("ece", "brier")}
        for name in ("reliability_raw", "reliability_in_sample", "reliability_cross_fitted")
        if result[name]["pooled"]
    }
    print(json.dumps(summary, indent=1))
    return 0


def cmd_eval_yardstick(args: argparse.Namespace) -> int:
    """Build (once) the yardstick spec and its frozen LM subsample, and print what identifies them."""
    from encoder_onnx.weights import file_sha256
    from evaluation.data import (
        YARDSTICK,
        YARDSTICK_LM_INPUTS_PER_WINDOW,
        EvalData,
        freeze_lm_subsample,
        frozen_lm_subsample,
        open_benchmark,
    )
    from evaluation.run import HORIZONS_S, WINDOWS_S

    bench = open_benchmark(YARDSTICK, args.bench_dir, workers=args.workers)
    data = EvalData(bench)
    subsample = freeze_lm_subsample(data, YARDSTICK_LM_INPUTS_PER_WINDOW, WINDOWS_S, HORIZONS_S)
    patients = bench.meta["patients"]
    summary = {
        "spec": YARDSTICK,
        "dir": str(bench.root),
        "patients": {split: len(ids) for split, ids in patients.items()},
        "records_with_onset": bench.meta["records_with_onset"],
        "index_sha256": bench.meta["index_sha256"],
        "lm_subsample_inputs": len(frozen_lm_subsample(bench) or ()),
        "lm_subsample_sha256": file_sha256(subsample),
    }
    print(json.dumps(summary, indent=1))
    return 0


def cmd_eval_transfer(args: argparse.Namespace) -> int:
    from evaluation.cnn import CnnConfig
    from evaluation.transfer import TransferConfig, run_transfer, transfer_table

    config = TransferConfig(
        sources=tuple(args.sources),
        out=args.out,
        bench_dir=args.bench_dir,
        methods=tuple(m for m in args.methods.split(",") if m),
        windows_s=args.windows,
        horizons_s=args.horizons,
        train_cap=args.train_cap,
        seed=args.seed,
        n_boot=args.n_boot,
        threads=args.threads,
        cnn=CnnConfig(horizons_s=args.horizons, epochs=args.cnn_epochs, seed=args.seed),
    )
    print(transfer_table(run_transfer(config)))
    return 0


def _windows_suffix(windows: tuple[int, ...]) -> str:
    """The features file's name part for a window grid other than the default (``train-w330-360``), so runs over
    different grids never share part files."""
    return "" if tuple(windows) == PROBE_WINDOWS else "-w" + "-".join(str(w) for w in windows)


def _head_scoring_args(parser: argparse.ArgumentParser, features_help: str, out_help: str) -> None:
    """The arguments of a command that scores a probe head's features on a benchmark."""
    parser.add_argument("--adapter", type=Path, required=True, help="probe adapter directory (with its head)")
    parser.add_argument("--features", type=Path, required=True, help=features_help)
    parser.add_argument("--data", default="synthetic-v2-yardstick", help="spec name or built benchmark dir")
    parser.add_argument("--bench-dir", type=Path, default=Path("runs/bench"), help="where specs are built")
    parser.add_argument("--out", type=Path, required=True, help=out_help)
    parser.add_argument("--n-boot", type=int, default=200, help="patient-bootstrap resamples")


def cmd_eval_probe_features(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from evaluation.data import EvalData, open_benchmark
    from evaluation.embed import Embedder
    from evaluation.lm import LmForecaster, load_engine
    from evaluation.probe_features import (
        draw_weights,
        evidence_donors,
        extract,
        input_keys,
        input_trends,
        labels_of,
        merge_parts,
        parts_complete,
    )
    from evaluation.slide_parity import SlideSchedule, SlidFeatures, split_pairs
    from llm_runtime.probe import PROBE_HORIZONS
    from llm_runtime.runner import Slide
    from llm_runtime.settings import LlmSettings

    torch.set_num_threads(args.threads)
    data = EvalData(open_benchmark(args.data, args.bench_dir))
    keys = input_keys(data, args.split, args.windows, PROBE_HORIZONS, args.per_window)
    slide: Slide = "evict" if args.slide_parity else "rebuild"
    base = LlmSettings.model_validate({"dtype": args.dtype})
    engine = load_engine(base, args.adapter, max(args.windows), PROBE_HORIZONS[:1], slide)
    donors = evidence_donors(data, keys) if args.ablate == "swap-evidence" else None
    embedder = Embedder(args.adapter / "encoder.pt")
    forecaster = LmForecaster(engine, data, embedder, zero_ecg=args.ablate == "zero-ecg", evidence_from=donors)
    name = args.split + _windows_suffix(args.windows) + (f"-{args.ablate}" if args.ablate else "")
    name += "-slide" if args.slide_parity else ""
    name += f"-{args.dtype}" if args.dtype != "float32" else ""
    provider = SlidFeatures(forecaster, args.feed_every_s) if args.slide_parity else forecaster
    extract(provider, keys, args.out / f"{name}-parts", from_end=args.from_end)
    if not parts_complete(args.out / f"{name}-parts", len(keys)):  # the other process is still on its last part
        print(json.dumps({"split": args.split, "inputs": len(keys), "merged": False}))
        return 0
    labels = labels_of(data, args.split, keys, PROBE_HORIZONS)
    if args.split != "test":
        labels["weight"] = draw_weights(data, args.split, keys, PROBE_HORIZONS)
    trends = input_trends(data, keys, donors)
    path = merge_parts(args.out / f"{name}-parts", keys, labels, engine.probe_layers, args.out / f"{name}.npz", trends)
    if args.slide_parity:
        schedule = SlideSchedule(args.feed_every_s, engine.runner.config.slack_s)
        split_pairs(path, np.array([schedule.staleness(*schedule.span(data, k), k[2]) for k in keys]))
    print(json.dumps({"split": args.split, "inputs": len(keys), "features": str(path)}))
    return 0


def cmd_eval_feature_parity(args: argparse.Namespace) -> int:
    from evaluation.data import EvalData, open_benchmark
    from evaluation.feature_parity import evaluate_feature_parity
    from evaluation.probe_eval import ProbeEvalConfig

    data = EvalData(open_benchmark(args.data, args.bench_dir))
    config = ProbeEvalConfig(args.adapter, args.features.parent, args.out, n_boot=args.n_boot, baseline=False)
    results = evaluate_feature_parity(data, args.features, args.reference, config)
    print(json.dumps({k: v for k, v in results.items() if k not in ("reference", "candidate")}, indent=1, default=str))
    return 0


def cmd_eval_slide_parity(args: argparse.Namespace) -> int:
    from evaluation.data import EvalData, open_benchmark
    from evaluation.probe_eval import ProbeEvalConfig
    from evaluation.slide_parity import evaluate_slide

    data = EvalData(open_benchmark(args.data, args.bench_dir))
    config = ProbeEvalConfig(args.adapter, args.features.parent, args.out, n_boot=args.n_boot, baseline=False)
    fresh = args.features.with_name(f"{args.features.stem}-fresh.npz")
    results = evaluate_slide(data, args.features, fresh, config)
    variants = [k for k in ("fresh", "slid_as_read", "slid_corrected") if k in results]
    print(json.dumps({k: v for k, v in results.items() if k not in variants}, indent=1, default=str))
    print(json.dumps({k: {m: v for m, v in results[k].items() if m != "cells"} for k in variants}, indent=1))
    return 0


def cmd_eval_precursor_table(args: argparse.Namespace) -> int:
    """The precursor read-out's training table (no LM pass: beats and scripts only)."""
    from evaluation.data import EvalData, open_benchmark
    from evaluation.precursor_table import write_precursor_table
    from llm_runtime.probe import PROBE_HORIZONS

    data = EvalData(open_benchmark(args.data, args.bench_dir))
    path = write_precursor_table(data, args.split, PROBE_HORIZONS, args.out)
    print(json.dumps({"split": args.split, "table": str(path)}))
    return 0


def cmd_eval_ceiling(args: argparse.Namespace) -> int:
    """The oracle's alarm frontier and onset ranking; prints the points the forecaster issue's bars ask about."""
    from evaluation.ceiling import ceiling_report
    from evaluation.data import EvalData, open_benchmark

    report = ceiling_report(EvalData(open_benchmark(args.data, args.bench_dir)))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ceiling.json").write_text(json.dumps(report, indent=1) + "\n")
    brief = {
        "alarm": {
            split: {k: v for k, v in frontier.items() if k != "watch_everything"}
            for split, frontier in report["alarm"].items()
        },
        "ranking": {cls: {k: r[k] for k in ("full_mean", "lm_mean")} for cls, r in report["ranking"].items()},
    }
    print(json.dumps(brief, indent=1))
    return 0


def cmd_eval_probe(args: argparse.Namespace) -> int:
    from evaluation.data import EvalData, open_benchmark
    from evaluation.probe_eval import ProbeEvalConfig, evaluate_probe, frozen_cells, gbt_predictions

    data = EvalData(open_benchmark(args.data, args.bench_dir))
    config = ProbeEvalConfig(args.adapter, args.features, args.out, n_boot=args.n_boot, baseline=not args.no_baseline)
    if args.baseline_only:
        cells = frozen_cells(data, config.horizons_s)
        gbt_predictions(data, cells, config.out / "gbt_predictions.npz", config.seed)
        print(json.dumps({"cells": len(cells), "cache": str(config.out / "gbt_predictions.npz")}))
        return 0
    results = evaluate_probe(data, config)
    brief = {k: {m: v for m, v in results[k].items() if m != "cells"} for k in ("probe", "gbt") if k in results}
    print(
        json.dumps(
            {**brief, "probe_minus_gbt": results.get("probe_minus_gbt"), "ablations": results["ablations"]}, indent=1
        )
    )
    return 0
