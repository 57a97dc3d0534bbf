"""Fuzz: 10,000 random and mutated wave, status, forecast, alert, ack, mute and presence messages at a running agent
(tiny model, its station enabled) while a clean patient streams. Nothing dies, the clean patient loses no sample,
and the process grows by less than 100 MB (issue #19's acceptance). Seeded: a failure reproduces.

The templates are real messages the agent published during warm-up, so the mutations start from what the
consumers actually parse: a field removed, retyped, oversized or made hostile; bytes truncated or flipped; noise.
"""

from __future__ import annotations

import copy
import gc
import http.client
import json
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.daemon import Agent
from agent.local_broker import LocalMosquitto
from agent.settings import Settings
from agent.station import hash_password
from core.protocol import WaveChunk, encode_wave
from simulators.scenarios import generate_scenario

from .test_agent_e2e import settings_dict

N_MESSAGES = 10_000
FS = 250.0
CLEAN = "bed-clean"
PREFIX = "ecg/v1"
HOSTILE: tuple[Any, ...] = (
    None,
    True,
    -1,
    0,
    1e308,
    -1e308,
    "x" * 20_000,
    "",
    "yesterday",
    "P001\n",
    "nurse\u202ekim",
    "\x00",
    [],
    {},
    [[1.0, 2.0]],
    [True, False],
    {"rr_irregularity": "x"},
    "NaN",
)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _settings(url: str, encoder: Path, store: Path) -> Settings:
    """The end-to-end agent (tiny model) with its station on, as agent-fuzz."""
    config = settings_dict(url, encoder, store)
    config["agent_id"] = "agent-fuzz"
    config["station"] = {
        "enabled": True,
        "port": 0,
        "client_id": f"station-{uuid.uuid4().hex[:6]}",
        "users": {"kim": hash_password("pw")},
    }
    return Settings.model_validate(config)


class Recorder:
    """Keeps the first message of each kind the agent publishes: the fuzz templates."""

    def __init__(self, port: int) -> None:
        self.first: dict[str, tuple[str, bytes]] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rec-{uuid.uuid4().hex[:6]}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{PREFIX}/#", 1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        kind = msg.topic.split("/", 3)[-1] if not msg.topic.startswith(f"{PREFIX}/_agents/") else "presence"
        if kind in ("status", "forecast", "alert", "presence", "alert/muted"):
            self.first.setdefault(kind, (msg.topic, bytes(msg.payload)))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _chunk(patient: str, seq: int, block: np.ndarray) -> bytes:
    return encode_wave(WaveChunk(patient, "dev-1", seq, 1.7e9 + seq, FS, ("II", "V1"), block), "b64")


def _mutate_json(body: Any, rng: np.random.Generator) -> Any:
    """One hostile change at a random place of a JSON body: a value replaced, a key dropped or added."""
    out = copy.deepcopy(body)
    node = out
    for _ in range(int(rng.integers(1, 4))):
        children = (
            list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) else []
        )
        containers = [(k, v) for k, v in children if isinstance(v, dict | list) and v]
        if not containers or rng.random() < 0.4:
            break
        node = containers[int(rng.integers(len(containers)))][1]
    keys = list(node.keys()) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
    if not keys:
        return HOSTILE[int(rng.integers(len(HOSTILE)))]
    key = keys[int(rng.integers(len(keys)))]
    roll = rng.random()
    if roll < 0.6:
        node[key] = HOSTILE[int(rng.integers(len(HOSTILE)))]
    elif roll < 0.8 and isinstance(node, dict):
        del node[key]
    elif isinstance(node, dict):
        node[f"unknown_{int(rng.integers(100))}"] = HOSTILE[int(rng.integers(len(HOSTILE)))]
    return out


def _mutate(payload: bytes, rng: np.random.Generator) -> bytes:
    roll = rng.random()
    if roll < 0.6:
        return json.dumps(_mutate_json(json.loads(payload), rng)).encode()
    if roll < 0.75:
        return payload[: int(rng.integers(0, len(payload) + 1))]
    if roll < 0.85:
        data = bytearray(payload)
        for i in rng.integers(0, len(data), size=int(rng.integers(1, 8))):
            data[i] = int(rng.integers(256))
        return bytes(data)
    if roll < 0.9:
        return b'{"a":' * 4000 + b"1" + b"}" * 4000  # deep nesting
    return rng.bytes(int(rng.integers(0, 4000)))


def _topic(kind: str, rng: np.random.Generator) -> str:
    patient = CLEAN if kind != "wave" and rng.random() < 0.2 else f"fz-{int(rng.integers(40))}"
    if kind == "presence":
        return f"{PREFIX}/_agents/{'agent-fuzz' if rng.random() < 0.5 else 'ghost'}/presence"
    if kind == "ack":
        return f"{PREFIX}/{patient}/alert/ack" + ("/kim" if rng.random() < 0.8 else "")
    if kind == "mute":
        return f"{PREFIX}/{patient}/alert/mute" + ("/kim" if rng.random() < 0.8 else "")
    return f"{PREFIX}/{patient}/{kind}"


