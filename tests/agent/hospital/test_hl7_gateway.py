"""The HL7 gateway end to end on loopback: AlertService events reach an MLLP listener as PCD-04 messages, a PCD-05
``accepted`` acknowledges the alert in the store through the daemon's own ack path, and an absent or silent receiver
never holds the alert service up."""

from __future__ import annotations

import queue
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.alerts import Ack, AlertEvent, AlertService, AlertSettings
from agent.daemon import Agent, AlertWorker, NurseRequest
from agent.hospital import Hl7AlertGateway, HospitalSettings
from agent.settings import Settings, load_settings
from core.config import DEFAULT_CONFIG_PATH
from core.protocol import Topics

from ..alerts.alert_builders import evidence, forecast
from .alert_manager_stub import AlertManagerStub, alert_status


@dataclass
class Wire:
    """The MQTT side: every published alert topic, to show HL7 trouble never costs an MQTT alert."""

    topics: list[str] = field(default_factory=list)

    def __call__(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.topics.append(topic)


def hospital(port: int, **hl7: Any) -> HospitalSettings:
    base = {"enabled": True, "port": port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.2, "ack_timeout_s": 2.0}
    return HospitalSettings.model_validate(
        {"patients": {"P001": {"mrn": "MRN-0042", "unit": "ICU3", "bed": "12A"}}, "hl7": {**base, **hl7}}
    )


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
    return port


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@contextmanager
def running(
    tmp_path: Path, settings: HospitalSettings, wire: Wire | None = None
) -> Iterator[tuple[AlertService, Hl7AlertGateway, queue.Queue[NurseRequest]]]:
    """An AlertService whose listener is a started gateway; acks land in the daemon's kind of request queue."""
    requests: queue.Queue[NurseRequest] = queue.Queue(maxsize=1000)
    gateway = Hl7AlertGateway(settings, requests.put_nowait)
    alert_settings = AlertSettings.model_validate({"store_path": str(tmp_path / "alerts.sqlite3")})
    service = AlertService(alert_settings, None, wire or Wire(), Topics("ecg/v1"), listeners=[gateway.offer])
    gateway.start()
    try:
        yield service, gateway, requests
    finally:
        service.close()
        gateway.stop()


def raise_af(service: AlertService, patient_id: str = "P001") -> str:
    for p in (0.7, 0.8):
        service.on_forecast(patient_id, forecast(af=p, patient_id=patient_id), evidence())
    (alert,) = service.active(patient_id)
    return alert.alert_id


def answers(*first: str | None) -> Callable[[Any], str | None]:
    """The stub's ACK codes: ``first`` for the first messages, then CA."""
    codes = list(first)
    return lambda message: codes.pop(0) if codes else "CA"


def identity_facet(message: Any) -> Any:
    return message.children.get("OBX")[0]


def test_a_forecast_alert_reaches_the_listener_and_a_pcd05_acknowledges_it_in_the_store(tmp_path: Path) -> None:
    with AlertManagerStub() as manager, running(tmp_path, hospital(manager.port)) as (service, gateway, requests):
        alert_id = raise_af(service)
        message = manager.next_message()
        assert message.msh.msh_9.to_er7() == "ORU^R40^ORU_R40"
        assert message.pid.pid_3.to_er7() == "MRN-0042^^^HOSP^MR"
        assert message.obr.obr_3.to_er7() == f"{alert_id}^ECGCAST"
        assert [f.to_er7() for f in identity_facet(message).children.get("OBX_8")] == ["PL", "SA"]
        assert identity_facet(message).obx_5.to_er7() == service.active("P001")[0].explanation
        wait_for(lambda: gateway.stats().delivered == 1)

        departures: queue.SimpleQueue[str] = queue.SimpleQueue()
        worker = AlertWorker(service, requests, departures)  # the daemon's ack path, as MQTT acks take it
        worker.start()
        try:
            manager.send(alert_status("accepted", by="nurse.kim", control_id=message.msh.msh_10.to_er7()))
            wait_for(lambda: service.active("P001")[0].state == "acknowledged")
        finally:
            worker.stop()
        (stored,) = service.history("P001")
        assert (stored.state, stored.acknowledged_by) == ("acknowledged", "nurse.kim")
        update = manager.next_message()  # the acknowledgement is itself reported back: phase update
        phase = {obx.obx_3.cwe_2.to_er7(): obx.obx_5.to_er7() for obx in update.children.get("OBX")}
        assert phase["MDC_ATTR_ALARM_INACTIVATION_STATE"] == "alert-acknowledged"
        assert phase["MDC_ATTR_EVENT_PHASE"] == "update"


def test_a_pcd05_naming_the_alert_in_obr3_acknowledges_without_msa2(tmp_path: Path) -> None:
    with AlertManagerStub() as manager, running(tmp_path, hospital(manager.port)) as (service, _, requests):
        alert_id = raise_af(service, "P777")  # unmapped: PID-3 carries the stream id
        manager.next_message()
        manager.send(alert_status("Accepted", by="dr.lee", alert_id=alert_id))
        ack = requests.get(timeout=5)
        assert (ack.patient_id, ack.alert_id, ack.by) == ("P777", alert_id, "dr.lee")


def test_statuses_other_than_accepted_change_nothing(tmp_path: Path) -> None:
    with AlertManagerStub() as manager, running(tmp_path, hospital(manager.port)) as (service, _, requests):
        alert_id = raise_af(service)
        manager.next_message()
        for status in ("received", "delivered", "read", "rejected"):
            manager.send(alert_status(status, alert_id=alert_id))
        manager.send(alert_status("accepted", by=None, alert_id=alert_id))  # no PRT-5: nobody to record
        manager.send(alert_status("accepted", alert_id="not-ours-0001"))  # never reported: no patient known
        time.sleep(0.5)
        assert requests.empty()


def test_the_receiver_being_down_does_not_block_the_alert_service(tmp_path: Path) -> None:
    port, wire = free_port(), Wire()
    with running(tmp_path, hospital(port, queue_size=3), wire) as (service, gateway, _):
        started = time.monotonic()
        for n in range(6):  # six patients, six alerts: more than the queue holds
            raise_af(service, f"P{n:03d}")
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"the alert service took {elapsed:.1f} s with the HL7 receiver down"
        assert len(wire.topics) == 6  # every MQTT alert went out
        stats = gateway.stats()
        assert (stats.connected, stats.delivered) == (False, 0)
        assert stats.dropped == 3 and stats.queued == 3  # the three oldest were dropped, counted
        with AlertManagerStub(port) as manager:  # the receiver comes back: the newest three are delivered
            wait_for(lambda: gateway.stats().delivered == 3)
            patients = [manager.next_message().pid.pid_3.cx_1.to_er7() for _ in range(3)]
        assert patients == ["P003", "P004", "P005"]


def test_a_silent_receiver_gets_the_same_message_again_on_a_new_connection(tmp_path: Path) -> None:
    with (
        AlertManagerStub(answer=answers(None)) as manager,  # the first copy is never acknowledged
        running(tmp_path, hospital(manager.port, ack_timeout_s=0.5)) as (service, gateway, _),
    ):
        raise_af(service)
        first, second = manager.next_message(), manager.next_message()
        wait_for(lambda: gateway.stats().delivered == 1)
    assert first.msh.msh_10.to_er7() == second.msh.msh_10.to_er7()
    assert manager.connections >= 2


def test_a_refused_message_is_not_sent_again(tmp_path: Path) -> None:
    with (
        AlertManagerStub(answer=answers("AR")) as manager,
        running(tmp_path, hospital(manager.port)) as (service, gateway, _),
    ):
        raise_af(service, "P001")
        raise_af(service, "P002")
        wait_for(lambda: gateway.stats().delivered == 1)
        assert gateway.stats().refused == 1
        assert [manager.next_message().pid.pid_3.cx_1.to_er7() for _ in range(2)] == ["MRN-0042", "P002"]
        assert manager.received.empty()


def test_a_failing_listener_never_reaches_the_alert_path(tmp_path: Path) -> None:
    def broken(event: AlertEvent) -> None:
        raise RuntimeError("listener bug")

    wire = Wire()
    settings = AlertSettings.model_validate({"store_path": str(tmp_path / "alerts.sqlite3")})
    with AlertService(settings, None, wire, Topics("ecg/v1"), listeners=[broken]) as service:
        alert_id = raise_af(service)
        assert service.history("P001")[0].alert_id == alert_id
    assert wire.topics == ["ecg/v1/P001/alert"]


def test_stop_is_prompt_while_waiting_out_a_back_off(tmp_path: Path) -> None:
    settings = hospital(free_port(), reconnect_min_s=30.0, reconnect_max_s=60.0)
    with running(tmp_path, settings) as (service, gateway, _):
        raise_af(service)
        time.sleep(0.3)  # the first connect failed: the gateway now waits 30 s
        started = time.monotonic()
    assert time.monotonic() - started < 2.0
    assert not gateway.alive


def agent_settings(**hospital_section: Any) -> Settings:
    data = load_settings(DEFAULT_CONFIG_PATH, env={}).model_dump()
    data["http"]["port"] = 0
    data["hospital"] = hospital_section or data["hospital"]
    return Settings.model_validate(data)


def test_the_daemon_puts_pcd05_acceptances_on_its_one_ack_queue(tmp_path: Path) -> None:
    off = Agent(agent_settings(), alert_store=tmp_path / "off.sqlite3")
    assert off.hl7 is None and off.alerts is not None  # off by default
    off.alerts.close()
    with AlertManagerStub() as manager:
        section = hospital(manager.port).model_dump()
        agent = Agent(agent_settings(**section), alert_store=tmp_path / "alerts.sqlite3")
        assert agent.hl7 is not None and agent.alerts is not None
        agent.hl7.start()  # the rest of the daemon (MQTT, model) is not needed for this path
        try:
            alert_id = raise_af(agent.alerts)
            sent = manager.next_message()
            manager.send(alert_status("accepted", by="nurse.kim", control_id=sent.msh.msh_10.to_er7()))
            assert agent.acks.get(timeout=5) == Ack("P001", alert_id, "nurse.kim", None)
        finally:
            agent.hl7.stop()
            agent.alerts.close()
