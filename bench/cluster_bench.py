"""Cluster benchmark: replay (warm-up) rate and takeover time of agent replicas on a private RabbitMQ 4.

Data: synthetic, N patients × M minutes of a 2-lead 250 Hz sine-plus-spikes signal in 1-s chunks (b64), published
over MQTT QoS 1 to RabbitMQ's MQTT plugin, which routes it into the super stream. Replicas run without the model
(ingest only: super stream source → sequencer → ring buffer → 1-s windows), so the numbers are the data path's, not
the forecaster's (docs/BENCHMARKS.md has the model's capacity).

1. warm-up: replica A (a subprocess) starts alone and replays everything: time until every patient's buffer holds
   all M minutes, and messages per second;
2. rebalance: replica B (this process) joins; the broker moves about half the partitions: time until B holds them
   with full buffers;
3. takeover: A is killed with SIGKILL; time until B is active on A's partitions (activation) and until every
   moved patient's buffer is full again (warm-up by replay).

Usage: python bench/cluster_bench.py [--patients 100] [--minutes 10] [--partitions 16]
Writes bench/results/cluster.json. Needs root, the RabbitMQ 4 rootfs (python main.py cluster broker --prepare) and
PostgreSQL at 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, cast

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from agent.cluster import PrivateRabbitMQ, Topology, declare_topology
from agent.daemon import Agent
from agent.settings import Settings
from core.logs import configure_logging
from core.protocol import Topics, WaveChunk, encode_wave

FS = 250.0
TOPICS = Topics("ecg/v1")
PG_URL = os.environ.get("ECGCAST_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parents[1]


def replica_settings(agent_id: str, ports: dict[str, int], scope: str, partitions: int, minutes: float) -> Settings:
    return Settings.model_validate(
        {
            "agent_id": agent_id,
            "mqtt": {"url": f"mqtt://127.0.0.1:{ports['mqtt']}", "client_id": agent_id},
            "ingest": {
                "source": "rabbitmq-superstream",
                "superstream": {
                    "amqp_port": ports["amqp"],
                    "stream_port": ports["stream"],
                    "partitions": partitions,
                    "super_stream": scope,
                    "consumer_group": f"{scope}.agents",
                },
            },
            "buffer": {"minutes": minutes, "idle_evict_s": 3600},
            "alerts": {"store_url": PG_URL},
            "http": {"port": 0},
            "logging": {"level": "warning"},
        }
    )


def fill(port: int, patients: int, seconds: int) -> float:
    """Publish every patient's record, second by second across patients; returns messages per second."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fill-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    t = np.arange(int(FS)) / FS
    block = np.stack([np.sin(2 * np.pi * 1.2 * t), 0.5 * np.cos(2 * np.pi * 1.2 * t)]).astype(np.float32)
    t0 = time.time() - seconds
    started = time.perf_counter()
    infos = []
    for k in range(seconds):
        for i in range(patients):
            pid = f"bench-{i:05d}"
            chunk = WaveChunk(pid, "dev-1", k, t0 + k, FS, ("II", "V1"), block)
            infos.append(client.publish(TOPICS.wave(pid), encode_wave(chunk, "b64"), qos=1))
    for info in infos:
        info.wait_for_publish(120)
    rate = len(infos) / (time.perf_counter() - started)
    client.loop_stop()
    client.disconnect()
    return rate


def full(agent: Agent, last_seq: int) -> set[str]:
    """Patients whose buffer has every chunk up to ``last_seq`` (read without the lock: a benchmark's glance)."""
    return {pid for pid, p in list(agent.worker.patients.items()) if p.last_seq == last_seq}


def wait_until(predicate: Any, timeout_s: float) -> float:
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"not reached within {timeout_s} s")
        time.sleep(0.05)
    return time.perf_counter() - started


