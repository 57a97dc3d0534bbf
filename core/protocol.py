"""Wire protocol v1: topic templates and the typed wave message (docs/PROTOCOL.md is the prose contract).

Everything that crosses MQTT is built or parsed here, so the topic contract lives in one module. Parsing never
trusts the payload: each failure raises :class:`ProtocolError` with a stable ``reason`` code used as a counter
label, and the message names the field.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from core.errors import ProtocolError

if TYPE_CHECKING:
    from core.settings import ProtocolSettings

__all__ = [
    "DIGITAL_UNITS",
    "LEAD_SYNONYMS",
    "PATIENT_ID_PATTERN",
    "SCHEMA_STATUS",
    "SCHEMA_WAVE",
    "UNITS_PER_MV",
    "USER_ID_PATTERN",
    "PayloadLimits",
    "Topics",
    "WaveChunk",
    "canonical_lead",
    "decode_wave",
    "decode_waves",
    "encode_wave",
]

SCHEMA_WAVE: Final = "ecgcast.wave/1"
SCHEMA_STATUS: Final = "ecgcast.status/1"
SCHEMA_PRESENCE: Final = "ecgcast.presence/1"

PATIENT_ID_PATTERN: Final = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
"""Letters, digits, '.', '_' and '-', starting alphanumeric: no '+', '#', '/' or '$' can reach a topic level.
Anchored with ``\\A``/``\\Z``, not ``^``/``$``: ``$`` also matches before a trailing newline, and "P001\\n" in a
topic makes mosquitto drop the publisher's connection. Use ``fullmatch``."""

USER_ID_PATTERN: Final = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._@-]{0,127}\Z")
"""A clinician's broker user name as the last level of an ack or mute topic (``nurse.kim``, ``kim@ward7``): no
'+', '#', '/' or '$' (a topic level the broker's ``%u`` ACL pattern can match one to one), no ':' (the password
file's separator), no spaces. Use ``fullmatch``."""

_STREAM_ID_PATTERN: Final = re.compile(r"\A[A-Za-z0-9._:-]{1,64}\Z")
_AGENT_ID_PATTERN: Final = PATIENT_ID_PATTERN  # agent.settings.Settings.agent_id has the same rule

_STANDARD_LEADS: Final = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

LEAD_SYNONYMS: Final[dict[str, str]] = {
    "mlii": "II",
    "ml2": "II",
    "mli": "I",
    "ml1": "I",
    "mliii": "III",
    "ml3": "III",
    **{f"mv{n}": f"V{n}" for n in range(1, 7)},
    **{name.lower(): name for name in _STANDARD_LEADS},
    **{f"lead {name.lower()}": name for name in _STANDARD_LEADS},
    **{f"lead_{name.lower()}": name for name in _STANDARD_LEADS},
    # IEEE 11073-10101 reference ids: the lead (MDC_ECG_LEAD_II, as in HL7 aECG and PCD-01 OBX-3) and the
    # waveform measured in it (MDC_ECG_ELEC_POTL_II); both name the same signal
    **{f"mdc_ecg_lead_{name.lower()}": name for name in _STANDARD_LEADS},
    **{f"mdc_ecg_elec_potl_{name.lower()}": name for name in _STANDARD_LEADS},
    "ecg": "ECG",
    "ecg1": "ECG1",
    "ecg2": "ECG2",
}
"""Lead names seen in the wild (MIT-BIH 'MLII', Holter 'ECG1', IEEE 11073 'MDC_ECG_LEAD_II', …) mapped to canonical
names; keys are lower case, and :func:`canonical_lead` compares case-insensitively."""


_LEADS_AS_SENT: Final[dict[str, str]] = {
    **{canonical: canonical for canonical in LEAD_SYNONYMS.values()},
    **{key.upper(): canonical for key, canonical in LEAD_SYNONYMS.items()},
}
"""Exact spellings devices send most (canonical and upper-case names): one dict lookup per lead per message."""


def canonical_lead(name: str) -> str:
    """Return the canonical lead name, e.g. ``canonical_lead("MLII") == "II"``; unknown names are refused."""
    exact = _LEADS_AS_SENT.get(name)
    if exact is not None:
        return exact
    key = name.strip().lower()
    if key not in LEAD_SYNONYMS:
        raise ProtocolError("unknown_lead", f"lead {name!r} is not a known ECG lead name", field="leads")
    return LEAD_SYNONYMS[key]


