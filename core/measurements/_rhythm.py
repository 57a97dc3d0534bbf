"""The rhythm of a strip span by span: what a present-rhythm alert ("AF now", "VT now") reads.

Why fixed spans, newest last: a present rhythm is a claim about *now* and about *how long*. Cutting the measured
strip into equal spans that end at its last sample lets a caller count back from the end how many spans in a row
look like AF or VT, which is a lower bound on how long the rhythm has lasted (in whole spans), from one strip.

Why the RR irregularity index takes the smallest of several lags: atrial fibrillation is *irregularly* irregular.
Bigeminy and trigeminy are irregular beat to beat too (long-short-long), but they repeat every two or three beats,
so the interval two or three beats back matches; in AF no lag does. The median keeps an isolated premature beat
(sinus with PACs) from looking like AF.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from ._metrics import LeadAnalysis

__all__ = ["RHYTHM_SPAN_S", "RhythmSpan", "rhythm_spans"]

RHYTHM_SPAN_S: Final = 10.0  # long enough to hold 8+ intervals at 50/min, short enough to time an onset in steps
MIN_SPAN_INTERVALS: Final = 6  # fewer measurable RR intervals in a span and its rhythm is not measurable
PATTERN_LAGS: Final = (1, 2, 3)  # beat-to-beat, bigeminy and trigeminy repeat lengths
MIN_PAIRS: Final = 4  # NN pairs a lag needs for its median to count


@dataclass(frozen=True)
class RhythmSpan:
    """One span of the strip. ``None`` means "not measurable in this span", never zero."""

    start_s: float  # seconds from the strip's start
    end_s: float
    n_beats: int
    hr_bpm: float | None  # 60000 / mean RR of the intervals ending in the span
    rr_irregular_index: float | None  # min over lags 1-3 of median |NN_i - NN_i-lag| / NN_i: AF-like when high
    ventricular_fraction: float | None  # share of the span's beats labelled 'V'
    longest_ventricular_run: int  # consecutive 'V' beats within the span
    trailing_ventricular_run: int  # consecutive 'V' beats that end the span (a beat cut off by the strip's end, whose
    #                                shape cannot be judged, left out): a ventricular run still going at its end


def rhythm_spans(analysis: LeadAnalysis, span_s: float = RHYTHM_SPAN_S) -> tuple[RhythmSpan, ...]:
    """The strip of ``analysis`` cut into whole spans of ``span_s`` that end at its last sample, oldest first.

    A leftover shorter than ``span_s`` at the strip's start is not reported. RR intervals that cross an unusable
    stretch are left out (they are NaN in the analysis), so a lead-off gap never reads as a pause.

    Examples
    --------
    >>> import numpy as np
    >>> from core.measurements import analyse_lead, rhythm_spans
    >>> fs = 250.0
    >>> t = np.arange(int(30 * fs)) / fs
    >>> sig_mv = sum(np.exp(-(((t - b) / 0.012) ** 2)) for b in np.arange(0.4, 30, 0.8))  # 75 bpm, regular
    >>> spans = rhythm_spans(analyse_lead(sig_mv, fs, "II"))
    >>> [(s.start_s, s.end_s, round(s.hr_bpm), s.rr_irregular_index) for s in spans][-1]
    (20.0, 30.0, 75, 0.0)
    """
    if not span_s > 0:
        raise ValueError(f"span_s must be positive seconds, got {span_s!r}")
    m = analysis.measurements
    beat_s = analysis.r_peaks / m.fs
    n_spans = int(m.duration_s // span_s + 1e-9)
    ends = m.duration_s - span_s * np.arange(n_spans)[::-1]
    return tuple(_span(analysis, beat_s, float(end - span_s), float(end)) for end in ends)


def _span(analysis: LeadAnalysis, beat_s: npt.NDArray[np.float64], start_s: float, end_s: float) -> RhythmSpan:
    inside = (beat_s >= start_s) & (beat_s < end_s)
    rr = analysis.features.rr_prev_ms[inside]
    symbols = analysis.symbols[inside]
    finite = rr[np.isfinite(rr)]
    measurable = finite.size >= MIN_SPAN_INTERVALS
    return RhythmSpan(
        start_s=round(start_s, 3),
        end_s=round(end_s, 3),
        n_beats=int(inside.sum()),
        hr_bpm=60000.0 / float(finite.mean()) if measurable else None,
        rr_irregular_index=_irregular_index(_normal_to_normal(analysis)[inside]) if measurable else None,
        ventricular_fraction=float(np.mean(symbols == "V")) if symbols.size else None,
        longest_ventricular_run=_longest_run(symbols == "V"),
        trailing_ventricular_run=_trailing_run(symbols[np.isfinite(analysis.features.template_corr[inside])] == "V"),
    )


def _normal_to_normal(analysis: LeadAnalysis) -> npt.NDArray[np.float64]:
    """RR intervals between two 'N' beats, NaN elsewhere: ectopic beats (PACs, PVCs) say nothing of whether the
    underlying rhythm is AF, and frequent ectopy would otherwise look irregularly irregular."""
    symbols = analysis.symbols
    normal_pair = np.concatenate(([False], (symbols[1:] == "N") & (symbols[:-1] == "N")))
    return np.where(normal_pair, analysis.features.rr_prev_ms, np.nan)


def _irregular_index(nn_ms: npt.NDArray[np.float64]) -> float | None:
    """Smallest over :data:`PATTERN_LAGS` of the median relative change of an NN interval against the one ``lag``
    back. None without :data:`MIN_PAIRS` beat-to-beat pairs: with a PVC every second or third beat (labelled), the
    few NN intervals left are a beat pattern apart, and sinus variability over several beats would read as AF."""
    per_lag = []
    for lag in PATTERN_LAGS:
        change = np.abs(nn_ms[lag:] - nn_ms[:-lag]) / nn_ms[lag:]
        change = change[np.isfinite(change)]
        if change.size >= MIN_PAIRS:
            per_lag.append(float(np.median(change)))
        elif lag == 1:
            return None
    return min(per_lag)


def _trailing_run(mask: npt.NDArray[np.bool_]) -> int:
    misses = np.flatnonzero(~mask)
    return int(mask.size - 1 - misses[-1]) if misses.size else int(mask.size)


def _longest_run(mask: npt.NDArray[np.bool_]) -> int:
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    return int(lengths.max(initial=0))
