"""``station hash-password`` (a hash for ``station.users``) and ``station run`` (the station without an agent)."""

from __future__ import annotations

import argparse
import getpass
import signal
import sys
import threading
from types import FrameType

from agent.cli import add_config_argument, settings_or_report

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("station", help="nurse-facing central station ('station run', 'station hash-password')")
    actions = group.add_subparsers(dest="station_command", required=True, metavar="ACTION")

    hashing = actions.add_parser("hash-password", help="print a scrypt hash for station.users (password from stdin)")
    hashing.add_argument("--stdin", action="store_true", help="read the password from stdin instead of prompting")
    hashing.set_defaults(func=cmd_hash_password)

    run = actions.add_parser("run", help="serve the station for every agent on the configured broker")
    add_config_argument(run)
    run.set_defaults(func=cmd_run)


def cmd_hash_password(args: argparse.Namespace) -> int:
    from agent.station import hash_password

    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("passwords differ", file=sys.stderr)
            return 1
    if not password:
        print("empty password refused", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from agent.station import StationServer
    from core.logs import configure_logging
    from core.protocol import PayloadLimits, Topics  # the agent's own wave limits: both accept the same chunks

    settings = settings_or_report(args.config)
    if settings is None:
        return 2
    s = settings.station
    if not s.users and s.proxy_user_header is None:
        print("station.users or station.proxy_user_header must be set (nobody could sign in)", file=sys.stderr)
        return 2
    configure_logging(settings.logging.level, settings.logging.format)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    limits = PayloadLimits.from_settings(settings.protocol)
    topics = Topics(settings.protocol.topic_prefix)
    with StationServer(s, settings.mqtt, topics, limits, hospital=settings.hospital) as station:
        print(f"station on {station.url}", flush=True)
        stop.wait()
    return 0
