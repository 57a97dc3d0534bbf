"""Two agent replicas on a private RabbitMQ 4, the simulator publishing MQTT, one replica killed (SIGKILL).

Checks the issue #9 acceptance: every patient has one owner per partition epoch and epochs only go forward; the new
owner warms up by replaying the partition and forecasts again; no acknowledged sample is lost (sequence numbers in
the new owner's status are contiguous, overlapping what the old owner had); no alert is duplicated or lost across the
handover (one "new" per patient, the same alert continued, one row in the shared store).

The signal is untrained-model fodder on purpose (tiny random backbone): the pipeline is under test, not accuracy.
Alerts are made deterministic by asking for 3 assessable leads from a 2-lead stream, so every patient gets one
"cannot assess: signal quality" alert that must survive the handover as the same alert.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
import yaml

from agent.cluster import PrivateRabbitMQ
from agent.settings import Settings
from main import main
from tests.agent.test_agent_e2e import Collector as E2eCollector

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
PATIENTS = 6
SIM_MINUTES = 1.0
PARTITIONS = 8


@pytest.fixture(scope="module")
def encoder_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random encoder weights, exported to ONNX once here so the replicas do not race to export it."""
    import torch

    from encoder_onnx.export import ensure_onnx
    from encoder_onnx.model import ConvEncoder, EncoderConfig
    from encoder_onnx.settings import EncoderSettings
    from encoder_onnx.weights import save_encoder_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("encoder") / "encoder.pt"
    save_encoder_weights(path, ConvEncoder(EncoderConfig()), {"note": "random weights for tests"})
    ensure_onnx(EncoderSettings(weights_path=path, onnx_path=path.with_suffix(".onnx")))
    return path


def replica_config(agent_id: str, rabbit: PrivateRabbitMQ, scope: str, pg_url: str, encoder: Path) -> dict[str, Any]:
    return {
        "agent_id": agent_id,
        "mqtt": {"url": rabbit.mqtt_url, "client_id": agent_id, "reconnect_min_s": 0.5, "reconnect_max_s": 1},
        "ingest": {
            "source": "rabbitmq-superstream",
            "superstream": {
                "amqp_port": rabbit.ports.amqp,
                "stream_port": rabbit.ports.stream,
                "partitions": PARTITIONS,
                "super_stream": scope,
                "retention_margin_min": 1,
                "replay_margin_s": 10,
                "consumer_group": f"{scope}.agents",
            },
        },
        "buffer": {"minutes": 0.5},
        "status": {"interval_s": 1.0},
        "encoder": {"weights_path": str(encoder), "onnx_path": str(encoder.with_suffix(".onnx"))},
        "llm": {"backbone": "tiny-random", "window_s": 20, "slack_s": 10, "horizons_s": [60], "num_threads": 1},
        "forecast": {"cadence_s": 3.0, "min_seconds": 10},
        "alerts": {"store_url": pg_url, "defaults": {"quality": {"min_good_leads": 3}}},
        "http": {"port": 0},
    }


class Collector(E2eCollector):
    """Every output under ecg/v1 (waves skipped), with its arrival time."""

    def __init__(self, port: int) -> None:
        self.timed: list[tuple[float, str, dict[str, Any]]] = []
        super().__init__(port)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/wave") or not msg.payload:
            return
        with self._lock:
            self.timed.append((time.time(), msg.topic, json.loads(msg.payload)))

    def of(self, kind: str, patient: str | None = None, since: float = 0.0) -> list[dict[str, Any]]:
        with self._lock:
            return [
                body
                for t, topic, body in self.timed
                if t >= since and topic.endswith(f"/{kind}") and (patient is None or topic.split("/")[2] == patient)
            ]

    def agents(self) -> dict[str, list[int]]:
        """agent id -> partitions it reported last."""
        latest: dict[str, list[int]] = {}
        for body in self.of("status"):
            if body.get("schema") == "ecgcast.agent_status/1" and "cluster" in body:
                latest[body["agent_id"]] = body["cluster"]["partitions"]
        return latest


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"not met within {timeout:.0f} s: {what}")


