"""Realism check: measure generated rhythms with an independent detector (neurokit2) against what was asked.

Run ``python -m simulators.realism`` (or ``python main.py realism --write-docs docs/SIMULATORS.md``). For each
fixed rhythm preset, lead II, ``noise="ambient"``: heart rate and RR statistics from neurokit2's R peaks, QRS width and
P-wave presence from neurokit2's DWT delineation. Our own beat labels are never used for the measurement.
"""

from __future__ import annotations

import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from simulators._scripts import RHYTHM_PRESETS, RhythmPreset
from simulators._scripts_v2 import RHYTHM_PRESETS_V2
from simulators.scenarios import generate_rhythm

__all__ = [
    "PRESETS",
    "TOLERANCES",
    "RealismRow",
    "check_row",
    "markdown_table",
    "measure",
    "measure_all",
    "reference_qrs_ms",
    "write_table",
]

TOLERANCES: Final[dict[str, float]] = {
    "hr_rel": 0.10,  # measured HR within ±10 % of the asked rate
    "cv_regular_max": 0.08,  # regular rhythms: RR coefficient of variation below this
    "cv_irregular_min": 0.10,  # AF and ectopy: RR CV above this
    "qrs_narrow_ms": 25.0,  # supraventricular QRS within ±25 ms of the reference (neurokit2's own sinus ECG)
    "qrs_wide_extra_ms": 30.0,  # ventricular QRS at least 30 ms wider than the reference
    "p_present_min": 0.7,  # sinus rhythms: P wave found before at least this share of beats
    "p_absent_max": 0.5,  # AF and VT: at most this share (flutter waves read as P waves: not checked)
}
"""Stated tolerances; ``check_row`` applies them and the test asserts them."""

PRESETS: Final[dict[str, RhythmPreset]] = RHYTHM_PRESETS | RHYTHM_PRESETS_V2
"""v1's fixed rhythms, then what generator v2 adds (morphology families, AF of other rates and f-wave sizes)."""

_TABLE_START: Final = "<!-- realism-table:start -->"
_TABLE_END: Final = "<!-- realism-table:end -->"


@dataclass(frozen=True)
class RealismRow:
    rhythm: str
    asked_hr_bpm: float
    hr_bpm: float
    rr_cv: float
    rmssd_ms: float
    qrs_ms: float
    p_fraction: float
    n_beats: int


def _r_peaks(cleaned: npt.NDArray[np.float64], fs: float) -> npt.NDArray[np.int64]:
    """neurokit2's default detector; Pan-Tompkins where the default finds under half as many beats (its
    steepness criteria reject the wide, rounded complexes of VT)."""
    import neurokit2 as nk

    found = []
    for method in ("neurokit", "pantompkins1985"):
        _, info = nk.ecg_peaks(cleaned, sampling_rate=int(fs), method=method)
        found.append(np.asarray(info["ECG_R_Peaks"], dtype=np.int64))
    return found[0] if found[0].size >= 0.5 * found[1].size else found[1]


def _width_ms(cleaned: npt.NDArray[np.float64], rpeaks: npt.NDArray[np.int64], fs: float) -> float:
    """Median QRS width: the span around each detected R peak where |x - local median| stays above 30 % of its
    largest value within ±40 ms (a generic rule, blind to our templates)."""
    half, core = int(0.15 * fs), max(1, int(0.04 * fs))
    widths = []
    for peak in rpeaks[(rpeaks > half) & (rpeaks < cleaned.size - half)]:
        seg = cleaned[peak - half : peak + half]
        dev = np.abs(seg - np.median(seg))
        above = dev > 0.3 * dev[half - core : half + core + 1].max()
        centre = half - core + int(np.argmax(dev[half - core : half + core + 1]))
        lo = centre - int(np.argmin(above[centre::-1])) if not above[: centre + 1].all() else 0
        hi = centre + int(np.argmin(above[centre:])) if not above[centre:].all() else above.size
        widths.append((hi - lo) / fs * 1000.0)
    return float(np.median(widths)) if widths else float("nan")


