"""Alert subcommands: ``alerts history`` reads the alert store (SQLite, or PostgreSQL when ``store_url`` is set),
``alerts ack`` publishes an acknowledgement.

``alerts ack`` is what a nurse's client would send; it connects with its own client id (never the agent's, which
would take over the agent's session) and publishes one ``ecgcast.alert_ack/1`` message at QoS 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from agent.cli import add_config_argument, settings_or_report
from agent.settings import Settings
from core.errors import LifecycleError
from core.logs import configure_logging

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("alerts", help="alert history and acknowledgements ('alerts history', 'alerts ack')")
    actions = group.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")

    history = actions.add_parser("history", help="print a patient's stored alerts (JSON lines, newest first)")
    add_config_argument(history)
    history.add_argument("patient_id")
    history.add_argument(
        "--store", type=Path, help="SQLite store (default: alerts.store_url, else alerts.store_path of the config)"
    )
    history.add_argument("--limit", type=int, default=20, help="most alerts printed")
    history.add_argument("--active", action="store_true", help="only raised or acknowledged alerts")
    history.set_defaults(func=cmd_history)

    ack = actions.add_parser("ack", help="publish an acknowledgement of one alert to the broker")
    add_config_argument(ack)
    ack.add_argument("patient_id")
    ack.add_argument("alert_id")
    ack.add_argument("--by", required=True, help="who acknowledges (user id of the clinician)")
    ack.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker")
    ack.set_defaults(func=cmd_ack)


def _settings(path: Path) -> Settings | None:
    """The validated config with logging on stderr (stdout carries the command's output); None if invalid."""
    settings = settings_or_report(path)
    if settings is not None:
        configure_logging(settings.logging.level, settings.logging.format)
    return settings


def cmd_history(args: argparse.Namespace) -> int:
    from agent.alerts._service import open_alert_store

    settings = _settings(args.config)
    if settings is None:
        return 2
    path = args.store or settings.alerts.store_path
    if (args.store or settings.alerts.store_url is None) and not Path(path).exists():
        print(f"no alert store at {path}", file=sys.stderr)
        return 1
    store = open_alert_store(settings.alerts, args.store)  # the shared PostgreSQL store when store_url is set
    try:
        alerts = store.history(args.patient_id, args.limit)
    finally:
        store.close()
    for alert in alerts:
        if alert.active or not args.active:
            print(json.dumps(alert.to_wire()))
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from agent.alerts._model import SCHEMA_ALERT_ACK
    from core.mqtt import apply_credentials
    from core.protocol import Topics

    settings = _settings(args.config)
    if settings is None:
        return 2
    m = settings.mqtt
    protocol = mqtt.MQTTv5 if m.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"ecgcast-ack-{os.getpid()}", protocol=protocol)
    apply_credentials(client, m)
    payload = {"schema": SCHEMA_ALERT_ACK, "alert_id": args.alert_id, "by": args.by, "at": time.time()}
    topic = Topics(settings.protocol.topic_prefix).alert_ack(args.patient_id)
    try:
        client.connect(m.host, m.port, keepalive=m.keepalive_s)
    except OSError as exc:
        print(f"cannot connect to {m.url}: {exc}", file=sys.stderr)
        return 1
    client.loop_start()
    try:
        info = client.publish(topic, json.dumps(payload).encode(), qos=1)
        info.wait_for_publish(args.timeout)
        if not info.is_published():
            raise LifecycleError(f"broker did not confirm the ack within {args.timeout} s")
    except (LifecycleError, RuntimeError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        client.disconnect()
        client.loop_stop()
    print(f"ack for {args.alert_id} published on {topic}")
    return 0
