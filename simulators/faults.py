"""A telemetry device as a pure generator of publish actions, with faults on demand.

Why pure: every fault (drop, duplicate, reorder, jitter, device restart, lead-off, publisher disconnect, malformed
payloads) is decided here from a seeded RNG and can be tested without a broker; :mod:`simulators.publisher` only
paces and sends what this module yields.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from core.errors import ProtocolError, SignalError
from core.protocol import Topics, WaveChunk, canonical_lead, encode_wave
from simulators.records import AnnotatedRecord

__all__ = [
    "MALFORMED_EXPECTED",
    "Disconnect",
    "FaultPlan",
    "Publish",
    "device_actions",
    "malformed_payload",
    "new_stream_id",
    "wire_leads",
]


@dataclass(frozen=True)
class FaultPlan:
    """Which faults a simulated device injects; all off by default (a well-behaved device)."""

    drop_prob: float = 0.0  # chunk never published (its seq is skipped: a gap)
    duplicate_prob: float = 0.0  # chunk published twice
    reorder_prob: float = 0.0  # chunk held back and published after the next one
    jitter_s: float = 0.0  # extra publish delay per chunk, uniform in [0, jitter_s] wall seconds
    restart_at_s: tuple[float, ...] = ()  # device restarts at these signal times: new stream_id, seq from 0
    lead_off: tuple[tuple[float, float], ...] = ()  # signal-time spans where every lead reads flat (electrodes off)
    disconnect_at_s: tuple[float, ...] = ()  # publisher disconnects at these signal times...
    disconnect_pause_s: float = 2.0  # ...and reconnects after this many wall seconds (chunks buffered meanwhile)
    malformed_every: int = 0  # after every n-th chunk, one malformed payload (kinds in rotation); 0 = never
    malformed_kinds: tuple[str, ...] = ()  # empty = all of MALFORMED_EXPECTED

    def __post_init__(self) -> None:
        for name in ("drop_prob", "duplicate_prob", "reorder_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        unknown = set(self.malformed_kinds) - set(MALFORMED_EXPECTED)
        if unknown:
            raise ValueError(f"unknown malformed kinds {sorted(unknown)}; choose from {sorted(MALFORMED_EXPECTED)}")


@dataclass(frozen=True)
class Publish:
    """Send ``payload`` on ``topic`` once the signal clock reaches ``due_s`` (+ ``delay_s`` wall seconds)."""

    topic: str
    payload: bytes
    due_s: float  # signal time at which the chunk is complete
    delay_s: float = 0.0
    label: str = "chunk"  # chunk, duplicate, reordered, malformed:<kind>
    stream_id: str = ""
    seq: int = -1


@dataclass(frozen=True)
class Disconnect:
    """The publisher drops its broker connection at ``due_s`` and reconnects after ``pause_s`` wall seconds."""

    due_s: float
    pause_s: float


Action = Publish | Disconnect


def new_stream_id(patient_id: str) -> str:
    """``<patient>-<random hex>``: fresh per device boot, never reused across runs (so not seeded)."""
    return f"{patient_id[:50]}-{secrets.token_hex(4)}"


def wire_leads(sig_name: list[str]) -> tuple[str, ...]:
    """Canonical lead names for the wire; names without one (e.g. afpdb 'ECG0') become ECG1, ECG2, ..."""
    names = []
    for i, name in enumerate(sig_name):
        try:
            names.append(canonical_lead(name))
        except ProtocolError:
            names.append(f"ECG{i + 1}")
    if len(set(names)) != len(names):
        raise SignalError(f"leads {sig_name} map to duplicate wire names {names}")
    return tuple(names)


def _body(chunk: WaveChunk) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(encode_wave(chunk, "json"))
    return obj


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _with(chunk: WaveChunk, **fields: Any) -> bytes:
    return _dumps({**_body(chunk), **fields})


def _without(chunk: WaveChunk, name: str) -> bytes:
    return _dumps({k: v for k, v in _body(chunk).items() if k != name})


def _samples_with(chunk: WaveChunk, value: float) -> bytes:
    rows = [[round(float(v), 4) for v in row] for row in chunk.samples]
    rows[0][len(rows[0]) // 2] = value
    return _with(chunk, samples=rows)


def _unequal(chunk: WaveChunk) -> bytes:
    rows = [[round(float(v), 4) for v in row] for row in chunk.samples]
    rows[-1] = rows[-1][:-1]
    if len(rows) == 1:
        rows.append(rows[0][:-1])  # one-lead stream: a second, shorter list is unequal too
    return _with(chunk, samples=rows)


MALFORMED_BUILDERS: Final[dict[str, Callable[[WaveChunk], bytes]]] = {
    "bad_json": lambda c: encode_wave(c)[:-7],
    "not_object": lambda c: b"[1, 2, 3]",
    "wrong_type": lambda c: _with(c, seq=str(c.seq)),
    "missing_field": lambda c: _without(c, "stream_id"),
    "oversize": lambda c: _with(c, pad="x" * 300_000),
    "unknown_schema": lambda c: _with(c, schema="ecgcast.wave/99"),
    "hostile_id_plus": lambda c: _with(c, patient_id="+"),
    "hostile_id_hash": lambda c: _with(c, patient_id="#"),
    "hostile_id_slash": lambda c: _with(c, patient_id="a/b"),
    "nan_samples": lambda c: _samples_with(c, math.nan),
    "inf_samples": lambda c: _samples_with(c, math.inf),
    "impossible_values": lambda c: _samples_with(c, 500.0),
    "unequal_leads": _unequal,
    "bad_fs": lambda c: _with(c, fs=0.5),
    "unknown_lead": lambda c: _with(c, leads=["XYZ", *list(c.leads)[1:]]),
    "bad_base64": lambda c: _with(c, data_b64="!!not base64!!", scale=0.001),
    "nan_t0": lambda c: _with(c, t0=math.nan),
    "wrong_units": lambda c: _with(c, units="V"),  # volts: not a unit the protocol takes (mV, µV, adu)
}

MALFORMED_EXPECTED: Final[dict[str, str | None]] = {
    "bad_json": "bad_json",
    "not_object": "bad_json",
    "wrong_type": "wrong_type",
    "missing_field": "missing_field",
    "oversize": "oversize",
    "unknown_schema": "unknown_schema",
    "hostile_id_plus": "bad_patient_id",
    "hostile_id_hash": "bad_patient_id",
    "hostile_id_slash": "bad_patient_id",
    "nan_samples": None,
    "inf_samples": None,
    "impossible_values": None,
    "unequal_leads": "bad_shape",
    "bad_fs": "bad_fs",
    "unknown_lead": "unknown_lead",
    "bad_base64": "bad_encoding",
    "nan_t0": "bad_value",
    "wrong_units": "bad_units",
}
"""``decode_wave``'s rejection reason per malformed kind. ``None``: the payload is structurally valid and decodes,
but its samples are non-finite or beyond ``protocol.max_abs_mv``; the agent masks them as invalid after decoding
(agent/patient.py) rather than rejecting the chunk."""


def malformed_payload(kind: str, chunk: WaveChunk) -> bytes:
    """A payload derived from a valid chunk and broken in the one way ``kind`` names."""
    if kind not in MALFORMED_BUILDERS:
        raise ValueError(f"unknown malformed kind {kind!r}; choose from {sorted(MALFORMED_BUILDERS)}")
    return MALFORMED_BUILDERS[kind](chunk)


def _flatten(
    samples: npt.NDArray[np.float32], lo_s: float, fs: float, plan: FaultPlan, rng: np.random.Generator
) -> None:
    """Electrodes off: the touched samples read ~0 mV with a trace of amplifier noise (in place)."""
    t_s = lo_s + np.arange(samples.shape[1]) / fs
    for start_s, end_s in plan.lead_off:
        off = (t_s >= start_s) & (t_s < end_s)
        if off.any():
            samples[:, off] = (0.002 * rng.standard_normal((samples.shape[0], int(off.sum())))).astype(np.float32)


def _wire_samples(record: AnnotatedRecord, lo: int, n: int) -> npt.NDArray[np.float32]:
    """Samples ``lo .. lo + n`` as (n_leads, n), with the record's missing samples as NaN: on the wire they are
    invalid samples (docs/PROTOCOL.md), so the agent marks their seconds invalid instead of reading a flat line."""
    samples = np.array(record.p_signal[lo : lo + n].T, order="C")  # a copy: one lead's .T would be a view
    if record.missing is not None:
        samples[record.missing[lo : lo + n].T] = np.nan
    return samples


def device_actions(
    record: AnnotatedRecord,
    patient_id: str,
    *,
    t_start: float,
    chunk_s: float = 1.0,
    encoding: str = "json",
    topics: Topics | None = None,
    plan: FaultPlan | None = None,
    rng: np.random.Generator | None = None,
) -> Iterator[Action]:
    """Publish actions of one device streaming ``record``: chunks of ``chunk_s`` with seq from 0 per stream,
    ``t0 = t_start + signal time`` (a virtual clock), and the faults of ``plan``."""
    topics, plan, rng = topics or Topics(), plan or FaultPlan(), rng or np.random.default_rng()
    n = max(1, round(chunk_s * record.fs))
    leads = wire_leads(record.sig_name)
    kinds = plan.malformed_kinds or tuple(MALFORMED_EXPECTED)
    restarts, disconnects = sorted(plan.restart_at_s), sorted(plan.disconnect_at_s)
    stream_id, seq, held, topic = new_stream_id(patient_id), 0, None, topics.wave(patient_id)
    for k, lo in enumerate(range(0, record.sig_len, n)):
        lo_s, hi_s = lo / record.fs, min(lo + n, record.sig_len) / record.fs
        if restarts and lo_s >= restarts[0]:
            restarts.pop(0)
            stream_id, seq = new_stream_id(patient_id), 0
        if disconnects and lo_s >= disconnects[0]:
            disconnects.pop(0)
            yield Disconnect(lo_s, plan.disconnect_pause_s)
        samples = _wire_samples(record, lo, n)
        _flatten(samples, lo_s, record.fs, plan, rng)
        chunk = WaveChunk(patient_id, stream_id, seq, t_start + lo_s, record.fs, leads, samples)
        seq += 1
        if plan.malformed_every and (k + 1) % plan.malformed_every == 0:
            kind = kinds[((k + 1) // plan.malformed_every - 1) % len(kinds)]
            yield Publish(topic, malformed_payload(kind, chunk), hi_s, 0.0, f"malformed:{kind}", stream_id, -1)
        if rng.random() < plan.drop_prob:
            continue
        delay = float(rng.uniform(0.0, plan.jitter_s)) if plan.jitter_s > 0 else 0.0
        action = Publish(topic, encode_wave(chunk, encoding), hi_s, delay, "chunk", stream_id, chunk.seq)
        if held is None and rng.random() < plan.reorder_prob:
            held = action
            continue
        yield action
        if held is not None:
            yield replace(held, label="reordered", due_s=hi_s)
            held = None
        if rng.random() < plan.duplicate_prob:
            yield replace(action, label="duplicate")
    if held is not None:
        yield replace(held, label="reordered")
