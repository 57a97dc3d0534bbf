"""Issue 22's acceptance test for ectopy and noise: a WFDB record the test writes (about 20 % PVCs, a 20-s burst of
electrode motion; tests/agent/ectopy_record.py) is replayed with ``main.py replay`` through a private mosquitto into
a running agent, at 12x. The patient's retained status, as a station or pager reads it from the broker, reports the
PVC burden within 5 points of the annotations, refreshed at least every 30 s of signal, and the noise burst as
degraded quality while it lasts, good again after it. Synthetic data; nothing here is clinical.

Measured when this test was written (2 loaded cores): 13 refreshes, about every 19 s of signal (the monitor looks
every 0.5 s of wall time, 6 s of signal at 12x); at the last (239 s) a PVC burden of 19.5 % over the last 5 min
(annotations 19.6 %) and 19.2 % over the last minute (19.2 %), every minute within 1.3 points; quality poor at the
refresh ending 112 s, degraded at 131 s, good from 149 s; module about 25 s. ``-s`` prints the table."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.daemon import Agent
from agent.local_broker import LocalMosquitto
from agent.settings import Settings
from core.wire import decode_status
from main import main

from .alert_watch import wait_for
from .ectopy_record import BURST_S, NAME, SECONDS, annotated_pvc_burden, read_pvc_record, write_pvc_record

SPEED = 12.0
INTERVAL_S = 15.0


class StatusWatch:
    """Every status message of every patient, parsed as a consumer parses it (core.wire.decode_status)."""

    def __init__(self, port: int) -> None:
        self._lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"status-{uuid.uuid4().hex[:6]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("ecg/v1/+/status", qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        patient = msg.topic.split("/")[2]
        decode_status(bytes(msg.payload), patient)  # a message a consumer would refuse fails the test here
        with self._lock:
            self.messages.append(json.loads(msg.payload))

    def measured(self) -> list[dict[str, Any]]:
        """Each distinct refresh the statuses carried, in order."""
        with self._lock:
            seen = [m["measured"] for m in self.messages if m.get("measured")]
        return [m for i, m in enumerate(seen) if i == 0 or m["t_end_s"] != seen[i - 1]["t_end_s"]]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[dict[str, Any]], Path]]:
    path = write_pvc_record(tmp_path_factory.mktemp("wfdb"))
    with LocalMosquitto() as broker:
        settings = Settings.model_validate(
            {
                "mqtt": {"url": broker.url, "client_id": f"agent-{uuid.uuid4().hex[:6]}"},
                "status": {"interval_s": 0.25},
                "http": {"port": 0},
            }
        )
        agent = Agent(settings, with_model=False)
        watch = StatusWatch(broker.port)
        agent.start()
        try:
            wait_for(lambda: agent.connection.connected and watch.subscribed.is_set(), 30, "agent and watcher")
            args = ["replay", str(path), "--url", broker.url, "--speed", str(SPEED), "--no-progress"]
            assert main(args) == 0
            last = SECONDS - INTERVAL_S - 1.0  # the newest second waits for the next refresh
            wait_for(lambda: any(m["t_end_s"] >= last for m in watch.measured()), 60, "the last refresh")
            time.sleep(0.5)
        finally:
            agent.stop()
            watch.close()
        measured = watch.measured()
        record = read_pvc_record(path)
        for m in measured:  # what the status said, beside the annotations (shown with -s)
            one, five = m["windows"]
            print(
                f"t_end {m['t_end_s']:5.0f} s  quality {m['quality']:8}  PVC 1 min {one['pvc_burden']:.3f} "
                f"(annotated {annotated_pvc_burden(record, one['t_end_s'], 60.0):.3f})  5 min {five['pvc_burden']:.3f} "
                f"(annotated {annotated_pvc_burden(record, five['t_end_s'], 300.0):.3f})"
            )
        yield measured, path


@pytest.mark.slow
def test_status_reports_pvc_burden_within_5_points_of_the_annotations(
    replayed: tuple[list[dict[str, Any]], Path],
) -> None:
    measured, path = replayed
    record = read_pvc_record(path)
    assert record.record_name == NAME
    ends = [m["t_end_s"] for m in measured]
    assert max(b - a for a, b in itertools.pairwise(ends)) <= 30.0, ends  # refreshed at least every 30 s
    one_min, five_min = measured[-1]["windows"]
    for window in (one_min, five_min):
        truth = annotated_pvc_burden(record, window["t_end_s"], window["window_s"])
        assert abs(window["pvc_burden"] - truth) <= 0.05, (window, truth)
    assert 0.15 <= five_min["pvc_burden"] <= 0.25 and five_min["hr_bpm"] > 60
    assert five_min["ventricular_runs"] == 0  # the record scripts single PVCs: the burst invents no runs


@pytest.mark.slow
def test_status_reports_the_noise_burst_as_degraded_quality(replayed: tuple[list[dict[str, Any]], Path]) -> None:
    measured, _ = replayed
    during = [m for m in measured if m["t_end_s"] - INTERVAL_S < BURST_S[1] and m["t_end_s"] > BURST_S[0]]
    before = [m for m in measured if m["t_end_s"] <= BURST_S[0]]
    after = [m for m in measured if m["t_end_s"] - INTERVAL_S >= BURST_S[1] + 2.0]
    assert during and before and after
    assert all(m["quality"] in ("degraded", "poor") for m in during), during
    assert all(m["quality"] == "good" for m in before + after)
    assert any(m["windows"][0]["quality"] != "good" for m in during)
    assert measured[-1]["windows"][0]["quality"] == "good"
