"""``cluster init`` against a private RabbitMQ 4: idempotent, partitioned by patient, unroutable waves kept."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pika
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from agent.cluster import PrivateRabbitMQ
from main import main

pytestmark = pytest.mark.cluster


def write_config(tmp_path: Path, rabbit: PrivateRabbitMQ, scope: str, partitions: int) -> Path:
    stream = {
        "amqp_port": rabbit.ports.amqp,
        "stream_port": rabbit.ports.stream,
        "partitions": partitions,
        "super_stream": scope,
        "unroutable_exchange": f"{scope}.unroutable",
    }
    path = tmp_path / f"cluster-{partitions}.yaml"
    path.write_text(yaml.safe_dump({"ingest": {"superstream": stream}, "buffer": {"minutes": 1}}))
    return path


def publish(rabbit: PrivateRabbitMQ, topics: list[str]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", rabbit.ports.mqtt)
    client.loop_start()
    for topic in topics:
        client.publish(topic, json.dumps({"topic": topic}), qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


def message_counts(rabbit: PrivateRabbitMQ, queues: list[str]) -> dict[str, int]:
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", rabbit.ports.amqp))
    try:
        channel = connection.channel()
        return {q: channel.queue_declare(q, passive=True).method.message_count for q in queues}
    finally:
        connection.close()


def test_init_is_idempotent_partitions_by_patient_and_keeps_unroutable_waves(
    rabbit: PrivateRabbitMQ, scope: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, rabbit, scope, partitions=4)
    # The MQTT plugin publishes to one exchange (the broker's mqtt.exchange); this test's topology feeds from it.
    ingress = rabbit.mqtt_exchange
    config.write_text(config.read_text().replace("partitions: 4", f"partitions: 4\n    ingress_exchange: {ingress}"))
    assert main(["cluster", "init", "--config", str(config)]) == 0
    assert main(["cluster", "init", "--config", str(config)]) == 0  # again: nothing changes, no error
    assert f"super stream {scope}: 4 partitions, retention 360 s" in capsys.readouterr().out

    publish(rabbit, [f"ecg/v1/P{i}/wave" for i in range(20)] + ["ecg/v1/a.b/wave", "ecg/v1/P1/forecast"])
    streams = [f"{scope}-{i}" for i in range(4)]
    deadline = time.monotonic() + 10
    while sum(message_counts(rabbit, streams).values()) < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    counts = message_counts(rabbit, [*streams, f"{scope}.unroutable"])
    assert sum(counts[s] for s in streams) == 20  # every wave of a valid patient id reached one partition
    assert sum(1 for s in streams if counts[s]) >= 2  # patients are spread (20 ids over 4 partitions)
    assert counts[f"{scope}.unroutable"] == 1  # a patient id with '.' cannot route: kept, not silently dropped

    smaller = write_config(tmp_path, rabbit, scope, partitions=2)
    smaller.write_text(smaller.read_text().replace("partitions: 2", f"partitions: 2\n    ingress_exchange: {ingress}"))
    assert main(["cluster", "init", "--config", str(smaller)]) == 1
    assert "partitions are never removed" in capsys.readouterr().err
