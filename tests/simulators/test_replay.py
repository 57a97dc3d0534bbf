"""Replay through a real (private) mosquitto: chunks arrive intact, faults are observable at a subscriber."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.local_broker import LocalMosquitto
from core.errors import ProtocolError
from core.protocol import PayloadLimits, WaveChunk, decode_wave
from core.settings import MqttSettings
from main import main
from simulators.faults import MALFORMED_EXPECTED, FaultPlan, Publish, device_actions
from simulators.publisher import MqttPublisher, replay_actions
from simulators.scenarios import generate_scenario
from simulators.wfdb_io import write_record


class Subscriber:
    """Collects every wave payload in arrival order."""

    def __init__(self, url: str) -> None:
        self.settings = MqttSettings(url=url)
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-subscriber")
        self.client.on_connect = lambda c, *_: c.subscribe("ecg/v1/+/wave", qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def __enter__(self) -> Subscriber:
        self.client.connect(self.settings.host, self.settings.port)
        self.client.loop_start()
        assert self._subscribed.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def wait_for(self, count: int, timeout_s: float = 20.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # anything extra (duplicates) has a moment to land
        with self._lock:
            return list(self.messages)


@pytest.fixture
def subscriber(broker: LocalMosquitto) -> Iterator[Subscriber]:
    with Subscriber(broker.url) as sub:
        yield sub


def _decoded(messages: list[tuple[str, bytes]]) -> tuple[list[WaveChunk], list[str]]:
    chunks, reasons = [], []
    for topic, payload in messages:
        try:
            chunks.append(decode_wave(payload, PayloadLimits(), topic_patient_id=topic.split("/")[2]))
        except ProtocolError as exc:
            reasons.append(exc.reason)
    return chunks, reasons


def test_replay_arrives_intact(broker: LocalMosquitto, subscriber: Subscriber) -> None:
    rec = generate_scenario("af_onset", seed=3, minutes=1 / 3, fs=250.0, leads=("II", "V1"))
    actions = device_actions(rec, "sim-0001", t_start=5000.0, chunk_s=1.0, encoding="json")
    with MqttPublisher(MqttSettings(url=broker.url), client_id="test-pub", max_inflight=4) as pub:
        stats = replay_actions([actions], pub, speed=0.0, total_chunks=20)
    assert stats.chunks == 20
    chunks, reasons = _decoded(subscriber.wait_for(20))
    assert not reasons
    assert [c.seq for c in chunks] == list(range(20))
    assert [c.t0 for c in chunks] == pytest.approx([5000.0 + k for k in range(20)])
    np.testing.assert_allclose(np.concatenate([c.samples for c in chunks], axis=1).T, rec.p_signal, atol=6e-5)


def test_faults_are_observed_at_the_subscriber(broker: LocalMosquitto, subscriber: Subscriber) -> None:
    rec = generate_scenario("sinus_stable", seed=1, minutes=1.0, fs=250.0, leads=("II",))
    plan = FaultPlan(
        drop_prob=0.05,
        duplicate_prob=0.05,
        reorder_prob=0.05,
        restart_at_s=(45.0,),
        lead_off=((10.0, 12.0),),
        disconnect_at_s=(30.0,),
        disconnect_pause_s=0.3,
        malformed_every=3,
    )
    actions = list(device_actions(rec, "sim-0002", t_start=0.0, plan=plan, rng=np.random.default_rng(8)))
    kinds = [a.label.split(":")[1] for a in actions if isinstance(a, Publish) and a.label.startswith("malformed")]
    assert set(kinds) == set(MALFORMED_EXPECTED)
    with MqttPublisher(MqttSettings(url=broker.url), client_id="test-pub-faults") as pub:
        stats = replay_actions([iter(actions)], pub, speed=0.0)
        assert pub.connects == 2  # the disconnect happened and the publisher came back
    sent = sum(stats.counts.values()) - stats.counts["disconnect"]
    chunks, reasons = _decoded(subscriber.wait_for(sent))
    seqs = [c.seq for c in chunks if c.stream_id == chunks[0].stream_id]
    assert len({c.stream_id for c in chunks}) == 2 and chunks[-1].seq < 15  # restart: new stream, seq from 0
    assert set(range(max(seqs))) - set(seqs), "dropped chunk: seq gap"
    assert len(seqs) > len(set(seqs)), "duplicate chunk"
    assert any(b < a for a, b in itertools.pairwise(seqs)), "reordered chunk"
    assert any(c.seq in (10, 11) and np.ptp(c.samples) < 0.05 for c in chunks), "lead-off: flat chunk"
    masked = [c for c in chunks if not np.isfinite(c.samples).all() or np.abs(c.samples).max() > 20]
    assert Counter(reasons) == Counter(MALFORMED_EXPECTED[k] for k in kinds if MALFORMED_EXPECTED[k])
    assert len(masked) == sum(MALFORMED_EXPECTED[k] is None for k in kinds)  # decoded, then masked by the agent


def test_simulate_command_publishes_every_patient(broker: LocalMosquitto, subscriber: Subscriber) -> None:
    argv = ["simulate", "--patients", "2", "--minutes", "0.2", "--speed", "0", "--url", broker.url]
    assert main([*argv, "--chunk-s", "0.5", "--encoding", "b64", "--no-progress"]) == 0
    chunks, reasons = _decoded(subscriber.wait_for(48))
    assert not reasons
    by_patient = Counter(c.patient_id for c in chunks)
    assert by_patient == {"sim-0001": 24, "sim-0002": 24}
    assert {c.leads for c in chunks} == {("II", "V1")}


def test_replay_command_publishes_a_wfdb_record(broker: LocalMosquitto, subscriber: Subscriber, tmp_path: Path) -> None:
    rec = generate_scenario("flutter_onset", seed=2, minutes=0.25, fs=360.0, leads=("II", "V5"))
    path = write_record(rec, tmp_path)
    assert main(["replay", str(path), "--speed", "0", "--url", broker.url, "--chunk-s", "0.25", "--no-progress"]) == 0
    chunks, reasons = _decoded(subscriber.wait_for(60))
    assert not reasons and len(chunks) == 60
    assert {c.patient_id for c in chunks} == {rec.record_name}
    assert [c.seq for c in chunks] == list(range(60)) and chunks[0].fs == 360.0


def test_plot_draws_every_rhythm(tmp_path: Path) -> None:
    out = tmp_path / "strips.png"
    assert main(["simulate", "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 50_000


def test_publisher_survives_a_broker_restart(broker: LocalMosquitto) -> None:
    """Messages published while the broker is down are queued by paho and delivered after the reconnect."""
    received: list[int] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="persistent-sub", clean_session=False)
    sub.on_connect = lambda c, *_: c.subscribe("ecg/v1/+/wave", qos=1)
    sub.on_message = lambda c, u, msg: received.append(decode_wave(msg.payload, PayloadLimits()).seq)
    sub.reconnect_delay_set(1, 2)
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    rec = generate_scenario("sinus_stable", seed=2, minutes=0.5, fs=250.0, leads=("II",), noise="none")
    actions = [a for a in device_actions(rec, "sim-0003", t_start=0.0) if isinstance(a, Publish)]
    try:
        with MqttPublisher(MqttSettings(url=broker.url, reconnect_min_s=1, reconnect_max_s=2), "pub-restart") as pub:
            for action in actions[:10]:
                pub.publish(action.topic, action.payload)
            pub.flush()
            broker.restart()
            for action in actions[10:]:
                pub.publish(action.topic, action.payload)
            pub.flush(timeout_s=20.0)
            assert pub.connects == 2
        deadline = time.monotonic() + 10
        while len(set(received)) < 30 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert set(received) == set(range(30))
