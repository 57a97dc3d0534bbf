"""Issue #23 item 2: a forecast as a FHIR R4 RiskAssessment, its measured evidence as Observations and wave samples
as SampledData, each validated against the R4 models of fhir.resources (its ``R4B`` subpackage: the package's
default is R5). The resources are built from the forecast message as the station receives it; the assertions read
what the library parsed (``r4``), so a field it did not recognise cannot pass unseen."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import numpy as np
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.riskassessment import RiskAssessment
from fhir.resources.R4B.sampleddata import SampledData

from agent.forecast_message import ForecastMessage, ForecastWindow, decode_forecast, forecast_message
from agent.hospital import HospitalSettings, fhir
from core.measurements import measure_leads
from core.protocol import WaveChunk
from llm_runtime.forecast import Forecast
from llm_runtime.prompts import ARRHYTHMIAS
from simulators import generate_scenario

from .fhir_builders import ONSET
from .fhir_builders import model_forecast as forecast_with

FS = 250.0
PUBLISHED_AT = 1_700_000_000.25  # 2023-11-14T22:13:20.250Z
HOSPITAL = HospitalSettings.model_validate({"patients": {"P001": {"mrn": "MRN-0042", "unit": "ICU3", "bed": "12A"}}})
RATIONALE = "Irregular RR with frequent PACs over the last minute."
SNOMED = {"af": "49436004", "flutter": "5370000", "vt": "25569003"}
MS = {"unit": "ms", "system": "http://unitsofmeasure.org", "code": "ms"}

R4Model = type[RiskAssessment] | type[Observation] | type[Bundle] | type[SampledData] | type[OperationOutcome]


def r4(model: R4Model, resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` as the R4 model parsed it (raises pydantic's ValidationError when it is not valid R4)."""
    dumped: dict[str, Any] = model.model_validate(resource).model_dump(mode="json", exclude_none=True)
    return dumped


def instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def ectopic_strip() -> np.ndarray:
    """30 s of simulated sinus rhythm with ectopic beats, (n, 2) mV: measurable HR, QRS and PVC/PAC counts."""
    record = generate_scenario("sinus_ectopy", seed=2, minutes=0.5, fs=FS, leads=("II", "V1"), noise="low")
    return np.asarray(record.p_signal, dtype=np.float32)


def model_forecast(patient_id: str) -> Forecast:
    return forecast_with(patient_id, RATIONALE)


def received(patient_id: str = "P001", *, measured: bool = True, **fields: Any) -> ForecastMessage:
    """A forecast message as the agent publishes it (``fields`` changed on the wire), parsed as the station does."""
    message = forecast_message(
        model_forecast(patient_id),
        published_at=PUBLISHED_AT,
        window=ForecastWindow(start=1.7e9, end=1.7e9 + 300.0, segment=1),
        signal_quality={"II": "good", "V1": "good"},
        measurements=measure_leads(ectopic_strip(), FS, ("II", "V1")) if measured else None,
    )
    body = {**json.loads(message.payload()), **fields}
    return decode_forecast(json.dumps(body).encode(), patient_id)


def test_the_outcomes_are_the_forecasts_arrhythmias() -> None:
    assert set(fhir.OUTCOMES) == set(ARRHYTHMIAS)
    assert {k: code for k, (code, _) in fhir.OUTCOMES.items()} == SNOMED


def test_a_forecast_is_an_r4_risk_assessment_with_its_probabilities_horizons_and_subject() -> None:
    assessment = r4(RiskAssessment, fhir.forecast_resources(received(), HOSPITAL).risk_assessment)

    assert assessment["status"] == "final"
    assert instant(assessment["occurrenceDateTime"]) == pytest.approx(PUBLISHED_AT)
    identifier = assessment["subject"]["identifier"]
    assert identifier["value"] == "MRN-0042" and identifier["type"]["coding"][0]["code"] == "MR"
    assert identifier["assigner"]["display"] == HOSPITAL.hl7.assigning_authority
    assert "ICU3" in assessment["subject"]["display"] and "12A" in assessment["subject"]["display"]

    got = {}
    for prediction in assessment["prediction"]:
        (coding,) = prediction["outcome"]["coding"]
        assert coding["system"] == "http://snomed.info/sct"
        low, high = prediction["whenRange"]["low"], prediction["whenRange"]["high"]
        assert (low["value"], low["code"], high["code"], high["system"]) == (0, "s", "s", "http://unitsofmeasure.org")
        got[(coding["code"], high["value"])] = prediction["probabilityDecimal"]
    expected = {(SNOMED[a], h): p for h, per_h in ONSET.items() for a, p in per_h.items()}
    assert got == pytest.approx(expected)

    notes = [note["text"] for note in assessment["note"]]
    assert notes[0].startswith(fhir.DISCLAIMER) and any(RATIONALE in note for note in notes)
    assert "ecgcast-test" in assessment["method"]["text"]


