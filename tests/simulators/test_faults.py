"""Fault injection as pure device actions: each fault is decided here and visible in what would be sent."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from core.errors import ProtocolError
from core.protocol import PayloadLimits, Topics, WaveChunk, decode_wave
from core.settings import ProtocolSettings
from simulators.faults import (
    MALFORMED_EXPECTED,
    Disconnect,
    FaultPlan,
    Publish,
    device_actions,
    malformed_payload,
)
from simulators.scenarios import generate_scenario

LIMITS = PayloadLimits()


@pytest.fixture(scope="module")
def record():  # type: ignore[no-untyped-def]
    return generate_scenario("sinus_ectopy", seed=1, minutes=1.0, fs=250.0, leads=("II", "V1"), noise="low")


def _chunks(actions: list[Publish | Disconnect]) -> list[WaveChunk]:
    return [decode_wave(a.payload, LIMITS) for a in actions if isinstance(a, Publish) and a.seq >= 0]


def test_clean_device_streams_every_sample_in_order(record) -> None:  # type: ignore[no-untyped-def]
    actions = list(device_actions(record, "sim-0001", t_start=1000.0, chunk_s=0.2, encoding="b64"))
    chunks = _chunks(actions)
    assert [c.seq for c in chunks] == list(range(300))
    assert len({c.stream_id for c in chunks}) == 1 and chunks[0].stream_id.startswith("sim-0001-")
    assert chunks[5].t0 == pytest.approx(1001.0)
    joined = np.concatenate([c.samples for c in chunks], axis=1)
    np.testing.assert_allclose(joined.T, record.p_signal, atol=0.0006)
    assert all(a.topic == Topics().wave("sim-0001") for a in actions if isinstance(a, Publish))


def test_drop_duplicate_reorder_and_jitter(record) -> None:  # type: ignore[no-untyped-def]
    plan = FaultPlan(drop_prob=0.1, duplicate_prob=0.1, reorder_prob=0.1, jitter_s=0.05)
    actions = list(device_actions(record, "p1", t_start=0.0, plan=plan, rng=np.random.default_rng(4)))
    labels = [a.label for a in actions if isinstance(a, Publish)]
    seqs = [c.seq for c in _chunks(actions)]
    assert set(range(60)) - set(seqs), "a dropped chunk leaves a seq gap"
    assert len(seqs) > len(set(seqs)) and "duplicate" in labels
    assert "reordered" in labels and any(b < a for a, b in itertools.pairwise(seqs))
    delays = [a.delay_s for a in actions if isinstance(a, Publish)]
    assert 0 < max(delays) <= 0.05


def test_restart_lead_off_and_disconnect(record) -> None:  # type: ignore[no-untyped-def]
    plan = FaultPlan(restart_at_s=(20.0,), lead_off=((30.0, 35.0),), disconnect_at_s=(40.0,), disconnect_pause_s=0.5)
    actions = list(device_actions(record, "p1", t_start=0.0, plan=plan))
    chunks = _chunks(actions)
    streams = [c.stream_id for c in chunks]
    assert streams[19] != streams[20] and chunks[20].seq == 0 and chunks[19].seq == 19
    assert all(np.ptp(c.samples) < 0.05 for c in chunks[30:35]) and np.ptp(chunks[29].samples) > 0.3
    (disconnect,) = [a for a in actions if isinstance(a, Disconnect)]
    assert disconnect.due_s == 40.0 and disconnect.pause_s == 0.5


@pytest.mark.parametrize("kind", sorted(MALFORMED_EXPECTED))
def test_each_malformed_payload_meets_the_agent_verdict(record, kind: str) -> None:  # type: ignore[no-untyped-def]
    good = next(iter(_chunks(list(device_actions(record, "p1", t_start=0.0)))))
    payload = malformed_payload(kind, good)
    expected = MALFORMED_EXPECTED[kind]
    if expected is None:
        chunk = decode_wave(payload, LIMITS, topic_patient_id="p1")  # decodes; the agent masks these samples
        bad = ~np.isfinite(chunk.samples) | (np.abs(chunk.samples) > ProtocolSettings().max_abs_mv)
        assert int(bad.sum()) == 1
    else:
        with pytest.raises(ProtocolError) as info:
            decode_wave(payload, LIMITS, topic_patient_id="p1")
        assert info.value.reason == expected


def test_malformed_rotation_covers_every_kind(record) -> None:  # type: ignore[no-untyped-def]
    plan = FaultPlan(malformed_every=3)
    labels = [a.label for a in device_actions(record, "p1", t_start=0.0, plan=plan) if isinstance(a, Publish)]
    assert {f"malformed:{k}" for k in MALFORMED_EXPECTED} <= set(labels)


def test_plan_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        FaultPlan(drop_prob=1.5)
    with pytest.raises(ValueError):
        FaultPlan(malformed_kinds=("nope",))
