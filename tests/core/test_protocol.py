from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from core import protocol
from core.errors import ProtocolError
from core.protocol import (
    PATIENT_ID_PATTERN,
    PayloadLimits,
    Topics,
    WaveChunk,
    canonical_lead,
    decode_wave,
    decode_waves,
    encode_wave,
)

from .wave_builders import wave

LIMITS = PayloadLimits()


def test_topics_build_and_parse() -> None:
    topics = Topics("ecg/v1")
    assert topics.wave("bed-12") == "ecg/v1/bed-12/wave"
    assert topics.status("bed-12") == "ecg/v1/bed-12/status"
    assert topics.alert_ack("bed-12", "nurse.kim") == "ecg/v1/bed-12/alert/ack/nurse.kim"
    assert topics.alert_mute("bed-12", "nurse.kim") == "ecg/v1/bed-12/alert/mute/nurse.kim"
    assert topics.ack_subscription == "ecg/v1/+/alert/ack/+"
    assert topics.agent_status("agent-1") == "ecg/v1/_agents/agent-1/status"
    assert topics.presence("agent-1") == "ecg/v1/_agents/agent-1/presence"
    assert topics.wave_subscription == "ecg/v1/+/wave"
    assert topics.patient_of("ecg/v1/bed-12/wave", "wave") == "bed-12"
    with pytest.raises(ProtocolError) as info:
        topics.patient_of("ecg/v1/_agents/wave", "wave")
    assert info.value.reason == "bad_patient_id"
    with pytest.raises(ProtocolError, match="bad_topic"):
        topics.patient_of("other/bed-12/wave", "wave")


def test_valid_json_wave_decodes_with_canonical_leads() -> None:
    chunk = decode_wave(wave(), LIMITS, topic_patient_id="bed-12")
    assert chunk.leads == ("II", "V1")
    assert chunk.samples.shape == (2, 3)
    assert chunk.samples.dtype == np.float32
    assert chunk.seq == 7 and chunk.fs == 250.0


def test_b64_encoding_round_trips_within_one_count() -> None:
    rng = np.random.default_rng(0)
    samples = rng.normal(0, 1, (3, 250)).astype(np.float32)
    chunk = WaveChunk("p1", "s1", 0, 1.0, 250.0, ("I", "II", "V5"), samples)
    decoded = decode_wave(encode_wave(chunk, "b64", scale=0.001), LIMITS)
    assert decoded.leads == ("I", "II", "V5")
    np.testing.assert_allclose(decoded.samples, samples, atol=0.0005 + 1e-6)
    assert decode_wave(encode_wave(chunk, "json"), LIMITS).samples.shape == (3, 250)


MALFORMED = [
    (b"{not json", "bad_json", None),
    (b"[1, 2]", "bad_json", None),
    (b"\xff\xfe", "bad_json", None),
    (wave(schema="ecgcast.wave/2"), "unknown_schema", "schema"),
    (wave(schema=...), "missing_field", "schema"),
    (wave(seq=...), "missing_field", "seq"),
    (wave(seq="7"), "wrong_type", "seq"),
    (wave(seq=True), "wrong_type", "seq"),
    (wave(seq=-1), "bad_value", "seq"),
    (wave(t0="now"), "wrong_type", "t0"),
    (wave(fs=5), "bad_fs", "fs"),
    (wave(fs=50000), "bad_fs", "fs"),
    (wave(units="V"), "bad_units", "units"),
    (wave(leads=["II"]), "bad_shape", "samples"),
    (wave(leads=["II", "II"]), "bad_leads", "leads"),
    (wave(leads=["II", "XYZ"]), "unknown_lead", "leads"),
    (wave(leads=[]), "bad_leads", "leads"),
    (wave(samples=[[1, 2, 3], [1, 2]]), "bad_shape", "samples"),
    (wave(samples=[[1, "a", 3], [1, 2, 3]]), "wrong_type", "samples"),
    (wave(samples=[[], []]), "bad_shape", "samples"),
    (wave(samples="abc"), "wrong_type", "samples"),
    (wave(patient_id="+"), "bad_patient_id", "patient_id"),
    (wave(patient_id="#"), "bad_patient_id", "patient_id"),
    (wave(patient_id="a/b"), "bad_patient_id", "patient_id"),
    (wave(patient_id="other"), "patient_mismatch", "patient_id"),
    (wave(stream_id="a b"), "bad_value", "stream_id"),
    (wave(data_b64="!!!", scale=0.001), "bad_encoding", "data_b64"),
    (wave(data_b64="AAA=", scale=0.001), "bad_shape", "data_b64"),
    (wave(data_b64="AAAAAA==", scale=0), "bad_value", "scale"),
    (wave(data_b64="AAA=A", scale=0.001), "bad_encoding", "data_b64"),
    (wave(data_b64="AAAAA", scale=0.001), "bad_encoding", "data_b64"),
    (wave(t0=10**400), "bad_value", "t0"),
    (wave(fs=10**400), "bad_value", "fs"),
    (wave(data_b64="AAAAAA==", scale=10**400), "bad_value", "scale"),
    (b"[" * 50_000 + b"]" * 50_000, "bad_json", None),
    (b" " * 300_000, "oversize", None),
    # issue 19: samples nested one level deeper were flattened into a longer chunk; booleans were read as 1.0/0.0
    (wave(samples=[[[0.1, 0.2, 0.3]], [[0.0, -0.1, -0.2]]]), "wrong_type", "samples"),
    (wave(samples=[[[0.1], [0.2], [0.3]], [[0.0], [-0.1], [-0.2]]]), "wrong_type", "samples"),
    (wave(samples=[[True, 0.2, 0.3], [0.0, False, -0.2]]), "wrong_type", "samples"),
    (wave(samples=[[10**400, 0.2, 0.3], [0.0, 0.1, -0.2]]), "wrong_type", "samples"),
    (wave(patient_id="bed-12\n"), "bad_patient_id", "patient_id"),
    (wave(stream_id="dev-a1\n"), "bad_value", "stream_id"),
]


