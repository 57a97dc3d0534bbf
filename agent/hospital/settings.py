"""Config section ``hospital``: who the patients are in the hospital's systems, and the HL7 v2 alert interface.

Why a section of its own: the agent knows a patient by the stream's ``patient_id``; a hospital system knows the
same patient by a medical record number, a unit and a bed. ``hospital.patients`` is that one mapping, read by every
interface that names a patient to the hospital (the HL7 PID and PV1 segments now; FHIR subject references later),
so two interfaces can never disagree about who a patient is. ``hospital.hl7`` is off by default
(docs/INTEGRATION.md).
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from core.config import StrictModel
from core.protocol import PATIENT_ID_PATTERN

__all__ = ["HL7_TEXT_PATTERN", "Hl7Settings", "HospitalSettings", "PatientIdentity"]

HL7_TEXT_PATTERN: Final = r"^[^|^~\\&\x00-\x1f\x7f]{1,64}$"
"""A configured HL7 value: 1-64 characters, none of the v2 delimiters (| ^ ~ \\ &) or control characters, so it
stays one component wherever it is written and reads back exactly as configured."""


class PatientIdentity(StrictModel):
    """One patient as the hospital names them: the MRN (PID-3) and where they lie (PV1-3: unit, bed)."""

    mrn: str = Field(pattern=HL7_TEXT_PATTERN, description="Medical record number (PID-3, identifier type MR)")
    unit: str | None = Field(None, pattern=HL7_TEXT_PATTERN, description="Nursing unit (PV1-3.1 point of care)")
    bed: str | None = Field(None, pattern=HL7_TEXT_PATTERN, description="Bed (PV1-3.3)")


class Hl7Settings(StrictModel):
    """The HL7 v2 Alert Reporter (IHE PCD ACM): where the Alert Manager listens and how messages are labelled."""

    enabled: bool = Field(False, description="Send IHE PCD-04 alerts over MLLP and accept PCD-05 acknowledgements")
    host: str = Field("127.0.0.1", min_length=1, description="The Alert Manager's (or interface engine's) host")
    port: int = Field(2575, ge=1, le=65535, description="Its MLLP port (2575 is the registered HL7 port)")
    sending_application: str = Field("ECGCAST", pattern=HL7_TEXT_PATTERN, description="MSH-3; OBR-3 namespace")
    sending_facility: str = Field("ECGCAST", pattern=HL7_TEXT_PATTERN, description="MSH-4; PV1-3.4 facility")
    receiving_application: str | None = Field(None, pattern=HL7_TEXT_PATTERN, description="MSH-5")
    receiving_facility: str | None = Field(None, pattern=HL7_TEXT_PATTERN, description="MSH-6")
    assigning_authority: str = Field("HOSP", pattern=HL7_TEXT_PATTERN, description="PID-3.4 of every MRN")
    processing_id: Literal["P", "T", "D"] = Field("P", description="MSH-11: P production, T training, D debugging")
    connect_timeout_s: float = Field(5.0, gt=0, le=60, description="Longest wait for the TCP connection")
    ack_timeout_s: float = Field(
        10.0, gt=0, le=300, description="Longest wait for the accept ACK of a PCD-04 before reconnecting and resending"
    )
    reconnect_min_s: float = Field(1.0, gt=0, le=60, description="First reconnect delay after a failure")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="Reconnect back-off ceiling")
    queue_size: int = Field(
        1000, ge=1, le=100_000, description="PCD-04 messages held while the receiver is away; the oldest is dropped"
    )
    max_message_bytes: int = Field(
        65536, ge=1024, le=1_048_576, description="Largest inbound MLLP message; a longer one closes the connection"
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> Hl7Settings:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(f"reconnect_max_s {self.reconnect_max_s} is below reconnect_min_s {self.reconnect_min_s}")
        return self


class HospitalSettings(StrictModel):
    patients: dict[str, PatientIdentity] = Field(
        default_factory=dict,
        description="patient id -> {mrn, unit, bed}: the identity every hospital interface uses (HL7 PID/PV1, FHIR)",
    )
    hl7: Hl7Settings = Field(default_factory=Hl7Settings)

    @field_validator("patients")
    @classmethod
    def _patient_ids(cls, value: dict[str, PatientIdentity]) -> dict[str, PatientIdentity]:
        for patient_id in value:
            if not PATIENT_ID_PATTERN.fullmatch(patient_id):
                raise ValueError(f"{patient_id[:80]!r} is not a valid patient id")
        return value

    @model_validator(mode="after")
    def _mrns_unique(self) -> HospitalSettings:
        """Two streams with one MRN would let an acknowledgement naming that MRN reach the wrong stream's alert."""
        seen: dict[str, str] = {}
        for patient_id, identity in self.patients.items():
            if identity.mrn in seen:
                raise ValueError(f"patients {seen[identity.mrn]!r} and {patient_id!r} share the MRN {identity.mrn!r}")
            seen[identity.mrn] = patient_id
        return self

    def identity(self, patient_id: str) -> PatientIdentity | None:
        """The hospital's identity of a stream's patient; None when unmapped (then the stream id stands in)."""
        return self.patients.get(patient_id)

    def patient_of_mrn(self, mrn: str) -> str | None:
        """The stream's patient id of a hospital MRN, when mapped."""
        return next((pid for pid, identity in self.patients.items() if identity.mrn == mrn), None)
