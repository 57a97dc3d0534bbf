"""Ingest benchmark: how many 2-lead 250 Hz patients one agent process takes in real time.

Two measurements, each side by side with a bare paho subscriber that only counts messages (the ceiling):

1. drain rate: M chunks are queued in a private mosquitto for a persistent session, then the consumer connects
   and we time how fast it empties the queue (the publisher cannot be the bottleneck); R alternating rounds of
   bare paho, bare paho on the agent's read-buffered socket (for reference) and the agent, medians reported;
2. real time: N patients each publish one 1-s chunk per second (staggered) from a separate process for D seconds;
   we report the share of chunks handled and p50/p99 latency from the scheduled publish time to window-ready
   (agent) or to receipt (bare subscriber): in steady state (chunks published after the first ``--warmup``
   seconds) and over the whole run, start-up burst included.

Usage: python bench/ingest_bench.py [--patients 250 500 1000] [--seconds 20] [--drain 20000] [--drain-rounds 3]
       [--encoding b64] [--warmup 5]
Writes bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.daemon import Agent, tune_process_for_streaming
from agent.local_broker import LocalMosquitto
from agent.mqtt_socket import BufferedReadClient
from agent.patient import CompletedWindows
from agent.settings import HttpSettings, Settings
from core.logs import configure_logging
from core.protocol import Topics, WaveChunk, encode_wave
from core.settings import MqttSettings

FS = 250.0
TOPICS = Topics("ecg/v1")


def wave_payload(patient: str, seq: int, t0: float, encoding: str, samples: np.ndarray) -> bytes:
    """One bench wave message: 2 leads at ``FS``, stream id "bench"."""
    return encode_wave(WaveChunk(patient, "bench", seq, t0, FS, ("II", "V1"), samples), encoding)


def sine_samples() -> np.ndarray:
    """One second of two synthetic sine leads (1.2 Hz), (2, 250) float32 mV: every bench chunk carries it."""
    t = np.arange(int(FS)) / FS
    return np.vstack([np.sin(2 * np.pi * 1.2 * t), 0.5 * np.sin(2 * np.pi * 1.2 * t + 1)]).astype(np.float32)


def publish_realtime(port: int, patients: int, seconds: float, encoding: str, start_at: float) -> None:
    """Separate process: every patient publishes its previous second at t0 + 1 s, phases spread over the second."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(2000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    samples = sine_samples()
    phases = np.arange(patients) / patients
    events = sorted((start_at + s + phases[p], p, s) for s in range(int(seconds)) for p in range(patients))
    for due, p, s in events:
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        t0 = due - 1.0
        client.publish(TOPICS.wave(f"p{p:05d}"), wave_payload(f"p{p:05d}", s, t0, encoding, samples), qos=1)
    time.sleep(2)
    client.loop_stop()
    client.disconnect()


def preload(port: int, client_id: str, messages: int, encoding: str) -> None:
    """Create a persistent session for ``client_id`` and queue ``messages`` chunks for it."""
    session = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves __init__ unannotated
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 1000  # mosquitto keeps the flow-control limit of the connect that created the session
    session.connect("127.0.0.1", port, clean_start=True, properties=props)
    session.loop_start()
    session.subscribe("ecg/v1/+/wave", 1)
    time.sleep(0.5)
    session.disconnect()
    session.loop_stop()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{client_id}-pub")
    pub.max_inflight_messages_set(1000)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    samples = sine_samples()
    n_patients = 500
    infos = []
    for i in range(messages):
        p, s = i % n_patients, i // n_patients
        infos.append(
            pub.publish(TOPICS.wave(f"d{p:05d}"), wave_payload(f"d{p:05d}", s, 1.7e9 + s, encoding, samples), qos=1)
        )
    for info in infos:
        info.wait_for_publish(60)
    pub.loop_stop()
    pub.disconnect()


