"""Agent subcommands: ``run`` (the daemon) and ``validate-config``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.settings import Settings, load_settings
from core.config import DEFAULT_CONFIG_PATH
from core.errors import ConfigError, EcgcastError

__all__ = ["add_config_argument", "register", "settings_or_report"]


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG_PATH, help="YAML config (default: config/default.yaml)"
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser(
        "run",
        help="run the agent daemon: MQTT ingest, ring buffers, encoder, forecasts, alerts (and the station if enabled)",
    )
    add_config_argument(run)
    run.add_argument("--log-format", choices=["auto", "json", "console"], help="override logging.format")
    run.set_defaults(func=cmd_run)

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
    try:
        return run_daemon(settings, log_format=args.log_format)
    except EcgcastError as exc:
        print(f"agent failed to start: {exc}", file=sys.stderr)
        return 2
