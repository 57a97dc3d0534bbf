"""``python main.py demo``: the one-command demonstration (broker, simulator, agent, alerts, live view)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.cli import add_config_argument, settings_or_report
from core.errors import BrokerError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="broker + simulator + agent + alerts on synthetic patients, with a live view")
    add_config_argument(demo)
    demo.add_argument("--patients", type=int, default=4, help="synthetic patients (scenarios cycle; default 4)")
    demo.add_argument(
        "--speed",
        type=float,
        default=5.0,
        help="replay speed (default 5x: what Gemma 3 270M keeps up with on 2 CPU cores)",
    )
    demo.add_argument("--minutes", type=float, default=12.0, help="minutes of signal per patient (default 12)")
    demo.add_argument("--seed", type=int, help="scenario seed (default demo.run.DEFAULT_SEED: a warned AF onset)")
    demo.add_argument("--backbone", help="override llm.backbone (e.g. tiny-random for a quick smoke run)")
    demo.add_argument("--json", type=Path, dest="json_path", help="also write the summary as JSON here")
    demo.add_argument(
        "--secure-broker",
        action="store_true",
        help="run a private mosquitto with the broker security profile (no anonymous access, per-identity ACL; "
        "docs/SECURITY.md) instead of the configured broker",
    )
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from core.logs import configure_logging
    from demo.run import DEFAULT_SEED, DemoOptions, run_demo

    settings = settings_or_report(args.config)
    if settings is None:
        return 2
    configure_logging("warning", "console")
    options = DemoOptions(
        args.patients,
        args.speed,
        args.minutes,
        DEFAULT_SEED if args.seed is None else args.seed,
        args.json_path,
        args.backbone,
        secure_broker=args.secure_broker,
    )
    try:
        run_demo(settings, options)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