def bare_subscriber(
    port: int, client_id: str, expected: int, timeout: float, stamp: bool, client_class: type[mqtt.Client] = mqtt.Client
) -> dict[str, Any]:
    """paho with auto-ack, doing nothing with messages but counting them (and, if asked, their latency).

    ``client_class`` :class:`~agent.mqtt_socket.BufferedReadClient` gives the same subscriber on the agent's
    read-buffered socket, to show how much of the agent's rate is that socket rather than its own work.
    """
    got = {"n": 0, "first": 0.0, "last": 0.0}
    lat: list[tuple[float, float]] = []
    done = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        got["n"] += 1
        got["first"] = got["first"] or now
        got["last"] = now
        if stamp:
            t0 = float(msg.payload.split(b'"t0":', 1)[1].split(b",", 1)[0])
            lat.append((t0 + 1.0, now - (t0 + 1.0)))
        if got["n"] >= expected:
            done.set()

    client = client_class(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves __init__ unannotated
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 1000
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("ecg/v1/+/wave", 1)
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    done.wait(timeout)
    client.loop_stop()
    client.disconnect()
    return _summary(got, lat)


def _summary(got: dict[str, float], lat: list[tuple[float, float]]) -> dict[str, Any]:
    """Rate over the run; with latencies, (publish time, latency) pairs kept for :func:`_percentiles`."""
    span = max(got["last"] - got["first"], 1e-9)
    out: dict[str, Any] = {"messages": got["n"], "seconds": round(span, 3), "msgs_per_s": round(got["n"] / span, 1)}
    if lat:
        out["latencies"] = lat
    return out


def _percentiles(lat: list[tuple[float, float]], after: float) -> dict[str, float]:
    """p50/p99 in ms of the chunks published at or after ``after`` (Unix time)."""
    kept = [latency for published, latency in lat if published >= after]
    if not kept:
        return {}
    return {
        "p50_ms": round(1000 * float(np.percentile(kept, 50)), 1),
        "p99_ms": round(1000 * float(np.percentile(kept, 99)), 1),
    }


def agent_consumer(port: int, client_id: str, expected_windows: int, timeout: float, stamp: bool) -> dict[str, Any]:
    """The real agent (ingest → sequencer → ring buffer → filters → windows), timing windows as they are ready."""
    got = {"n": 0, "first": 0.0, "last": 0.0}
    lat: list[tuple[float, float]] = []
    done = threading.Event()

    def sink(batch: CompletedWindows) -> None:
        got["n"] += len(batch.windows) // 2
        got["first"] = got["first"] or batch.ready_wall
        got["last"] = batch.ready_wall
        if stamp:
            published = batch.windows[-1].t_start + 1.0
            lat.append((published, batch.ready_wall - published))
        if got["n"] >= expected_windows:
            done.set()

    settings = Settings(
        mqtt=MqttSettings(url=f"mqtt://127.0.0.1:{port}", client_id=client_id, receive_maximum=1000),
        http=HttpSettings(port=0),
    )
    agent = Agent(settings, sink=sink, with_model=False)
    agent.start()
    switch_interval = sys.getswitchinterval()
    tune_process_for_streaming()
    done.wait(timeout)
    agent.stop()
    sys.setswitchinterval(switch_interval)  # the bare subscriber runs next in this process: as a plain client would
    gc.unfreeze()
    return _summary(got, lat)


def _process_cpu_s() -> float:
    """CPU seconds of this process (all threads): a per-message cost that other jobs on the machine disturb far
    less than wall-clock rates."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


DRAIN_CONSUMERS: dict[str, Callable[..., dict[str, Any]]] = {
    "bare_paho": bare_subscriber,
    "bare_paho_buffered_socket": partial(bare_subscriber, client_class=BufferedReadClient),
    "agent": agent_consumer,
}


def run_drain(messages: int, encoding: str, rounds: int) -> dict[str, Any]:
    """``rounds`` alternating drains per consumer; medians per consumer, and the agent's ratio to bare paho.

    Alternating rounds put every consumer under the same background load (the machines are shared), so the
    median ratio is steadier than any single pair of runs.
    """
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in DRAIN_CONSUMERS}
    for _ in range(rounds):
        for name, consumer in DRAIN_CONSUMERS.items():
            with LocalMosquitto(persistence=False) as broker:
                cid = f"drain-{name}"
                preload(broker.port, cid, messages, encoding)
                cpu_before = _process_cpu_s()
                result = consumer(broker.port, cid, messages, timeout=600, stamp=False)
                result["cpu_us_per_msg"] = round(1e6 * (_process_cpu_s() - cpu_before) / messages, 1)
                result["load_avg_1m"] = round(os.getloadavg()[0], 2)
                runs[name].append(result)
                print(f"drain {name:26s}: {result}")
    out: dict[str, Any] = {
        name: {
            "msgs_per_s": float(np.median([r["msgs_per_s"] for r in rs])),
            "cpu_us_per_msg": float(np.median([r["cpu_us_per_msg"] for r in rs])),
            "runs": rs,
        }
        for name, rs in runs.items()
    }
    agent, bare = out["agent"], out["bare_paho"]
    out["ratio_agent_to_bare"] = {
        "msgs_per_s": round(agent["msgs_per_s"] / bare["msgs_per_s"], 3),
        "cpu_per_msg": round(bare["cpu_us_per_msg"] / agent["cpu_us_per_msg"], 3),
        "per_round_msgs_per_s": [
            round(a["msgs_per_s"] / b["msgs_per_s"], 3) for a, b in zip(runs["agent"], runs["bare_paho"], strict=True)
        ],
    }
    print(f"drain ratio agent / bare paho (median of {rounds} rounds): {out['ratio_agent_to_bare']}")
    return out


def run_realtime(patients: int, seconds: float, encoding: str, warmup_s: float) -> dict[str, dict[str, Any]]:
    """Steady-state latency excludes chunks published in the first ``warmup_s``: every patient appears in the
    first second, and creating 1,000 patients' buffers at once is a start-up event, reported separately."""
    out = {}
    expected = int(patients * seconds)
    for name, consumer in (("bare_paho", bare_subscriber), ("agent", agent_consumer)):
        with LocalMosquitto(persistence=False) as broker:
            start_at = time.time() + 3.0
            proc = mp.get_context("spawn").Process(
                target=publish_realtime, args=(broker.port, patients, seconds, encoding, start_at)
            )
            proc.start()
            result = consumer(broker.port, f"rt-{name}-{uuid.uuid4().hex[:4]}", expected, seconds + 15, True)
            proc.join(30)
            lat = result.pop("latencies", [])
            result |= _percentiles(lat, start_at + warmup_s)
            result["whole_run"] = _percentiles(lat, 0.0)
            result["warmup_s"] = warmup_s
            result["offered"] = expected
            result["handled_fraction"] = round(result["messages"] / expected, 4)
            out[name] = result
            print(f"realtime {patients:5d} patients {name:9s}: {result}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, nargs="+", default=[250, 500, 1000])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--drain", type=int, default=20000, help="chunks queued for the drain-rate test")
    parser.add_argument("--drain-rounds", type=int, default=3, help="alternating drain rounds per consumer")
    parser.add_argument("--encoding", choices=["b64", "json"], default="b64")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds excluded from steady-state latency")
    parser.add_argument("--out", type=Path, default=Path("bench/results/ingest.json"))
    args = parser.parse_args()
    configure_logging("warning", "console")
    results = {
        "data": "synthetic 2-lead 250 Hz sine chunks, 1 s per message",
        "encoding": args.encoding,
        "machine": {"cpus": mp.cpu_count(), "python": platform.python_version(), "processor": platform.machine()},
        "drain": run_drain(args.drain, args.encoding, args.drain_rounds),
        "realtime": {str(n): run_realtime(n, args.seconds, args.encoding, args.warmup) for n in args.patients},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
