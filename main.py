"""ecgcast command line: the one entry point. Each package registers its own subcommands.

Two ways in, one parser: ``python main.py COMMAND`` from a checkout and the ``ecgcast COMMAND`` console script of an
installed package (``[project.scripts]`` points at :func:`console`). They differ only in the program name in help.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from agent import cli as agent_cli
from agent.alerts import cli as alerts_cli
from agent.cluster import cli as cluster_cli
from agent.hospital import cli as hospital_cli
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
    hospital_cli,
    station_cli,
    demo_cli,
    encoder_cli,
    evaluation_cli,
    forecast_cli,
    simulators_cli,
    training_cli,
)
"""Modules exposing ``register(subparsers)``; each subcommand sets ``func(args) -> int``."""

DISTRIBUTION = "ecgcast"
CHECKOUT_PROG = "python main.py"
CONSOLE_PROG = "ecgcast"


def package_version() -> str:
    """The installed distribution's version; from pyproject.toml when the checkout was never installed.

    Why metadata first: an installed copy has no pyproject.toml beside it, and the wheel's metadata is what pip,
    bug reports and ``--version`` must agree on.
    """
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parent / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def build_parser(prog: str = CHECKOUT_PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="ecgcast: streaming arrhythmia forecasting over MQTT (research demo, not a medical device)",
    )
    parser.add_argument("--version", action="version", version=f"{DISTRIBUTION} {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = CHECKOUT_PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    return int(args.func(args))


def console() -> int:
    """The ``ecgcast`` console script: the same commands, with ``ecgcast`` as the program name in help."""
    return main(prog=CONSOLE_PROG)


if __name__ == "__main__":
    sys.exit(main())
