"""The second source (third-party generators): exact labels, determinism, WFDB round trip, the evaluation loader,
and AF that is more irregular than sinus. Records are tiny (2-3 minutes) so the module stays fast."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from simulators.second_source import (
    KINDS,
    LABEL,
    MANIFEST,
    SecondSourceRecord,
    build_second_source,
    check_records,
    make_record,
    markdown_table,
)
from simulators.second_source.check import rr_cv
from simulators.wfdb_io import read_record

FS = 250.0


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("second_source")
    build_second_source(out, patients=5, minutes=3.0, fs=FS, seed=11)
    return out


@pytest.fixture(scope="module")
def records() -> list[SecondSourceRecord]:
    return [make_record(f"k{i}", kind, np.random.SeedSequence([5, i]), 3.0, FS) for i, kind in enumerate(KINDS)]


def test_each_annotated_beat_is_the_main_deflection_of_the_clean_signal(records: list[SecondSourceRecord]) -> None:
    for built in records:
        clean, samples = built.clean_mv - built.atrial_mv, built.record.beats.sample  # ventricular activity
        assert samples.size > 100 and np.all(np.diff(samples) > 0)
        near, half = 3, round(0.04 * FS)
        for s in samples:  # a local extremum (±12 ms) as big as the QRS's biggest (±40 ms) or, biphasic, half of it
            local = np.abs(clean[max(0, s - near) : s + near + 1])
            wide = np.abs(clean[max(0, s - half) : s + half + 1])
            assert abs(clean[s]) >= local.max() - 1e-9 - 0.02 and abs(clean[s]) >= 0.5 * wide.max(), built.plan.kind


def test_rhythm_segments_cover_the_record_and_onsets_sit_on_a_beat(records: list[SecondSourceRecord]) -> None:
    for built in records:
        rec = built.record
        assert rec.rhythms[0].start_sample == 0 and rec.rhythms[-1].end_sample == rec.sig_len
        assert all(a.end_sample == b.start_sample for a, b in zip(rec.rhythms, rec.rhythms[1:], strict=False))
        assert all(a.aux != b.aux for a, b in zip(rec.rhythms, rec.rhythms[1:], strict=False))
        for seg in rec.rhythms[1:]:
            assert seg.start_sample in set(rec.beats.sample.tolist())  # a rhythm change sits on its first beat
        for kind, t_s in rec.onsets.items():
            cls = {"AF": "af", "AFL": "flutter", "VT": "vt"}[kind]
            assert rec.class_at(round(t_s * FS)) == cls and rec.class_at(round(t_s * FS) - 1) != cls
        if rec.meta["kind"] == "vt_onset":
            assert rec.beats.count("V") >= 3
    kinds = {b.record.meta["kind"]: b.record for b in records}
    assert {"AF"} <= set(kinds["af_onset"].onsets) and {"AFL"} <= set(kinds["flutter_onset"].onsets)
    assert not kinds["sinus_stable"].onsets and not kinds["ectopy_decoy"].onsets


def test_same_seed_gives_identical_files(built: Path, tmp_path: Path) -> None:
    build_second_source(tmp_path, patients=5, minutes=3.0, fs=FS, seed=11)
    for path in sorted(built.iterdir()):
        assert path.read_bytes() == (tmp_path / path.name).read_bytes(), path.name
    other = tmp_path / "other"
    build_second_source(other, patients=1, minutes=3.0, fs=FS, seed=12)
    assert (other / "ss0000.dat").read_bytes() != (built / "ss0000.dat").read_bytes()


def test_records_round_trip_through_wfdb_io(built: Path) -> None:
    manifest = json.loads((built / MANIFEST).read_text())
    assert manifest["label"] == LABEL and "SYNTHETIC" in LABEL and manifest["generators"]["neurokit2"]
    for i, entry in enumerate(manifest["records"]):
        original = make_record(entry["record"], entry["kind"], np.random.SeedSequence(11).spawn(5)[i], 3.0, FS)
        back = read_record(built / entry["record"])
        np.testing.assert_allclose(back.p_signal, original.record.p_signal, atol=0.0005 + 1e-6)
        np.testing.assert_array_equal(back.beats.sample, original.record.beats.sample)
        np.testing.assert_array_equal(back.beats.symbol, original.record.beats.symbol)
        assert back.rhythms == original.record.rhythms
        assert back.onsets == entry["onsets_s"] == original.record.onsets
        assert back.meta["source"] == "second_source" and back.sig_name == ["II"]


def test_the_evaluation_loader_reads_the_folder(built: Path, tmp_path: Path) -> None:
    from evaluation.data import EvalData, open_benchmark

    data = EvalData(open_benchmark(str(built), tmp_path))
    assert sum(len(data.record_ids(split)) for split in ("train", "val", "test")) == 5
    assert data.samples("train", (10, 60)) or data.samples("test", (10, 60))


def test_af_is_more_irregular_than_sinus() -> None:
    cvs: dict[str, list[float]] = {"sinus": [], "af": []}
    for i in range(3):
        rec = make_record("af", "af_onset", np.random.SeedSequence([9, i]), 4.0, FS).record
        for cls in cvs:
            cvs[cls].append(rr_cv(rec.beats.sample, rec, cls, rec.beats.symbol))
    sinus, af = np.nanmean(cvs["sinus"]), np.nanmean(cvs["af"])
    assert af > 0.12 and sinus < 0.08 and af > 2 * sinus


def test_the_check_table_covers_every_kind(built: Path) -> None:
    result = check_records(built, precursor_min=1.0)
    assert list(result["by_kind"]) == list(KINDS)
    table = markdown_table(result)
    assert table.count("\n") == len(KINDS) + 1
    for row in result["records"]:
        assert row["beats_matched"] >= 0.9 * row["beats_annotated"]  # the project's detector finds the beats
