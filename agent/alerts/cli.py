"""Alert subcommands: ``alerts history`` reads the alert store (SQLite, or PostgreSQL when ``store_url`` is set),
``alerts ack`` publishes an acknowledgement, ``alerts mute`` / ``alerts unmute`` publish a forecast mute request.

``ack``, ``mute`` and ``unmute`` are what a nurse's client would send; each connects with its own client id (never
the agent's, which would take over the agent's session) and publishes one message at QoS 1 on the user's own
request topic (``…/alert/ack/<user>``), checked first with the agent's own decoder so that nothing the agent would
refuse leaves this machine. Under the broker security profile only that user may write there: the broker's refusal
(MQTT 5 "Not authorized") is reported, not taken for a delivery.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.cli import add_config_argument, settings_or_report
from agent.settings import Settings
from core.errors import ProtocolError
from core.logs import configure_logging
from core.protocol import PATIENT_ID_PATTERN, Topics

from ._ack import decode_ack, decode_mute
from ._model import SCHEMA_ALERT_ACK, SCHEMA_ALERT_MUTE

__all__ = ["parse_duration", "register"]

_DURATION = re.compile(r"\A(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\Z")
_SECONDS_PER = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0}
BY_HELP = (
    "who {what}: the clinician's broker user name (default: the MQTT username of the config; under the broker "
    "security profile the broker refuses any other)"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser(
        "alerts", help="alert history, acknowledgements and forecast mutes ('history', 'ack', 'mute', 'unmute')"
    )
    actions = group.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")

    history = actions.add_parser("history", help="print a patient's stored alerts (JSON lines, newest first)")
    add_config_argument(history)
    history.add_argument("patient_id")
    history.add_argument(
        "--store", type=Path, help="SQLite store (default: alerts.store_url, else alerts.store_path of the config)"
    )
    history.add_argument("--limit", type=int, default=20, help="most alerts printed")
    history.add_argument("--active", action="store_true", help="only raised or acknowledged alerts")
    history.add_argument("--mutes", action="store_true", help="print the forecast mute changes instead of alerts")
    history.set_defaults(func=cmd_history)

    ack = actions.add_parser("ack", help="publish an acknowledgement of one alert to the broker")
    add_config_argument(ack)
    ack.add_argument("patient_id")
    ack.add_argument("alert_id")
    ack.add_argument("--by", help=BY_HELP.format(what="acknowledges"))
    ack.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker")
    ack.set_defaults(func=cmd_ack)

    mute = actions.add_parser("mute", help="mute one patient's forecast alerts for a while (not technical alerts)")
    add_config_argument(mute)
    mute.add_argument("patient_id")
    mute.add_argument("--reason", required=True, help="why, e.g. 'known paroxysmal AF' (at most 200 characters)")
    mute.add_argument("--for", dest="duration_s", type=parse_duration, required=True, help="e.g. 2h, 90m (max 24h)")
    mute.add_argument("--by", help=BY_HELP.format(what="mutes"))
    mute.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker")
    mute.set_defaults(func=cmd_mute)

    unmute = actions.add_parser("unmute", help="lift a patient's forecast mute before it expires")
    add_config_argument(unmute)
    unmute.add_argument("patient_id")
    unmute.add_argument("--by", help=BY_HELP.format(what="unmutes"))
    unmute.add_argument("--reason", help="why, optional")
    unmute.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker")
    unmute.set_defaults(func=cmd_unmute)


def parse_duration(text: str) -> float:
    """``2h`` -> 7200.0, ``90m`` -> 5400.0, ``600`` or ``600s`` -> 600.0 (bounds are the decoder's)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 2h, 90m or 600s")
    return float(match.group(1)) * _SECONDS_PER[match.group(2)]


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
        if args.mutes:
            rows = [m.to_message() for m in store.mute_history(args.patient_id, args.limit)]
        else:
            rows = [a.to_wire() for a in store.history(args.patient_id, args.limit) if a.active or not args.active]
    finally:
        store.close()
    for row in rows:
        print(json.dumps(row))
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    def check(payload: bytes, patient_id: str, user: str) -> object:
        return decode_ack(payload, patient_id, user, received_at=time.time())

    body = {"schema": SCHEMA_ALERT_ACK, "alert_id": args.alert_id, "at": time.time()}
    return _send(args, Topics.alert_ack, body, check, f"ack for {args.alert_id}")


def cmd_mute(args: argparse.Namespace) -> int:
    body = {"schema": SCHEMA_ALERT_MUTE, "action": "mute", "reason": args.reason, "duration_s": args.duration_s}
    what = f"mute of {args.patient_id}'s forecasts for {args.duration_s:g} s"
    return _send(args, Topics.alert_mute, body, decode_mute, what)


def cmd_unmute(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"schema": SCHEMA_ALERT_MUTE, "action": "unmute"}
    if args.reason is not None:
        body["reason"] = args.reason
    return _send(args, Topics.alert_mute, body, decode_mute, f"unmute of {args.patient_id}'s forecasts")


def _send(
    args: argparse.Namespace,
    topic_of: Callable[[Topics, str, str], str],
    body: dict[str, Any],
    decode: Callable[[bytes, str, str], object],
    what: str,
) -> int:
    """Check ``body`` as ``--by`` (else the MQTT user) with the agent's own decoder, then publish it on that user's
    topic of the patient (``topic_of``)."""
    settings = _settings(args.config)
    if settings is None:
        return 2
    by = args.by or settings.mqtt.credentials[0]
    if by is None:
        print("refused: --by is needed when the config names no MQTT username", file=sys.stderr)
        return 2
    payload = json.dumps({**body, "by": by}).encode()
    try:
        if not PATIENT_ID_PATTERN.fullmatch(args.patient_id):
            raise ProtocolError("bad_patient_id", "patient id is not allowed", "patient_id")
        decode(payload, args.patient_id, by)
    except ProtocolError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    topic = topic_of(Topics(settings.protocol.topic_prefix), args.patient_id, by)
    status = _publish(settings, topic, payload, args.timeout)
    if status == 0:
        print(f"{what} published on {topic}")
    return status


def _publish(settings: Settings, topic: str, payload: bytes, timeout: float) -> int:
    """Publish one message at QoS 1 with a client id of its own; 0 once the broker confirmed it, else 1."""
    from core.mqtt import publish_confirmed

    problem = publish_confirmed(settings.mqtt, [(topic, payload)], timeout, f"ecgcast-ack-{os.getpid()}")
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    return 0