def run_replica(args: argparse.Namespace) -> int:
    """Replica A (subprocess): ingest only; prints one JSON line when its patients' buffers are full."""
    configure_logging("warning", "json")
    ports = json.loads(args.ports)
    settings = replica_settings("bench-a", ports, args.scope, args.partitions, args.minutes)
    agent = Agent(settings, sink=lambda windows: None, with_model=False)
    started = time.perf_counter()
    agent.start()
    elapsed = wait_until(lambda: len(full(agent, args.last_seq)) == args.patients, 1800)
    print(
        json.dumps(
            {"warmup_s": elapsed, "accepted": agent.worker.accepted, "since_start_s": time.perf_counter() - started}
        ),
        flush=True,
    )
    signal.pause()  # until killed
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cluster.json")
    parser.add_argument("--replica", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    parser.add_argument("--scope", help=argparse.SUPPRESS)
    parser.add_argument("--last-seq", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replica:
        return run_replica(args)
    configure_logging("warning", "console")
    seconds = round(args.minutes * 60)
    scope = f"bench{uuid.uuid4().hex[:6]}.waves"
    with PrivateRabbitMQ() as rabbit:
        p = rabbit.ports
        ports = {"amqp": p.amqp, "stream": p.stream, "mqtt": p.mqtt}
        settings = replica_settings("bench-b", ports, scope, args.partitions, args.minutes)
        declare_topology(Topology.from_settings(settings.ingest.superstream, "ecg/v1", args.minutes))
        fill_rate = fill(p.mqtt, args.patients, seconds)
        total = args.patients * seconds
        print(f"published {total} messages at {fill_rate:.0f} msg/s", flush=True)

        victim = subprocess.Popen(
            [sys.executable, __file__, "--replica", "--ports", json.dumps(ports), "--scope", scope,
             "--partitions", str(args.partitions), "--minutes", str(args.minutes), "--patients", str(args.patients),
             "--last-seq", str(seconds - 1)],
            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert victim.stdout is not None
        warm = json.loads(victim.stdout.readline())
        print(f"replica A alone: {total} messages replayed in {warm['warmup_s']:.1f} s", flush=True)

        survivor = Agent(settings, sink=lambda windows: None, with_model=False)
        survivor.start()
        assert survivor.cluster is not None
        cluster = survivor.cluster
        wait_until(lambda: len(cluster.ownership.partitions()) > 0, 60)
        time.sleep(1.0)  # let the rebalance settle: B's share is whatever it holds now
        share = cluster.ownership.partitions()
        expected = cast(int, cluster.ownership.summary()["patients"])
        rebalance_s = wait_until(lambda: len(full(survivor, seconds - 1)) >= expected, 600) + 1.0
        moved_before = len(full(survivor, seconds - 1))
        print(f"replica B joined: {len(share)} partitions, {moved_before} patients full after {rebalance_s:.1f} s")

        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        takeover_s = wait_until(lambda: len(cluster.ownership.partitions()) == args.partitions, 120)
        warmup_s = wait_until(lambda: len(full(survivor, seconds - 1)) == args.patients, 1800) + takeover_s
        print(f"A killed: B active on all partitions after {takeover_s:.2f} s, all buffers full after {warmup_s:.1f} s")
        survivor.stop()
    with psycopg.connect(PG_URL, autocommit=True) as db:
        db.execute("DELETE FROM ecgcast_partition_epochs WHERE scope = %s", (scope,))
    moved = args.patients - moved_before
    result = {
        "data": f"synthetic sine, {args.patients} patients x {args.minutes} min, 2 leads at 250 Hz, 1-s b64 chunks",
        "machine": f"{platform.node()}, {os.cpu_count()} cores (shared)",
        "broker": "RabbitMQ 4.0.5 (Debian 13 rootfs, chroot), 1 node, loopback",
        "partitions": args.partitions,
        "messages": total,
        "fill_msg_per_s": round(fill_rate),
        "replay_alone_s": round(warm["warmup_s"], 1),
        "replay_msg_per_s": round(total / warm["warmup_s"]),
        "rebalance_partitions_to_b": len(share),
        "rebalance_warm_s": round(rebalance_s, 1),
        "kill_to_active_s": round(takeover_s, 2),
        "kill_patients_moved": moved,
        "kill_to_all_warm_s": round(warmup_s, 1),
        "kill_replay_msg_per_s": round(moved * seconds / max(warmup_s, 1e-6)),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
