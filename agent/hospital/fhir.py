"""FHIR R4 resources of a forecast and its evidence: a ``RiskAssessment`` per forecast, an ``Observation`` per measured
number it rests on, and ``Observation.valueSampledData`` for waveform samples (docs/INTEGRATION.md).

Why plain dicts: the agent and the station must run without a FHIR model library, and the JSON is small and fixed.
The tests validate every shape here against a maintained R4 model library (``fhir.resources.R4B``), so a field name
or a cardinality that drifts from the standard fails there, not at a hospital's interface engine.

Who the patient is comes from ``hospital.patients``, the identity every hospital interface reads: a mapped patient is
referenced by MRN (identifier type ``MR``, assigner the HL7 assigning authority, as PID-3 names them); an unmapped
one by its stream id under :data:`PATIENT_ID_SYSTEM` (type ``PI``), never by a guessed MRN. The station holds no
Patient resources, so the reference is logical (``Reference.identifier``), not a URL.

Resource ids are name-based UUIDs of what they describe, so the same forecast (a retained message delivered again)
always gets the same ids, and references between resources are ``urn:uuid:`` ones that resolve inside a Bundle.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from agent.forecast_message import ForecastMessage
from core.measurements import Measurements
from core.protocol import WaveChunk
from llm_runtime.prompts import ARRHYTHMIAS

from .settings import HospitalSettings

__all__ = [
    "DISCLAIMER",
    "FHIR_JSON",
    "MEASUREMENT_SYSTEM",
    "OUTCOMES",
    "PATIENT_ID_SYSTEM",
    "SAMPLE_FACTOR_MV",
    "FhirJson",
    "ForecastResources",
    "fhir_instant",
    "forecast_resources",
    "operation_outcome",
    "patient_reference",
    "sampled_data",
    "search_patient",
    "searchset",
    "wave_observation",
]

FhirJson = dict[str, Any]
"""One FHIR resource or element as JSON-ready dicts and lists."""

FHIR_JSON: Final = "application/fhir+json"
SNOMED: Final = "http://snomed.info/sct"
LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
MDC: Final = "urn:oid:2.16.840.1.113883.6.24"  # ISO/IEEE 11073-10101 nomenclature, as the FHIR ECG example codes leads
V2_IDENTIFIER_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
OBSERVATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
PATIENT_ID_SYSTEM: Final = "urn:ecgcast:patient-id"
"""Identifier system of a stream's ``patient_id``: the subject of a patient not in ``hospital.patients``."""
MEASUREMENT_SYSTEM: Final = "urn:ecgcast:measurement"
"""Local code system of the measured numbers that have no LOINC term (ectopy burden, RR irregularity, runs)."""
SAMPLE_FACTOR_MV: Final = 0.001
"""SampledData ``factor``: samples are written as whole microvolts, finer than any ECG front end resolves."""

DISCLAIMER: Final = (
    "Advisory forecast by an ECG language model: the probability that an arrhythmia starts within each horizon. "
    "It is a prediction, not a diagnosis of the present rhythm; confirm at the bedside before acting."
)

OUTCOMES: Final[dict[str, tuple[str, str]]] = {
    "af": ("49436004", "Atrial fibrillation (disorder)"),
    "flutter": ("5370000", "Atrial flutter (disorder)"),
    "vt": ("25569003", "Ventricular tachycardia (disorder)"),
}
"""Forecast arrhythmia key (``Forecast.onset_probs``) -> SNOMED CT concept of the predicted outcome."""

_LEAD_CODES: Final[dict[str, tuple[str, str]]] = {
    "I": ("131329", "MDC_ECG_ELEC_POTL_I"),
    "II": ("131330", "MDC_ECG_ELEC_POTL_II"),
    "III": ("131389", "MDC_ECG_ELEC_POTL_III"),
    "aVR": ("131390", "MDC_ECG_ELEC_POTL_AVR"),
    "aVL": ("131391", "MDC_ECG_ELEC_POTL_AVL"),
    "aVF": ("131392", "MDC_ECG_ELEC_POTL_AVF"),
    **{f"V{n}": (str(131330 + n), f"MDC_ECG_ELEC_POTL_V{n}") for n in range(1, 7)},
}
_UNSPECIFIED_LEAD: Final = ("131328", "MDC_ECG_ELEC_POTL")  # ECG, ECG1, ECG2: a lead the device does not name
_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:ecgcast:fhir")


