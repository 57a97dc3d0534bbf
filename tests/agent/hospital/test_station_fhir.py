"""Issue #23 item 2: the station serves each patient's latest forecast as FHIR R4 (``GET /fhir/RiskAssessment`` and
``GET /fhir/Observation``, searchset Bundles, ``application/fhir+json``) behind its own sign-in, validated against
fhir.resources' R4 models. The forecast arrives as the agent publishes it, over the station's MQTT feed."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from paho.mqtt.enums import CallbackAPIVersion

from agent.forecast_message import ForecastMessage, ForecastWindow, forecast_message
from agent.hospital import HospitalSettings, fhir
from agent.local_broker import LocalMosquitto
from agent.station import StationServer, StationSettings, hash_password
from agent.station._http import StationHttp
from core.measurements import measure
from core.protocol import Topics
from core.settings import MqttSettings

from .fhir_builders import model_forecast

PASSWORD = "pw-for-fhir-tests"
TOPICS = Topics("ecg/v1")
HOSPITAL = HospitalSettings.model_validate({"patients": {"P001": {"mrn": "MRN-0042", "unit": "ICU3", "bed": "12A"}}})


def published(patient_id: str) -> ForecastMessage:
    """A forecast message as the agent builds it, with measurements of a regular 75 bpm strip."""
    model = model_forecast(patient_id)
    t = np.arange(30 * 250) / 250.0
    strip = sum(np.exp(-(((t - b) / 0.012) ** 2)) for b in np.arange(0.4, 30, 0.8))
    return forecast_message(
        model,
        published_at=time.time(),
        window=ForecastWindow(start=1.7e9, end=1.7e9 + 300.0, segment=1),
        signal_quality={"II": "good"},
        measurements=measure(strip, 250.0),
    )


def publish_retained(broker: LocalMosquitto, message: ForecastMessage) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"agent-{message.patient_id}")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        info = client.publish(TOPICS.forecast(message.patient_id), message.payload(), qos=1, retain=True)
        info.wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def wait_for_forecast(station: StationServer, patient_id: str) -> None:
    deadline = time.monotonic() + 10
    while station.state.forecast(patient_id) is None:
        assert time.monotonic() < deadline, f"the station never received {patient_id}'s forecast"
        time.sleep(0.05)


def get(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
    """(status, Content-Type, JSON body) of a GET."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    res = conn.getresponse()
    return res.status, res.getheader("Content-Type") or "", json.loads(res.read())


def session(url: str) -> dict[str, str]:
    """The cookie header of a signed-in ``kim``."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    body = f"username=kim&password={PASSWORD}"
    conn.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
    set_cookie = conn.getresponse().getheader("Set-Cookie") or ""
    assert set_cookie, "sign-in failed"
    return {"Cookie": set_cookie.split(";")[0]}


def bundle_of(body: Any) -> dict[str, Any]:
    """The Bundle as fhir.resources' R4 model parsed it."""
    parsed: dict[str, Any] = Bundle.model_validate(body).model_dump(mode="json", exclude_none=True)
    return parsed


@pytest.fixture
def station(broker: LocalMosquitto) -> Iterator[StationServer]:
    settings = StationSettings.model_validate({"enabled": True, "port": 0, "users": {"kim": hash_password(PASSWORD)}})
    with StationServer(settings, MqttSettings(url=broker.url), TOPICS) as server:
        assert server.feed.connection.wait_connected(10)
        publish_retained(broker, published("P001"))
        wait_for_forecast(server, "P001")
        yield server


def test_fhir_needs_a_session_like_every_other_api(station: StationServer) -> None:
    for path in ("/fhir/RiskAssessment?patient=P001", "/fhir/Observation?patient=P001"):
        status, _, _ = get(station.url, path)
        assert status == 401, path


def test_the_latest_forecast_is_a_risk_assessment_bundle_with_its_evidence(station: StationServer) -> None:
    status, content_type, body = get(station.url, "/fhir/RiskAssessment?patient=P001", session(station.url))
    assert (status, content_type) == (200, "application/fhir+json")
    bundle = bundle_of(body)
    assert (bundle["type"], bundle["total"]) == ("searchset", 1)
    first, *included = bundle["entry"]
    assessment = first["resource"]
    assert (first["search"]["mode"], assessment["resourceType"], assessment["status"]) == (
        "match",
        "RiskAssessment",
        "final",
    )
    probabilities = {
        (p["outcome"]["coding"][0]["code"], p["whenRange"]["high"]["value"]): p["probabilityDecimal"]
        for p in assessment["prediction"]
    }
    assert probabilities[("49436004", 300)] == pytest.approx(0.41)  # SNOMED CT atrial fibrillation, within 300 s
    assert probabilities[("25569003", 60)] == pytest.approx(0.07)  # ventricular tachycardia, within 60 s
    # StationServer passes no hospital identity map (yet): the subject is the stream id, typed PI
    assert assessment["subject"]["identifier"]["value"] == "P001"
    assert assessment["subject"]["identifier"]["system"] == fhir.PATIENT_ID_SYSTEM
    assert {e["search"]["mode"] for e in included} == {"include"}
    assert [b["reference"] for b in assessment["basis"]] == [e["fullUrl"] for e in included]


def test_the_observation_search_returns_the_measured_evidence(station: StationServer) -> None:
    status, content_type, body = get(station.url, "/fhir/Observation?patient=Patient/P001", session(station.url))
    assert (status, content_type) == (200, "application/fhir+json")
    bundle = bundle_of(body)
    observations = [e["resource"] for e in bundle["entry"]]
    assert bundle["total"] == len(observations) > 0
    heart_rate = next(o for o in observations if o["code"]["coding"][0]["code"] == "8867-4")
    assert (
        heart_rate["valueQuantity"]["value"] == pytest.approx(75, abs=1)
        and heart_rate["valueQuantity"]["code"] == "/min"
    )


def test_an_unknown_patient_is_an_empty_bundle_and_a_bad_search_an_operation_outcome(station: StationServer) -> None:
    cookie = session(station.url)
    status, _, body = get(station.url, "/fhir/RiskAssessment?patient=P404", cookie)
    assert status == 200 and bundle_of(body)["total"] == 0 and "entry" not in body
    for path, code in (("/fhir/RiskAssessment", 400), ("/fhir/Observation?patient=", 400), ("/fhir/Patient?x=1", 404)):
        status, content_type, body = get(station.url, path, cookie)
        assert (status, content_type) == (code, "application/fhir+json"), path
        assert OperationOutcome.model_validate(body).issue[0].severity == "error"


def test_with_the_hospital_identity_map_the_subject_is_the_mrn(station: StationServer) -> None:
    mapped = StationHttp(station.settings, station.state, station.hub, station.feed, hospital=HOSPITAL)
    mapped.start()
    try:
        query = quote("patient:identifier") + "=MRN-0042"
        status, _, body = get(mapped.url, f"/fhir/RiskAssessment?{query}", session(mapped.url))
    finally:
        mapped.close()
    assert status == 200
    (assessment, *observations) = [e["resource"] for e in bundle_of(body)["entry"]]
    identifier = assessment["subject"]["identifier"]
    assert (identifier["value"], identifier["type"]["coding"][0]["code"]) == ("MRN-0042", "MR")
    assert all(o["subject"] == assessment["subject"] for o in observations)
