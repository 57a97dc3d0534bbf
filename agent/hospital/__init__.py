"""The agent's interfaces to hospital systems: who a patient is there (``hospital.patients``: MRN, unit, bed), and
alerts as IHE PCD ACM messages over HL7 v2 / MLLP (docs/INTEGRATION.md).

:class:`Hl7AlertGateway` is the Alert Reporter: a listener of :class:`agent.alerts.AlertService` that sends each
lifecycle event as a PCD-04 *Report Alert* (``ORU^R40``) and turns a PCD-05 *Report Alert Status* (``ORA^R41``)
``accepted`` into the agent's ordinary :class:`agent.alerts.Ack`. Messages are built and parsed with hl7apy.
"""

from __future__ import annotations

from ._gateway import GatewayStats, Hl7AlertGateway
from ._mllp import FrameReader, MllpConnection, frame
from ._pcd04 import (
    ACM_PROFILE,
    HL7_VERSION,
    MDC_ALERT_FACETS,
    REPORT_ALERT_TYPE,
    Coded,
    alert_type_code,
    build_report_alert,
    event_phase,
)
from ._pcd05 import ACCEPT_STATUSES, AcceptAck, AlertStatus, decode_reply
from .settings import Hl7Settings, HospitalSettings, PatientIdentity

__all__ = [
    "ACCEPT_STATUSES",
    "ACM_PROFILE",
    "HL7_VERSION",
    "MDC_ALERT_FACETS",
    "REPORT_ALERT_TYPE",
    "AcceptAck",
    "AlertStatus",
    "Coded",
    "FrameReader",
    "GatewayStats",
    "Hl7AlertGateway",
    "Hl7Settings",
    "HospitalSettings",
    "MllpConnection",
    "PatientIdentity",
    "alert_type_code",
    "build_report_alert",
    "decode_reply",
    "event_phase",
    "frame",
]