@dataclass(frozen=True)
class ForecastResources:
    """One forecast in FHIR: the RiskAssessment and the Observations its ``basis`` references (same ids each time)."""

    risk_assessment: FhirJson
    observations: tuple[FhirJson, ...]


def forecast_resources(forecast: ForecastMessage, hospital: HospitalSettings) -> ForecastResources:
    """The RiskAssessment of ``forecast`` with its measured evidence as Observations."""
    subject = patient_reference(forecast.patient_id, hospital)
    key = _resource_id("forecast", forecast.patient_id, repr(forecast.published_at), repr(forecast.t_forecast))
    measured = forecast.measurements
    observations = tuple(_measurement_observations(measured, key, subject, forecast.published_at) if measured else ())
    return ForecastResources(_risk_assessment(forecast, key, subject, observations), observations)


def patient_reference(patient_id: str, hospital: HospitalSettings) -> FhirJson:
    """The subject of every resource about ``patient_id``: its MRN when mapped, else its stream id (type PI)."""
    identity = hospital.identity(patient_id)
    if identity is None:
        identifier = {"type": _identifier_type("PI"), "system": PATIENT_ID_SYSTEM, "value": patient_id}
        return {"identifier": identifier, "display": f"ECG stream {patient_id} (not in hospital.patients)"}
    identifier = {
        "use": "usual",
        "type": _identifier_type("MR"),
        "value": identity.mrn,
        "assigner": {"display": hospital.hl7.assigning_authority},
    }
    place = ", ".join(part for part in (identity.unit, f"bed {identity.bed}" if identity.bed else None) if part)
    return {"identifier": identifier, "display": f"MRN {identity.mrn}" + (f" ({place})" if place else "")}


def _identifier_type(code: str) -> FhirJson:
    names = {"MR": "Medical record number", "PI": "Patient internal identifier"}
    return {"coding": [{"system": V2_IDENTIFIER_TYPE, "code": code, "display": names[code]}]}


def _risk_assessment(forecast: ForecastMessage, key: str, subject: FhirJson, basis: Sequence[FhirJson]) -> FhirJson:
    """One prediction per (arrhythmia, horizon) from ``onset_probs``: P(onset within 0..h s of the forecast). The
    rhythm distribution at +h (``rhythm_probs``) is not an onset risk, so it is left to the forecast message."""
    resource: FhirJson = {
        "resourceType": "RiskAssessment",
        "id": key,
        "status": "final",
        "method": {"text": f"ECG language model {forecast.model_id} {forecast.model_version}"},
        "code": {"text": "Arrhythmia onset forecast"},
        "subject": subject,
        "occurrenceDateTime": _instant_or_none(forecast.published_at),
        "prediction": _predictions(forecast),
        "note": _notes(forecast),
    }
    if basis:
        resource["basis"] = [{"reference": f"urn:uuid:{o['id']}", "display": o["code"]["text"]} for o in basis]
    return _without_none(resource)


def _predictions(forecast: ForecastMessage) -> list[FhirJson]:
    """Shortest horizon first, each with af, flutter, vt (the order of :data:`OUTCOMES`)."""
    by_horizon = sorted(forecast.onset_probs.items())
    return [_prediction(arrhythmia, h, probs[arrhythmia]) for h, probs in by_horizon for arrhythmia in OUTCOMES]


def _prediction(arrhythmia: str, horizon_s: int, probability: float) -> FhirJson:
    code, display = OUTCOMES[arrhythmia]
    return {
        "outcome": {
            "coding": [{"system": SNOMED, "code": code, "display": display}],
            "text": f"Onset of {ARRHYTHMIAS[arrhythmia]}",
        },
        "probabilityDecimal": probability,
        "whenRange": {"low": _seconds(0), "high": _seconds(horizon_s)},
    }


def _seconds(value: float) -> FhirJson:
    return {"value": value, "unit": "s", "system": UCUM, "code": "s"}


def _notes(forecast: ForecastMessage) -> list[FhirJson]:
    """The disclaimer always; the generated rationale and the note on a dropped one when the forecast has them."""
    texts = [f"{DISCLAIMER} The model read {forecast.window_s} s of ECG."]
    if forecast.explanation:
        texts.append(f"Rationale (generated by the model): {forecast.explanation}")
    if forecast.explanation_note:
        texts.append(forecast.explanation_note)
    when = _instant_or_none(forecast.published_at)
    return [_without_none({"time": when, "text": text}) for text in texts]