def test_the_measured_evidence_is_observations_the_risk_assessment_rests_on() -> None:
    message = received()
    measured = message.measurements
    assert measured is not None and measured.hr_bpm is not None and measured.qrs_width_ms is not None
    assert measured.pvc_count > 0 and measured.pac_count > 0  # the simulated ectopy was measured
    resources = fhir.forecast_resources(message, HOSPITAL)
    by_code = {}
    for resource in resources.observations:
        observation = r4(Observation, resource)
        assert observation["subject"] == resources.risk_assessment["subject"] and observation["status"] == "final"
        by_code[observation["code"]["coding"][0]["code"]] = observation

    heart_rate = by_code["8867-4"]  # LOINC heart rate, UCUM per minute, a vital sign
    assert heart_rate["code"]["coding"][0]["system"] == "http://loinc.org"
    assert heart_rate["valueQuantity"]["code"] == "/min"
    assert heart_rate["valueQuantity"]["value"] == pytest.approx(measured.hr_bpm, abs=1e-3)
    assert heart_rate["category"][0]["coding"][0]["code"] == "vital-signs"
    pvc, pac = by_code["pvc-burden"]["valueQuantity"], by_code["pac-burden"]["valueQuantity"]
    assert pvc["value"] == pytest.approx(100 * measured.pvc_count / measured.n_beats, abs=1e-3) and pvc["code"] == "%"
    assert pac["value"] == pytest.approx(100 * measured.pac_count / measured.n_beats, abs=1e-3)
    assert by_code["ventricular-runs"]["valueInteger"] == measured.ventricular_run_count
    assert by_code["8633-0"]["valueQuantity"] == {"value": measured.qrs_width_ms, **MS}  # LOINC QRS duration

    basis = [b["reference"] for b in r4(RiskAssessment, resources.risk_assessment)["basis"]]
    assert basis == [f"urn:uuid:{o['id']}" for o in resources.observations]
    period = heart_rate["effectivePeriod"]
    assert instant(period["end"]) == pytest.approx(PUBLISHED_AT)
    assert instant(period["start"]) == pytest.approx(PUBLISHED_AT - measured.duration_s, abs=1e-3)


def test_an_unmapped_patient_is_named_by_its_stream_id_never_a_guessed_mrn() -> None:
    resources = fhir.forecast_resources(received("P900"), HOSPITAL)
    identifier = r4(RiskAssessment, resources.risk_assessment)["subject"]["identifier"]
    assert (identifier["system"], identifier["value"]) == (fhir.PATIENT_ID_SYSTEM, "P900")
    assert identifier["type"]["coding"][0]["code"] == "PI"
    assert all(o["subject"]["identifier"]["value"] == "P900" for o in resources.observations)


def test_without_measurements_or_rationale_there_is_no_basis_and_the_disclaimer_stays() -> None:
    note = "generation malformed (degenerate repetition); scored result only"
    resources = fhir.forecast_resources(received(measured=False, explanation=None, explanation_note=note), HOSPITAL)
    assessment = r4(RiskAssessment, resources.risk_assessment)
    assert resources.observations == () and "basis" not in assessment
    notes = [n["text"] for n in assessment["note"]]
    assert notes[0].startswith(fhir.DISCLAIMER) and notes[1:] == [note]


def test_a_forged_time_no_calendar_holds_leaves_the_times_out_not_the_resources() -> None:
    resources = fhir.forecast_resources(received(published_at=1e300), HOSPITAL)
    assessment = r4(RiskAssessment, resources.risk_assessment)
    assert "occurrenceDateTime" not in assessment and all("time" not in n for n in assessment["note"])
    for resource in resources.observations:
        observation = r4(Observation, resource)
        assert "effectivePeriod" not in observation and "issued" not in observation


def test_the_same_forecast_always_gets_the_same_ids_and_another_forecast_others() -> None:
    first, again = fhir.forecast_resources(received(), HOSPITAL), fhir.forecast_resources(received(), HOSPITAL)
    later = fhir.forecast_resources(received(published_at=PUBLISHED_AT + 60), HOSPITAL)
    assert first == again
    ids = {r["id"] for r in (first.risk_assessment, *first.observations)}
    assert len(ids) == 1 + len(first.observations)
    assert not ids & {r["id"] for r in (later.risk_assessment, *later.observations)}


