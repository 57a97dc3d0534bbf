"""The second source's validation table: do its labels agree with the project's own QRS detector, is AF more
irregular than sinus, and how much ectopy precedes an onset compared with the record's baseline?

Why measure it: a second source is only useful if its labels are right and its rhythms are what they claim; and
the precursor counts show how much (or how little) warning the source gives, which must not simply copy ours.
The detector is ``core.measurements`` (public API); the labels are read back from the WFDB files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.measurements import analyse_lead, score_beats
from simulators.records import AnnotatedRecord
from simulators.second_source._build import MANIFEST
from simulators.wfdb_io import read_record

__all__ = ["check_records", "markdown_table", "rr_cv"]

_TOL_S = 0.05  # beat match tolerance, as core.measurements.score_beats' default


def rr_cv(samples: npt.NDArray[np.int64], record: AnnotatedRecord, cls: str, symbols: npt.NDArray[np.str_]) -> float:
    """Coefficient of variation of the RR intervals whose two beats both lie in rhythm class ``cls``.

    In sinus only normal-to-normal intervals count (ectopy would inflate it); NaN with fewer than 10 intervals.
    """
    if samples.size < 2:
        return float("nan")
    classes = np.array([record.class_at(int(s)) for s in samples])
    keep = (classes[1:] == cls) & (classes[:-1] == cls)
    if cls == "sinus":
        keep &= (symbols[1:] == "N") & (symbols[:-1] == "N")
    rr = np.diff(samples)[keep] / record.fs
    return float(rr.std() / rr.mean()) if rr.size >= 10 else float("nan")


def _per_minute(record: AnnotatedRecord, symbol: str, lo_s: float, hi_s: float) -> float:
    if hi_s - lo_s < 30.0:
        return float("nan")
    t = record.beats.sample / record.fs
    inside = (t >= lo_s) & (t < hi_s) & (record.beats.symbol == symbol)
    return float(np.count_nonzero(inside) * 60.0 / (hi_s - lo_s))


def check_record(record: AnnotatedRecord, kind: str, precursor_min: float) -> dict[str, Any]:
    """One record's row: beats annotated/detected/matched, RR CV by class, A/V per minute before an onset."""
    analysis = analyse_lead(record.lead("II").astype(np.float64), record.fs, "II")
    score = score_beats(analysis, record.beats.sample, record.beats.symbol, record.unusable, tol_s=_TOL_S)
    onset = min(record.onsets.values()) if record.onsets else None
    split = onset - 60.0 * precursor_min if onset is not None else record.duration_s
    row: dict[str, Any] = {
        "record": record.record_name,
        "kind": kind,
        "onset_s": onset,
        "beats_annotated": score.n_ref,
        "beats_detected": score.n_test,
        "beats_matched": score.true_positives,
    }
    for cls in ("sinus", "af"):
        row[f"rr_cv_{cls}_annotated"] = rr_cv(record.beats.sample, record, cls, record.beats.symbol)
        row[f"rr_cv_{cls}_detected"] = rr_cv(analysis.r_peaks, record, cls, analysis.symbols)
    for symbol in ("A", "V"):
        row[f"{symbol}_per_min_baseline"] = _per_minute(record, symbol, 0.0, max(split, 0.0))
        row[f"{symbol}_per_min_precursor"] = _per_minute(record, symbol, max(split, 0.0), onset) if onset else None
    return row


def check_records(directory: Path, precursor_min: float = 5.0) -> dict[str, Any]:
    """Rows per record and a summary per kind for the records of a second-source folder (its manifest order)."""
    manifest = json.loads((directory / MANIFEST).read_text())
    rows = [check_record(read_record(directory / e["record"]), e["kind"], precursor_min) for e in manifest["records"]]
    kinds = sorted({r["kind"] for r in rows}, key=[e["kind"] for e in manifest["records"]].index)
    summary = {kind: _summary([r for r in rows if r["kind"] == kind]) for kind in kinds}
    return {"seed": manifest["seed"], "minutes": manifest["minutes"], "patients": manifest["patients"]} | {
        "precursor_min": precursor_min,
        "label": manifest["label"],
        "generators": manifest["generators"],
        "records": rows,
        "by_kind": summary,
    }


def _mean(values: list[Any]) -> float:
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Sums of beat counts; means over records of the rates and CVs (NaN where no record has the stretch)."""
    out: dict[str, Any] = {"records": len(rows)}
    for key in ("beats_annotated", "beats_detected", "beats_matched"):
        out[key] = int(sum(r[key] for r in rows))
    out["sensitivity"] = out["beats_matched"] / out["beats_annotated"] if out["beats_annotated"] else float("nan")
    out["ppv"] = out["beats_matched"] / out["beats_detected"] if out["beats_detected"] else float("nan")
    for key in rows[0]:
        if key.startswith(("rr_cv_", "A_per", "V_per")):
            out[key] = _mean([r[key] for r in rows])
    return out


def _fmt(value: float, digits: int) -> str:
    return "–" if not np.isfinite(value) else f"{value:.{digits}f}"


def markdown_table(result: dict[str, Any]) -> str:
    """The per-kind table (Markdown) of :func:`check_records`' result."""
    head = (
        "| kind | records | beats annotated | beats detected | sensitivity | PPV | RR CV sinus (ann / det) "
        f"| RR CV AF (ann / det) | A/min baseline → last {result['precursor_min']:g} min "
        f"| V/min baseline → last {result['precursor_min']:g} min |"
    )
    lines = [head, "|" + "---|" * 10]
    for kind, s in result["by_kind"].items():
        lines.append(
            f"| {kind} | {s['records']} | {s['beats_annotated']} | {s['beats_detected']} | {_fmt(s['sensitivity'], 3)} "
            f"| {_fmt(s['ppv'], 3)} | {_fmt(s['rr_cv_sinus_annotated'], 3)} / {_fmt(s['rr_cv_sinus_detected'], 3)} "
            f"| {_fmt(s['rr_cv_af_annotated'], 3)} / {_fmt(s['rr_cv_af_detected'], 3)} "
            f"| {_fmt(s['A_per_min_baseline'], 2)} → {_fmt(s['A_per_min_precursor'], 2)} "
            f"| {_fmt(s['V_per_min_baseline'], 2)} → {_fmt(s['V_per_min_precursor'], 2)} |"
        )
    return "\n".join(lines)
