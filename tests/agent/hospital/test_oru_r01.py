"""HL7 v2 ORU^R01 waveforms (IHE PCD-01 style) into ecgcast.wave/1: the samples arrive as the agent would store
the same signal sent directly, in order, with its invalid samples; bad input is refused naming the field."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message

from agent.hospital._oru_r01 import convert_oru_r01, read_oru_r01, split_messages
from core.errors import ProtocolError
from core.protocol import PayloadLimits, decode_wave
from main import main

LIMITS = PayloadLimits()
T0 = 1767225600.0  # 2026-01-01T00:00:00Z
LEAD_II = [Decimal("1234"), Decimal("-5.5"), None, Decimal("7"), Decimal("0")]
LEAD_V1 = [Decimal("1"), Decimal("2"), Decimal("3"), None, Decimal("-400")]


def er7(values: list[Decimal | None]) -> str:
    return "^".join("" if v is None else str(v) for v in values)


def built_with_hl7apy(*, rate: str = "250", units: str = "uV^microvolt^UCUM") -> str:
    """A PCD-01-style ORU^R01 assembled in hl7apy's structures: two NA leads, one sample rate ahead of both."""
    message = Message("ORU_R01", version="2.6", validation_level=VALIDATION_LEVEL.TOLERANT)
    message.msh.msh_3 = "MON^00A037009B000000^EUI-64"
    message.msh.msh_7 = "20260101000000"
    message.msh.msh_9 = "ORU^R01^ORU_R01"
    message.msh.msh_10 = "MSG-1"
    message.msh.msh_11 = "P"
    result = message.add_group("ORU_R01_PATIENT_RESULT")
    pid = result.add_group("ORU_R01_PATIENT").add_segment("PID")
    pid.pid_3 = "MRN-0042^^^HOSP^MR"
    pid.add_field("PID_3").value = "bed-7^^^^PI"  # a second identifier: the stream's own id
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    order.obr.obr_4 = "69121^MDC_OBS_WAVE_CTS^MDC"
    order.obr.obr_7 = "20260101000000.000+0000"
    rows = [
        ("NM", "0^MDC_ATTR_SAMP_RATE^MDC", "1.0.0.0.1", rate, "264608^MDC_DIM_PER_SEC^MDC"),
        ("NA", "131330^MDC_ECG_ELEC_POTL_II^MDC", "1.7.1.131330", er7(LEAD_II), units),
        ("NA", "131331^MDC_ECG_ELEC_POTL_V1^MDC", "1.7.1.131331", er7(LEAD_V1), units),
    ]
    for index, (kind, code, sub_id, value, unit) in enumerate(rows, start=1):
        obx = order.add_group("ORU_R01_OBSERVATION").obx
        obx.obx_1, obx.obx_2, obx.obx_3, obx.obx_4, obx.obx_5, obx.obx_6 = str(index), kind, code, sub_id, value, unit
        obx.obx_11 = "F"
    return str(message.to_er7())


def literal(*obx: str, pid: str = "PID|||bed-7^^^^PI", when: str = "20260101000000+0000") -> str:
    head = ["MSH|^~\\&|MON||||20260101000000||ORU^R01^ORU_R01|MSG-2|P|2.6", pid, f"OBR|1||W|WAVE|||{when}"]
    return "\r".join([*head, *obx])


def decoded(text: str, **options: Any) -> list[Any]:
    conversion = convert_oru_r01(text, LIMITS, **options)
    return [decode_wave(payload, LIMITS, patient) for patient, payload in conversion.payloads]


def test_hl7apy_built_oru_r01_round_trips_to_the_same_samples() -> None:
    waveform = read_oru_r01(built_with_hl7apy())
    assert (waveform.patient_id, waveform.fs, waveform.t0) == ("bed-7", 250.0, T0)
    assert [(c.lead, c.units, list(c.values)) for c in waveform.channels] == [
        ("II", "uV", LEAD_II),
        ("V1", "uV", LEAD_V1),
    ]
    (chunk,) = decoded(built_with_hl7apy())
    assert chunk.leads == ("II", "V1") and chunk.fs == 250.0 and chunk.t0 == T0
    direct = json.dumps(
        {
            "schema": "ecgcast.wave/1",
            "patient_id": "bed-7",
            "stream_id": "s",
            "seq": 0,
            "t0": T0,
            "fs": 250,
            "leads": ["II", "V1"],
            "units": "mV",
            "samples": [[1.234, -0.0055, None, 0.007, 0.0], [0.001, 0.002, 0.003, None, -0.4]],
        }
    ).encode()
    np.testing.assert_array_equal(chunk.samples, decode_wave(direct, LIMITS).samples)
    assert np.isnan(chunk.samples[0, 2]) and np.isnan(chunk.samples[1, 3])