UNITS_PER_MV: Final[dict[str, float]] = {"mV": 1.0, "uV": 1000.0, "\u00b5V": 1000.0, "\u03bcV": 1000.0}
"""Physical units a wave message may state, and how many of each make one millivolt. Microvolts are accepted as
UCUM writes them (``uV``) and with either micro character (U+00B5 MICRO SIGN, U+03BC GREEK SMALL LETTER MU).
Case matters: ``MV`` would be megavolts."""

DIGITAL_UNITS: Final = "adu"
"""WFDB-style digital samples (analogue-to-digital units): mV = (value - ``baseline``) / ``gain``, with ``gain`` in
adu per mV, one number for every lead or a list with one per lead, as a WFDB header gives them per signal."""


@dataclass(frozen=True)
class Topics:
    """Topic templates under one prefix: ``<prefix>/<patient_id>/<kind>``."""

    prefix: str = "ecg/v1"

    def wave(self, patient_id: str) -> str:
        return f"{self.prefix}/{patient_id}/wave"

    def status(self, patient_id: str) -> str:
        return f"{self.prefix}/{patient_id}/status"

    def forecast(self, patient_id: str) -> str:
        return f"{self.prefix}/{patient_id}/forecast"

    def alert(self, patient_id: str) -> str:
        return f"{self.prefix}/{patient_id}/alert"

    def alert_ack(self, patient_id: str, user: str) -> str:
        """Where ``user`` acknowledges: the broker's ACL lets only that user (and the station relay) write it, so
        the topic, not the payload, says who acknowledged (docs/SECURITY.md, "Broker security profile")."""
        return f"{self.prefix}/{patient_id}/alert/ack/{user}"

    def alert_mute(self, patient_id: str, user: str) -> str:
        """Where ``user`` mutes (or unmutes) one patient's forecast alerts; identity from the topic, as for acks."""
        return f"{self.prefix}/{patient_id}/alert/mute/{user}"

    def alert_muted(self, patient_id: str) -> str:
        """The agent's retained word on the patient's forecast mute, for screens that connect later."""
        return f"{self.prefix}/{patient_id}/alert/muted"

    def presence(self, agent_id: str) -> str:
        """Retained 'online'/'offline' of one agent; '_agents' cannot be a patient id (ids start alphanumeric)."""
        return f"{self.prefix}/_agents/{agent_id}/presence"

    def agent_status(self, agent_id: str) -> str:
        """Retained counters of one agent (patients, rejections per reason, queue depth)."""
        return f"{self.prefix}/_agents/{agent_id}/status"

    def station_presence(self, client_id: str) -> str:
        """Retained 'online'/'offline' of one station's MQTT client (its own, never an agent's)."""
        return f"{self.prefix}/_stations/{client_id}/presence"

    @property
    def wave_subscription(self) -> str:
        return f"{self.prefix}/+/wave"

    @property
    def ack_subscription(self) -> str:
        return f"{self.prefix}/+/alert/ack/+"

    @property
    def mute_subscription(self) -> str:
        return f"{self.prefix}/+/alert/mute/+"

    def patient_of(self, topic: str, kind: str) -> str:
        """Patient id of ``<prefix>/<patient_id>/<kind>``; raises ProtocolError for anything else."""
        head = f"{self.prefix}/"
        tail = f"/{kind}"
        if not (topic.startswith(head) and topic.endswith(tail)):
            raise ProtocolError("bad_topic", f"topic {topic!r} is not {head}<patient_id>{tail}")
        patient_id = topic[len(head) : -len(tail)]
        if not PATIENT_ID_PATTERN.fullmatch(patient_id):
            raise ProtocolError("bad_patient_id", f"patient id {patient_id[:80]!r} in topic is not allowed")
        return patient_id

    def request_of(self, topic: str, kind: str) -> tuple[str, str]:
        """(patient id, user) of a nurse's request ``<prefix>/<patient_id>/<kind>/<user>`` (``kind`` is
        ``alert/ack`` or ``alert/mute``); raises ProtocolError for anything else."""
        head = f"{self.prefix}/"
        levels = topic[len(head) :].split("/") if topic.startswith(head) else []
        kind_levels = kind.split("/")
        if len(levels) != len(kind_levels) + 2 or levels[1:-1] != kind_levels:
            raise ProtocolError("bad_topic", f"topic {topic[:200]!r} is not {head}<patient_id>/{kind}/<user>")
        patient_id, user = levels[0], levels[-1]
        if not PATIENT_ID_PATTERN.fullmatch(patient_id):
            raise ProtocolError("bad_patient_id", f"patient id {patient_id[:80]!r} in topic is not allowed")
        if not USER_ID_PATTERN.fullmatch(user):
            raise ProtocolError("bad_user", f"user {user[:80]!r} in topic is not allowed")
        return patient_id, user

    def agent_of(self, topic: str) -> str:
        """Agent id of ``<prefix>/_agents/<agent_id>/presence``; raises ProtocolError for anything else."""
        head = f"{self.prefix}/_agents/"
        if not (topic.startswith(head) and topic.endswith("/presence")):
            raise ProtocolError("bad_topic", f"topic {topic[:200]!r} is not {head}<agent_id>/presence")
        agent_id = topic[len(head) : -len("/presence")]
        if not _AGENT_ID_PATTERN.fullmatch(agent_id):
            raise ProtocolError("bad_agent_id", f"agent id {agent_id[:80]!r} in topic is not allowed")
        return agent_id


