"""``main.py alerts history``, ``alerts ack``, ``alerts mute`` and ``alerts unmute`` (against a private mosquitto)."""

from __future__ import annotations

import argparse
import json
import queue
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import structlog
from paho.mqtt.enums import CallbackAPIVersion

import main
from agent.alerts import AlertService, AlertSettings, decode_ack, decode_mute
from agent.local_broker import LocalMosquitto
from core.protocol import Topics

from .alert_builders import evidence, forecast


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The commands point structlog at the (captured) stderr of their test; later tests must not inherit it."""
    yield
    structlog.reset_defaults()


def make_store(path: Path) -> str:
    """A store holding one active AF alert for P001; returns its id."""
    settings = AlertSettings.model_validate({"store_path": str(path)})
    with AlertService(settings, None, lambda *_: None, Topics("ecg/v1"), clock=lambda: 1.0e9) as service:
        for _ in range(2):
            service.on_forecast("P001", forecast(af=0.8), evidence())
        return service.active("P001")[0].alert_id


def test_history_prints_stored_alerts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "alerts.sqlite3"
    alert_id = make_store(store)
    capsys.readouterr()
    assert main.main(["alerts", "history", "P001", "--store", str(store)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    row = json.loads(line)
    assert (row["alert_id"], row["state"], row["ihe"]["source"]) == (alert_id, "raised", "SA")
    assert main.main(["alerts", "history", "P001", "--store", str(tmp_path / "missing.sqlite3")]) == 1


def test_ack_is_published_and_accepted_by_the_service(tmp_path: Path, broker: LocalMosquitto) -> None:
    store = tmp_path / "alerts.sqlite3"
    alert_id = make_store(store)
    config = tmp_path / "c.yaml"
    config.write_text(f"mqtt:\n  url: {broker.url}\nalerts:\n  store_path: {store}\n")
    client, received = _listen(broker, "ecg/v1/+/alert/ack/+")
    try:
        rc = main.main(["alerts", "ack", "--config", str(config), "P001", alert_id, "--by", "nurse.kim"])
        assert rc == 0
        message = received.get(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()
    assert message.topic == "ecg/v1/P001/alert/ack/nurse.kim"
    ack = decode_ack(bytes(message.payload), "P001", "nurse.kim", received_at=time.time())
    settings = AlertSettings.model_validate({"store_path": str(store)})
    with AlertService(settings, None, lambda *_: None, Topics("ecg/v1")) as service:
        alert = service.acknowledge(ack)
    assert (alert.state, alert.acknowledged_by) == ("acknowledged", "nurse.kim")


def _listen(broker: LocalMosquitto, topic: str) -> tuple[mqtt.Client, queue.Queue[mqtt.MQTTMessage]]:
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-listener-{uuid.uuid4().hex[:6]}")
    client.on_message = lambda _c, _u, message: received.put(message)
    client.connect("127.0.0.1", broker.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    client.publish("ecg/v1/ready", b"", qos=1).wait_for_publish(5)  # subscription is in place once this returns
    return client, received


def test_mute_is_published_applied_by_the_service_and_in_the_history(
    tmp_path: Path, broker: LocalMosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "alerts.sqlite3"
    config = tmp_path / "c.yaml"
    config.write_text(f"mqtt:\n  url: {broker.url}\nalerts:\n  store_path: {store}\n")
    client, received = _listen(broker, "ecg/v1/+/alert/mute/+")
    try:
        argv = ["alerts", "mute", "--config", str(config), "P001", "--reason", "known paroxysmal AF", "--for", "2h"]
        assert main.main([*argv, "--by", "nurse.kim"]) == 0
        message = received.get(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()
    assert message.topic == "ecg/v1/P001/alert/mute/nurse.kim"
    request = decode_mute(bytes(message.payload), "P001", "nurse.kim")
    assert (request.action, request.by, request.reason, request.duration_s) == (
        "mute",
        "nurse.kim",
        "known paroxysmal AF",
        7200.0,
    )
    settings = AlertSettings.model_validate({"store_path": str(store)})
    with AlertService(settings, None, lambda *_: None, Topics("ecg/v1"), clock=lambda: 1.0e9) as service:
        muted = service.mute(request)
    assert muted is not None and muted.until == 1.0e9 + 7200.0
    capsys.readouterr()
    assert main.main(["alerts", "history", "P001", "--store", str(store), "--mutes"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    row = json.loads(line)
    assert (row["action"], row["by"], row["reason"], row["at"]) == ("muted", "nurse.kim", "known paroxysmal AF", 1.0e9)


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--reason", "known AF", "--for", "48h"], "bad_field (field 'duration_s')"),
        (["--reason", "x" * 201, "--for", "2h"], "bad_field (field 'reason')"),
        (["--reason", "known AF", "--for", "2h", "--by", "a\u0007b"], "bad_user"),
    ],
)
def test_a_mute_the_agent_would_refuse_is_not_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], said: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("mqtt:\n  url: mqtt://127.0.0.1:9\n")  # nothing listens: a refusal must come first
    by = [] if "--by" in extra else ["--by", "nurse.kim"]
    assert main.main(["alerts", "mute", "--config", str(config), "P001", *extra, *by]) == 2
    assert f"refused: {said}" in capsys.readouterr().err


def test_unmute_and_durations(tmp_path: Path, broker: LocalMosquitto) -> None:
    from agent.alerts.cli import parse_duration

    assert [parse_duration(t) for t in ("2h", "90m", "45 min", "600", "600s", "1.5h")] == [
        7200.0,
        5400.0,
        2700.0,
        600.0,
        600.0,
        5400.0,
    ]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration("two hours")
    config = tmp_path / "c.yaml"
    config.write_text(f"mqtt:\n  url: {broker.url}\n")
    client, received = _listen(broker, "ecg/v1/+/alert/mute/+")
    try:
        assert main.main(["alerts", "unmute", "--config", str(config), "P001", "--by", "dr.lee"]) == 0
        message = received.get(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()
    assert decode_mute(bytes(message.payload), "P001", "dr.lee").action == "unmute"


def test_a_failed_connection_says_why_and_masks_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #19 item 6: the command printed the broker URL as configured, password included."""
    config = tmp_path / "c.yaml"
    config.write_text("mqtt:\n  url: mqtt://kim:S3cret-PW@127.0.0.1:9\n")  # nothing listens on port 9
    assert main.main(["alerts", "ack", "--config", str(config), "P001", "a" * 32]) == 1
    err = capsys.readouterr().err
    assert "cannot connect to mqtt://kim:***@127.0.0.1:9: connection refused" in err
    assert "S3cret" not in err
