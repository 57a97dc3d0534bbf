"""Agent subcommands: ``run`` (the daemon) and ``validate-config``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.errors import ConfigError
from agent.settings import DEFAULT_CONFIG_PATH, Settings, load_settings

__all__ = ["register", "settings_or_report"]


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG_PATH, help="YAML config (default: config/default.yaml)"
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run the agent daemon (ingest, buffer, windows, status)")
    add_config_argument(run)
    run.add_argument("--log-format", choices=["auto", "json", "console"], help="override logging.format")
    run.set_defaults(func=cmd_run)

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
    demo.add_argument("--seed", type=int, default=1, help="scenario seed")
    demo.add_argument("--backbone", help="override llm.backbone (e.g. tiny-random for a quick smoke run)")
    demo.add_argument("--json", type=Path, dest="json_path", help="also write the summary as JSON here")
    demo.set_defaults(func=cmd_demo)

    check = sub.add_parser("validate-config", help="validate a config file and exit non-zero on any error")
    check.add_argument("path", type=Path, nargs="?", default=DEFAULT_CONFIG_PATH)
    check.set_defaults(func=cmd_validate_config)


def settings_or_report(path: Path) -> Settings | None:
    """Load a config for a command; on any error print every problem to stderr and return None (exit code 2)."""
    try:
        return load_settings(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def cmd_validate_config(args: argparse.Namespace) -> int:
    if settings_or_report(args.path) is None:
        return 2
    print(f"{args.path}: valid")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from agent.daemon import run_daemon

    settings = settings_or_report(args.config)
    if settings is None:
        return 2
    return run_daemon(settings, log_format=args.log_format)


def cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo import DemoOptions, run_demo
    from agent.logs import configure_logging

    settings = settings_or_report(args.config)
    if settings is None:
        return 2
    configure_logging("warning", "console")
    options = DemoOptions(args.patients, args.speed, args.minutes, args.seed, args.json_path, args.backbone)
    run_demo(settings, options)
    return 0