@dataclass(frozen=True)
class _Measure:
    """One measured number as an Observation: its code, category and how to read its ``value[x]``."""

    key: str
    code: FhirJson
    category: str
    value: Callable[[Measurements], FhirJson | None]  # None: not measurable on this strip, so no Observation


def _loinc(code: str, display: str) -> FhirJson:
    return {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display}


def _local(code: str, text: str) -> FhirJson:
    return {"coding": [{"system": MEASUREMENT_SYSTEM, "code": code, "display": text}], "text": text}


def _quantity(value: float | None, unit: str, ucum: str) -> FhirJson | None:
    if value is None or not math.isfinite(value):
        return None
    return {"valueQuantity": {"value": round(value, 3), "unit": unit, "system": UCUM, "code": ucum}}


def _burden(count: int, beats: int) -> FhirJson | None:
    """A share of beats in percent; none without beats (0 of 0 is not a burden of 0 %)."""
    return _quantity(100.0 * count / beats, "%", "%") if beats else None


def _count(value: int, beats: int) -> FhirJson | None:
    return {"valueInteger": value} if beats else None


MEASURES: Final[tuple[_Measure, ...]] = (
    _Measure(
        "hr", _loinc("8867-4", "Heart rate"), "vital-signs", lambda m: _quantity(m.hr_bpm, "beats/minute", "/min")
    ),
    _Measure("qrs", _loinc("8633-0", "QRS duration"), "procedure", lambda m: _quantity(m.qrs_width_ms, "ms", "ms")),
    _Measure(
        "rr-irregularity",
        _local("rr-irregularity", "RR irregularity (RMSSD of NN intervals / mean NN)"),
        "procedure",
        lambda m: _quantity(m.rr_irregularity, "1", "1"),
    ),
    _Measure(
        "pvc-burden",
        _local("pvc-burden", "PVC burden (premature ventricular complexes, share of beats)"),
        "procedure",
        lambda m: _burden(m.pvc_count, m.n_beats),
    ),
    _Measure(
        "pac-burden",
        _local("pac-burden", "PAC burden (premature atrial complexes, share of beats)"),
        "procedure",
        lambda m: _burden(m.pac_count, m.n_beats),
    ),
    _Measure(
        "couplets",
        _local("couplets", "Ventricular couplets (runs of exactly two ventricular beats)"),
        "procedure",
        lambda m: _count(m.couplet_count, m.n_beats),
    ),
    _Measure(
        "ventricular-runs",
        _local("ventricular-runs", "Ventricular runs (three or more consecutive ventricular beats)"),
        "procedure",
        lambda m: _count(m.ventricular_run_count, m.n_beats),
    ),
)
"""What the forecast message's ``measurements`` become, in this order."""


def _measurement_observations(
    measured: Measurements, forecast_id: str, subject: FhirJson, published_at: float
) -> list[FhirJson]:
    """An Observation per measurable number. The strip ended when the forecast was made: its period is taken back
    from the publish time (the message's ``window`` is on the device clock, which need not be wall time)."""
    start, end = _instant_or_none(published_at - measured.duration_s), _instant_or_none(published_at)
    common = _without_none(
        {
            "subject": subject,
            "effectivePeriod": {"start": start, "end": end} if start and end else None,
            "issued": end,
            "method": {"text": f"Automated beat detection and classification on ECG lead {measured.lead}"},
        }
    )
    observations = []
    for measure in MEASURES:
        value = measure.value(measured)
        if value is None:
            continue
        observations.append(
            {
                "resourceType": "Observation",
                "id": _resource_id(forecast_id, measure.key),
                "status": "final",
                "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": measure.category}]}],
                "code": measure.code,
                **common,
                **value,
            }
        )
    return observations


def sampled_data(samples_mv: npt.ArrayLike, fs: float, factor_mv: float = SAMPLE_FACTOR_MV) -> FhirJson:
    """One lead's samples (mV, NaN or infinite where invalid) as an R4 ``SampledData``: ``period`` is milliseconds
    between samples, each datum an integer count of ``factor_mv`` (``origin`` 0 mV), an invalid sample ``E``."""
    values = np.asarray(samples_mv, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"samples must be one lead (1-D), got shape {values.shape}")
    if not (math.isfinite(fs) and fs > 0) or not (math.isfinite(factor_mv) and factor_mv > 0):
        raise ValueError(f"fs ({fs}) and factor_mv ({factor_mv}) must be finite and positive")
    data: FhirJson = {
        "origin": {"value": 0, "unit": "mV", "system": UCUM, "code": "mV"},
        "period": 1000.0 / fs,
        "factor": factor_mv,
        "dimensions": 1,
    }
    if values.size:
        data["data"] = " ".join(_datum(v, factor_mv) for v in values.tolist())
    return data