@dataclass(frozen=True)
class PayloadLimits:
    """Bounds a wave message must respect; built from ``ProtocolSettings``."""

    max_payload_bytes: int = 262_144
    max_samples_per_lead: int = 5000
    max_leads: int = 12
    min_fs: float = 100.0
    max_fs: float = 1000.0

    @classmethod
    def from_settings(cls, p: ProtocolSettings) -> PayloadLimits:
        return cls(p.max_payload_bytes, p.max_samples_per_lead, p.max_leads, p.min_fs, p.max_fs)


@dataclass(eq=False, slots=True)
class WaveChunk:
    """One validated wave message: a contiguous block of samples for every lead of one stream.

    Treat as immutable. It is a slotted, not a frozen, dataclass, like the other records the ingest path builds
    per message (a frozen dataclass sets each field through ``object.__setattr__``, ~6x slower to construct).
    """

    patient_id: str
    stream_id: str
    seq: int
    t0: float  # device time of the first sample, Unix seconds
    fs: float  # samples per second per lead
    leads: tuple[str, ...]  # canonical names, e.g. ("II", "V1")
    samples: npt.NDArray[np.float32]  # (n_leads, n_samples) in mV; null samples are NaN, non-finite values kept
    peak_mv: float | None = None  # largest |sample| when decoding measured it (batched int16), else unknown

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[1])


_JSON: Final = json.JSONDecoder()


