"""Waveform input from HL7 v2: ECG in ``ORU^R01`` messages (IHE PCD-01 style) as ``ecgcast.wave/1`` messages.

Why a converter and not a second ingest path: the agent has one wave decoder, with one set of limits and
rejection reasons, and everything after it (ring buffers, gaps, segments) keys on the wave message. A monitor or
interface engine that speaks HL7 v2 is met here, outside the agent, and every message this produces is checked
with the agent's own :func:`core.protocol.decode_wave` before it leaves, so it is a message the agent accepts.

What is read (docs/INTEGRATION.md, "Waveform input from HL7 v2"), with hl7apy's v2.6 segment definitions:

- ``OBX`` of value type ``NA`` (numeric array: one lead, samples separated by ``^``), the lead in OBX-3 as an IEEE
  11073 reference id (``MDC_ECG_ELEC_POTL_II``, ``MDC_ECG_LEAD_II``) or code (``131330``), units in OBX-6.
- ``OBX`` of value type ``MA`` (multiplexed array: each repetition ``~`` one sample time, its components ``^`` the
  channels), the channels named by the ``CD`` (channel definition) OBXs before it; a one-channel ``MA`` may name
  its lead in OBX-3 instead.
- ``MDC_ATTR_SAMP_RATE`` (samples per second) and ``MDC_ATTR_NU_MSMT_RES`` (mV or µV per count, for dimensionless
  samples) ``NM`` OBXs. Each belongs to the wave whose OBX-4 sub-id is its own minus the last level
  (``1.7.6.131330.1`` -> ``1.7.6.131330``), else to the nearest wave OBX before it, else to every wave.

hl7apy parses every segment and field but one: the sample arrays (OBX-5 of NA and MA) are taken out first and split
on the message's own declared delimiters, because hl7apy builds an object per component, about 0.4 ms each here:
25 s for 10 s of 12-lead ECG at 500 Hz, slower than the signal arrives. A sample holds only a number, so nothing an
HL7 parser would add (escapes, subcomponents) can be in one: such a sample is refused as not a number.

Values stay decimal (:class:`decimal.Decimal`) from the message to the JSON, so ``1234`` µV is sent as ``1234``
with ``"units": "uV"`` and a count times a resolution is computed exactly. An empty sample (``1^^3``) is an invalid
sample, sent as JSON ``null``. Waves that name no ECG lead (a pleth, a pressure) are skipped and reported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from decimal import Decimal
from typing import Any, Final

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import get_message_info, parse_segments
from hl7apy.utils import get_datetime_info

from core.errors import ProtocolError
from core.protocol import PATIENT_ID_PATTERN, SCHEMA_WAVE, PayloadLimits, canonical_lead, decode_wave

__all__ = [
    "MDC_LEAD_CODES",
    "Channel",
    "Conversion",
    "Waveform",
    "convert_oru_r01",
    "read_oru_r01",
    "split_messages",
    "wave_payloads",
]

READ_VERSION: Final = "2.6"  # IHE PCD-01's version; every field read here keeps its position in 2.5-2.8
SAMPLE_RATE: Final = "MDC_ATTR_SAMP_RATE"
RESOLUTION: Final = "MDC_ATTR_NU_MSMT_RES"

MDC_LEAD_CODES: Final[dict[str, str]] = {
    "131329": "I",
    "131330": "II",
    **{str(131330 + n): f"V{n}" for n in range(1, 7)},
    "131389": "III",
    "131390": "aVR",
    "131391": "aVL",
    "131392": "aVF",
}
"""IEEE 11073-10101 codes of the standard leads (partition 2, 256 + the lead's term code), for an OBX-3 that
carries the code without its reference id. The reference ids themselves are read by :func:`canonical_lead`."""

_UNITS: Final[dict[str, str]] = {
    "mV": "mV",
    "MDC_DIM_MILLI_VOLT": "mV",
    "266418": "mV",
    "uV": "uV",
    "\u00b5V": "uV",
    "\u03bcV": "uV",
    "MDC_DIM_MICRO_VOLT": "uV",
}
"""OBX-6 / CSU units (UCUM or MDC) of a voltage sample, as the wave message's ``units``."""
_DIMENSIONLESS: Final = frozenset({"", "1", "MDC_DIM_DIMLESS", "262656"})
_PER_SECOND: Final = frozenset({"", "Hz", "/s", "1/s", "MDC_DIM_HZ", "MDC_DIM_PER_SEC", "264608"})
_NUMBER: Final = re.compile(r"\A[+-]?(?:\d+(?:\.\d*)?|\.\d+)\Z")  # HL7 NM: no exponent, no spaces
_STREAM_ID_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._:-]")


