"""IHE PCD-04 *Report Alert* (``ORU^R40^ORU_R40``, HL7 v2.6) from one alert lifecycle event, built with hl7apy.

One message per lifecycle step (docs/ALERTS.md section 2), so an Alert Manager sees exactly what the MQTT
subscribers see: ``new`` starts the alert, ``update`` reports acknowledgement, re-notification or escalation, ``end``
ends it. OBR-3 carries the alert id in every step of one alert, which is how an Alert Manager ties them together and
how its PCD-05 status names the alert back. The message is assembled in hl7apy's ORU_R01 structure (the one
PCD-04 uses; hl7apy knows no ORU_R40) and every free text goes through hl7apy's ST escaping, so an explanation
holding ``|`` or ``^`` cannot break a field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.factories import datatype_factory

from agent.alerts import Alert, AlertEvent, ihe_codes

from .settings import Hl7Settings, HospitalSettings

__all__ = [
    "ACM_PROFILE",
    "HL7_VERSION",
    "MDC_ALERT_FACETS",
    "REPORT_ALERT_TYPE",
    "Coded",
    "alert_type_code",
    "build_report_alert",
    "event_phase",
]

HL7_VERSION: Final = "2.6"
REPORT_ALERT_TYPE: Final = ("ORU", "R40", "ORU_R40")  # MSH-9
ACM_PROFILE: Final = ("IHE_PCD_ACM_001", "IHE PCD", "1.3.6.1.4.1.19376.1.6.4.4", "ISO")  # MSH-21
LOCAL_CODES: Final = "99ECG"  # HL7 local coding system: there is no MDC term for a forecast advisory
SUB_ID: Final = "1.0.0.0.{facet}"  # OBX-4: this one alert's facets (MDS.VMD.channel.metric.facet)


class Coded(NamedTuple):
    """A CWE: code, its text, the coding system (MDC: ISO/IEEE 11073-10101 nomenclature)."""

    code: str
    text: str
    system: str


MDC_EVT_ALARM: Final = Coded("196616", "MDC_EVT_ALARM", "MDC")  # OBR-4 of every alert report
MDC_ALERT_FACETS: Final[dict[str, Coded]] = {
    "source": Coded("68480", "MDC_ATTR_ALERT_SOURCE", "MDC"),
    "phase": Coded("68481", "MDC_ATTR_EVENT_PHASE", "MDC"),
    "state": Coded("68482", "MDC_ATTR_ALARM_STATE", "MDC"),
    "inactivation": Coded("68483", "MDC_ATTR_ALARM_INACTIVATION_STATE", "MDC"),
    "priority": Coded("68484", "MDC_ATTR_ALARM_PRIORITY", "MDC"),
    "type": Coded("68485", "MDC_ATTR_ALERT_TYPE", "MDC"),
}
_PHASE_BY_REASON: Final[dict[str, str]] = {"renotified": "continue", "escalated": "escalate"}
_PHASE_BY_TYPE: Final[dict[str, str]] = {"new": "start", "update": "update", "end": "end"}
_RHYTHM_NAMES: Final[dict[str, str]] = {"af": "atrial fibrillation", "flutter": "atrial flutter", "vt": "VT"}


def build_report_alert(event: AlertEvent, hospital: HospitalSettings, control_id: str, now: float) -> str:
    """The ER7 text of the PCD-04 message reporting ``event`` (segments separated by CR), MSH-10 ``control_id``,
    MSH-7 ``now`` (Unix seconds)."""
    alert, hl7 = event.after, hospital.hl7
    message = Message("ORU_R01", version=HL7_VERSION, validation_level=VALIDATION_LEVEL.STRICT)
    _header(message.msh, hl7, control_id, now)
    result = message.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT")
    _patient(patient.add_segment("PID"), alert.patient_id, hospital)
    _visit(patient.add_group("ORU_R01_VISIT").add_segment("PV1"), alert.patient_id, hospital)
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    _order(order.add_segment("OBR"), alert, hl7)
    for set_id, (code, value) in enumerate(_facets(event), start=1):
        obx = order.add_group("ORU_R01_OBSERVATION").add_segment("OBX")
        _observation(obx, set_id, code, value)
        if set_id == 1:  # the alert's identity facet carries its priority and source (docs/ALERTS.md section 4)
            codes = ihe_codes(alert.kind, alert.priority)
            obx.obx_8 = codes["priority"]
            obx.add_field("OBX_8").value = codes["source"]
            obx.obx_14 = _dtm(alert.updated_at)
    return str(message.to_er7())


def event_phase(event: AlertEvent) -> str:
    """MDC_ATTR_EVENT_PHASE of a lifecycle step: start, update (acknowledged), continue (re-notified), escalate,
    end."""
    return _PHASE_BY_REASON.get(event.reason, _PHASE_BY_TYPE[event.type])


def alert_type_code(alert: Alert) -> Coded:
    """OBX-3 of the identity facet: a local code per kind and arrhythmia (``FORECAST_AF``, ``PRESENT_VT``,
    ``ECTOPY_PVC_HIGH``, ``CANNOT_ASSESS``) in the local coding system ``99ECG``."""
    rhythm = alert.arrhythmia or ""
    name = _RHYTHM_NAMES.get(rhythm, rhythm)
    if alert.kind == "forecast":
        return Coded(f"FORECAST_{rhythm.upper()}", f"Forecast: {name} onset", LOCAL_CODES)
    if alert.kind == "present_rhythm":
        return Coded(f"PRESENT_{rhythm.upper()}", f"Present rhythm: {name} under way", LOCAL_CODES)
    if alert.kind == "ectopy":
        return Coded("ECTOPY_PVC_HIGH", "PVC burden high (measured ventricular ectopy)", LOCAL_CODES)
    return Coded("CANNOT_ASSESS", "Cannot assess: signal quality", LOCAL_CODES)


def _header(msh: Any, hl7: Hl7Settings, control_id: str, now: float) -> None:
    msh.msh_3.hd_1 = hl7.sending_application
    msh.msh_4.hd_1 = hl7.sending_facility
    if hl7.receiving_application is not None:
        msh.msh_5.hd_1 = hl7.receiving_application
    if hl7.receiving_facility is not None:
        msh.msh_6.hd_1 = hl7.receiving_facility
    msh.msh_7 = _dtm(now)
    msh.msh_9.msg_1, msh.msh_9.msg_2, msh.msh_9.msg_3 = REPORT_ALERT_TYPE
    msh.msh_10 = control_id
    msh.msh_11.pt_1 = hl7.processing_id
    msh.msh_15 = "AL"  # accept acknowledgement: always (the receipt the sender waits for)
    msh.msh_16 = "NE"  # application acknowledgement: never (PCD-05 reports the alert's fate instead)
    msh.msh_18 = "UNICODE UTF-8"
    msh.msh_21.ei_1, msh.msh_21.ei_2, msh.msh_21.ei_3, msh.msh_21.ei_4 = ACM_PROFILE


def _patient(pid: Any, patient_id: str, hospital: HospitalSettings) -> None:
    """PID-3: the MRN when the patient is mapped, else the stream id under our own namespace (type PI)."""
    identity = hospital.identity(patient_id)
    if identity is not None:
        pid.pid_3.cx_1, pid.pid_3.cx_4.hd_1, pid.pid_3.cx_5 = identity.mrn, hospital.hl7.assigning_authority, "MR"
    else:
        pid.pid_3.cx_1, pid.pid_3.cx_4.hd_1, pid.pid_3.cx_5 = patient_id, hospital.hl7.sending_application, "PI"
    pid.pid_5.xpn_7 = "U"  # the agent never knows names: name type "unspecified"


def _visit(pv1: Any, patient_id: str, hospital: HospitalSettings) -> None:
    """PV1-3 (assigned location): unit (point of care), bed, facility; parts not configured stay empty."""
    identity = hospital.identity(patient_id)
    pv1.pv1_2 = "I"
    if identity is None or not (identity.unit or identity.bed):
        return
    if identity.unit:
        pv1.pv1_3.pl_1 = identity.unit
    if identity.bed:
        pv1.pv1_3.pl_3 = identity.bed
    pv1.pv1_3.pl_4.hd_1 = hospital.hl7.sending_facility


def _order(obr: Any, alert: Alert, hl7: Hl7Settings) -> None:
    obr.obr_1 = "1"
    for alert_ref in (obr.obr_2, obr.obr_3):  # OBR-3: the alert's identity across its lifecycle, named by PCD-05
        alert_ref.ei_1, alert_ref.ei_2 = alert.alert_id, hl7.sending_application
    obr.obr_4.cwe_1, obr.obr_4.cwe_2, obr.obr_4.cwe_3 = MDC_EVT_ALARM
    obr.obr_7 = _dtm(alert.raised_at)
    if alert.ended_at is not None:
        obr.obr_8 = _dtm(alert.ended_at)


def _facets(event: AlertEvent) -> list[tuple[Coded, str]]:
    """(OBX-3, OBX-5) of each facet: identity with the alert's text, source, phase, state, inactivation state,
    priority, type."""
    alert = event.after
    codes = ihe_codes(alert.kind, alert.priority)
    lead = alert.evidence.get("lead")
    return [
        (alert_type_code(alert), alert.explanation),
        (MDC_ALERT_FACETS["source"], f"ECG lead {lead}" if isinstance(lead, str) and lead else "ECG"),
        (MDC_ALERT_FACETS["phase"], event_phase(event)),
        (MDC_ALERT_FACETS["state"], "active" if alert.active else "inactive"),
        (MDC_ALERT_FACETS["inactivation"], "alert-acknowledged" if alert.state == "acknowledged" else "enabled"),
        (MDC_ALERT_FACETS["priority"], codes["priority"]),
        (MDC_ALERT_FACETS["type"], codes["source"]),
    ]


def _observation(obx: Any, set_id: int, code: Coded, value: str) -> None:
    obx.obx_1 = str(set_id)
    obx.obx_2 = "ST"
    obx.obx_3.cwe_1, obx.obx_3.cwe_2, obx.obx_3.cwe_3 = code
    obx.obx_4 = SUB_ID.format(facet=set_id)
    obx.obx_5 = _escaped(value)  # OBX-5 has type "varies": hl7apy takes ER7 here, so the ST escaping is explicit
    obx.obx_11 = "R"


def _escaped(value: str) -> str:
    """``value`` as the ER7 of one HL7 ST: hl7apy escapes the delimiters (``|`` → ``\\F\\``, ``^`` → ``\\S\\``, ...)."""
    return str(datatype_factory("ST", value, version=HL7_VERSION).to_er7())


def _dtm(unix_s: float) -> str:
    """HL7 DTM in UTC with its offset, to the second."""
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y%m%d%H%M%S+0000")
