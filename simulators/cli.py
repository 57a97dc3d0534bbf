"""Simulator subcommands: ``simulate`` (scenarios to MQTT, or ``--plot``), ``replay`` (WFDB records to MQTT),
``build-bench`` (forecasting benchmark files), ``realism`` (the measured realism table) and ``build-second-source``
(labelled records from third-party generators, with an optional validation table)."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.config import DEFAULT_CONFIG_PATH, load_config
from core.errors import EcgcastError
from core.settings import MqttSettings, ProtocolSettings

__all__ = ["register"]

_FAULT_FLAGS = ("drop", "duplicate", "reorder")


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _spans(text: str) -> tuple[tuple[float, float], ...]:
    """ "30-40,100-105" -> ((30, 40), (100, 105)) seconds of signal time."""
    spans = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        start, _, end = part.partition("-")
        spans.append((float(start), float(end)))
    return tuple(spans)


def _add_publish_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="YAML config (mqtt, protocol)")
    parser.add_argument("--url", help="broker URL; overrides the config and ECGCAST_MQTT_URL")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed factor; 0 = as fast as possible")
    parser.add_argument("--chunk-s", type=float, default=1.0, help="chunk length in seconds (e.g. 1.0 or 0.25)")
    parser.add_argument("--encoding", choices=["json", "b64"], default="json", help="sample encoding on the wire")
    parser.add_argument("--qos", type=int, choices=[0, 1, 2], default=1, help="MQTT QoS of wave messages")
    parser.add_argument("--max-inflight", type=int, default=64, help="unacknowledged messages before we wait")
    parser.add_argument("--client-id", default=None, help="MQTT client id (default: ecgcast-sim-<pid>)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar")
    faults = parser.add_argument_group("fault injection")
    for name in _FAULT_FLAGS:
        faults.add_argument(f"--{name}", type=float, default=0.0, metavar="P", help=f"probability to {name} a chunk")
    faults.add_argument("--jitter-ms", type=float, default=0.0, help="extra publish delay, uniform 0..N ms")
    faults.add_argument("--restart-at", type=_floats, default=(), metavar="S[,S]", help="device restart times")
    faults.add_argument("--lead-off", type=_spans, default=(), metavar="A-B[,A-B]", help="electrodes-off spans")
    faults.add_argument("--disconnect-at", type=_floats, default=(), metavar="S[,S]", help="publisher disconnects")
    faults.add_argument("--disconnect-pause", type=float, default=2.0, help="seconds offline per disconnect")
    faults.add_argument("--malformed-every", type=int, default=0, metavar="N", help="malformed payload every N chunks")
    faults.add_argument("--malformed-kinds", default="", help="comma-separated kinds (default: all)")
    faults.add_argument("--fault-seed", type=int, default=None, help="seed of the fault RNG (default: random)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from simulators.scenarios import SCENARIO_NAMES

    sim = sub.add_parser("simulate", help="publish synthetic scenarios for N patients (or --plot a rhythm strip)")
    sim.add_argument("--patients", type=int, default=1, help="number of simulated patients (sim-0001, ...)")
    sim.add_argument("--minutes", type=float, default=12.0, help="minutes of signal per patient")
    sim.add_argument("--scenario", choices=SCENARIO_NAMES, help="one scenario for all (default: rotate through all)")
    sim.add_argument("--seed", type=int, default=0, help="patient i uses seed + i")
    sim.add_argument("--fs", type=float, default=250.0, help="sampling rate, 128-1000 Hz")
    sim.add_argument("--leads", default="II,V1", help="comma-separated leads (I, II, III, aVR, aVL, aVF, V1-V6)")
    sim.add_argument("--noise", choices=["none", "ambient", "low", "medium", "high"], default="low")
    sim.add_argument("--mains-hz", type=float, choices=[50.0, 60.0], default=50.0)
    sim.add_argument("--plot", type=Path, metavar="PNG", help="draw a labelled strip of each rhythm and exit")
    _add_publish_args(sim)
    sim.set_defaults(func=cmd_simulate)

    rep = sub.add_parser("replay", help="publish WFDB records (path with or without .hea, or a directory)")
    rep.add_argument("paths", nargs="+", type=Path)
    _add_publish_args(rep)
    rep.set_defaults(func=cmd_replay)

    bench = sub.add_parser("build-bench", help="build forecasting-benchmark files from a spec or WFDB records")
    bench.add_argument("--spec", default="synthetic-v1-small", help="dataset spec name (see docs/SIMULATORS.md)")
    bench.add_argument("--out", type=Path, required=True, help="output directory")
    bench.add_argument("--records", type=Path, help="build from the WFDB records in this directory instead")
    bench.add_argument("--workers", type=int, default=2, help="processes generating synthetic patients")
    bench.set_defaults(func=cmd_build_bench)

    real = sub.add_parser("realism", help="measure generated rhythms with neurokit2 and print the table")
    real.add_argument("--seconds", type=float, default=60.0, help="seconds of signal per rhythm")
    real.add_argument("--write-docs", type=Path, help="replace the realism table in this Markdown file")
    real.set_defaults(func=cmd_realism)

    second = sub.add_parser(
        "build-second-source", help="write SYNTHETIC WFDB records made by third-party generators (neurokit2 ECGSYN)"
    )
    second.add_argument("--out", type=Path, required=True, help="output directory (records, RECORDS, manifest.json)")
    second.add_argument("--patients", type=int, default=20, help="records to write; kinds rotate through all five")
    second.add_argument("--minutes", type=float, default=30.0, help="minutes of signal per record")
    second.add_argument("--fs", type=float, default=250.0, help="sampling rate, whole Hz in 128-1000")
    second.add_argument("--seed", type=int, default=20261207, help="patient i uses child i of this seed")
    second.add_argument("--check", type=Path, metavar="JSON", help="then measure the records; write the table here")
    second.set_defaults(func=cmd_build_second_source)


class PublisherConfig(BaseModel):
    """The sections of the shared config file that the simulator publishes with; the agent validates the rest."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    protocol: ProtocolSettings = Field(default_factory=ProtocolSettings)