def _client(port: int, name: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _alive(agent: Agent) -> dict[str, bool]:
    assert agent.model is not None and agent.alert_worker is not None and agent.station is not None
    return {
        "ingest": agent.worker.alive,
        "model": agent.model.alive,
        "alerts": agent.alert_worker.alive,
        "station_feed": agent.station.feed.alive,
        "broker": agent.connection.connected,
    }


def _wait(predicate: Any, timeout: float, why: Any = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not met in time {why() if callable(why) else why}"
        time.sleep(0.1)


@pytest.mark.slow
def test_ten_thousand_hostile_messages_harm_no_process_and_no_clean_sample(
    broker: LocalMosquitto, encoder_files: tuple[Path, Path], tmp_path: Path
) -> None:
    rng = np.random.default_rng(20261207)
    agent = Agent(_settings(broker.url, encoder_files[0], tmp_path / "alerts.sqlite3"))
    recorder = Recorder(broker.port)
    pub, monitor = (_client(broker.port, name) for name in ("fuzz", "monitor"))  # the clean bed's own connection
    agent.start()
    try:
        agent.wait_for_model(120)
        clean = generate_scenario("sinus_stable", seed=9, minutes=2.0, fs=FS, leads=("II", "V1"), noise="low")
        blocks = [clean.p_signal[k * 250 : (k + 1) * 250].T.astype(np.float32) for k in range(120)]
        flat = np.full((2, 250), 0.2, np.float32)
        for k in range(20):  # warm-up: the clean patient's first 20 s, a flat line that raises "cannot assess"
            monitor.publish(f"{PREFIX}/{CLEAN}/wave", _chunk(CLEAN, k, blocks[k]), qos=1).wait_for_publish(5)
            monitor.publish(f"{PREFIX}/bed-flat/wave", _chunk("bed-flat", k, flat), qos=1).wait_for_publish(5)
        _wait(lambda: {"status", "forecast", "alert", "presence"} <= set(recorder.first), 60)
        templates = {kind: payload for kind, (_, payload) in recorder.first.items()}
        templates["wave"] = _chunk("fz-0", 0, blocks[0])
        templates["ack"] = json.dumps({"schema": "ecgcast.alert_ack/1", "alert_id": "a-1", "by": "kim"}).encode()
        templates["mute"] = json.dumps({"schema": "ecgcast.alert_mute/1", "muted": True, "by": "kim"}).encode()
        kinds = sorted(templates)
        gc.collect()
        rss_before = _rss_mb()

        sent_clean = 20
        for i in range(N_MESSAGES):
            kind = kinds[int(rng.integers(len(kinds)))]
            info = pub.publish(_topic(kind, rng), _mutate(templates[kind], rng), qos=1)
            if i % 100 == 99:  # paced by the broker's acknowledgements: hostile, not a load test
                info.wait_for_publish(10)
                if sent_clean < len(blocks):  # the clean patient streams throughout
                    monitor.publish(f"{PREFIX}/{CLEAN}/wave", _chunk(CLEAN, sent_clean, blocks[sent_clean]), qos=1)
                    sent_clean += 1

        expected = sent_clean * 250
        stream = agent.worker.patients
        _wait(
            lambda: CLEAN in stream and stream[CLEAN].samples_received["II"] == expected,
            60,
            lambda: (expected, stream[CLEAN].samples_received, stream[CLEAN].counters, agent.worker.summary()),
        )
        assert stream[CLEAN].samples_received["V1"] == expected
        assert stream[CLEAN].counters["invalid_samples"] == 0
        assert agent.station is not None
        assert all(_alive(agent).values()), _alive(agent)
        assert agent.station.feed.restarts == 0  # every bad message was contained to itself, none reached the loop
        conn = http.client.HTTPConnection("127.0.0.1", agent.station.port, timeout=10)
        conn.request("GET", "/login")
        assert conn.getresponse().status == 200
        refused_by_station = sum(n for reasons in agent.station.state.rejected().values() for n in reasons.values())
        refused_by_agent = sum(agent.worker.summary()["rejected"].values())
        assert refused_by_station > 2_000 and refused_by_agent > 1_000, (refused_by_station, refused_by_agent)
        tiles = agent.station.state.snapshot()["tiles"]
        assert any(tile.get("patient_id") == CLEAN for tile in tiles)
        gc.collect()
        grown = _rss_mb() - rss_before
        assert grown < 100.0, f"RSS grew by {grown:.0f} MB"
    finally:
        for client in (pub, monitor):
            client.loop_stop()
            client.disconnect()
        recorder.close()
        agent.stop()