def _datum(value: float, factor_mv: float) -> str:
    return str(round(value / factor_mv)) if math.isfinite(value) else "E"


def wave_observation(chunk: WaveChunk, hospital: HospitalSettings) -> FhirJson:
    """A wave message as one ECG Observation with a ``valueSampledData`` component per lead, timed at ``t0`` (the
    device clock: the only time the samples carry)."""
    observation: FhirJson = {
        "resourceType": "Observation",
        "id": _resource_id("wave", chunk.patient_id, chunk.stream_id, str(chunk.seq)),
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "procedure"}]}],
        "code": {"coding": [_mdc(_UNSPECIFIED_LEAD)], "text": "ECG waveform"},
        "subject": patient_reference(chunk.patient_id, hospital),
        "component": [
            {"code": _lead_code(lead), "valueSampledData": sampled_data(chunk.samples[i], chunk.fs)}
            for i, lead in enumerate(chunk.leads)
        ],
        "effectiveDateTime": _instant_or_none(chunk.t0),
    }
    return _without_none(observation)


def _lead_code(lead: str) -> FhirJson:
    return {"coding": [_mdc(_LEAD_CODES.get(lead, _UNSPECIFIED_LEAD))], "text": f"ECG lead {lead}"}


def _mdc(code: tuple[str, str]) -> FhirJson:
    return {"system": MDC, "code": code[0], "display": code[1]}


def searchset(matches: Sequence[FhirJson], included: Sequence[FhirJson] = ()) -> FhirJson:
    """A search result Bundle: ``matches`` (counted in ``total``), then ``included`` resources they reference."""
    entries = [_entry(r, "match") for r in matches] + [_entry(r, "include") for r in included]
    bundle: FhirJson = {"resourceType": "Bundle", "type": "searchset", "total": len(matches)}
    if entries:
        bundle["entry"] = entries
    return bundle


def _entry(resource: FhirJson, mode: str) -> FhirJson:
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource, "search": {"mode": mode}}


def operation_outcome(code: str, diagnostics: str) -> FhirJson:
    """The FHIR error body: one issue of severity error with an issue-type ``code`` (``invalid``, ``not-found``)."""
    issue = {"severity": "error", "code": code, "diagnostics": diagnostics}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def search_patient(query: Mapping[str, Sequence[str]], hospital: HospitalSettings) -> str | None:
    """The stream patient id a search names: ``patient=<id>`` (or ``Patient/<id>``), or
    ``patient:identifier=[system|]value`` with an MRN, or with :data:`PATIENT_ID_SYSTEM` and a stream id. None: an
    MRN no patient has. Raises ValueError when no patient, or more than one, is given."""
    given = [(name, value) for name in ("patient", "patient:identifier") for value in query.get(name, ())]
    if len(given) != 1:
        raise ValueError("give exactly one patient=<id> or patient:identifier=[system|]<value>")
    name, value = given[0]
    if name == "patient":
        return value.removeprefix("Patient/")
    system, _, identifier = value.rpartition("|")
    return identifier if system == PATIENT_ID_SYSTEM else hospital.patient_of_mrn(identifier)


def fhir_instant(unix_s: float) -> str:
    """A FHIR ``instant`` (also a valid ``dateTime``) in UTC, to the millisecond."""
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _instant_or_none(unix_s: float) -> str | None:
    """A message's time as an instant; None for one no calendar holds (a forged message, an unset device clock), so
    the element is left out rather than the whole resource refused."""
    try:
        return fhir_instant(unix_s)
    except (OverflowError, OSError, ValueError):
        return None


def _without_none(fields: FhirJson) -> FhirJson:
    """FHIR has no nulls: an element without a value is absent."""
    return {name: value for name, value in fields.items() if value is not None}


def _resource_id(*parts: str) -> str:
    """A name-based UUID: what a resource describes always gets the same id."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))