@pytest.mark.parametrize(("payload", "reason", "field"), MALFORMED)
def test_malformed_waves_are_rejected_with_reason_and_field(payload: bytes, reason: str, field: str | None) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_wave(payload, LIMITS, topic_patient_id="bed-12")
    assert info.value.reason == reason
    assert info.value.field == field


def test_a_one_second_chunk_nested_one_level_deeper_is_refused_not_decoded_as_longer() -> None:
    """Issue 19: 250 samples sent as four nested lists per lead decoded as a 1000-sample (4-s) chunk."""
    second = [[round(0.001 * i, 3) for i in range(250)]] * 4
    with pytest.raises(ProtocolError, match=r"samples\[0\] holds list") as info:
        decode_wave(wave(leads=["II"], samples=[second]), LIMITS)
    assert (info.value.reason, info.value.field) == ("wrong_type", "samples")
    with pytest.raises(ProtocolError, match=r"samples\[1\] holds bool"):
        decode_wave(wave(samples=[[0.1, 0.2, 0.3], [0.0, True, 0.2]]), LIMITS)
    assert decode_wave(wave(samples=[[1, 2.5, -3], [0, 0, 0]]), LIMITS).samples.shape == (2, 3)  # ints are numbers


def test_ids_with_a_trailing_newline_are_refused_everywhere() -> None:
    """Issue 19: ``$`` matches before a trailing newline, so "P001\\n" passed PATIENT_ID_PATTERN.match and reached a
    topic, where mosquitto drops the publisher's connection."""
    assert PATIENT_ID_PATTERN.match("P001") and PATIENT_ID_PATTERN.fullmatch("P001")
    for bad in ("P001\n", "P001\r\n", "\nP001", "P0\n01"):
        assert not PATIENT_ID_PATTERN.match(bad) and not PATIENT_ID_PATTERN.fullmatch(bad), repr(bad)
    topics = Topics("ecg/v1")
    with pytest.raises(ProtocolError) as info:
        topics.patient_of("ecg/v1/P001\n/wave", "wave")
    assert info.value.reason == "bad_patient_id"
    with pytest.raises(ProtocolError) as info:
        decode_wave(wave(patient_id="bed-12\n"), LIMITS)  # no topic to compare with: the pattern decides
    assert (info.value.reason, info.value.field) == ("bad_patient_id", "patient_id")


def test_agent_of_presence_topic() -> None:
    topics = Topics("ecg/v1")
    assert topics.agent_of("ecg/v1/_agents/agent-1/presence") == "agent-1"
    for bad, reason in [
        ("ecg/v1/_agents/agent-1\n/presence", "bad_agent_id"),
        ("ecg/v1/_agents/a/b/presence", "bad_agent_id"),
        ("ecg/v1/_agents//presence", "bad_agent_id"),
        ("ecg/v1/P1/presence", "bad_topic"),
        ("other/_agents/agent-1/presence", "bad_topic"),
    ]:
        with pytest.raises(ProtocolError) as info:
            topics.agent_of(bad)
        assert info.value.reason == reason, bad