def test_messages_are_chunked_in_order_with_seq_and_t0() -> None:
    text = built_with_hl7apy(rate="250") + "\n" + built_with_hl7apy().replace("MSG-1", "MSG-9")
    chunks = decoded(text, chunk_s=0.008, seq=5)  # 2 samples per chunk: 3 chunks per message
    assert [c.seq for c in chunks] == list(range(5, 11))
    assert [c.n_samples for c in chunks] == [2, 2, 1] * 2
    assert {c.stream_id for c in chunks} == {"00A037009B000000-MSG-1"}
    assert chunks[1].t0 == pytest.approx(T0 + 2 / 250)
    joined = np.concatenate([c.samples for c in chunks[:3]], axis=1)
    np.testing.assert_array_equal(joined, decoded(built_with_hl7apy())[0].samples)


def test_multiplexed_array_with_channel_definitions_scales_counts_exactly() -> None:
    """MA: each repetition one sample time, components the channels; CD: channel & lead, sensitivity & units, rate."""
    text = literal(
        "OBX|1|CD|0^MDC_ECG_LEAD_I^MDC|1|1&MDC_ECG_LEAD_I^^0.005&266418&MDC_DIM_MILLI_VOLT&MDC^^500",
        "OBX|2|CD|0^MDC_ECG_LEAD_AVF^MDC|2|2&aVF^^2.5&uV^^500",
        "OBX|3|MA|0^MDC_ECG_WAVEFORM^MDC|3|100^40~-3^~^8~7",
    )
    waveform = read_oru_r01(text)
    assert waveform.fs == 500.0
    assert [(c.lead, c.units, list(c.values)) for c in waveform.channels] == [
        ("I", "mV", [Decimal("0.500"), Decimal("-0.015"), None, Decimal("0.035")]),
        ("aVF", "uV", [Decimal("100.0"), None, Decimal("20.0"), None]),
    ]
    (chunk,) = decoded(text)
    assert chunk.leads == ("I", "aVF")
    np.testing.assert_array_equal(chunk.samples[0, [0, 1, 3]], np.array([0.5, -0.015, 0.035], np.float32))
    np.testing.assert_array_equal(chunk.samples[1, [0, 2]], np.array([0.1, 0.02], np.float32))


def test_dimensionless_counts_take_the_measurement_resolution() -> None:
    text = literal(
        "OBX|1|NA|131329^^MDC|1.7.1.131329|10^-3^|262656^MDC_DIM_DIMLESS^MDC",
        "OBX|2|NM|0^MDC_ATTR_SAMP_RATE^MDC|1.7.1.131329.1|125|Hz",
        "OBX|3|NM|0^MDC_ATTR_NU_MSMT_RES^MDC|1.7.1.131329.2|2.5|uV^uV^UCUM",
    )
    (channel,) = read_oru_r01(text).channels
    assert (channel.lead, channel.units, list(channel.values)) == ("I", "uV", [Decimal("25.0"), Decimal("-7.5"), None])


def test_waves_of_other_signals_are_skipped_and_reported() -> None:
    text = literal(
        "OBX|1|NA|150456^MDC_PULS_OXIM_PLETH^MDC|1.1|1^2^3|262656^MDC_DIM_DIMLESS^MDC",
        "OBX|2|NM|0^MDC_ATTR_SAMP_RATE^MDC|1.1.1|125|264608^MDC_DIM_PER_SEC^MDC",
        "OBX|3|NA|0^MDC_ECG_LEAD_II^MDC|1.2|0.1^0.2|266418^MDC_DIM_MILLI_VOLT^MDC",
        "OBX|4|NM|0^MDC_ATTR_SAMP_RATE^MDC|1.2.1|250|264608^MDC_DIM_PER_SEC^MDC",
    )
    conversion = convert_oru_r01(text, LIMITS)
    assert len(conversion.skipped) == 1 and "MDC_PULS_OXIM_PLETH" in conversion.skipped[0]
    (chunk,) = [decode_wave(p, LIMITS) for _, p in conversion.payloads]
    assert chunk.leads == ("II",) and chunk.fs == 250.0


def test_patient_comes_from_the_mrn_map_or_the_command_line() -> None:
    text = literal("OBX|1|NA|0^MDC_ECG_LEAD_II^MDC|1|1^2|mV", "OBX|2|NM|0^MDC_ATTR_SAMP_RATE^MDC|1.1|250|Hz")
    by_mrn = literal(*text.split("\r")[3:], pid="PID|||MRN-0042^^^HOSP^MR")
    mapped = {"MRN-0042": "P001"}
    assert read_oru_r01(by_mrn, patient_of_mrn=lambda mrn: mapped.get(mrn)).patient_id == "P001"
    assert read_oru_r01(by_mrn, patient_id="bed-3").patient_id == "bed-3"
    with pytest.raises(ProtocolError) as info:
        read_oru_r01(by_mrn, patient_of_mrn=lambda mrn: None)
    assert info.value.field == "PID-3"


def test_time_zone_offset_is_applied() -> None:
    text = literal("OBX|1|NA|0^MDC_ECG_LEAD_II^MDC|1|1|mV", "OBX|2|NM|0^MDC_ATTR_SAMP_RATE^MDC|1.1|250|Hz")
    assert read_oru_r01(text.replace("+0000", "+0100")).t0 == T0 - 3600
    assert read_oru_r01(text.replace("+0000", "-0530")).t0 == T0 + 5.5 * 3600