@dataclass(frozen=True)
class Channel:
    """One lead of one message: its samples in ``units`` (``mV`` or ``uV``); None is an invalid sample."""

    lead: str
    units: str
    values: tuple[Decimal | None, ...]


@dataclass(frozen=True)
class Waveform:
    """The ECG of one ``ORU^R01``: equal-length channels at one rate from ``t0``, for one patient."""

    patient_id: str
    device: str  # MSH-3: the sending application (the monitor or the interface engine)
    control_id: str  # MSH-10
    t0: float  # Unix seconds of the first sample
    fs: float
    channels: tuple[Channel, ...]
    skipped: tuple[str, ...] = ()  # waves that name no ECG lead, by OBX-3, for the operator


@dataclass(frozen=True)
class Conversion:
    """Wave messages for the broker: ``(patient_id, payload)`` in order, and what was skipped on the way."""

    payloads: tuple[tuple[str, bytes], ...]
    skipped: tuple[str, ...]


@dataclass
class _Wave:
    """A wave OBX as read, before its attributes (rate, resolution) are attached."""

    position: int
    sub_id: str
    where: str  # "OBX 3" for messages
    channels: list[_RawChannel]
    rate: Decimal | None = None
    resolution: tuple[Decimal, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class _RawChannel:
    lead: str
    units: str  # mV, uV, or "" while dimensionless
    values: tuple[Decimal | None, ...]
    rate: Decimal | None = None  # a CD's sampling frequency
    sensitivity: Decimal | None = None  # a CD's units per count, applied to its MA's counts


@dataclass(frozen=True)
class _Attribute:
    position: int
    sub_id: str
    name: str  # SAMPLE_RATE or RESOLUTION
    value: Decimal
    units: tuple[str, ...]  # OBX-6 code and text


@dataclass(frozen=True)
class _Arrays:
    """The sample arrays taken out of a message before hl7apy parses it, by segment index, and its delimiters."""

    by_segment: dict[int, str]
    repetition: str
    component: str

    def rows(self, index: int) -> list[list[str]]:
        """Segment ``index``'s OBX-5: its repetitions, each split into components."""
        text = self.by_segment.get(index, "")
        return [part.split(self.component) for part in text.split(self.repetition)] if text else []


@dataclass
class _Obx:
    """What a message's OBXs hold, in order."""

    waves: list[_Wave] = field(default_factory=list)
    attributes: list[_Attribute] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def split_messages(text: str) -> list[str]:
    """The messages of a file or stream: MLLP framing removed, segments joined by CR, a new message at each MSH."""
    lines = (line.strip("\x0b\x1c") for line in re.split(r"\r\n|\r|\n", text))
    messages: list[list[str]] = []
    for line in filter(None, (line.strip() for line in lines)):
        if line.startswith("MSH"):
            messages.append([])
        if not messages:
            raise ProtocolError("bad_hl7", "text before the first MSH segment")
        messages[-1].append(line)
    return ["\r".join(segments) for segments in messages]


def read_oru_r01(
    message: str, *, patient_id: str | None = None, patient_of_mrn: Callable[[str], str | None] | None = None
) -> Waveform:
    """One ``ORU^R01`` as a :class:`Waveform`. ``patient_id`` overrides the message's patient; otherwise PID-3 names
    it, as a stream id (identifier type ``PI``) or as an MRN that ``patient_of_mrn`` maps. Every failure is a
    :class:`ProtocolError` naming the segment and field."""
    segments, arrays = _segments(message)
    msh = _only(segments, "MSH")
    message_type = [_text(part) for part in msh.msh_9.children] if msh.msh_9 else []
    if message_type[:2] != ["ORU", "R01"]:
        raise ProtocolError("unsupported", f"message type {'^'.join(message_type)[:40]!r} is not ORU^R01", "MSH-9")
    obx = _read_obx(segments, arrays)
    _attach(obx.waves, obx.attributes)
    waves = [wave for wave in obx.waves if wave.channels]
    if not waves:
        raise ProtocolError("missing_field", "no NA or MA OBX names an ECG lead", "OBX-3")
    patient = patient_id or _patient(segments, patient_of_mrn)
    channels, fs = _channels(waves)
    return Waveform(
        patient_id=patient,
        device=_device(msh),
        control_id=_text(msh.msh_10),
        t0=_t0(segments, msh),
        fs=fs,
        channels=channels,
        skipped=tuple(obx.skipped),
    )


def wave_payloads(
    waveforms: Sequence[Waveform],
    limits: PayloadLimits,
    *,
    stream_id: str | None = None,
    seq: int = 0,
    chunk_s: float = 1.0,
) -> list[tuple[str, bytes]]:
    """``ecgcast.wave/1`` payloads of the waveforms, in order: each split into chunks of ``chunk_s`` seconds, one
    stream per patient (``stream_id``, else ``<device>-<MSH-10 of the patient's first message>``, so two runs of
    the converter never collide on one stream's ``seq``), ``seq`` counting on from ``seq``. Each payload is decoded
    with the agent's own decoder before it is returned."""
    streams: dict[str, tuple[str, Iterator[int]]] = {}
    out: list[tuple[str, bytes]] = []
    for waveform in waveforms:
        if waveform.patient_id not in streams:
            streams[waveform.patient_id] = (stream_id or _stream_id(waveform), iter(range(seq, 2**53)))
        stream, counter = streams[waveform.patient_id]
        for body in _chunks(waveform, stream, counter, chunk_s, limits):
            try:
                payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
            except ValueError as exc:  # a decimal beyond the float range became infinity
                raise ProtocolError("bad_value", "a sample or rate is beyond the float range", "OBX-5") from exc
            decode_wave(payload, limits, waveform.patient_id)
            out.append((waveform.patient_id, payload))
    return out


def convert_oru_r01(
    text: str,
    limits: PayloadLimits,
    *,
    patient_id: str | None = None,
    patient_of_mrn: Callable[[str], str | None] | None = None,
    stream_id: str | None = None,
    seq: int = 0,
    chunk_s: float = 1.0,
) -> Conversion:
    """Every ``ORU^R01`` in ``text`` (a file of messages, MLLP-framed or not) as wave payloads."""
    messages = split_messages(text)
    if not messages:
        raise ProtocolError("bad_hl7", "no HL7 message (no MSH segment)")
    waveforms = [read_oru_r01(m, patient_id=patient_id, patient_of_mrn=patient_of_mrn) for m in messages]
    payloads = wave_payloads(waveforms, limits, stream_id=stream_id, seq=seq, chunk_s=chunk_s)
    return Conversion(tuple(payloads), tuple(s for w in waveforms for s in w.skipped))


# --- reading ---------------------------------------------------------------------------------------------------


def _segments(message: str) -> tuple[list[Any], _Arrays]:
    """The message's segments as hl7apy parses them (one per line, in order), and its sample arrays."""
    try:
        encoding_chars, _, _ = get_message_info(message)
        encoding_chars.pop("TRUNCATION", None)  # v2.7's fifth delimiter: no value read here is truncated
        lines, arrays = _take_arrays(message.split("\r"), encoding_chars)
        parsed = list(
            parse_segments("\r".join(lines), READ_VERSION, encoding_chars, VALIDATION_LEVEL.TOLERANT, find_groups=False)
        )
    except (HL7apyException, ValueError, IndexError, KeyError) as exc:
        raise ProtocolError("bad_hl7", f"not an HL7 v2 message: {str(exc)[:120]}") from exc
    if len(parsed) != len(lines):
        raise ProtocolError("bad_hl7", f"{len(lines)} segments read as {len(parsed)}")
    return parsed, _Arrays(arrays, encoding_chars["REPETITION"], encoding_chars["COMPONENT"])


def _take_arrays(lines: list[str], encoding_chars: dict[str, str]) -> tuple[list[str], dict[int, str]]:
    """The lines with the OBX-5 of every NA and MA OBX emptied, and those OBX-5s by line."""
    separator = encoding_chars["FIELD"]
    arrays: dict[int, str] = {}
    out: list[str] = []
    for index, line in enumerate(lines):
        fields = line.split(separator)
        if fields[0] == "OBX" and len(fields) > 5 and fields[2].strip().upper() in ("NA", "MA"):
            arrays[index] = fields[5]
            line = separator.join([*fields[:5], "", *fields[6:]])
        out.append(line)
    return out, arrays


def _read_obx(segments: Sequence[Any], arrays: _Arrays) -> _Obx:
    """The wave, channel-definition and attribute OBXs, in order; every other segment is left alone."""
    found = _Obx()
    pending: list[_RawChannel | None] = []  # CD channel definitions waiting for their MA
    for position, obx in enumerate(segments):
        if obx.name != "OBX":
            continue
        kind = _text(obx.obx_2).upper()
        where = f"OBX {_text(obx.obx_1) or position}"
        if kind == "CD":
            pending.append(_channel_definition(obx, where, found.skipped))
        elif kind in ("NA", "MA"):
            rows = arrays.rows(position)
            channels = _na(obx, where, rows) if kind == "NA" else _ma(obx, where, rows, pending)
            pending = []
            if channels is None or not any(channels):
                found.skipped.append(f"{where} ({_text(obx.obx_3)[:60]})")
            found.waves.append(_Wave(position, _text(obx.obx_4), where, [c for c in channels or [] if c]))
        elif kind == "NM" and _reference(obx.obx_3) in (SAMPLE_RATE, RESOLUTION):
            found.attributes.append(_attribute(obx, position, where))
    return found


def _na(obx: Any, where: str, rows: list[list[str]]) -> list[_RawChannel | None] | None:
    """An NA OBX: one lead (None when OBX-3 names no ECG lead), its samples the components of one repetition."""
    lead = _lead(obx.obx_3)
    if lead is None:
        return None
    if len(rows) != 1:
        raise ProtocolError("bad_shape", f"{where}: an NA holds one array, not {len(rows)} repetitions", "OBX-5")
    values = tuple(_sample(text.strip(), where) for text in rows[0])
    return [_RawChannel(lead, _units(obx.obx_6, where), values)]


def _ma(
    obx: Any, where: str, texts: list[list[str]], definitions: list[_RawChannel | None]
) -> list[_RawChannel | None] | None:
    """An MA OBX: each repetition one sample time, its components the channels the CD OBXs before it define (or,
    with none, the one lead of OBX-3)."""
    rows = [[_sample(text.strip(), where) for text in row] for row in texts]
    width = max((_width(row) for row in rows), default=0)
    units = _units(obx.obx_6, where)
    if not definitions:
        if width > 1:
            raise ProtocolError(
                "missing_field", f"{where}: an MA of {width} channels needs a CD OBX per channel", "OBX-2"
            )
        lead = _lead(obx.obx_3)
        definitions = [None if lead is None else _RawChannel(lead, units, ())]
    if width > len(definitions):
        raise ProtocolError("bad_shape", f"{where}: {width} channels but {len(definitions)} CD definitions", "OBX-5")
    columns = [tuple(row[k] if k < len(row) else None for row in rows) for k in range(len(definitions))]
    return [_with_values(d, column, units) for d, column in zip(definitions, columns, strict=True)]


def _width(row: list[Decimal | None]) -> int:
    """Channels a repetition speaks for: trailing empty components are HL7's optional trailing delimiters."""
    return max((k + 1 for k, value in enumerate(row) if value is not None), default=0)


def _with_values(definition: _RawChannel | None, column: tuple[Decimal | None, ...], units: str) -> _RawChannel | None:
    """An MA column as its channel: counts times the CD's sensitivity in the CD's units, else as OBX-6 says.
    Trailing empty components may be left out (HL7's rule), so a short repetition pads with invalid samples."""
    if definition is None:
        return None
    step = definition.sensitivity
    values = column if step is None else tuple(None if v is None else v * step for v in column)
    return _RawChannel(definition.lead, definition.units or units, values, definition.rate)


def _channel_definition(obx: Any, where: str, skipped: list[str]) -> _RawChannel | None:
    """A CD OBX: CD.1 channel number & name (the lead), CD.3 sensitivity & units, CD.5 sampling frequency. The
    sensitivity rides in ``values`` until the MA's counts arrive; None for a channel that is no ECG lead."""
    parts = [_subcomponents(c) for c in next(iter(obx.obx_5)).children] if obx.obx_5 else []
    parts += [[]] * (6 - len(parts))
    name = parts[0][1] if len(parts[0]) > 1 else ""
    lead = _lead_name(name)
    if lead is None:
        skipped.append(f"{where} channel {name[:40]!r}")
        return None
    sensitivity = _sample(parts[2][0], where) if parts[2] else None
    units = _unit_name(tuple(u for u in parts[2][1:3] if u), where)
    rate = _sample(parts[4][0], where) if parts[4] else None
    return _RawChannel(lead, units, (), rate, sensitivity)


def _attribute(obx: Any, position: int, where: str) -> _Attribute:
    value = _sample(_text(next(iter(obx.obx_5), None)), where)
    if value is None or value <= 0:
        raise ProtocolError("bad_value", f"{where}: {_reference(obx.obx_3)} must be a positive number", "OBX-5")
    return _Attribute(position, _text(obx.obx_4), _reference(obx.obx_3), value, _unit_codes(obx.obx_6))


def _attach(waves: list[_Wave], attributes: list[_Attribute]) -> None:
    """Each attribute to its wave: the one whose sub-id is the attribute's parent, else the nearest wave before
    it, else (an attribute ahead of every wave) each wave that has none of its own."""
    by_sub_id = {wave.sub_id: wave for wave in waves if wave.sub_id}
    defaults: list[_Attribute] = []
    for attribute in attributes:
        parent = attribute.sub_id.rpartition(".")[0]
        earlier = [wave for wave in waves if wave.position < attribute.position]
        target = by_sub_id.get(parent) or (earlier[-1] if earlier else None)
        if target is None:
            defaults.append(attribute)
        else:
            _set(target, attribute)
    for attribute in defaults:
        for wave in waves:
            if (wave.rate if attribute.name == SAMPLE_RATE else wave.resolution) is None:
                _set(wave, attribute)


def _set(wave: _Wave, attribute: _Attribute) -> None:
    if attribute.name == SAMPLE_RATE:
        if attribute.units and not any(code in _PER_SECOND for code in attribute.units):
            raise ProtocolError("bad_units", f"{SAMPLE_RATE} in {'^'.join(attribute.units)!r}, not per second", "OBX-6")
        wave.rate = attribute.value
    else:
        wave.resolution = (attribute.value, attribute.units)


def _channels(waves: list[_Wave]) -> tuple[tuple[Channel, ...], float]:
    """The message's leads at their one rate and length, in mV or µV."""
    channels: list[Channel] = []
    rates: set[Decimal] = set()
    for wave in waves:
        for raw in wave.channels:
            rate = raw.rate or wave.rate
            if rate is None:
                raise ProtocolError("missing_field", f"{wave.where}: no {SAMPLE_RATE} for lead {raw.lead}", "OBX-3")
            rates.add(rate)
            channels.append(_calibrated(raw, wave))
    leads = [c.lead for c in channels]
    if len(set(leads)) != len(leads):
        raise ProtocolError("bad_leads", f"a lead appears twice: {leads}", "OBX-3")
    if len(rates) != 1:
        raise ProtocolError("bad_fs", f"leads sampled at different rates {sorted(map(str, rates))}", "OBX-5")
    lengths = {len(c.values) for c in channels}
    if len(lengths) != 1:
        raise ProtocolError("bad_shape", f"leads of unequal lengths {sorted(lengths)}", "OBX-5")
    return tuple(channels), float(rates.pop())


def _calibrated(raw: _RawChannel, wave: _Wave) -> Channel:
    """A channel in mV or µV: dimensionless counts times the wave's MDC_ATTR_NU_MSMT_RES."""
    if raw.units:
        return Channel(raw.lead, raw.units, raw.values)
    step, codes = wave.resolution or (Decimal(0), ())
    units = next((_UNITS[code] for code in codes if code in _UNITS), None)
    if units is None:
        raise ProtocolError(
            "bad_units", f"{wave.where}: dimensionless samples need {RESOLUTION} in mV or uV to calibrate them", "OBX-6"
        )
    return Channel(raw.lead, units, tuple(None if v is None else v * step for v in raw.values))


def _patient(segments: Sequence[Any], patient_of_mrn: Callable[[str], str | None] | None) -> str:
    """PID-3's stream id (type PI), else the stream of its MRN; one patient per message."""
    pids = [s for s in segments if s.name == "PID"]
    if len(pids) != 1:
        raise ProtocolError("missing_field", f"{len(pids)} PID segments; one patient per message", "PID")
    identifiers = [(_text(cx.cx_1), _text(cx.cx_5)) for cx in pids[0].pid_3]
    for value, kind in identifiers:
        if kind == "PI" and PATIENT_ID_PATTERN.fullmatch(value):
            return value
    for value, _ in identifiers:
        mapped = patient_of_mrn(value) if patient_of_mrn and value else None
        if mapped is not None:
            return mapped
    raise ProtocolError(
        "missing_field", "PID-3 has no stream id (type PI) and no MRN in hospital.patients; pass a patient id", "PID-3"
    )


def _t0(segments: Sequence[Any], msh: Any) -> float:
    """The first sample's time: OBX-14 of the first OBX that has one, else OBR-7, else MSH-7; UTC unless the value
    carries an offset."""
    candidates = [s.obx_14 for s in segments if s.name == "OBX"] + [s.obr_7 for s in segments if s.name == "OBR"]
    text = next((t for t in map(_text, candidates) if t), "") or _text(msh.msh_7)
    try:
        moment, _, offset, _ = get_datetime_info(text)
    except (ValueError, TypeError) as exc:
        raise ProtocolError("bad_value", f"time {text[:40]!r} is not an HL7 date/time", "OBX-14") from exc
    shift = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])) if offset else timedelta()
    zone = timezone(-shift if offset.startswith("-") else shift)
    return float(moment.replace(tzinfo=zone).timestamp())


