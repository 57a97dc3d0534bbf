"""``python main.py train lm`` (curriculum stages 2-5) and ``python main.py train lm-eval`` (held-out metrics).

Heavy imports (torch, transformers) happen inside the handlers so ``python main.py --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import EcgcastError
from encoder_onnx.cli import train_subparsers

__all__ = ["register"]

DEFAULT_CURRICULUM = Path("config/train/curriculum.yaml")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    stages = train_subparsers(sub)
    lm = stages.add_parser("lm", help="train the ECG-LM adapter through curriculum stages 2-5 (CAMEL)")
    lm.add_argument("--config", type=Path, default=DEFAULT_CURRICULUM, help="curriculum YAML listing stage files")
    lm.add_argument("--out", type=Path, help="run directory (default runs/<name>)")
    lm.add_argument("--resume", action="store_true", help="continue OUT from its checkpoint; its config is forced")
    lm.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="run override")
    lm.add_argument("--max-steps", type=int, help="stop (with a checkpoint) after this many steps in this call")
    lm.add_argument("--ship", type=Path, help="copy the final adapter here (e.g. models/forecaster)")
    lm.add_argument(
        "--export-checkpoint", type=Path, metavar="DIR", help="with --resume: write the checkpoint's adapter"
    )
    lm.set_defaults(func=cmd_train_lm)

    ev = stages.add_parser("lm-eval", help="held-out metrics per stage: an adapter next to the zero-shot backbone")
    ev.add_argument("--run", type=Path, required=True, help="run directory (its config and held-out splits)")
    ev.add_argument("--adapter", type=Path, help="adapter directory (default RUN/adapter)")
    ev.add_argument("--limit", type=int, default=60, help="held-out samples per stage")
    ev.add_argument("--out", type=Path, help="JSON results (default RUN/eval.json)")
    ev.add_argument("--which", choices=["both", "zero_shot", "adapter"], default="both", help="models to evaluate")
    ev.add_argument("--forecast-window", type=int, default=300, help="held-out stage-5 window, seconds")
    ev.add_argument("--forecast-limit", type=int, help="held-out stage-5 samples (default --limit)")
    ev.set_defaults(func=cmd_eval_lm)
    _register_probe(stages)


def _register_probe(stages: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    adapter = stages.add_parser("probe-adapter", help="probe variant: fit the grounded projector (closed form)")
    adapter.add_argument("--encoder", type=Path, required=True, help="supervised encoder weights (.pt)")
    adapter.add_argument("--windows", type=Path, required=True, help="lead-second window set (.npz) with labels")
    adapter.add_argument("--out", type=Path, required=True, help="adapter directory to write")
    adapter.add_argument("--backbone", default="gemma3-270m", help="backbone registry entry")
    adapter.set_defaults(func=cmd_probe_adapter)

    head = stages.add_parser("probe-head", help="probe variant: fit the forecast head on extracted LM features")
    head.add_argument("--features", type=Path, required=True, help="directory with train.npz and val.npz")
    head.add_argument("--adapter", type=Path, required=True, help="the probe adapter the features came from")
    head.add_argument("--c", type=float, default=0.003, help="inverse L2 strength of the logistic read-outs")
    head.add_argument("--no-trends", action="store_true", help="read the LM features only, not the trend features")
    head.add_argument("--balanced-rhythm", action="store_true", help="class-balanced rhythm read-out")
    head.add_argument(
        "--weighted-calibration", action="store_true", help="calibrate onsets at the split's own label frequencies"
    )
    head.add_argument("--ship", type=Path, help="then copy the adapter, its head and encoder here (models/forecaster)")
    head.set_defaults(func=cmd_probe_head)

    pre = stages.add_parser(
        "precursor-readout", help="probe variant: add the precursor read-out to a fitted head (no LM pass)"
    )
    pre.add_argument("--table", type=Path, required=True, help="eval precursor-table's .npz (training split)")
    pre.add_argument("--features", type=Path, required=True, help="directory with val.npz (the mix is fitted there)")
    pre.add_argument("--adapter", type=Path, required=True, help="the probe adapter whose head gets the read-out")
    pre.add_argument("--c", type=float, default=0.1, help="inverse L2 strength of the state classifier")
    pre.set_defaults(func=cmd_precursor_readout)

    shift = stages.add_parser(
        "slide-shift", help="probe variant: fit the head's correction for slid KV caches on validation slide pairs"
    )
    shift.add_argument("--pairs", type=Path, required=True, help="eval probe-features --slide-parity's val file")
    shift.add_argument("--adapter", type=Path, required=True, help="the probe adapter whose head gets the shift")
    shift.add_argument("--version", help="new adapter version (adapter.json), e.g. probe-2026-12-07e")
    shift.set_defaults(func=cmd_slide_shift)


def cmd_probe_adapter(args: argparse.Namespace) -> int:
    import numpy as np

    from encoder_onnx.data import WindowSet
    from training.probe import build_probe_adapter

    with np.load(args.windows) as data:
        windows = WindowSet(**{name: data[name] for name in data.files})
    print(f"adapter: {build_probe_adapter(args.out, args.encoder, windows, args.backbone)}")
    return 0


def cmd_precursor_readout(args: argparse.Namespace) -> int:
    from training.precursor import attach_precursor_readout

    print(f"head: {attach_precursor_readout(args.adapter, args.table, args.features, args.c)}")
    return 0


def cmd_slide_shift(args: argparse.Namespace) -> int:
    from training.slide_shift import attach_slide_shift

    print(f"slide shift: {attach_slide_shift(args.adapter, args.pairs, args.version)}")
    return 0


def cmd_probe_head(args: argparse.Namespace) -> int:
    from training.probe import HeadRecipe, train_head

    recipe = HeadRecipe(
        c=args.c,
        trends=not args.no_trends,
        balanced_rhythm=args.balanced_rhythm,
        weighted_calibration=args.weighted_calibration,
    )
    print(f"head: {train_head(args.features, args.adapter, recipe)}")
    if args.ship:
        from training.ship import ship_adapter

        print(f"shipped: {ship_adapter(args.adapter, args.ship)}")
    return 0


def _device(choice: str) -> object:
    from llm_runtime.engine import resolve_device

    return resolve_device(choice)


def cmd_train_lm(args: argparse.Namespace) -> int:
    import torch

    from training.config import load_curriculum
    from training.loop import Trainer

    try:
        if args.resume:
            if args.out is None:
                raise EcgcastError("--resume needs --out (the run directory)")
            run, stages = Trainer.saved_config(args.out)
        else:
            run, stages = load_curriculum(args.config, args.overrides)
        out = args.out or Path("runs") / run.name
        device = _device(run.device)
        if device.type == "cpu":  # type: ignore[attr-defined]
            torch.set_num_threads(run.num_threads)
        trainer = Trainer(run, stages, out, device)  # type: ignore[arg-type]
        if args.export_checkpoint is not None:
            if not args.resume:
                raise EcgcastError("--export-checkpoint needs --resume --out RUN (the run whose checkpoint to export)")
            print(f"adapter: {trainer.export_checkpoint(args.export_checkpoint)}")
            return 0
        finished = trainer.train(resume=args.resume, max_steps=args.max_steps)
    except EcgcastError as exc:
        print(f"train lm failed: {exc}", file=sys.stderr)
        return 2
    if not finished:
        print(f"stopped after --max-steps; resume with: python main.py train lm --resume --out {out}")
        return 0
    if args.ship:
        from training.ship import ship_adapter

        ship_adapter(trainer.paths.adapter(), args.ship, run.encoder_weights)
    print(f"adapter: {trainer.paths.adapter()}")
    return 0


def cmd_eval_lm(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    from training.evaluate import evaluate_run

    try:
        which = ("zero_shot", "adapter") if args.which == "both" else (args.which,)
        adapter = args.adapter or args.run / "adapter"
        out = args.out or args.run / "eval.json"
        result = evaluate_run(args.run, adapter, args.limit, which, args.forecast_window, args.forecast_limit, out)
    except EcgcastError as exc:
        print(f"train lm-eval failed: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result["summary"], indent=2))
    return 0
