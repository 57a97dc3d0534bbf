"""ecgcast command line: the one entry point. Each package registers its own subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agent import cli as agent_cli
from agent.alerts import cli as alerts_cli
from agent.cluster import cli as cluster_cli
from agent.station import cli as station_cli
from demo import cli as demo_cli
from encoder_onnx import cli as encoder_cli
from evaluation import cli as evaluation_cli
from evaluation import forecast_cli
from simulators import cli as simulators_cli
from training import cli as training_cli

COMMAND_GROUPS = (
    agent_cli,
    alerts_cli,
    cluster_cli,
    station_cli,
    demo_cli,
    encoder_cli,
    evaluation_cli,
    forecast_cli,
    simulators_cli,
    training_cli,
)
"""Modules exposing ``register(subparsers)``; each subcommand sets ``func(args) -> int``."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python main.py",
        description="ecgcast: streaming arrhythmia forecasting over MQTT (research demo, not a medical device)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
