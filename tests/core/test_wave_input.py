"""Waveform input conventions of ``ecgcast.wave/1`` (issue 23, item 4): IEEE 11073 lead names, µV and WFDB-style
digital units, and ``null`` for an invalid sample, each stored exactly as the equivalent mV sample would be."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from core.errors import ProtocolError
from core.protocol import PayloadLimits, WaveChunk, canonical_lead, decode_wave, decode_waves, encode_wave

from .wave_builders import wave

LIMITS = PayloadLimits()


def mv(*values: float) -> np.ndarray[Any, np.dtype[np.float32]]:
    """What a sender writing these mV values gets stored: the float32 nearest each."""
    return np.array(values, dtype=np.float32)


STANDARD = {
    "MDC_ECG_LEAD_I": "I",
    "MDC_ECG_LEAD_II": "II",
    "MDC_ECG_LEAD_III": "III",
    "MDC_ECG_LEAD_AVR": "aVR",
    "MDC_ECG_LEAD_AVL": "aVL",
    "MDC_ECG_LEAD_AVF": "aVF",
    **{f"MDC_ECG_LEAD_V{n}": f"V{n}" for n in range(1, 7)},
    "MDC_ECG_ELEC_POTL_II": "II",
    "MDC_ECG_ELEC_POTL_AVF": "aVF",
    "MDC_ECG_LEAD_aVR": "aVR",
    "mdc_ecg_lead_v3": "V3",
    "MLII": "II",
    "ML2": "II",
    "Lead III": "III",
}


@pytest.mark.parametrize(("name", "canonical"), STANDARD.items())
def test_ieee_11073_lead_names_and_synonyms_are_canonicalised(name: str, canonical: str) -> None:
    assert canonical_lead(name) == canonical


def test_a_message_with_mdc_lead_codes_decodes_to_canonical_leads() -> None:
    leads = list(STANDARD)[:12]
    chunk = decode_wave(wave(leads=leads, samples=[[0.1, 0.2]] * 12), LIMITS)
    assert chunk.leads == ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def test_unknown_mdc_lead_is_refused_naming_it() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_wave(wave(leads=["MDC_ECG_LEAD_II", "MDC_ECG_LEAD_Q9"]), LIMITS)
    assert (info.value.reason, info.value.field) == ("unknown_lead", "leads")
    assert "MDC_ECG_LEAD_Q9" in str(info.value)


@pytest.mark.parametrize("units", ["uV", "\u00b5V", "\u03bcV"])
def test_microvolts_are_stored_exactly_as_millivolts(units: str) -> None:
    chunk = decode_wave(wave(units=units, samples=[[1234, -5, 0.5], [1, 999999, -1234.5]]), LIMITS)
    np.testing.assert_array_equal(chunk.samples[0], mv(1.234, -0.005, 0.0005))
    np.testing.assert_array_equal(chunk.samples[1], mv(0.001, 999.999, -1.2345))
    assert chunk.samples.dtype == np.float32


def test_digital_units_use_gain_and_baseline_like_wfdb() -> None:
    """mV = (adu - baseline) / gain, gain in adu per mV; one number for every lead or a list per lead."""
    one = decode_wave(wave(units="adu", gain=200, baseline=1024, samples=[[1024, 1258, 790], [0, 2048, 1]]), LIMITS)
    np.testing.assert_array_equal(one.samples[0], mv(0.0, 1.17, -1.17))
    np.testing.assert_array_equal(one.samples[1], mv(-5.12, 5.12, -5.115))
    per_lead = decode_wave(wave(units="adu", gain=[200, 1000], samples=[[1234, -1], [1234, -1]]), LIMITS)
    np.testing.assert_array_equal(per_lead.samples, np.array([mv(6.17, -0.005), mv(1.234, -0.001)]))


def test_null_samples_are_stored_as_the_ring_buffers_invalid_sample() -> None:
    """NaN is what the ring buffer reads back where nothing valid was received (core/ring_buffer.py)."""
    chunk = decode_wave(wave(samples=[[0.1, None, 0.3], [None, None, -0.2]]), LIMITS)
    assert np.isnan(chunk.samples[0, 1]) and np.isnan(chunk.samples[1, :2]).all()
    np.testing.assert_array_equal(chunk.samples[:, 2], mv(0.3, -0.2))
    micro = decode_wave(wave(units="uV", samples=[[None, 1234, None], [1, 2, 3]]), LIMITS)
    assert np.isnan(micro.samples[0, [0, 2]]).all() and micro.samples[0, 1] == np.float32(1.234)
    digital = decode_wave(wave(units="adu", gain=200, baseline=10, samples=[[None, 10], [210, None]]), LIMITS)
    assert np.isnan(digital.samples[0, 0]) and np.isnan(digital.samples[1, 1])
    np.testing.assert_array_equal([digital.samples[0, 1], digital.samples[1, 0]], mv(0.0, 1.0))


def test_nan_literal_is_still_accepted_but_encode_wave_writes_null() -> None:
    legacy = b'{"schema":"ecgcast.wave/1","patient_id":"bed-12","stream_id":"d","seq":0,"t0":1.0,"fs":250,'
    legacy += b'"leads":["II"],"samples":[[0.1,NaN,0.2]]}'
    assert np.isnan(decode_wave(legacy, LIMITS).samples[0, 1])
    chunk = WaveChunk("bed-12", "d", 0, 1.0, 250.0, ("II",), np.array([[0.1, np.nan, np.inf]], np.float32))
    payload = encode_wave(chunk, "json")
    assert json.loads(payload)["samples"] == [[0.1, None, None]]
    assert b"NaN" not in payload and b"Infinity" not in payload
    assert np.isnan(decode_wave(payload, LIMITS).samples[0, 1:]).all()


def b64(counts: list[list[int]]) -> str:
    """int16 frames: sample 0 of every lead, then sample 1 of every lead, ..."""
    return base64.b64encode(np.array(counts, dtype="<i2").T.tobytes()).decode()


def test_binary_samples_take_the_units_too() -> None:
    micro = decode_wave(wave(units="uV", samples=..., scale=1, data_b64=b64([[1234, -5], [7, 0]])), LIMITS)
    np.testing.assert_array_equal(micro.samples, np.array([mv(1.234, -0.005), mv(0.007, 0.0)]))
    digital = decode_wave(
        wave(
            units="adu", gain=[200, 100], baseline=[0, 50], samples=..., scale=1, data_b64=b64([[1234, 0], [50, 150]])
        ),
        LIMITS,
    )
    np.testing.assert_array_equal(digital.samples, np.array([mv(6.17, 0.0), mv(0.0, 1.0)]))


def test_batch_decoding_converts_each_group_with_its_own_units() -> None:
    """decode_waves converts int16 payloads of one shape and scale together: units must be part of that group."""
    counts = [[1234, -5], [7, 0]]
    payloads = [
        wave(seq=1, samples=..., scale=1, data_b64=b64(counts)),
        wave(seq=2, units="uV", samples=..., scale=1, data_b64=b64(counts)),
        wave(seq=3, units="adu", gain=200, samples=..., scale=1, data_b64=b64(counts)),
        wave(seq=4, units="uV", samples=[[1234, None], [7, 0]]),
    ]
    results = decode_waves([(p, "bed-12") for p in payloads], LIMITS)
    for payload, result in zip(payloads, results, strict=True):
        assert isinstance(result, WaveChunk)
        np.testing.assert_array_equal(result.samples, decode_wave(payload, LIMITS).samples)
    assert [r.samples[0, 0] for r in results if isinstance(r, WaveChunk)] == list(mv(1234, 1.234, 6.17, 1.234))


REFUSED = [
    (wave(units="V"), "bad_units", "units", "'V'"),
    (wave(units="mmHg"), "bad_units", "units", "'mmHg'"),
    (wave(units="MV"), "bad_units", "units", "'MV'"),
    (wave(units=5), "bad_units", "units", "'5'"),
    (wave(units="adu"), "missing_field", "gain", "gain"),
    (wave(units="adu", gain=0), "bad_value", "gain", "positive"),
    (wave(units="adu", gain=[200]), "bad_shape", "gain", "1 values for 2 leads"),
    (wave(units="adu", gain="200"), "wrong_type", "gain", "gain"),
    (wave(units="adu", gain=True), "wrong_type", "gain", "gain"),
    (wave(units="adu", gain=200, baseline=[0, "1"]), "wrong_type", "baseline", "baseline"),
    (wave(units="adu", gain=10**400), "bad_value", "gain", "too large"),
    (wave(units="mV", gain=200), "bad_value", "gain", "adu"),
    (wave(units="uV", baseline=3), "bad_value", "baseline", "adu"),
    (wave(samples=[[0.1, True, 0.3], [0.0, 0.1, None]]), "wrong_type", "samples", "bool"),
    (wave(samples=[[0.1, "null", 0.3], [0.0, 0.1, None]]), "wrong_type", "samples", "str"),
]


@pytest.mark.parametrize(("payload", "reason", "field", "named"), REFUSED)
def test_bad_units_and_scaling_are_refused_naming_the_problem(
    payload: bytes, reason: str, field: str, named: str
) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_wave(payload, LIMITS, topic_patient_id="bed-12")
    assert (info.value.reason, info.value.field) == (reason, field)
    assert named in str(info.value)
