"""Cluster subcommands: ``cluster init`` declares the super stream topology (idempotent); ``cluster broker`` builds
and runs a private RabbitMQ 4 on loopback for development (``--prepare`` only builds its root file system)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from agent.cli import add_config_argument, settings_or_report
from core.errors import EcgcastError
from core.logs import configure_logging

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("cluster", help="scale-out on RabbitMQ 4 ('cluster init', 'cluster broker')")
    actions = group.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")

    init = actions.add_parser("init", help="declare the super stream topology from the config (safe to repeat)")
    add_config_argument(init)
    init.add_argument("--host", help="override ingest.superstream.host")
    init.add_argument("--amqp-port", type=int, help="override ingest.superstream.amqp_port")
    init.set_defaults(func=cmd_init)

    broker = actions.add_parser("broker", help="run a private RabbitMQ 4 (Debian 13 rootfs, chroot) until Ctrl-C")
    broker.add_argument("--rootfs", type=Path, help="root file system folder (default .cache/rabbitmq4/rootfs)")
    broker.add_argument("--prepare", action="store_true", help="only build the root file system, then exit")
    for name in ("amqp", "stream", "mqtt"):
        broker.add_argument(f"--{name}-port", type=int, help=f"{name} port (default: a free one)")
    broker.set_defaults(func=cmd_broker)


def cmd_init(args: argparse.Namespace) -> int:
    from agent.cluster import Topology, declare_topology

    settings = settings_or_report(args.config)
    if settings is None:
        return 2
    configure_logging(settings.logging.level, "console")
    overrides = {k: v for k, v in (("host", args.host), ("amqp_port", args.amqp_port)) if v is not None}
    stream = settings.ingest.superstream.model_copy(update=overrides)
    topology = Topology.from_settings(stream, settings.protocol.topic_prefix, settings.buffer.minutes)
    try:
        declare_topology(topology)
    except EcgcastError as exc:
        print(f"cluster init failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"super stream {stream.super_stream}: {stream.partitions} partitions, retention {topology.max_age_s} s, "
        f"fed by {stream.ingress_exchange} ({topology.wave_binding})"
    )
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    from agent.cluster import DEFAULT_ROOTFS, BrokerPorts, PrivateRabbitMQ, prepare_rootfs

    configure_logging("info", "console")
    rootfs = args.rootfs or DEFAULT_ROOTFS
    try:
        prepare_rootfs(rootfs)
        if args.prepare:
            print(f"RabbitMQ 4 root file system ready at {rootfs}")
            return 0
        chosen = {k: v for k in ("amqp", "stream", "mqtt") if (v := getattr(args, f"{k}_port")) is not None}
        rabbit = PrivateRabbitMQ(rootfs=rootfs, ports=BrokerPorts(**chosen)).start()
    except EcgcastError as exc:
        print(f"cluster broker failed: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    p = rabbit.ports
    print(f"RabbitMQ 4 on 127.0.0.1: amqp {p.amqp}, stream {p.stream}, mqtt {p.mqtt}; Ctrl-C stops it", flush=True)
    stop.wait()
    rabbit.stop()
    return 0
