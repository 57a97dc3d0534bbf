"""Agent subcommands: ``run`` (the daemon) and ``validate-config``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.errors import ConfigError
from agent.settings import DEFAULT_CONFIG_PATH, load_settings

__all__ = ["register"]


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG_PATH, help="YAML config (default: config/default.yaml)"
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run the agent daemon (ingest, buffer, windows, status)")
    add_config_argument(run)
    run.add_argument("--log-format", choices=["auto", "json", "console"], help="override logging.format")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("validate-config", help="validate a config file and exit non-zero on any error")
    check.add_argument("path", type=Path, nargs="?", default=DEFAULT_CONFIG_PATH)
    check.set_defaults(func=cmd_validate_config)


def cmd_validate_config(args: argparse.Namespace) -> int:
    try:
        load_settings(args.path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{args.path}: valid")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from agent.daemon import run_daemon

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    return run_daemon(settings, log_format=args.log_format)