def test_sampled_data_has_its_period_in_milliseconds_and_invalid_samples_as_e() -> None:
    samples = np.array([0.0, 1.25, -0.5004, np.nan, np.inf, 0.0005], dtype=np.float64)
    data = r4(SampledData, fhir.sampled_data(samples, 250.0))
    assert (data["period"], data["factor"], data["dimensions"]) == (4.0, fhir.SAMPLE_FACTOR_MV, 1)
    assert data["origin"] == {"value": 0, "unit": "mV", "system": "http://unitsofmeasure.org", "code": "mV"}
    tokens = data["data"].split(" ")
    assert tokens[3:5] == ["E", "E"]
    decoded = [int(t) * fhir.SAMPLE_FACTOR_MV for t in tokens if t != "E"]
    assert decoded == pytest.approx([0.0, 1.25, -0.5004, 0.0005], abs=fhir.SAMPLE_FACTOR_MV / 2)
    assert fhir.sampled_data(np.zeros(3), 360.0)["period"] == pytest.approx(1000 / 360)
    assert "data" not in fhir.sampled_data(np.zeros(0), 250.0)


@pytest.mark.parametrize(("samples", "fs"), [(np.zeros((2, 3)), 250.0), (np.zeros(3), 0.0), (np.zeros(3), np.nan)])
def test_sampled_data_refuses_what_is_not_one_lead_at_a_real_rate(samples: np.ndarray, fs: float) -> None:
    with pytest.raises(ValueError, match=r"1-D|positive"):
        fhir.sampled_data(samples, fs)


def test_a_wave_message_is_an_ecg_observation_with_a_sampled_data_component_per_lead() -> None:
    block = np.ascontiguousarray(ectopic_strip()[:250].T)
    block[1, 10] = np.nan  # one invalid V1 sample
    chunk = WaveChunk("P001", "dev-7", 42, PUBLISHED_AT, FS, ("II", "V1"), block)
    observation = r4(Observation, fhir.wave_observation(chunk, HOSPITAL))
    assert instant(observation["effectiveDateTime"]) == pytest.approx(PUBLISHED_AT)
    assert observation["subject"]["identifier"]["value"] == "MRN-0042"
    leads = {c["code"]["coding"][0]["code"]: c["valueSampledData"] for c in observation["component"]}
    assert set(leads) == {"131330", "131331"}  # MDC_ECG_ELEC_POTL_II, _V1
    assert all(data["period"] == 4.0 for data in leads.values())
    v1 = leads["131331"]["data"].split(" ")
    assert len(v1) == 250 and v1[10] == "E"

    forged = WaveChunk("P001", "dev-7", 43, 1e20, FS, ("ECG",), block[:1])  # no calendar holds this device time
    observation = r4(Observation, fhir.wave_observation(forged, HOSPITAL))
    assert "effectiveDateTime" not in observation and observation["component"][0]["code"]["text"] == "ECG lead ECG"


def test_search_names_a_patient_by_stream_id_or_mrn() -> None:
    def patient(name: str, value: str) -> str | None:
        return fhir.search_patient({name: [value]}, HOSPITAL)

    assert patient("patient", "P001") == patient("patient", "Patient/P001") == "P001"
    assert patient("patient:identifier", "MRN-0042") == patient("patient:identifier", "HOSP|MRN-0042") == "P001"
    assert patient("patient:identifier", f"{fhir.PATIENT_ID_SYSTEM}|P900") == "P900"
    assert patient("patient:identifier", "MRN-9999") is None
    for query in ({}, {"patient": ["P001", "P002"]}, {"patient": ["P001"], "patient:identifier": ["MRN-0042"]}):
        with pytest.raises(ValueError, match="exactly one"):
            fhir.search_patient(query, HOSPITAL)


def test_a_searchset_and_an_operation_outcome_are_valid_r4() -> None:
    resources = fhir.forecast_resources(received(), HOSPITAL)
    bundle = r4(Bundle, fhir.searchset([resources.risk_assessment], resources.observations))
    assert (bundle["type"], bundle["total"]) == ("searchset", 1)
    modes = [entry["search"]["mode"] for entry in bundle["entry"]]
    assert modes == ["match"] + ["include"] * len(resources.observations)
    assert all(entry["fullUrl"] == f"urn:uuid:{entry['resource']['id']}" for entry in bundle["entry"])
    assert r4(Bundle, fhir.searchset([]))["total"] == 0
    outcome = r4(OperationOutcome, fhir.operation_outcome("invalid", "give a patient"))
    assert outcome["issue"] == [{"severity": "error", "code": "invalid", "diagnostics": "give a patient"}]