def _device(msh: Any) -> str:
    """MSH-3 as one id: its universal id (an EUI-64) where sent, else its namespace."""
    parts = [_text(c) for c in msh.msh_3.children] if msh.msh_3 else []
    return next((p for p in (parts[1:2] + parts[:1]) if p), "hl7")


def _lead(cwe: Any) -> str | None:
    """The lead an OBX-3 names by reference id (CWE.2) or code (CWE.1), else None."""
    parts = [_text(c) for c in cwe.children] if cwe else []
    for name in parts[1:2] + parts[:1]:
        lead = _lead_name(name)
        if lead is not None:
            return lead
    return None


def _lead_name(name: str) -> str | None:
    if name in MDC_LEAD_CODES:
        return MDC_LEAD_CODES[name]
    try:
        return canonical_lead(name) if name else None
    except ProtocolError:
        return None


def _units(cwe: Any, where: str) -> str:
    """OBX-6 as ``mV``, ``uV`` or "" (dimensionless); anything else is refused naming it."""
    return _unit_name(_unit_codes(cwe), where)


def _unit_codes(cwe: Any) -> tuple[str, ...]:
    """A CWE's code and text (``266418``, ``MDC_DIM_MILLI_VOLT``; ``mV``, ``millivolt``), those that are sent."""
    parts = [_text(c) for c in cwe.children] if cwe else []
    return tuple(p for p in parts[:2] if p)