RATE = "OBX|9|NM|0^MDC_ATTR_SAMP_RATE^MDC|1.1|250|Hz"  # belongs to the wave of sub-id 1
RATE_FOR_ALL = "OBX|0|NM|0^MDC_ATTR_SAMP_RATE^MDC||250|Hz"  # ahead of every wave: for each
REFUSED = [
    (literal("OBX|1|NA|0^MDC_ECG_LEAD_II^MDC|1|1^2|mmHg", RATE), "bad_units", "OBX-6", "'mmHg'"),
    (literal("OBX|1|NA|0^MDC_ECG_LEAD_II^MDC|1|1^x|mV", RATE), "bad_value", "OBX-5", "'x'"),
    (literal("OBX|1|NA|0^MDC_ECG_LEAD_II^MDC|1|1^1e3|mV", RATE), "bad_value", "OBX-5", "'1e3'"),
    (literal("OBX|1|NA|0^MDC_ECG_LEAD_II^MDC|1|1^2\\S\\3|mV", RATE), "bad_value", "OBX-5", "not a number"),
    (literal(f"OBX|1|NA|0^MDC_ECG_LEAD_II^MDC|1|1^{'9' * 400}|mV", RATE), "bad_value", "OBX-5", "float range"),
    (literal("OBX|1|NA|0^MDC_ECG_LEAD_II^MDC|1|1^2|mV"), "missing_field", "OBX-3", "MDC_ATTR_SAMP_RATE"),
    (literal("OBX|1|NA|0^MDC_ECG_LEAD_II^MDC|1|1^2|1", RATE), "bad_units", "OBX-6", "MDC_ATTR_NU_MSMT_RES"),
    (literal("OBX|1|MA|0^MDC_ECG_LEAD_II^MDC|1|1^2~3^4|mV", RATE), "missing_field", "OBX-2", "CD"),
    (literal("OBX|1|NM|0^MDC_ECG_HEART_RATE^MDC|1|60|/min"), "missing_field", "OBX-3", "ECG lead"),
    (
        literal(RATE_FOR_ALL, "OBX|1|NA|0^II^MDC|1|1^2|mV", "OBX|2|NA|0^V1^MDC|2|1^2^3|mV"),
        "bad_shape",
        "OBX-5",
        "unequal",
    ),
    (literal("OBX|1|NA|0^II^MDC|1|1^2|mV", RATE, pid="PID|||x^^^^MR"), "missing_field", "PID-3", "MRN"),
    (
        literal("OBX|1|NA|0^MDC_ECG_LEAD_II^MDC|1|1^2|mV", RATE).replace("ORU^R01", "ADT^A01"),
        "unsupported",
        "MSH-9",
        "ADT^A01",
    ),
]


@pytest.mark.parametrize(("text", "reason", "field", "named"), REFUSED)
def test_bad_input_is_refused_naming_the_field(text: str, reason: str, field: str, named: str) -> None:
    with pytest.raises(ProtocolError) as info:
        convert_oru_r01(text, LIMITS)
    assert (info.value.reason, info.value.field) == (reason, field)
    assert named in str(info.value)


def test_out_of_range_sample_rate_is_refused_by_the_agents_own_decoder() -> None:
    text = literal("OBX|1|NA|0^II^MDC|1|1^2|mV", "OBX|2|NM|0^MDC_ATTR_SAMP_RATE^MDC|1.1|50|Hz")
    with pytest.raises(ProtocolError) as info:
        convert_oru_r01(text, LIMITS)
    assert info.value.reason == "bad_fs"


def test_mllp_framing_and_line_endings_are_accepted() -> None:
    one = built_with_hl7apy()
    framed = f"\x0b{one}\x1c\r\x0b{one.replace(chr(13), chr(10))}\x1c\r"
    assert len(split_messages(framed)) == 2
    assert len(convert_oru_r01(framed, LIMITS).payloads) == 2


def test_wave_in_command_prints_one_wave_message_per_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ecg.hl7"
    path.write_text(built_with_hl7apy())
    assert main(["hl7", "wave-in", str(path), "--stream-id", "mon-1", "--chunk-s", "0.008"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    bodies = [json.loads(line) for line in lines]
    assert [b["seq"] for b in bodies] == [0, 1, 2] and {b["stream_id"] for b in bodies} == {"mon-1"}
    assert bodies[0]["units"] == "uV" and bodies[0]["samples"] == [[1234, -5.5], [1, 2]]
    assert bodies[1]["samples"] == [[None, 7], [3, None]]


def test_wave_in_command_refuses_bad_input_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.hl7"
    path.write_text(built_with_hl7apy(units="mmHg"))
    assert main(["hl7", "wave-in", str(path)]) == 2
    assert "bad_units" in capsys.readouterr().err
