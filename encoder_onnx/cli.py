"""Encoder subcommands: ``export-encoder`` and ``train encoder`` (``train`` is a group other stages join).

Heavy imports (torch, onnx) happen inside the handlers so ``python main.py --help`` stays fast.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from core.errors import EcgcastError
from encoder_onnx.settings import DEFAULT_ONNX_PATH, DEFAULT_WEIGHTS_PATH

__all__ = ["register", "train_subparsers"]

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def train_subparsers(sub: SubParsers) -> SubParsers:
    """The ``train`` group's sub-subparsers, creating the group on first use, so other packages can add stages."""
    existing = sub.choices.get("train")
    if existing is None:
        existing = sub.add_parser("train", help="train a model stage (e.g. 'train encoder')")
        existing.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for action in existing._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("the 'train' parser has no subparsers")  # only if another module built it wrongly


def register(sub: SubParsers) -> None:
    export = sub.add_parser("export-encoder", help="export the encoder to ONNX with a torch-vs-ORT parity check")
    export.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_PATH, help="encoder .pt or CAMEL checkpoint")
    export.add_argument("--out", type=Path, default=DEFAULT_ONNX_PATH, help="ONNX file to write")
    export.add_argument("--real-records", type=int, default=4, help="synthetic records used for real-window parity")
    export.set_defaults(func=cmd_export)

    train = train_subparsers(sub).add_parser("encoder", help="pretrain the encoder as an autoencoder (CAMEL stage 1)")
    train.add_argument("--steps", type=int, help="optimizer steps (default from TrainConfig)")
    train.add_argument("--out", type=Path, help="run directory: checkpoints, losses, data cache, encoder.pt")
    train.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt (its config is forced back)")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="typed config override, e.g. --set lr=1e-3 --set data.n_records=100 (repeatable)",
    )
    train.add_argument("--weights-out", type=Path, help="also copy the final encoder.pt here (e.g. models/encoder/)")
    train.add_argument("--eval-only", action="store_true", help="skip training; evaluate OUT/encoder.pt")
    train.set_defaults(func=cmd_train_encoder)


def _real_windows(n_records: int) -> npt.NDArray[np.float32]:
    """Valid windows from a few synthetic scenarios, preprocessed as the agent does (the parity's 'real' set)."""
    from core.windows import preprocess_record
    from simulators.scenarios import SCENARIO_NAMES, generate_scenario

    parts = []
    for k in range(n_records):
        rec = generate_scenario(
            SCENARIO_NAMES[k % len(SCENARIO_NAMES)],
            seed=10_000 + k,
            minutes=1.0,
            fs=250.0,
            leads=("II", "V1"),
            noise="low",
        )
        pre = preprocess_record(np.asarray(rec.p_signal), rec.fs)
        parts.append(pre.windows[pre.valid])
    return np.concatenate(parts).astype(np.float32)


def cmd_export(args: argparse.Namespace) -> int:
    from encoder_onnx.export import PARITY_TOL, export_onnx

    try:
        real = _real_windows(args.real_records) if args.real_records > 0 else None
        report = export_onnx(args.weights, args.out, real_windows=real)
    except EcgcastError as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {report.path} (opset {report.opset}, weights sha256 {report.weights_sha256[:16]}…)")
    print(
        f"parity vs torch: max abs diff {report.max_abs_diff_random:.2e} on {report.n_random} random windows, "
        f"{report.max_abs_diff_real or 0.0:.2e} on {report.n_real} synthetic-ECG windows (limit {PARITY_TOL:g})"
    )
    return 0


def cmd_train_encoder(args: argparse.Namespace) -> int:
    import shutil

    from encoder_onnx.evaluate import evaluate_run, markdown_report
    from encoder_onnx.train import TrainConfig, apply_overrides, resumed_config, train_encoder

    try:
        config = apply_overrides(TrainConfig(), args.overrides)
        if args.steps is not None:
            config = apply_overrides(config, [f"steps={args.steps}"])
        if args.out is not None:
            config = apply_overrides(config, [f"out_dir={args.out}"])
        weights = config.out_dir / "encoder.pt" if args.eval_only else train_encoder(config, resume=args.resume)
        if args.eval_only:
            config = resumed_config(config)
        report = markdown_report(evaluate_run(config, shlex.join(["python", "main.py", *sys.argv[1:]])))
    except EcgcastError as exc:
        print(f"train encoder failed: {exc}", file=sys.stderr)
        return 1
    if args.weights_out is not None:
        target = args.weights_out / "encoder.pt" if args.weights_out.is_dir() else args.weights_out
        shutil.copyfile(weights, target)
        print(f"copied {weights} -> {target}")
    print(report)
    return 0
