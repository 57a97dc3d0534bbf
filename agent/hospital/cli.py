"""HL7 v2 subcommands: ``hl7 wave-in`` turns ``ORU^R01`` ECG waveform messages (IHE PCD-01 style) into
``ecgcast.wave/1`` messages, printed as JSON lines or published to the broker (docs/INTEGRATION.md, "Waveform input
from HL7 v2")."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from agent.cli import add_config_argument, settings_or_report
from agent.settings import Settings
from core.errors import ProtocolError
from core.protocol import PATIENT_ID_PATTERN, PayloadLimits, Topics

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("hl7", help="HL7 v2 gateway tools ('wave-in': ORU^R01 ECG waveforms to wave messages)")
    actions = group.add_subparsers(dest="hl7_command", required=True, metavar="ACTION")
    wave_in = actions.add_parser(
        "wave-in",
        help="convert HL7 v2 ORU^R01 ECG waveforms (NA/MA OBX, IHE PCD-01) to ecgcast.wave/1: print, or --publish",
    )
    add_config_argument(wave_in)
    wave_in.add_argument("file", help="HL7 v2 messages (ER7; several, MLLP-framed or not, are fine); '-' for stdin")
    wave_in.add_argument(
        "--patient", help="the stream's patient id (default: PID-3 of type PI, else its MRN in hospital.patients)"
    )
    wave_in.add_argument(
        "--stream-id", help="stream id of the messages (default: <MSH-3 device>-<MSH-10 of the first message>)"
    )
    wave_in.add_argument("--seq", type=int, default=0, help="seq of the first message (to continue a stream)")
    wave_in.add_argument("--chunk-s", type=float, default=1.0, help="seconds of signal per wave message")
    wave_in.add_argument("--publish", action="store_true", help="publish to the config's broker (QoS 1), not print")
    wave_in.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker per message")
    wave_in.set_defaults(func=cmd_wave_in)


def cmd_wave_in(args: argparse.Namespace) -> int:
    """Convert, then print or publish; exit 2 naming the first problem of the input, 1 when the broker fails."""
    from ._oru_r01 import convert_oru_r01

    settings = settings_or_report(args.config)
    if settings is None:
        return 2
    if args.patient is not None and not PATIENT_ID_PATTERN.fullmatch(args.patient):
        print(f"refused: --patient {args.patient[:80]!r} is not a patient id", file=sys.stderr)
        return 2
    if args.chunk_s <= 0 or args.seq < 0:
        print("refused: --chunk-s must be positive and --seq not negative", file=sys.stderr)
        return 2
    try:
        conversion = convert_oru_r01(
            _read(args.file),
            PayloadLimits.from_settings(settings.protocol),
            patient_id=args.patient,
            patient_of_mrn=settings.hospital.patient_of_mrn,
            stream_id=args.stream_id,
            seq=args.seq,
            chunk_s=args.chunk_s,
        )
    except (ProtocolError, OSError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    for skipped in conversion.skipped:
        print(f"skipped (no ECG lead): {skipped}", file=sys.stderr)
    if not args.publish:
        for _, payload in conversion.payloads:
            print(payload.decode())
        return 0
    topics = Topics(settings.protocol.topic_prefix)
    messages = [(topics.wave(patient_id), payload) for patient_id, payload in conversion.payloads]
    status = _publish_all(settings, messages, args.timeout)
    if status == 0:
        print(f"published {len(messages)} wave message(s)", file=sys.stderr)
    return status


def _read(name: str) -> str:
    """The input as text: HL7 v2 numbers and identifiers are ASCII, so a stray byte of another charset in a name
    field is replaced rather than refused."""
    data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    return data.decode("utf-8", errors="replace")


def _publish_all(settings: Settings, messages: list[tuple[str, bytes]], timeout: float) -> int:
    """Publish in order at QoS 1, each confirmed by the broker before the next; 0 when all were, else 1."""
    from core.mqtt import publish_confirmed

    problem = publish_confirmed(settings.mqtt, messages, timeout, f"ecgcast-hl7-{os.getpid()}")
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    return 0
