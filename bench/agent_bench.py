"""Agent benchmark: N synthetic patients streamed to the real agent with the configured (shipped) model; does every
patient get its forecast at the cadence, and is ingest still prompt?

It runs the real agent against a private mosquitto, streams N synthetic patients (2 leads, 250 Hz) at ``--speed``
times real time, and measures, besides the model worker's own timers:

* forecast intervals: a subscriber records when each patient's forecasts arrive; per patient, the gaps between
  consecutive forecasts (wall seconds x speed = seconds of signal), p50/p95/max over all patients;
* ingest latency: from a chunk's scheduled publish time (the end of its last second) to its windows being ready
  for the encoder, p50/p99, after the first ``--warmup`` seconds (every patient appears at once at the start);
* the machine's load average at the start and the end (other jobs make every figure here slower).

Real-time capacity from the worker's timers at cadence C (seconds) and utilisation U (the KV cache slides by
eviction, so there is no rebuild term any more: docs/LLM_RUNTIME.md):

    capacity = U * C / (forecast_s + C * (feed_s_per_patient_second + encode_s_per_patient_second))

Usage: python bench/agent_bench.py [--patients 60] [--speed 1] [--minutes 10] [--config config/default.yaml]
Writes bench/results/agent.json. Data: synthetic scenarios (simulators.scenarios); speed only, not accuracy.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import torch
from machine_info import cpu_description  # the sibling module
from paho.mqtt.enums import CallbackAPIVersion

from agent.daemon import Agent, tune_process_for_streaming
from agent.local_broker import LocalMosquitto
from agent.patient import CompletedWindows
from agent.settings import load_settings
from core.logs import configure_logging
from core.protocol import Topics
from simulators.faults import device_actions
from simulators.publisher import MqttPublisher, replay_actions
from simulators.scenarios import SCENARIO_NAMES, generate_scenario


class ForecastClock:
    """Arrival times of every patient's forecasts (paho's network thread appends; read after it stops)."""

    def __init__(self, url_port: int, topics: Topics) -> None:
        self.arrivals: dict[str, list[float]] = {}
        self._topics = topics
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-fc-{uuid.uuid4().hex[:6]}")
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", url_port)
        self._client.subscribe(topics.forecast("+"), qos=1)
        self._client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        patient_id = self._topics.patient_of(message.topic, "forecast")
        self.arrivals.setdefault(patient_id, []).append(time.monotonic())

    def stop(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    def intervals(self, speed: float) -> dict[str, Any]:
        """Gaps between consecutive forecasts of each patient, in seconds of signal."""
        gaps = [speed * (b - a) for times in self.arrivals.values() for a, b in itertools.pairwise(times)]
        per_patient = [len(t) for t in self.arrivals.values()]
        return {
            "patients_forecast": len(self.arrivals),
            "forecasts_per_patient_min_max": [min(per_patient, default=0), max(per_patient, default=0)],
            "intervals": len(gaps),
            "interval_p50_s": round(float(np.percentile(gaps, 50)), 1) if gaps else None,
            "interval_p95_s": round(float(np.percentile(gaps, 95)), 1) if gaps else None,
            "interval_max_s": round(max(gaps), 1) if gaps else None,
        }


class IngestLatency:
    """Chunk publish-to-ready latencies, recorded by a window sink that then passes the windows on to the model.

    A chunk's windows carry the device's timestamps, which run ``speed`` times faster than the wall clock from the
    stream's start ``t0``; its scheduled publish time is when its last second ends on that clock."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.t0 = 0.0  # the streams' start, Unix seconds (set before publishing)
        self.samples: list[tuple[float, float]] = []  # (chunk end on the device clock, ready), Unix seconds

    def sink(self, forward: Callable[[CompletedWindows], None]) -> Callable[[CompletedWindows], None]:
        def record(batch: CompletedWindows) -> None:
            self.samples.append((batch.windows[-1].t_start + 1.0, batch.ready_wall))
            forward(batch)

        return record

    def percentiles(self, warmup_s: float) -> dict[str, Any]:
        """p50/p99 of the chunks that end after ``warmup_s`` seconds of signal."""
        kept = [
            ready - (self.t0 + (end - self.t0) / self.speed) for end, ready in self.samples if end - self.t0 >= warmup_s
        ]
        if not kept:
            return {"chunks": 0}
        return {
            "chunks": len(kept),
            "warmup_s_excluded": warmup_s,
            "p50_ms": round(1000 * float(np.percentile(kept, 50)), 1),
            "p99_ms": round(1000 * float(np.percentile(kept, 99)), 1),
            "max_ms": round(1000 * max(kept), 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds of signal left out of ingest latency")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--llm-dtype", choices=["float32", "bfloat16"], default=None, help="override llm.dtype")
    parser.add_argument("--out", type=Path, default=Path("bench/results/agent.json"))
    args = parser.parse_args()
    configure_logging("warning", "console")
    base = load_settings(args.config)
    with LocalMosquitto(persistence=False) as broker, TemporaryDirectory() as tmp:
        data = base.model_dump(mode="python")
        data["mqtt"].update(url=broker.url, client_id=f"bench-agent-{uuid.uuid4().hex[:6]}")
        data["alerts"]["store_path"] = Path(tmp) / "alerts.sqlite3"
        data["http"]["port"] = 0
        if args.llm_dtype:
            data["llm"]["dtype"] = args.llm_dtype
        settings = type(base).model_validate(data)
        t_load = time.perf_counter()
        latency = IngestLatency(args.speed)
        sink = latency.sink(lambda batch: agent.windows_ready.put_nowait(batch))  # then on to the model, as usual
        agent = Agent(settings, sink, clock=lambda: time.monotonic() * args.speed)
        forecasts = ForecastClock(broker.port, agent.topics)
        load_start = os.getloadavg()[0]
        agent.start()
        model = agent.wait_for_model()
        load_s = time.perf_counter() - t_load
        tune_process_for_streaming()
        records = [
            (
                f"b{i:03d}",
                generate_scenario(SCENARIO_NAMES[i % len(SCENARIO_NAMES)], i, args.minutes, 250.0, ("II", "V1")),
            )
            for i in range(args.patients)
        ]
        t0 = latency.t0 = time.time()
        streams = [
            device_actions(rec, pid, t_start=t0, encoding="b64", topics=Topics(settings.protocol.topic_prefix))
            for pid, rec in records
        ]
        wall = time.perf_counter()
        with MqttPublisher(settings.mqtt, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}") as pub:
            replay_actions(streams, pub, args.speed)
        while not agent.windows_ready.empty():
            time.sleep(0.2)
        time.sleep(settings.forecast.cadence_s / args.speed)
        wall = time.perf_counter() - wall
        load_end = os.getloadavg()[0]
        stats = model.stats
        summary = model.scheduler.summary()
        runner_stats = asdict(model.engine.runner.stats)
        agent.stop()
        forecasts.stop()
    patient_seconds = args.patients * args.minutes * 60
    per_forecast = stats.forecast_s / max(stats.forecasts, 1)
    feed = stats.feed_s / max(stats.seconds_fed, 1)
    encode = stats.encode_s / patient_seconds
    cadence, util = settings.forecast.cadence_s, settings.forecast.utilisation
    per_patient = per_forecast + cadence * (feed + encode)
    result = {
        "data": f"synthetic, {args.patients} patients x {args.minutes} min, 2 leads 250 Hz, {args.speed}x",
        "model_id": model.engine.model_id,
        "machine": {
            **cpu_description(),
            "python": platform.python_version(),
            "gpu": "none",
            "torch_threads": torch.get_num_threads(),
            "load_avg_1m_start_end": [round(load_start, 2), round(load_end, 2)],
        },
        "window_s": settings.llm.window_s,
        "leads_streamed": ["II", "V1"],
        "lm_leads": list(settings.llm.leads),
        "llm_dtype": settings.llm.dtype,
        "forecast_intervals": forecasts.intervals(args.speed),
        "ingest_latency": latency.percentiles(args.warmup),
        "model_load_s": round(load_s, 1),
        "wall_s": round(wall, 1),
        "forecasts": stats.forecasts,
        "forecasts_per_minute": round(60 * stats.forecasts / wall, 2),
        "seconds_per_forecast": round(per_forecast, 3),
        "earlier_windows": {"reused": stats.earlier_reused, "measured": stats.earlier_measured},
        "rationales": {"count": stats.rationales, "seconds": round(stats.rationale_s, 1)},
        "feed_s_per_patient_second": round(feed, 5),
        "encode_s_per_patient_second": round(encode, 6),
        "runner": runner_stats,
        "scheduler": summary,
        "realtime_capacity_at_cadence": int(util * cadence / per_patient),
        "cadence_s": cadence,
        "utilisation": util,
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