def _measure_ecg(ecg: npt.NDArray[np.float64], fs: float) -> tuple[npt.NDArray[np.float64], float, float, int]:
    """(RR intervals in ms, median QRS width ms, share of beats with a consistently timed P wave, beats).

    R peaks and P waves come from neurokit2 (``ecg_peaks``, DWT ``ecg_delineate``). A P wave counts when it sits
    at a PR interval within ±20 ms of the strip's median PR, so random f-wave picks in AF do not count.
    """
    import neurokit2 as nk

    cleaned = np.asarray(nk.ecg_clean(ecg, sampling_rate=int(fs), method="neurokit"), dtype=np.float64)
    rpeaks = _r_peaks(cleaned, fs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the delineator warns on edge beats; missing waves are NaN and counted
        _, waves = nk.ecg_delineate(cleaned, rpeaks, sampling_rate=int(fs), method="dwt")
    pr_ms = _gap_ms(waves["ECG_P_Peaks"], rpeaks, fs, 350.0, before=True)
    found = np.isfinite(pr_ms)
    consistent = found & (np.abs(pr_ms - np.nanmedian(pr_ms)) <= 20.0) if found.any() else found
    p_share = float(consistent.mean()) if rpeaks.size else 0.0
    return np.diff(rpeaks) / fs * 1000.0, _width_ms(cleaned, rpeaks, fs), p_share, int(rpeaks.size)


def _gap_ms(
    events: list[float], rpeaks: npt.NDArray[np.int64], fs: float, max_ms: float, before: bool
) -> npt.NDArray[np.float64]:
    """Per R peak, ms to the nearest delineated event before (or after) it within ``max_ms``; NaN when none.

    Matching by time keeps beats and waves aligned even when the delineator returns lists of other lengths."""
    times = np.sort(np.asarray([e for e in events if np.isfinite(e)], dtype=float))
    out = np.full(rpeaks.size, np.nan)
    if times.size == 0:
        return out
    index = np.searchsorted(times, rpeaks, side="right" if before else "left")
    pick = index - 1 if before else index
    valid = (pick >= 0) & (pick < times.size)
    gap = np.abs(rpeaks[valid] - times[pick[valid]]) / fs * 1000.0
    out[np.flatnonzero(valid)] = np.where(gap <= max_ms, gap, np.nan)
    return out


def reference_qrs_ms(fs: float = 250.0) -> float:
    """QRS width that the same rule measures on neurokit2's own sinus simulator (ECGSYN, 72/min): the rule
    measures a width at 30 % of peak, not a clinical QRS duration, so our widths are judged against this."""
    import neurokit2 as nk

    ecg = nk.ecg_simulate(duration=60, sampling_rate=int(fs), heart_rate=72, random_state=0)
    return _measure_ecg(np.asarray(ecg, dtype=np.float64), fs)[1]


def measure(preset: str, seconds: float = 60.0, seed: int = 0, fs: float = 250.0) -> RealismRow:
    """Generate ``preset`` (lead II, ambient noise) and measure it with neurokit2 only."""
    record = generate_rhythm(preset, seconds=seconds, seed=seed, fs=fs, leads=("II",), noise="ambient")
    rr_ms, qrs, p_fraction, n_beats = _measure_ecg(record.lead("II").astype(np.float64), fs)
    return RealismRow(
        rhythm=preset,
        asked_hr_bpm=PRESETS[preset].hr_bpm,
        hr_bpm=float(60000.0 / rr_ms.mean()),
        rr_cv=float(rr_ms.std() / rr_ms.mean()),
        rmssd_ms=float(np.sqrt(np.mean(np.diff(rr_ms) ** 2))),
        qrs_ms=qrs,
        p_fraction=p_fraction,
        n_beats=n_beats,
    )


def check_row(row: RealismRow, ref_qrs_ms: float) -> list[str]:
    """Violations of :data:`TOLERANCES` for one row (empty when the rhythm measures as asked)."""
    preset: RhythmPreset = PRESETS[row.rhythm]
    tol = TOLERANCES
    problems = []
    if abs(row.hr_bpm - row.asked_hr_bpm) > tol["hr_rel"] * row.asked_hr_bpm:
        problems.append(f"HR {row.hr_bpm:.1f} vs asked {row.asked_hr_bpm:.0f}")
    if preset.irregular and row.rr_cv < tol["cv_irregular_min"]:
        problems.append(f"RR CV {row.rr_cv:.3f} too regular")
    if not preset.irregular and row.rr_cv > tol["cv_regular_max"]:
        problems.append(f"RR CV {row.rr_cv:.3f} too irregular")
    if preset.qrs == "narrow" and not abs(row.qrs_ms - ref_qrs_ms) <= tol["qrs_narrow_ms"]:
        problems.append(f"QRS {row.qrs_ms:.0f} ms vs reference {ref_qrs_ms:.0f} ms")
    if preset.qrs == "wide" and not row.qrs_ms >= ref_qrs_ms + tol["qrs_wide_extra_ms"]:
        problems.append(f"QRS {row.qrs_ms:.0f} ms not wider than reference {ref_qrs_ms:.0f} ms")
    if preset.p_waves and row.p_fraction < tol["p_present_min"]:
        problems.append(f"P in {row.p_fraction:.0%} of beats")
    if preset.p_waves is False and row.p_fraction > tol["p_absent_max"]:
        problems.append(f"P in {row.p_fraction:.0%} of beats, expected none")
    return problems


def measure_all(seconds: float = 60.0, seed: int = 0, presets: tuple[str, ...] | None = None) -> list[RealismRow]:
    return [measure(name, seconds=seconds, seed=seed) for name in presets or tuple(PRESETS)]


def markdown_table(rows: list[RealismRow], ref_qrs_ms: float) -> str:
    """The realism table as Markdown, with the asked values and a pass/fail column."""
    columns = ["rhythm", "asked HR", "HR (bpm)", "RR CV", "RMSSD (ms)", "asked QRS", "QRS (ms)", "asked P", "P found"]
    columns += ["beats", "check"]
    head = "| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|"
    lines = [head]
    for row in rows:
        preset = PRESETS[row.rhythm]
        problems = check_row(row, ref_qrs_ms)
        lines.append(
            f"| {row.rhythm} | {row.asked_hr_bpm:.0f} | {row.hr_bpm:.1f} | {row.rr_cv:.3f} | {row.rmssd_ms:.0f} "
            f"| {preset.qrs} | {row.qrs_ms:.0f} | {_asked_p(preset)} | {row.p_fraction:.0%} "
            f"| {row.n_beats} | {'ok' if not problems else '; '.join(problems)} |"
        )
    note = f"\nReference QRS (neurokit2 `ecg_simulate`, 72/min, same width rule): {ref_qrs_ms:.0f} ms."
    return "\n".join(lines) + "\n" + note


def _asked_p(preset: RhythmPreset) -> str:
    if preset.p_waves is None:
        return "F waves" if preset.segment.rhythm == "flutter" else "sinus beats only"
    return "yes" if preset.p_waves else "no"


def write_table(path: Path, table: str) -> None:
    """Replace the text between the realism-table markers in ``path`` (markers must exist)."""
    text = path.read_text()
    if _TABLE_START not in text or _TABLE_END not in text:
        raise ValueError(f"{path} has no {_TABLE_START} ... {_TABLE_END} markers")
    pattern = re.compile(re.escape(_TABLE_START) + ".*?" + re.escape(_TABLE_END), re.S)
    path.write_text(pattern.sub(lambda _: f"{_TABLE_START}\n{table}\n{_TABLE_END}", text))


if __name__ == "__main__":
    print(markdown_table(measure_all(), reference_qrs_ms()))
    sys.exit(0)
