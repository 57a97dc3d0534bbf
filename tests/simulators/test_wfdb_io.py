"""WFDB round trip and the database layouts the reader must handle (fixtures written with wrsamp/wrann)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import wfdb

from simulators.records import rhythm_class
from simulators.scenarios import generate_scenario
from simulators.wfdb_io import find_records, read_directory, read_record, read_samples, write_record


def test_round_trip_keeps_samples_and_annotations(tmp_path: Path) -> None:
    rec = generate_scenario("vt_onset", seed=9, minutes=3.0, fs=360.0, leads=("II", "V1"), noise="high")
    path = write_record(rec, tmp_path)
    back = read_record(path)
    assert back.fs == rec.fs and back.sig_name == rec.sig_name and back.sig_len == rec.sig_len
    np.testing.assert_allclose(back.p_signal, rec.p_signal, atol=0.0005 + 1e-6)  # 1 µV per count
    np.testing.assert_array_equal(back.beats.sample, rec.beats.sample)
    np.testing.assert_array_equal(back.beats.symbol, rec.beats.symbol)
    assert back.rhythms == rec.rhythms
    np.testing.assert_array_equal(back.unusable, rec.unusable)
    assert back.onsets == rec.onsets
    assert back.meta["scenario"] == "vt_onset"
    ann = wfdb.rdann(str(path), "atr")
    plus = [aux for sym, aux in zip(ann.symbol, ann.aux_note, strict=True) if sym == "+"]
    assert plus == [seg.aux for seg in rec.rhythms]
    assert set(ann.symbol) <= {"N", "A", "V", "+", "~"}


def _write(tmp: Path, name: str, sig_name: list[str], units: str = "mV") -> np.ndarray:
    fs, n = 128, 128 * 60
    signal = np.column_stack([np.sin(np.arange(n) / 10.0) * (k + 1) for k in range(len(sig_name))])
    wfdb.wrsamp(
        name,
        fs=fs,
        units=[units] * len(sig_name),
        sig_name=sig_name,
        p_signal=signal,
        fmt=["16"] * len(sig_name),
        write_dir=str(tmp),
    )
    return signal


def test_afdb_layout_rhythm_in_atr_beats_in_qrs(tmp_path: Path) -> None:
    _write(tmp_path, "04015", ["ECG1", "ECG2"])
    wfdb.wrann(
        "04015",
        "atr",
        np.array([0, 1280, 3840]),
        symbol=["+", "+", "+"],
        aux_note=["(N", "(AFIB", "(N"],
        fs=128,
        write_dir=str(tmp_path),
    )
    beats = np.arange(50, 7600, 100)
    wfdb.wrann("04015", "qrs", beats, symbol=["N"] * beats.size, fs=128, write_dir=str(tmp_path))
    rec = read_record(tmp_path / "04015.hea")
    assert rec.sig_name == ["ECG1", "ECG2"]
    np.testing.assert_array_equal(rec.beats.sample, beats)
    assert rec.meta["beat_annotator"] == "qrs" and rec.meta["rhythm_annotator"] == "atr"
    assert rec.rhythm_at(1279) == "(N" and rec.rhythm_at(1280) == "(AFIB" and rec.rhythm_at(3840) == "(N"
    assert rec.class_at(2000) == "af"


def test_mitdb_layout_and_lead_names(tmp_path: Path) -> None:
    signal = _write(tmp_path, "201", ["MLII", "V1"])
    wfdb.wrann(
        "201",
        "atr",
        np.array([10, 10, 300, 700, 900]),
        symbol=["+", "N", "V", "~", "A"],
        subtype=np.array([0, 0, 0, 1, 0]),
        aux_note=["(VT", "", "", "", ""],
        fs=128,
        write_dir=str(tmp_path),
    )
    rec = read_record(tmp_path / "201")
    assert rec.sig_name == ["II", "V1"]
    np.testing.assert_allclose(rec.p_signal, signal, atol=0.01)
    assert list(rec.beats.symbol) == ["N", "V", "A"]
    assert rec.rhythm_at(5) == "" and rec.rhythm_at(10) == "(VT"
    assert not rec.unusable[699] and rec.unusable[700] and rec.unusable[-1]
    p_signal, fs, names = read_samples(tmp_path / "201")
    assert p_signal.shape == signal.shape and fs == 128.0 and names == ["II", "V1"]


def test_icentia_layout_nested_and_closing_paren(tmp_path: Path) -> None:
    folder = tmp_path / "p00" / "p00042"
    folder.mkdir(parents=True)
    _write(folder, "p00042_s00", ["ECG"])
    wfdb.wrann(
        "p00042_s00",
        "atr",
        np.array([100, 100, 2000, 2000, 3000]),
        symbol=["+", "N", "+", "N", "+"],
        aux_note=["(AFL", "", ")", "", "(AFIB"],
        fs=128,
        write_dir=str(folder),
    )
    paths = find_records(tmp_path)
    assert paths == [folder / "p00042_s00"]
    (rec,) = list(read_directory(tmp_path))
    assert rec.rhythm_at(150) == "(AFL" and rec.rhythm_at(2500) == "" and rec.rhythm_at(3001) == "(AFIB"
    assert rhythm_class(rec.rhythm_at(2500)) == "sinus"


def test_afpdb_layout_beats_only(tmp_path: Path) -> None:
    _write(tmp_path, "p01", ["ECG0", "ECG1"])
    wfdb.wrann("p01", "qrs", np.array([40, 140, 240]), symbol=["N", "N", "N"], fs=128, write_dir=str(tmp_path))
    (tmp_path / "RECORDS").write_text("p01\n")
    (rec,) = list(read_directory(tmp_path))
    assert rec.sig_name == ["ECG0", "ECG1"]  # unknown lead names are kept
    assert len(rec.beats) == 3 and rec.rhythm_at(100) == ""