def _mqtt_settings(args: argparse.Namespace) -> tuple[MqttSettings, str]:
    settings = load_config(PublisherConfig, args.config)
    mqtt = settings.mqtt
    if args.url:
        mqtt = MqttSettings.model_validate({**mqtt.model_dump(), "url": args.url})
    return mqtt, settings.protocol.topic_prefix


def _fault_plan(args: argparse.Namespace) -> Any:
    from simulators.faults import FaultPlan

    kinds = tuple(k.strip() for k in args.malformed_kinds.split(",") if k.strip())
    return FaultPlan(
        drop_prob=args.drop,
        duplicate_prob=args.duplicate,
        reorder_prob=args.reorder,
        jitter_s=args.jitter_ms / 1000.0,
        restart_at_s=args.restart_at,
        lead_off=args.lead_off,
        disconnect_at_s=args.disconnect_at,
        disconnect_pause_s=args.disconnect_pause,
        malformed_every=args.malformed_every,
        malformed_kinds=kinds,
    )


def _publish(args: argparse.Namespace, records: list[tuple[str, Any]]) -> int:
    """Stream every (patient_id, record) pair concurrently, paced together; print a summary line."""
    import numpy as np

    from core.protocol import Topics
    from simulators.faults import device_actions
    from simulators.publisher import MqttPublisher, replay_actions

    mqtt, prefix = _mqtt_settings(args)
    plan = _fault_plan(args)
    rng = np.random.default_rng(args.fault_seed)
    t_start = time.time()
    streams = [
        device_actions(
            rec,
            pid,
            t_start=t_start,
            chunk_s=args.chunk_s,
            encoding=args.encoding,
            topics=Topics(prefix),
            plan=plan,
            rng=np.random.default_rng(rng.integers(2**63)),
        )
        for pid, rec in records
    ]
    total = sum(-(-rec.sig_len // max(1, round(args.chunk_s * rec.fs))) for _, rec in records)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    client_id = args.client_id or f"ecgcast-sim-{int(t_start) % 100000}-{np.random.default_rng().integers(1 << 16)}"
    with MqttPublisher(mqtt, client_id=client_id, qos=args.qos, max_inflight=args.max_inflight) as publisher:
        stats = replay_actions(streams, publisher, args.speed, total_chunks=total, progress=progress)
    counts = ", ".join(f"{k}={v}" for k, v in sorted(stats.counts.items()))
    print(f"published {len(records)} stream(s) to {mqtt.host}:{mqtt.port} ({counts})")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulators.scenarios import SCENARIO_NAMES, generate_scenario

    leads = tuple(x.strip() for x in args.leads.split(",") if x.strip())
    try:
        if args.plot:
            from simulators.plot import plot_rhythm_strips

            plot_rhythm_strips(args.plot, fs=args.fs, seed=args.seed)
            print(f"wrote {args.plot}")
            return 0
        records = []
        for i in range(args.patients):
            name = args.scenario or SCENARIO_NAMES[i % len(SCENARIO_NAMES)]
            rec = generate_scenario(name, args.seed + i, args.minutes, args.fs, leads, args.noise, args.mains_hz)
            records.append((f"sim-{i + 1:04d}", rec))
        return _publish(args, records)
    except (EcgcastError, ValueError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2


def patient_id_for(record_name: str) -> str:
    """A wire-safe patient id from a record name (letters, digits, '.', '_', '-'; starts alphanumeric)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", record_name).lstrip("._-")[:64]
    return cleaned or "record"


def cmd_replay(args: argparse.Namespace) -> int:
    from simulators.wfdb_io import find_records, read_record

    try:
        paths = [p for path in args.paths for p in (find_records(path) if path.is_dir() else [path])]
        records = [(patient_id_for(rec.record_name), rec) for rec in (read_record(p) for p in paths)]
        return _publish(args, records)
    except (EcgcastError, ValueError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2


def cmd_build_bench(args: argparse.Namespace) -> int:
    from simulators.benchmark import build_from_records, build_from_spec

    try:
        index = (
            build_from_records(args.records, args.out)
            if args.records
            else build_from_spec(args.spec, args.out, args.workers)
        )
    except (EcgcastError, ValueError) as exc:
        print(f"build-bench: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {index}")
    return 0


def cmd_realism(args: argparse.Namespace) -> int:
    from simulators.realism import markdown_table, measure_all, reference_qrs_ms, write_table

    rows = measure_all(seconds=args.seconds)
    table = markdown_table(rows, reference_qrs_ms())
    print(table)
    if args.write_docs:
        write_table(args.write_docs, table)
        print(f"updated {args.write_docs}")
    return 0


def cmd_build_second_source(args: argparse.Namespace) -> int:
    import json

    from simulators.second_source import LABEL, build_second_source, check_records, markdown_table

    def progress(i: int, total: int, record: Any) -> None:
        onsets = ", ".join(f"{k} at {v:.1f} s" for k, v in record.onsets.items()) or "no onset"
        print(f"[{i + 1}/{total}] {record.record_name} {record.meta['kind']} ({onsets})", file=sys.stderr, flush=True)

    print(LABEL, file=sys.stderr)
    try:
        manifest = build_second_source(args.out, args.patients, args.minutes, args.fs, args.seed, on_record=progress)
    except (EcgcastError, ValueError) as exc:
        print(f"build-second-source: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {manifest}")
    if args.check:
        result = check_records(args.out)
        args.check.parent.mkdir(parents=True, exist_ok=True)
        args.check.write_text(json.dumps(result, indent=1, default=str))
        print(markdown_table(result))
        print(f"wrote {args.check}")
    return 0
