"""Agent benchmark: forecasts per minute with the configured (shipped) model while ingesting N patients, and the
largest patient count that gets a forecast at the default cadence in real time.

It runs the real agent against a private mosquitto, streams N synthetic patients at ``--speed`` times real time,
and measures the model worker's costs: per forecast, per patient-second of KV-cache feeding, per patient-second of
encoding, and of the KV-cache rebuild: the streaming cache may outgrow the forecast window by ``llm.slack_s``,
then a full prefill of the window replaces it, once per slack per patient (a short run never reaches that point,
so the bench times one rebuild of a full window directly). Real-time capacity at cadence C (seconds), slack S and
utilisation U:

    capacity = U * C / (forecast_s + C * (feed_s_per_patient_second + encode_s_per_patient_second)
                        + (C / S) * rebuild_s)

Usage: python bench/agent_bench.py [--patients 6] [--speed 10] [--minutes 6] [--config config/default.yaml]
Writes bench/results/agent.json. Data: synthetic scenarios (simulators.scenarios); speed only, not accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

import torch

from agent.daemon import Agent, tune_process_for_streaming
from agent.local_broker import LocalMosquitto
from agent.settings import load_settings
from core.logs import configure_logging
from core.protocol import Topics
from llm_runtime.runner import ModelRunner
from simulators.faults import device_actions
from simulators.publisher import MqttPublisher, replay_actions
from simulators.scenarios import SCENARIO_NAMES, generate_scenario


def time_rebuild(runner: ModelRunner, window_s: int, repeats: int = 2) -> float:
    """Seconds for one full-window prefill, what a KV-cache rebuild costs (random embeddings: cost, not content)."""
    n_leads, dim = len(runner.prompts.leads), runner.model.config.ecg_dim
    seconds = torch.randn(window_s, n_leads, dim)
    times = []
    for k in range(repeats):
        t0 = time.perf_counter()
        runner.prime(f"rebuild-probe-{k}", seconds, 0)
        times.append(time.perf_counter() - t0)
        runner.finish([f"rebuild-probe-{k}"])
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=6)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results/agent.json"))
    args = parser.parse_args()
    configure_logging("warning", "console")
    base = load_settings(args.config)
    with LocalMosquitto(persistence=False) as broker, TemporaryDirectory() as tmp:
        data = base.model_dump(mode="python")
        data["mqtt"].update(url=broker.url, client_id=f"bench-agent-{uuid.uuid4().hex[:6]}")
        data["alerts"]["store_path"] = Path(tmp) / "alerts.sqlite3"
        data["http"]["port"] = 0
        settings = type(base).model_validate(data)
        t_load = time.perf_counter()
        agent = Agent(settings, clock=lambda: time.monotonic() * args.speed)
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
        t0 = time.time()
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
        stats = model.stats
        summary = model.scheduler.summary()
        rebuild = time_rebuild(model.engine.runner, settings.llm.window_s)
        agent.stop()
    patient_seconds = args.patients * args.minutes * 60
    per_forecast = stats.forecast_s / max(stats.forecasts, 1)
    feed = stats.feed_s / max(stats.seconds_fed, 1)
    encode = stats.encode_s / patient_seconds
    cadence, util, slack = settings.forecast.cadence_s, settings.forecast.utilisation, settings.llm.slack_s
    per_patient = per_forecast + cadence * (feed + encode) + (cadence / slack) * rebuild
    result = {
        "data": f"synthetic, {args.patients} patients x {args.minutes} min, 2 leads 250 Hz, {args.speed}x",
        "model_id": model.engine.model_id,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "gpu": "none"},
        "model_load_s": round(load_s, 1),
        "wall_s": round(wall, 1),
        "forecasts": stats.forecasts,
        "forecasts_per_minute": round(60 * stats.forecasts / wall, 2),
        "seconds_per_forecast": round(per_forecast, 3),
        "feed_s_per_patient_second": round(feed, 5),
        "encode_s_per_patient_second": round(encode, 6),
        "rebuild_s_per_window": round(rebuild, 3),
        "rebuilds_per_patient_per_cadence": round(cadence / slack, 3),
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
