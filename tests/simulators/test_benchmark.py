"""Benchmark builder: labels on hand-built annotations, patient-level splits, files that read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from simulators.benchmark import (
    BenchDataset,
    BenchSpec,
    assign_splits,
    build_from_records,
    build_from_spec,
    class_changes,
    label_sample,
    patient_of,
    sample_anchors,
)
from simulators.records import AnnotatedRecord, BeatAnnotations, RhythmSegment
from simulators.scenarios import GENERATOR_VERSION, generate_scenario

FS = 10.0  # labels only depend on annotation times; a low rate keeps fixtures tiny


def _record(name: str, segments: list[tuple[float, float, str]], duration_s: float = 2000.0) -> AnnotatedRecord:
    sig_len = int(duration_s * FS)
    rhythms = [RhythmSegment(int(a * FS), int(b * FS), aux) for a, b, aux in segments]
    return AnnotatedRecord(
        record_name=name,
        fs=FS,
        sig_name=["II"],
        p_signal=np.zeros((sig_len, 1), dtype=np.float32),
        beats=BeatAnnotations(np.zeros(0, dtype=np.int64), np.zeros(0, dtype="<U1")),
        rhythms=rhythms,
        unusable=np.zeros(sig_len, dtype=bool),
    )


HAND_BUILT = _record(
    "hand",
    [
        (0, 700, "(N"),
        (700, 900, "(SVTA"),
        (900, 1000, "(N"),
        (1000, 1300, "(AFIB"),
        (1300, 1310, "(VT"),
        (1310, 2000, "(AFL"),
    ],
)


def test_class_changes_merge_sinus_like_rhythms() -> None:
    assert class_changes(HAND_BUILT) == [(0.0, "sinus"), (1000.0, "af"), (1300.0, "vt"), (1310.0, "flutter")]


@pytest.mark.parametrize(
    ("anchor", "horizon", "expected"),
    [
        (600.0, 300, {"current_class": "sinus", "label_class": "sinus", "onset_af": 0, "onset_vt": 0}),
        (700.0, 300, {"current_class": "sinus", "label_class": "af", "onset_af": 1, "onset_vt": 0}),  # onset at T+h
        (
            1000.0,
            60,
            {"current_class": "af", "label_class": "af", "onset_af": 0, "onset_vt": 0},
        ),  # onset at T: not in (T, T+h]
        (
            1250.0,
            60,
            {"current_class": "af", "label_class": "flutter", "onset_af": 0, "onset_vt": 1, "onset_flutter": 1},
        ),
        (999.0, 600, {"label_class": "flutter", "onset_af": 1, "onset_vt": 1, "onset_flutter": 1}),
    ],
)
def test_labels_on_hand_built_annotations(anchor: float, horizon: int, expected: dict[str, object]) -> None:
    labels = label_sample(class_changes(HAND_BUILT), anchor, horizon)
    assert {k: labels[k] for k in expected} == expected


def test_onset_anchors_place_each_onset_inside_each_horizon() -> None:
    anchors = sample_anchors(class_changes(HAND_BUILT), 2000.0, 60.0)
    onset_anchors = [t for t, kind in anchors if kind == "onset"]
    assert 1000.0 - 0.5 * 600 in onset_anchors and 1300.0 - 0.1 * 60 in onset_anchors
    assert all(0 < t <= 2000.0 for t, _ in anchors)


def test_patient_ids_and_splits_never_overlap() -> None:
    assert patient_of("p00042_s07") == "p00042" and patient_of("p01c") == "p01" and patient_of("04015") == "04015"
    groups = {"a": [f"a{i}" for i in range(10)], "b": [f"b{i}" for i in range(4)]}
    splits = assign_splits(groups, (0.7, 0.15, 0.15), seed=1)
    assert set(splits) == {p for ps in groups.values() for p in ps}
    for group in groups.values():
        assert {splits[p] for p in group} == {"train", "val", "test"}
    assert splits == assign_splits(groups, (0.7, 0.15, 0.15), seed=1)


def test_build_from_wfdb_records(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.mkdir()
    fs, n = 50, 50 * 1500
    for k, name in enumerate(["p00001_s00", "p00001_s01", "p00002_s00", "p00003_s00", "p00004_s00"]):
        signal = np.sin(np.arange(n) / 7.0 + k)[:, None]
        wfdb.wrsamp(name, fs=fs, units=["mV"], sig_name=["ECG"], p_signal=signal, fmt=["16"], write_dir=str(db))
        onset = (700 + 100 * k) * fs
        wfdb.wrann(
            name, "atr", np.array([0, onset]), symbol=["+", "+"], aux_note=["(N", "(AFIB"], fs=fs, write_dir=str(db)
        )
    index = build_from_records(db, tmp_path / "out", stride_s=100.0, seed=3)
    data = BenchDataset(index.parent)
    by_split: dict[str, set[str]] = {}
    for row in data.index:
        by_split.setdefault(row["split"], set()).add(row["patient_id"])
    patients = [p for ps in by_split.values() for p in ps]
    assert len(patients) == len(set(patients)) == 4  # p00001's two segments share one patient and one split
    rows = [r for r in data.index if r["record_id"] == "p00001_s00"]
    row = next(r for r in rows if float(r["anchor_s"]) == 600.0 and r["window_s"] == "60" and r["horizon_s"] == "180")
    assert row["label_class"] == "af" and row["onset_af"] == "1" and row["current_class"] == "sinus"
    window = data.window(row)
    assert window.shape == (1, 60 * fs)
    expected = np.sin(np.arange(540 * fs, 600 * fs) / 7.0)
    np.testing.assert_allclose(window[0], expected, atol=2e-3)
    assert all(float(r["anchor_s"]) >= int(r["window_s"]) for r in data.index)
    assert all(float(r["anchor_s"]) + int(r["horizon_s"]) <= 1500 for r in data.index)


def test_synthetic_spec_is_reproducible_and_labels_match_records(tmp_path: Path) -> None:
    spec = BenchSpec("tiny", "0", seed=5, patients_per_scenario=2, minutes=10.0, scenarios=("af_onset", "vt_onset"))
    first = BenchDataset(build_from_spec(spec, tmp_path / "a", workers=1).parent)
    second = BenchDataset(build_from_spec(spec, tmp_path / "b", workers=1).parent)
    assert first.meta["index_sha256"] == second.meta["index_sha256"]
    assert first.meta["spec"]["name"] == "tiny" and first.meta["generator_version"] == GENERATOR_VERSION
    splits_of: dict[str, set[str]] = {}
    for row in first.index:
        splits_of.setdefault(row["patient_id"], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits_of.values()) and len(splits_of) == 4
    scenario, seed = next(iter(first.index))["record_id"].rsplit("_", 1)
    record = generate_scenario(scenario, int(seed), spec.minutes, spec.fs, spec.leads, spec.noise)
    for row in (r for r in first.index if r["record_id"] == record.record_name):
        anchor, horizon = float(row["anchor_s"]), int(row["horizon_s"])
        assert row["label_class"] == record.class_at(round((anchor + horizon) * record.fs))
        assert row["current_class"] == record.class_at(round(anchor * record.fs))
    row = next(r for r in first.index if r["record_id"] == record.record_name and r["window_s"] == "30")
    lo, hi = round((float(row["anchor_s"]) - 30) * spec.fs), round(float(row["anchor_s"]) * spec.fs)
    np.testing.assert_allclose(first.window(row)[0], record.p_signal[lo:hi, 0], atol=6e-4)


def test_a_generator_2_spec_hides_the_scenario_from_record_ids(tmp_path: Path) -> None:
    from simulators.benchmark import opaque_patient_id

    spec = BenchSpec(
        "tiny-v2", "0", seed=5, patients_per_scenario=2, minutes=8.0, scenarios=("af_onset", "ectopy_rise_fall"),
        generator="2",
    )  # fmt: skip
    data = BenchDataset(build_from_spec(spec, tmp_path / "v2", workers=1).parent)
    assert data.meta["generator_version"] == "2" and data.meta["spec"]["generator"] == "2"
    ids = {row["record_id"] for row in data.index}
    assert ids == {
        opaque_patient_id("tiny-v2", s, 5 + 1000 * k + i) for k, s in enumerate(spec.scenarios) for i in (0, 1)
    }
    assert not any("onset" in i or "ectopy" in i for i in ids)
    record = generate_scenario("af_onset", 5, spec.minutes, spec.fs, spec.leads, spec.noise, generator="2")
    rows = [r for r in data.index if r["record_id"] == opaque_patient_id("tiny-v2", "af_onset", 5)]
    assert rows and all(
        r["label_class"] == record.class_at(round((float(r["anchor_s"]) + int(r["horizon_s"])) * record.fs))
        for r in rows
    )
