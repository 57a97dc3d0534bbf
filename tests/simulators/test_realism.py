"""Realism: an independent detector (neurokit2) measures what the scenario asked for, within stated tolerances."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators.realism import check_row, markdown_table, measure, reference_qrs_ms, write_table


@pytest.fixture(scope="module")
def ref_qrs_ms() -> float:
    return reference_qrs_ms()


@pytest.mark.parametrize("rhythm", ["sinus", "af", "flutter_2to1", "vt", "sinus_rbbb", "af_fine_slow"])
def test_rhythm_measures_as_asked(rhythm: str, ref_qrs_ms: float) -> None:
    row = measure(rhythm, seconds=40.0, seed=1)
    assert check_row(row, ref_qrs_ms) == []


def test_table_written_between_markers(tmp_path: Path, ref_qrs_ms: float) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- realism-table:start -->\nold\n<!-- realism-table:end -->\noutro\n")
    table = markdown_table([measure("sinus_brady", seconds=30.0)], ref_qrs_ms)
    write_table(doc, table)
    text = doc.read_text()
    assert "old" not in text and "| sinus_brady | 50 |" in text and text.endswith("outro\n")
    plain = tmp_path / "plain.md"
    plain.write_text("nothing here\n")
    with pytest.raises(ValueError):
        write_table(plain, table)