def test_request_of_ack_and_mute_topics_names_patient_and_user() -> None:
    """Issue 19: who acknowledged is the topic's last level, the one the broker's ACL ties to the signed-in user."""
    topics = Topics("ecg/v1")
    assert topics.request_of("ecg/v1/bed-12/alert/ack/nurse.kim", "alert/ack") == ("bed-12", "nurse.kim")
    assert topics.request_of("ecg/v1/bed-12/alert/mute/kim@ward7", "alert/mute") == ("bed-12", "kim@ward7")
    for bad, reason in [
        ("ecg/v1/bed-12/alert/ack", "bad_topic"),  # no user level: nobody's ack
        ("ecg/v1/bed-12/alert/ack/kim/extra", "bad_topic"),
        ("ecg/v1/bed-12/alert/mute/kim", "bad_topic"),  # a mute topic is not an ack topic
        ("other/bed-12/alert/ack/kim", "bad_topic"),
        ("ecg/v1/bed-12\n/alert/ack/kim", "bad_patient_id"),
        ("ecg/v1/bed-12/alert/ack/", "bad_user"),
        ("ecg/v1/bed-12/alert/ack/nurse\u202ekim", "bad_user"),  # right-to-left override
        ("ecg/v1/bed-12/alert/ack/nurse kim", "bad_user"),
        ("ecg/v1/bed-12/alert/ack/kim:x", "bad_user"),
        ("ecg/v1/bed-12/alert/ack/.kim", "bad_user"),
    ]:
        with pytest.raises(ProtocolError) as info:
            topics.request_of(bad, "alert/ack")
        assert info.value.reason == reason, bad


def test_too_many_samples_is_rejected() -> None:
    payload = wave(samples=[[0.0] * 6000, [0.0] * 6000])
    with pytest.raises(ProtocolError) as info:
        decode_wave(payload, PayloadLimits(max_payload_bytes=10**6))
    assert info.value.reason == "too_many_samples"


def test_nan_samples_are_kept_for_the_buffer_to_mark_invalid() -> None:
    payload = wave(samples=[[0.1, float("nan"), 0.3], [0.0, float("inf"), 0.0]])
    chunk = decode_wave(payload, LIMITS)
    assert np.isnan(chunk.samples[0, 1]) and np.isinf(chunk.samples[1, 1])


def test_lead_synonyms() -> None:
    assert canonical_lead("MLII") == "II"
    assert canonical_lead("avf") == "aVF"
    assert canonical_lead(" v5 ") == "V5"
    with pytest.raises(ProtocolError, match="unknown_lead"):
        canonical_lead("Z9")


def test_batch_decoding_gives_what_decoding_one_by_one_gives() -> None:
    """int16 payloads of two shapes and two scales (converted per group), JSON payloads and every malformed case,
    interleaved: each result is decode_wave's chunk, or its error with the same reason and field."""
    rng = np.random.default_rng(3)
    good = []
    shapes = [(250, ("II", "V1"), 0.001), (125, ("II",), 0.001), (250, ("II", "V1"), 0.005)] * 3
    for i, (n, leads, scale) in enumerate(shapes):
        samples = rng.normal(0, 1, (len(leads), n)).astype(np.float32)
        good.append(encode_wave(WaveChunk("bed-12", "dev-a1", i, 1.7e9 + i, 250.0, leads, samples), "b64", scale=scale))
    good += [wave(), wave(seq=8)]
    bad = [payload for payload, _, _ in MALFORMED]
    payloads = [p for pair in zip(good, bad, strict=False) for p in pair] + bad[len(good) :]
    results = decode_waves([(p, "bed-12") for p in payloads], LIMITS)
    assert len(results) == len(payloads) == len(good) + len(bad)
    for payload, result in zip(payloads, results, strict=True):
        try:
            expected = decode_wave(payload, LIMITS, topic_patient_id="bed-12")
        except ProtocolError as exc:
            assert isinstance(result, ProtocolError)
            assert (result.reason, result.field) == (exc.reason, exc.field)
            continue
        assert isinstance(result, WaveChunk)
        assert (result.seq, result.t0, result.leads) == (expected.seq, expected.t0, expected.leads)
        assert result.samples.flags.c_contiguous and np.array_equal(result.samples, expected.samples)
        if b"data_b64" in payload:
            assert result.peak_mv == float(np.abs(expected.samples).max())


def test_a_decoder_failure_costs_only_its_own_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a known malformation but an unexpected exception inside decoding: that message is refused with reason
    decoder_error, and the rest of the batch decodes."""
    real = protocol._envelope

    def flaky(payload: bytes, limits: PayloadLimits, topic_patient_id: str | None) -> Any:
        if b'"seq": 8' in payload:
            raise KeyError("boom")
        return real(payload, limits, topic_patient_id)

    monkeypatch.setattr(protocol, "_envelope", flaky)
    first, second, third = decode_waves([(wave(), "bed-12"), (wave(seq=8), "bed-12"), (wave(seq=9), "bed-12")], LIMITS)
    assert isinstance(first, WaveChunk) and isinstance(third, WaveChunk) and third.seq == 9
    assert isinstance(second, ProtocolError) and second.reason == "decoder_error" and "KeyError" in second.detail