def _unit_name(codes: tuple[str, ...], where: str) -> str:
    """The wave unit any of ``codes`` names; "" when all are dimensionless (or none was sent)."""
    for code in codes:
        if code in _UNITS:
            return _UNITS[code]
    if all(code in _DIMENSIONLESS for code in codes):
        return ""
    raise ProtocolError(
        "bad_units", f"{where}: units {'^'.join(codes)[:40]!r} are not mV, uV or dimensionless", "OBX-6"
    )


def _reference(cwe: Any) -> str:
    parts = [_text(c) for c in cwe.children] if cwe else []
    return parts[1] if len(parts) > 1 else ""


def _sample(text: str, where: str) -> Decimal | None:
    if not text:
        return None
    if not _NUMBER.fullmatch(text):
        raise ProtocolError("bad_value", f"{where}: {text[:20]!r} is not a number", "OBX-5")
    return Decimal(text)


def _subcomponents(component: Any) -> list[str]:
    return [_text(part) for part in component.children] or [_text(component)]


def _only(segments: Sequence[Any], name: str) -> Any:
    found = [s for s in segments if s.name == name]
    if len(found) != 1:
        raise ProtocolError("missing_field", f"{len(found)} {name} segments, not one", name)
    return found[0]


def _text(element: Any) -> str:
    """The element's ER7 text, '' when absent; escape sequences stay as sent, so they fail the number pattern."""
    return str(element.to_er7()).strip() if element else ""


