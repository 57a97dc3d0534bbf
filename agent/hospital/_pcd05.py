"""What the Alert Manager sends back on the MLLP connection: the accept ACK of each PCD-04, and PCD-05 *Report
Alert Status* (``ORA^R41``) messages that say what became of an alert, one of which (``accepted``) is the
clinician's acknowledgement.

Read with hl7apy's HL7 v2.8.2 segment definitions whatever MSH-12 says: ORA_R41 and its PRT segment exist only
from v2.7 on, an Alert Manager may label its PCD-05 2.6 (the PCD-04 version), and every field read here keeps its
position across versions. The text is untrusted: each value used is checked against a strict pattern, so an
escape sequence or delimiter trick is refused rather than interpreted, and every failure is a
:class:`ProtocolError` with a stable reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import get_message_info, parse_segments

from core.errors import ProtocolError
from core.protocol import USER_ID_PATTERN

__all__ = ["ACCEPT_STATUSES", "AcceptAck", "AlertStatus", "decode_reply"]

READ_VERSION: Final = "2.8.2"
ACCEPT_STATUSES: Final = frozenset({"accepted"})
"""PCD-05 statuses that acknowledge the alert: an endpoint operator (a clinician) accepted it. Received, delivered,
read, rejected, cancelled and the rest are logged and change nothing: they say where the alert is, not that
someone took it on."""
_ID: Final = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")  # alert and control ids, as decode_ack's
_STATUS: Final = re.compile(r"\A[A-Za-z][A-Za-z_ -]{0,39}\Z")
_ACCEPT_CODES: Final = frozenset({"AA", "CA"})
_ACK_CODES: Final = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})


@dataclass(frozen=True)
class AcceptAck:
    """The receiver's ACK of one message we sent (MSA-2 = our MSH-10)."""

    control_id: str
    code: str  # MSA-1: AA/CA accepted, AE/CE error, AR/CR rejected
    text: str  # MSA-3 (or ERR-8), for the log; may be empty

    @property
    def accepted(self) -> bool:
        return self.code in _ACCEPT_CODES


@dataclass(frozen=True)
class AlertStatus:
    """One PCD-05 status: which alert (OBR-3, else the PCD-04 that MSA-2 names), what happened to it (PRT-3), who
    (PRT-5) and, when sent, about which patient (PID-3 identifier and its type)."""

    control_id: str | None
    alert_id: str | None
    status: str  # lower case: accepted, rejected, delivered, read, ...
    by: str | None
    patient: tuple[str, str] | None  # (PID-3.1, PID-3.5), e.g. ("MRN-001", "MR")

    @property
    def accepted(self) -> bool:
        return self.status in ACCEPT_STATUSES


def decode_reply(text: str) -> AcceptAck | AlertStatus:
    """Decode one inbound message. Reason codes: ``bad_hl7`` (not parseable), ``unsupported`` (neither an ACK nor
    ``ORA^R41``), ``missing_field``, ``bad_field``, ``bad_user``."""
    segments = _segments(text)
    message_type = _components(_first(segments, "MSH").msh_9)
    if message_type[:1] == ["ACK"]:
        return _accept_ack(segments)
    if message_type[:2] in (["ORA", "R41"], ["ORU", "R41"]):
        return _alert_status(segments)
    raise ProtocolError("unsupported", f"message type {'^'.join(message_type)[:40]!r} is neither ACK nor ORA^R41")


def _segments(text: str) -> dict[str, list[Any]]:
    """The message's segments by name (CR, LF or CRLF between them)."""
    normalised = "\r".join(line for line in re.split(r"\r\n|\r|\n", text.strip()) if line)
    try:
        encoding_chars, _, _ = get_message_info(normalised)
        encoding_chars.pop("TRUNCATION", None)  # v2.7's fifth delimiter: nothing read here is truncated
        parsed = parse_segments(normalised, READ_VERSION, encoding_chars, VALIDATION_LEVEL.TOLERANT, find_groups=False)
    except (HL7apyException, ValueError, IndexError) as exc:
        raise ProtocolError("bad_hl7", f"not an HL7 v2 message: {str(exc)[:120]}") from exc
    by_name: dict[str, list[Any]] = {}
    for segment in parsed:
        by_name.setdefault(str(segment.name), []).append(segment)
    return by_name


def _accept_ack(segments: dict[str, list[Any]]) -> AcceptAck:
    msa = _first(segments, "MSA")
    code = _value(msa.msa_1)
    if code not in _ACK_CODES:
        raise ProtocolError("bad_field", "MSA-1 must be an acknowledgement code (AA, AE, AR, CA, CE, CR)", "MSA-1")
    control_id = _required_id(msa.msa_2, "MSA-2")
    errors = segments.get("ERR", [])
    text = _value(msa.msa_3) or (_value(errors[0].err_8) if errors else "")
    return AcceptAck(control_id, code, text[:200])


def _alert_status(segments: dict[str, list[Any]]) -> AlertStatus:
    msa = segments.get("MSA", [])
    control_id = _optional_id(msa[0].msa_2, "MSA-2") if msa else None
    obr = segments.get("OBR", [])
    alert_id = _optional_id(obr[0].obr_3.ei_1, "OBR-3") if obr else None
    if control_id is None and alert_id is None:
        raise ProtocolError("missing_field", "a PCD-05 names its alert in OBR-3 or its PCD-04 in MSA-2", "OBR-3")
    prt = _first(segments, "PRT")
    status = _value(prt.prt_3.cwe_1).lower()
    if not _STATUS.fullmatch(status):
        raise ProtocolError("bad_field", "PRT-3 must name the alert's status (accepted, rejected, ...)", "PRT-3")
    return AlertStatus(control_id, alert_id, status, _user(_value(prt.prt_5.xcn_1)), _patient(segments))


def _user(value: str) -> str | None:
    """PRT-5.1: the clinician, as a user name of the hospital's directory (the form an MQTT ack's user has)."""
    if not value:
        return None
    if not USER_ID_PATTERN.fullmatch(value):
        raise ProtocolError("bad_user", "PRT-5.1 must be a user name (letters, digits, . _ @ -)", "PRT-5")
    return value


def _patient(segments: dict[str, list[Any]]) -> tuple[str, str] | None:
    pid = segments.get("PID", [])
    if not pid:
        return None
    identifier = _optional_id(pid[0].pid_3.cx_1, "PID-3")
    return (identifier, _value(pid[0].pid_3.cx_5)) if identifier is not None else None


def _first(segments: dict[str, list[Any]], name: str) -> Any:
    found = segments.get(name)
    if not found:
        raise ProtocolError("missing_field", f"no {name} segment", name)
    return found[0]


def _required_id(element: Any, name: str) -> str:
    value = _optional_id(element, name)
    if value is None:
        raise ProtocolError("missing_field", f"{name} is required", name)
    return value


def _optional_id(element: Any, name: str) -> str | None:
    value = _value(element)
    if not value:
        return None
    if not _ID.fullmatch(value):
        raise ProtocolError("bad_field", f"{name} must be an identifier (letters, digits, . _ : -)", name)
    return value


def _components(element: Any) -> list[str]:
    return [str(child.to_er7()).strip() for child in element.children] if element else []


def _value(element: Any) -> str:
    """The element's ER7 text ('' when absent), escape sequences left as sent: callers match strict patterns."""
    return str(element.to_er7()).strip() if element else ""
