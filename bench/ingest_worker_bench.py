"""Ingest worker micro-benchmark: CPU per wave message of decoding and of the ingest worker, without MQTT.

The drain test of ``bench/ingest_bench.py`` measures the whole agent against bare paho, but on a shared machine its
rates move by tens of percent between runs. This isolates the agent's own per-message work, single-threaded, in CPU
time: ``decode_waves`` per message (batched, as the worker decodes), and ``IngestWorker.handle_batch`` per raw
message (decoding, sequencer, ring buffer, causal filters, quality, resampling, window objects) in batches of 512
like the running worker, with acknowledgements going to a no-op connection. It is the number to move when working
on the ingest core (docs/BENCHMARKS.md, Ingest).

Usage: python bench/ingest_worker_bench.py [--messages 20000] [--patients 500] [--rounds 4] [--profile]
Writes bench/results/ingest_worker.json (minimum over rounds; synthetic 2-lead 250 Hz sine chunks, b64).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import platform
import pstats
import queue
import time
from pathlib import Path
from typing import Any

from ingest_bench import FS, sine_samples, wave_payload  # the sibling script: same chunks as its drain test

from agent.daemon import tune_process_for_streaming
from agent.ingest import RawWave
from agent.ingest_worker import IngestWorker
from agent.settings import Settings
from core.logs import configure_logging
from core.protocol import PayloadLimits, decode_waves

BATCH = 512  # the running worker's largest batch (agent.ingest_worker._MAX_BATCH)
RESULTS = Path(__file__).resolve().parent / "results" / "ingest_worker.json"


class _NoBroker:
    """Stands in for the MQTT connection: acks and status publishes go nowhere (paho's cost is not ours)."""

    def ack(self, mid: int, qos: int) -> None:
        return None

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        return None


def _payloads(messages: int, patients: int) -> list[tuple[str, bytes]]:
    """The drain test's chunks (``ingest_bench.preload``): patient ``i % patients`` sends second ``i // patients``."""
    samples = sine_samples()
    out = []
    for i in range(messages):
        pid, second = f"d{i % patients:05d}", i // patients
        out.append((pid, wave_payload(pid, second, 1.7e9 + second, "b64", samples)))
    return out


def one_round(payloads: list[tuple[str, bytes]], profile: cProfile.Profile | None) -> dict[str, float]:
    """CPU µs per message of decoding and of the worker, for one pass over ``payloads`` with fresh patients."""
    limits = PayloadLimits()
    t0 = time.process_time()
    for start in range(0, len(payloads), BATCH):
        decode_waves([(payload, pid) for pid, payload in payloads[start : start + BATCH]], limits)
    decode_s = time.process_time() - t0
    raws = [RawWave(pid, payload, i, 1, time.monotonic()) for i, (pid, payload) in enumerate(payloads)]
    worker = IngestWorker(Settings(), _NoBroker(), queue.Queue(), lambda completed: None)  # type: ignore[arg-type]
    if profile is not None:
        profile.enable()
    t0 = time.process_time()
    for start in range(0, len(raws), BATCH):
        worker.handle_batch(raws[start : start + BATCH])  # type: ignore[arg-type]
        worker.housekeeping(time.monotonic())
    worker_s = time.process_time() - t0
    if profile is not None:
        profile.disable()
    n = len(payloads)
    return {"decode_us_per_msg": 1e6 * decode_s / n, "worker_incl_decode_us_per_msg": 1e6 * worker_s / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--patients", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--profile", action="store_true", help="also print the worker's top functions (cProfile)")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key for --profile (tottime, cumtime)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    configure_logging("warning", "console")
    payloads = _payloads(args.messages, args.patients)
    tune_process_for_streaming()  # as the daemon does once it runs: the payloads are frozen out of the GC's walks
    rounds = [one_round(payloads, None) for _ in range(args.rounds)]
    best = {key: round(min(r[key] for r in rounds), 1) for key in rounds[0]}
    result: dict[str, Any] = {
        "data": f"synthetic 2-lead {FS:g} Hz sine chunks, 1 s per message, b64; {args.patients} patients",
        "messages": args.messages,
        "cpu_time": "process CPU, minimum over rounds",
        **best,
        "rounds": [{k: round(v, 1) for k, v in r.items()} for r in rounds],
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
    }
    print(
        f"decode {best['decode_us_per_msg']} µs/msg, worker (decoding included) "
        f"{best['worker_incl_decode_us_per_msg']} µs/msg (min of rounds)"
    )
    if args.profile:
        profile = cProfile.Profile()
        one_round(payloads, profile)
        pstats.Stats(profile).sort_stats(args.sort).print_stats(35)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