# --- writing ---------------------------------------------------------------------------------------------------


def _stream_id(waveform: Waveform) -> str:
    raw = f"{waveform.device}-{waveform.control_id}" if waveform.control_id else waveform.device
    return (_STREAM_ID_UNSAFE.sub("-", raw)[:64]) or "hl7"


def _chunks(
    waveform: Waveform, stream_id: str, seq: Iterator[int], chunk_s: float, limits: PayloadLimits
) -> Iterator[dict[str, Any]]:
    """The waveform as wave-message bodies of at most ``chunk_s`` seconds (and ``max_samples_per_lead``)."""
    units = _common_units(waveform.channels)
    rows = [[_json_number(v, channel.units, units) for v in channel.values] for channel in waveform.channels]
    n = len(rows[0])
    step = max(1, min(round(chunk_s * waveform.fs), limits.max_samples_per_lead))
    for start in range(0, n, step):
        yield {
            "schema": SCHEMA_WAVE,
            "patient_id": waveform.patient_id,
            "stream_id": stream_id,
            "seq": next(seq),
            "t0": round(waveform.t0 + start / waveform.fs, 6),
            "fs": waveform.fs,
            "leads": [channel.lead for channel in waveform.channels],
            "units": units,
            "samples": [row[start : start + step] for row in rows],
        }


def _common_units(channels: Sequence[Channel]) -> str:
    """The channels' one unit; mV when they differ (µV scaled exactly, by a power of ten)."""
    units = {channel.units for channel in channels}
    return units.pop() if len(units) == 1 else "mV"


def _json_number(value: Decimal | None, units: str, target: str) -> int | float | None:
    """A sample as JSON: an integer stays an integer, a decimal becomes the float nearest it; None is null."""
    if value is None:
        return None
    if units != target:
        value = value.scaleb(-3)  # µV -> mV, exact
    return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)