@pytest.fixture
def replicas(
    rabbit: PrivateRabbitMQ, scope: str, pg_url: str, encoder_weights: Path, tmp_path: Path
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for agent_id in ("agent-a", "agent-b"):
        config = tmp_path / f"{agent_id}.yaml"
        config.write_text(yaml.safe_dump(replica_config(agent_id, rabbit, scope, pg_url, encoder_weights)))
        Settings.model_validate(yaml.safe_load(config.read_text()))
        with (tmp_path / f"{agent_id}.log").open("wb") as log_file:
            procs[agent_id] = subprocess.Popen(
                [sys.executable, str(ROOT / "main.py"), "run", "--config", str(config), "--log-format", "json"],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_kill_one_replica_the_other_takes_over(
    rabbit: PrivateRabbitMQ,
    scope: str,
    pg_url: str,
    encoder_weights: Path,
    tmp_path: Path,
    replicas: dict[str, subprocess.Popen[bytes]],
) -> None:
    config = tmp_path / "agent-a.yaml"
    assert main(["cluster", "init", "--config", str(config)]) == 0
    collector = Collector(rabbit.ports.mqtt)
    logs = {agent_id: tmp_path / f"{agent_id}.log" for agent_id in replicas}

    def split() -> bool:
        parts = collector.agents()
        return len(parts) == 2 and sorted(p for ps in parts.values() for p in ps) == list(range(PARTITIONS))

    wait_for(split, 240, f"both replicas share the {PARTITIONS} partitions; logs in {tmp_path}")
    sim_log = (tmp_path / "sim.log").open("wb")
    sim = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "simulate", "--patients", str(PATIENTS), "--minutes", str(SIM_MINUTES),
         "--speed", "1", "--url", rabbit.mqtt_url, "--qos", "1", "--leads", "II,V1", "--scenario", "sinus_stable",
         "--noise", "low", "--no-progress"],
        cwd=ROOT, stdout=sim_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    patients = [f"sim-{i:04d}" for i in range(1, PATIENTS + 1)]
    try:
        wait_for(lambda: all(collector.of("forecast", p) for p in patients), 90, "every patient forecast")
        wait_for(lambda: all(collector.of("alert", p) for p in patients), 30, "every patient's cannot-assess alert")
        owner = {p: collector.of("forecast", p)[-1]["owner"] for p in patients}
        counts = {a: sum(1 for o in owner.values() if o == a) for a in replicas}
        victim = max(counts, key=lambda a: counts[a])
        survivor = next(a for a in replicas if a != victim)
        moved = [p for p in patients if owner[p] == victim]
        before = {p: collector.of("status", p)[-1] for p in moved}

        killed_at = time.time()
        replicas[victim].send_signal(signal.SIGKILL)
        replicas[victim].wait(10)
        wait_for(
            lambda: all(any(f["owner"] == survivor for f in collector.of("forecast", p, killed_at)) for p in moved),
            90,
            f"the survivor forecasts {moved} again; logs in {tmp_path}",
        )
        warmed_at = time.time()
        assert sim.wait(120) == 0, (tmp_path / "sim.log").read_text()[-2000:]
        time.sleep(3)  # the last chunks through the survivor, and one more status round
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait(10)
        sim_log.close()
        collector.close()

    # One owner per (partition, epoch), and a patient's epochs only go forward.
    for p in patients:
        outputs = [b for kind in ("status", "forecast", "alert") for b in collector.of(kind, p)]
        by_epoch: dict[tuple[int, int], set[str]] = defaultdict(set)
        for body in outputs:
            by_epoch[(body["partition"], body["epoch"])].add(body["owner"])
        assert all(len(owners) == 1 for owners in by_epoch.values()), (p, by_epoch)
        epochs = [b["epoch"] for b in collector.of("forecast", p)]
        assert epochs == sorted(epochs), (p, epochs)
    for p in moved:
        (old_epoch, new_epoch) = before[p]["epoch"], collector.of("forecast", p)[-1]["epoch"]
        assert new_epoch > old_epoch
        # Held while replaying: the new owner's first forecast reads signal at least as recent as the old owner's last.
        forecasts = collector.of("forecast", p)
        last_old = [f for f in forecasts if f["owner"] == victim][-1]
        first_new = next(f for f in forecasts if f["owner"] == survivor)
        assert first_new["window"]["end"] >= last_old["window"]["end"], (first_new["window"], last_old["window"])

    # Warm-up by replay, and no acknowledged sample lost: the survivor's stream of each moved patient is
    # contiguous (no gap) up to the last chunk the simulator published, and starts well before the kill.
    last_seq = {p: max(s["last_seq"] for s in collector.of("status", p)) for p in patients}
    for p in moved:
        final = [s for s in collector.of("status", p) if s["owner"] == survivor][-1]
        assert final["last_seq"] == last_seq[p] and final["gaps"] == 0, final
        first_seq = final["last_seq"] - final["chunks"] + 1
        assert first_seq <= before[p]["last_seq"] - 5, (first_seq, before[p]["last_seq"])  # replayed history

    # Alerts: one "new" per patient over the whole run, continued by the new owner, one row in the shared store.
    for p in patients:
        news = [m for m in collector.of("alert", p) if m["type"] == "new"]
        assert len(news) == 1, (p, news)
    with psycopg.connect(pg_url) as db:
        rows = db.execute("SELECT patient_id, count(*), min(state) FROM ecgcast_alerts GROUP BY patient_id").fetchall()
    assert sorted(rows) == [(p, 1, "raised") for p in patients]

    activated = [
        datetime.fromisoformat(event["timestamp"]).timestamp()
        for line in logs[survivor].read_text().splitlines()
        if line.startswith("{") and (event := json.loads(line))["event"] == "partition_activated"
    ]
    taken_over = [t - killed_at for t in activated if t > killed_at]
    assert taken_over, "the survivor logged no activation after the kill"
    print(
        json.dumps(
            {
                "data": f"synthetic sinus_stable, {PATIENTS} patients, 2 leads at 250 Hz, 1-s chunks, speed 1",
                "moved_patients": len(moved),
                "partitions_taken_over": len(taken_over),
                "kill_to_activation_s": round(max(taken_over), 2),
                "kill_to_forecasting_again_s": round(warmed_at - killed_at, 1),
            }
        )
    )