def _require(obj: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in obj:
        raise ProtocolError("missing_field", f"required field {name!r} is absent", field=name)
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ProtocolError("wrong_type", f"{name!r} has type {type(value).__name__}", field=name)
    return value


def _number(obj: dict[str, Any], name: str) -> float:
    """A required finite number; an integer too large for a float is refused like infinity."""
    return _float(name, _require(obj, name, (int, float)))


def _float(name: str, value: float) -> float:
    try:
        number = float(value)
    except OverflowError as exc:
        raise ProtocolError("bad_value", f"{name!r} is too large", field=name) from exc
    return _finite(name, number)


def _finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise ProtocolError("bad_value", f"{name!r} must be finite, got {value!r}", field=name)
    return float(value)


@dataclass(frozen=True, slots=True)
class _Scaling:
    """How one message's values become mV, lead by lead: ``(value - baseline) / per_mv``.

    A division, not a multiplication by the reciprocal: 1234 µV / 1000 is the double nearest 1.234, the value a
    sender writing 1.234 mV gets, where 1234 × 0.001 need not be. Worked in float64, rounded to float32 once, so a
    sample is stored exactly as its mV value would have been. Hashable: :func:`decode_waves` groups by it."""

    per_mv: tuple[float, ...]
    baseline: tuple[float, ...]

    def to_mv(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
        """``values`` (..., n_leads, n) in the message's units as mV; NaN (null) stays NaN."""
        per_mv = np.asarray(self.per_mv)[:, None]
        baseline = np.asarray(self.baseline)[:, None]
        mv: npt.NDArray[np.float64] = (values - baseline) / per_mv
        with np.errstate(over="ignore"):  # beyond float32 becomes inf: invalid, like any value past max_abs_mv
            return mv.astype(np.float32)


def _units(obj: dict[str, Any]) -> str:
    """The message's units, checked by name before anything depends on them."""
    units = obj.get("units", "mV")
    if units == "mV" or units == DIGITAL_UNITS or (isinstance(units, str) and units in UNITS_PER_MV):
        return str(units)
    raise ProtocolError("bad_units", f"units {str(units)[:20]!r} is not one of mV, uV, \u00b5V or adu", "units")


def _scaling(obj: dict[str, Any], units: str, n_leads: int) -> _Scaling | None:
    """The conversion to mV; None for mV itself, which the decoder then leaves alone (the common, fast case).
    ``gain`` and ``baseline`` beside physical units are refused: a sender who adds them means something by them."""
    if units == DIGITAL_UNITS:
        return _Scaling(_per_lead(obj, "gain", n_leads, None), _per_lead(obj, "baseline", n_leads, 0.0))
    if "gain" in obj or "baseline" in obj:  # two lookups, not a generator: this runs for every message
        stray = "gain" if "gain" in obj else "baseline"
        raise ProtocolError("bad_value", f"{stray!r} applies only to units {DIGITAL_UNITS!r}", field=stray)
    if units == "mV":
        return None
    return _Scaling((UNITS_PER_MV[units],) * n_leads, (0.0,) * n_leads)


def _per_lead(obj: dict[str, Any], name: str, n_leads: int, default: float | None) -> tuple[float, ...]:
    """A digital-units number for every lead: one JSON number for all, or a list with one per lead."""
    if name not in obj:
        if default is None:
            raise ProtocolError("missing_field", f"units {DIGITAL_UNITS!r} need {name!r} (adu per mV)", name)
        return (default,) * n_leads
    value = obj[name]
    items = value if isinstance(value, list) else [value] * n_leads
    if len(items) != n_leads:
        raise ProtocolError("bad_shape", f"{name!r} has {len(items)} values for {n_leads} leads", field=name)
    if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in items):
        raise ProtocolError("wrong_type", f"{name!r} must be a number or a list of numbers", field=name)
    numbers = tuple(_float(name, x) for x in items)
    if name == "gain" and min(numbers) <= 0:
        raise ProtocolError("bad_value", "'gain' must be positive (adu per mV)", field=name)
    return numbers


def _int16_frames(obj: dict[str, Any], n_leads: int, limits: PayloadLimits) -> tuple[bytes, float]:
    """The checked bytes and scale of a ``data_b64`` payload: little-endian int16 frames of ``n_leads`` samples."""
    data = _require(obj, "data_b64", str)
    scale = _number(obj, "scale")
    if scale <= 0:
        raise ProtocolError("bad_value", f"'scale' must be positive, got {scale}", field="scale")
    try:
        raw = base64.b64decode(data, validate=True)  # 4.1 µs per 1-s chunk; a2b_base64(strict_mode=True) took 5.8
    except ValueError as exc:
        raise ProtocolError("bad_encoding", f"data_b64 is not base64: {exc}", field="data_b64") from exc
    if len(raw) % (2 * n_leads):
        raise ProtocolError("bad_shape", "data_b64 length is not a whole number of int16 frames", "data_b64")
    _check_length(len(raw) // (2 * n_leads), limits)
    return raw, scale


def _check_length(n_samples: int, limits: PayloadLimits) -> None:
    if n_samples == 0:
        raise ProtocolError("bad_shape", "chunk has no samples", field="samples")
    if n_samples > limits.max_samples_per_lead:
        raise ProtocolError("too_many_samples", "chunk exceeds max_samples_per_lead", field="samples")


def _scaled_int16(
    raw: bytes, n_chunks: int, n_leads: int, scale: float, scaling: _Scaling | None = None
) -> npt.NDArray[np.float32]:
    """``n_chunks`` equal int16 frame blocks, concatenated in ``raw``, as (n_chunks, n_leads, n) mV. A count times
    ``scale`` is a value in the message's units; ``scaling`` (None for mV) takes it to mV."""
    ints = np.frombuffer(raw, dtype="<i2").reshape(n_chunks, -1, n_leads).transpose(0, 2, 1)
    if scaling is not None:
        return scaling.to_mv(ints * scale)
    samples = ints.astype(np.float32, order="C")  # a plain cast is ~4x cheaper than a casting multiply
    samples *= np.float32(scale)
    return samples


def _sample_lists(
    obj: dict[str, Any], n_leads: int, limits: PayloadLimits, scaling: _Scaling | None = None
) -> npt.NDArray[np.float32]:
    """Samples given as JSON lists, one flat list per lead, all of one length: numbers, and ``null`` for an invalid
    sample (numpy reads None as NaN, the ring buffer's own invalid sample).

    Each element's type is checked (one C-level pass per lead): numpy would otherwise flatten a list nested one
    level deeper into a longer chunk, and read ``true``/``false`` as 1.0/0.0."""
    lists = _require(obj, "samples", list)
    if len(lists) != n_leads:
        raise ProtocolError("bad_shape", f"{len(lists)} sample lists for {n_leads} leads", field="samples")
    for index, row in enumerate(lists):
        _check_row(row, index)
    lengths = {len(row) for row in lists}
    if len(lengths) != 1:
        raise ProtocolError("bad_shape", f"leads have unequal lengths {sorted(lengths)}", field="samples")
    _check_length(lengths.pop(), limits)
    try:
        if scaling is None:
            return np.array(lists, dtype=np.float32).reshape(n_leads, -1)
        values = np.array(lists, dtype=np.float64).reshape(n_leads, -1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError("wrong_type", "samples must be numbers", field="samples") from exc
    return scaling.to_mv(values)


_SAMPLE_TYPES: Final = frozenset({int, float, type(None)})  # exact types: bool, a subclass of int, is not a sample


def _check_row(row: object, index: int) -> None:
    if not isinstance(row, list):
        raise ProtocolError("wrong_type", f"samples[{index}] must be a list of numbers and nulls", field="samples")
    kinds = set(map(type, row))
    if not kinds <= _SAMPLE_TYPES:
        found = sorted(kind.__name__ for kind in kinds - _SAMPLE_TYPES)
        raise ProtocolError("wrong_type", f"samples[{index}] holds {', '.join(found)}, not numbers or null", "samples")


@dataclass(eq=False, slots=True)
class _Envelope:
    """A wave message with every field but the samples checked."""

    patient_id: str
    stream_id: str
    seq: int
    t0: float
    fs: float
    leads: tuple[str, ...]
    obj: dict[str, Any]
    scaling: _Scaling | None  # None: the values are mV already

    def chunk(self, samples: npt.NDArray[np.float32], peak_mv: float | None = None) -> WaveChunk:
        return WaveChunk(self.patient_id, self.stream_id, self.seq, self.t0, self.fs, self.leads, samples, peak_mv)


def _envelope(payload: bytes, limits: PayloadLimits, topic_patient_id: str | None) -> _Envelope:
    if len(payload) > limits.max_payload_bytes:
        raise ProtocolError("oversize", f"payload of {len(payload)} bytes exceeds {limits.max_payload_bytes}")
    try:
        obj = _JSON.decode(payload.decode("utf-8"))  # json.loads minus its encoding sniffing: the protocol is UTF-8
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError("bad_json", f"payload is not JSON: {exc}") from exc
    except RecursionError as exc:  # the C scanner recurses per nesting level
        raise ProtocolError("bad_json", "payload nests too deeply") from exc
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", f"payload must be a JSON object, got {type(obj).__name__}")
    schema = _require(obj, "schema", str)
    if schema != SCHEMA_WAVE:
        raise ProtocolError("unknown_schema", f"schema {schema[:40]!r} is not {SCHEMA_WAVE!r}", field="schema")
    patient_id = _require(obj, "patient_id", str)
    if patient_id != topic_patient_id and not PATIENT_ID_PATTERN.fullmatch(patient_id):  # the topic's id was checked
        raise ProtocolError("bad_patient_id", f"patient_id {patient_id[:80]!r} is not allowed", "patient_id")
    if topic_patient_id is not None and patient_id != topic_patient_id:
        raise ProtocolError("patient_mismatch", f"payload {patient_id!r} != topic {topic_patient_id!r}", "patient_id")
    stream_id = _require(obj, "stream_id", str)
    if not _STREAM_ID_PATTERN.fullmatch(stream_id):
        raise ProtocolError("bad_value", f"stream_id {stream_id[:80]!r} is not allowed", field="stream_id")
    seq = _require(obj, "seq", int)
    if not 0 <= seq < 2**53:
        raise ProtocolError("bad_value", f"seq {seq} out of range [0, 2^53)", field="seq")
    t0 = _number(obj, "t0")
    fs = _number(obj, "fs")
    if not limits.min_fs <= fs <= limits.max_fs:
        raise ProtocolError("bad_fs", f"fs {fs} outside [{limits.min_fs}, {limits.max_fs}] Hz", field="fs")
    units = _units(obj)
    raw_leads = _require(obj, "leads", list)
    if not raw_leads or len(raw_leads) > limits.max_leads or not all(isinstance(x, str) for x in raw_leads):
        raise ProtocolError("bad_leads", f"leads must be 1..{limits.max_leads} names", field="leads")
    leads = tuple(canonical_lead(x) for x in raw_leads)
    if len(set(leads)) != len(leads):
        raise ProtocolError("bad_leads", f"duplicate leads {list(leads)}", field="leads")
    return _Envelope(patient_id, stream_id, seq, t0, fs, leads, obj, _scaling(obj, units, len(leads)))


def decode_wave(payload: bytes, limits: PayloadLimits, topic_patient_id: str | None = None) -> WaveChunk:
    """Parse and validate one wave payload; raise ProtocolError naming the first problem found.

    ``topic_patient_id`` is the id from the message's topic, already checked against :data:`PATIENT_ID_PATTERN`
    (:meth:`Topics.patient_of`); the payload's id must equal it.
    """
    env = _envelope(payload, limits, topic_patient_id)
    n_leads = len(env.leads)
    if "data_b64" not in env.obj:
        return env.chunk(_sample_lists(env.obj, n_leads, limits, env.scaling))
    raw, scale = _int16_frames(env.obj, n_leads, limits)
    return env.chunk(_scaled_int16(raw, 1, n_leads, scale, env.scaling)[0])


def decode_waves(
    payloads: Sequence[tuple[bytes, str | None]], limits: PayloadLimits
) -> list[WaveChunk | ProtocolError]:
    """:func:`decode_wave` for many ``(payload, topic_patient_id)`` pairs: each result is the chunk or the error
    that call would give. int16 payloads of the same shape and scale are converted by one numpy call per group,
    which at 1-s chunks costs about what one message's conversion did. Those chunks also carry their ``peak_mv``
    (one reduction per group), so that the ingest worker need not scan each one for out-of-range samples."""
    out: list[WaveChunk | ProtocolError | None] = []  # None: an int16 chunk converted below, with its group
    groups: dict[tuple[int, int, float, _Scaling | None], list[tuple[int, _Envelope, bytes]]] = {}
    for payload, topic_patient_id in payloads:
        try:
            env = _envelope(payload, limits, topic_patient_id)
            if "data_b64" in env.obj:
                raw, scale = _int16_frames(env.obj, len(env.leads), limits)
                key = (len(raw), len(env.leads), scale, env.scaling)
                groups.setdefault(key, []).append((len(out), env, raw))
                out.append(None)
            else:
                out.append(env.chunk(_sample_lists(env.obj, len(env.leads), limits, env.scaling)))
        except ProtocolError as exc:
            out.append(exc)
        except Exception as exc:  # a decoder bug costs this message, not the batch of every patient's chunks
            out.append(ProtocolError("decoder_error", f"{type(exc).__name__}: {exc}"))
    for (_, n_leads, scale, scaling), members in groups.items():
        samples = _scaled_int16(b"".join(raw for _, _, raw in members), len(members), n_leads, scale, scaling)
        peaks = np.abs(samples).reshape(len(members), -1).max(axis=1).tolist()
        for (index, env, _), block, peak in zip(members, samples, peaks, strict=True):
            out[index] = env.chunk(block, peak)
    return [result for result in out if result is not None]


def encode_wave(chunk: WaveChunk, encoding: str = "json", scale: float = 0.001, *, units: str = "mV") -> bytes:
    """Serialise a chunk: ``json`` lists of floats, or ``b64`` int16 (``scale`` mV per count, default 1 µV).

    A non-finite sample is invalid on the wire: ``null`` in JSON, and in int16 (which has no NaN) the most negative
    count, -32768, WFDB's own invalid-sample value, which at 1 µV per count lies beyond ``protocol.max_abs_mv``.
    Zero would be a plausible flat line; an invalid sample must read as one."""
    body: dict[str, Any] = {
        "schema": SCHEMA_WAVE,
        "patient_id": chunk.patient_id,
        "stream_id": chunk.stream_id,
        "seq": chunk.seq,
        "t0": round(chunk.t0, 6),
        "fs": chunk.fs,
        "leads": list(chunk.leads),
        "units": units,
    }
    if encoding == "json":
        body["samples"] = [[round(v, 4) if math.isfinite(v) else None for v in row] for row in chunk.samples.tolist()]
    elif encoding == "b64":
        counts = np.clip(np.round(np.nan_to_num(chunk.samples / scale, nan=-32768.0)), -32768, 32767).astype("<i2")
        body["scale"] = scale
        body["data_b64"] = base64.b64encode(counts.T.tobytes()).decode("ascii")  # interleaved frames
    else:
        raise ValueError(f"encoding must be 'json' or 'b64', got {encoding!r}")
    return json.dumps(body, separators=(",", ":")).encode()
