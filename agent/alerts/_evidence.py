"""The measured evidence an alert rests on, and whether the signal is good enough to judge at all.

Everything here is deterministic signal processing output (core.measurements) plus the ingest's per-lead quality
verdicts; nothing comes from the language model. Rates are per *usable* minute, so a strip that was half lead-off
does not halve the ectopy rate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .settings import QualityGate

if TYPE_CHECKING:  # annotations only: importing it at run time pulls in scipy
    from core.measurements import Measurements, RhythmSpan

__all__ = ["Evidence", "build_evidence", "quality_problem"]

OFF_VERDICTS = frozenset({"leads_off"})
"""Ingest verdicts of a lead whose samples are not ECG: nothing measured on such a lead is quoted."""


@dataclass(frozen=True)
class Evidence:
    """Measured evidence for one patient at one forecast. ``None`` means "not measurable", never zero."""

    lead: str | None  # lead the measurements come from
    window_s: float  # seconds of signal the recent measurements cover
    t_end_s: float | None  # stream time of the end of that window, when known
    hr_bpm: float | None
    hr_change_bpm: float | None  # recent minus earlier window
    rr_irregularity: float | None  # normalised RMSSD; AF typically > 0.1
    rr_cv: float | None
    pac_per_min: float | None
    pac_per_min_before: float | None
    pvc_per_min: float | None
    pvc_per_min_before: float | None
    couplets: int
    ventricular_runs: int  # runs of three or more ventricular beats
    longest_ventricular_run: int
    usable_fraction: float | None
    signal_quality: Mapping[str, str] = field(default_factory=dict)  # lead -> ingest verdict
    rhythm_spans: tuple[RhythmSpan, ...] = ()  # the recent window in 10-s spans, oldest first (present rhythms)

    def as_dict(self) -> dict[str, Any]:
        """The evidence as alerts carry it; the spans stay out (a present-rhythm alert summarises its own run)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "rhythm_spans"}
        data["signal_quality"] = dict(self.signal_quality)
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in data.items()}


def _per_usable_minute(count: int, m: Measurements) -> float | None:
    usable_min = m.duration_s * m.usable_fraction / 60.0
    return count / usable_min if usable_min > 0 else None


def build_evidence(
    recent: Measurements | None,
    earlier: Measurements | None,
    quality: Mapping[str, str],
    window_s: float,
    *,
    t_end_s: float | None = None,
    rhythm: Sequence[RhythmSpan] = (),
) -> Evidence:
    """Evidence from the recent window's measurements, trends against the earlier window, and lead verdicts;
    ``rhythm`` is the recent window's :func:`core.measurements.rhythm_spans`, read for present-rhythm alerts.

    ``window_s`` is the span the caller measured over; the evidence states the shorter of it and the strip's
    actual duration. ``recent`` may be None when nothing could be measured (all leads off): the result then carries
    only the quality verdicts, and :func:`quality_problem` reports it as not assessable. So does a ``recent`` measured
    on a lead the ingest reports off (issue #21: an explanation said both leads were off, then quoted "HR 51 bpm"
    measured on one of them): numbers from a detached electrode are noise, never evidence.
    """
    if recent is None or quality.get(recent.lead or "") in OFF_VERDICTS:
        return Evidence(
            lead=None, window_s=window_s, t_end_s=t_end_s, hr_bpm=None, hr_change_bpm=None, rr_irregularity=None,
            rr_cv=None, pac_per_min=None, pac_per_min_before=None, pvc_per_min=None, pvc_per_min_before=None,
            couplets=0, ventricular_runs=0, longest_ventricular_run=0, usable_fraction=None,
            signal_quality=dict(quality),
        )  # fmt: skip
    hr_change = None
    if earlier is not None and earlier.hr_bpm is not None and recent.hr_bpm is not None:
        hr_change = recent.hr_bpm - earlier.hr_bpm
    return Evidence(
        lead=recent.lead,
        window_s=min(window_s, recent.duration_s),  # a young stream gives a shorter strip than asked for
        t_end_s=t_end_s,
        hr_bpm=recent.hr_bpm,
        hr_change_bpm=hr_change,
        rr_irregularity=recent.rr_irregularity,
        rr_cv=recent.rr_cv,
        pac_per_min=_per_usable_minute(recent.pac_count, recent),
        pac_per_min_before=_per_usable_minute(earlier.pac_count, earlier) if earlier else None,
        pvc_per_min=_per_usable_minute(recent.pvc_count, recent),
        pvc_per_min_before=_per_usable_minute(earlier.pvc_count, earlier) if earlier else None,
        couplets=recent.couplet_count,
        ventricular_runs=recent.ventricular_run_count,
        longest_ventricular_run=recent.longest_ventricular_run,
        usable_fraction=recent.usable_fraction,
        signal_quality=dict(quality),
        rhythm_spans=tuple(rhythm),
    )


def quality_problem(evidence: Evidence, gate: QualityGate) -> str | None:
    """Why this evidence cannot support a forecast alert, in plain words; None when it can."""
    good = [lead for lead, verdict in evidence.signal_quality.items() if verdict in gate.acceptable_verdicts]
    if len(good) < gate.min_good_leads:
        bad = ", ".join(
            f"{lead} {verdict.replace('_', ' ')}" for lead, verdict in sorted(evidence.signal_quality.items())
        )
        have = f"{len(good)} assessable lead{'s' if len(good) != 1 else ''}, {gate.min_good_leads} needed"
        return f"{have}: {bad or 'no leads reported'}"
    if evidence.usable_fraction is None or evidence.hr_bpm is None:
        return "no measurable heart rate in the recent window"
    if evidence.usable_fraction < gate.min_usable_fraction:
        return f"only {100 * evidence.usable_fraction:.0f}% of the recent window usable"
    return None
