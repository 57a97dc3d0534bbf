"""Alert explanations: short, plain, and true.

The text is composed deterministically from the forecast numbers and the measured evidence. The language model's
rationale is appended only when the forecast validated (it is a ``Forecast``) and the rationale does not contradict
the numbers it was given: a heart rate more than 10 bpm from the measured one (any stated number, "heart rate 0.05"
included), a PAC or PVC count or rate far from the measured one (either way round: "44 PVCs" or "PVC 44"), a
couplet count, longest ventricular run or RR irregularity that is not the measured one, "irregular" for a regular
rhythm, another arrhythmia named, the forecast negated, or "no ectopy" while ectopy was counted all drop it, and the
alert says so in ``rationale_note``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ._evidence import Evidence

__all__ = ["RHYTHM_NAMES", "Explanation", "cannot_assess_text", "check_rationale", "forecast_text", "present_text"]

RHYTHM_NAMES: Final[dict[str, str]] = {
    "af": "atrial fibrillation",
    "flutter": "atrial flutter",
    "vt": "ventricular tachycardia",
}
HR_TOLERANCE_BPM: Final = 10.0
ECTOPY_TOLERANCE: Final = (2.0, 0.3)  # a stated count (or rate) may differ from the measured by 2 or 30 %, whichever
#                                        is larger: counts are small integers, and the LM rounds

_RHYTHM_MENTIONS: Final[dict[str, re.Pattern[str]]] = {
    "af": re.compile(r"\b(atrial fibrillation|a-?fib|af)\b", re.IGNORECASE),
    "flutter": re.compile(r"\b(atrial flutter|flutter|afl)\b", re.IGNORECASE),
    "vt": re.compile(r"\b(ventricular tachycardia|v-?tach|vt)\b", re.IGNORECASE),
}
_HR_MENTION: Final = re.compile(
    r"(\d{1,3}(?:\.\d+)?)\s*(?:bpm|beats per minute|beats/min)"
    r"|(?:heart rate|\bHR\b) (?:of |is |at |was |around |near |about )?(\d+(?:\.\d+)?)",
    re.IGNORECASE,
)
_ECTOPY_MENTION: Final = re.compile(
    r"(\d+(?:\.\d+)?)\s*(?:premature )?(?P<kind>pvcs?|pacs?|ventricular (?:premature|ectopic)|atrial premature)"
    r"\w*(?P<rate>\s*(?:per minute|/\s*min|a minute))?",
    re.IGNORECASE,
)
_NAMED_COUNT: Final = re.compile(
    r"\b(?P<kind>PVCs?|PACs?|couplets?|(?:longest )?V-run)\s+(?:of |count )?"
    r"(?P<n>\d+(?:\.\d+)?)(?!\.?\d)(?!\s*(?:/|per))",
    re.IGNORECASE,
)  # the evidence line's own form, "PAC 7", "couplets 3", "longest V-run 2": a count over the measured window
_COUPLETS_FIRST: Final = re.compile(r"(?P<n>\d+)\s+couplets?\b", re.IGNORECASE)
_IRREGULARITY: Final = re.compile(r"\birregularity\s+(?:of\s+)?(?P<x>\d*\.\d+|\d+)", re.IGNORECASE)
_IRREGULAR_CLAIM: Final = re.compile(r"(?<!not )\birregular(?:ly)?\b", re.IGNORECASE)
IRREGULARITY_TOLERANCE: Final = 0.02
REGULAR_BELOW: Final = (0.06, 0.10)  # irregularity and RR CV both below these: "irregular" contradicts the numbers
_NEGATION: Final = re.compile(r"\b(unlikely|no (?:sign|evidence|risk)|not (?:expected|likely)|low risk)\b", re.I)
_NO_ECTOPY: Final = re.compile(r"\bno (?:ectop\w*|pvcs?|pacs?|premature)", re.IGNORECASE)


@dataclass(frozen=True)
class Explanation:
    text: str
    rationale_note: str | None  # why the LM rationale is absent, when it is


def _horizon(horizon_s: int) -> str:
    return f"{horizon_s // 60} min" if horizon_s % 60 == 0 else f"{horizon_s} s"


def _rate(now: float | None, before: float | None, name: str) -> str:
    if now is None:
        return f"{name} n/a"
    text = f"{name} {now:.1f}/min"
    return f"{text} (before {before:.1f}/min)" if before is not None else text


def evidence_text(evidence: Evidence) -> str:
    """One sentence of measured evidence, e.g. ``Measured on lead II over the last 60 s: HR 96 bpm (+14), …``."""
    parts = []
    if evidence.hr_bpm is not None:
        trend = f" ({evidence.hr_change_bpm:+.0f} vs before)" if evidence.hr_change_bpm is not None else ""
        parts.append(f"HR {evidence.hr_bpm:.0f} bpm{trend}")
    else:
        parts.append("HR not measurable")
    if evidence.rr_irregularity is not None:
        parts.append(f"RR irregularity {evidence.rr_irregularity:.2f}")
    parts.append(_rate(evidence.pac_per_min, evidence.pac_per_min_before, "PAC"))
    parts.append(_rate(evidence.pvc_per_min, evidence.pvc_per_min_before, "PVC"))
    if evidence.ventricular_runs or evidence.couplets:
        parts.append(
            f"{evidence.couplets} couplets, {evidence.ventricular_runs} ventricular runs "
            f"(longest {evidence.longest_ventricular_run} beats)"
        )
    else:
        parts.append("no ventricular runs")
    quality = ", ".join(f"{lead} {v.replace('_', ' ')}" for lead, v in sorted(evidence.signal_quality.items()))
    parts.append(f"signal quality: {quality or 'not reported'}")
    where = f"lead {evidence.lead}" if evidence.lead else "no lead"
    return f"Measured on {where} over the last {evidence.window_s:.0f} s: " + "; ".join(parts) + "."


def check_rationale(rationale: str, arrhythmia: str, evidence: Evidence) -> str | None:
    """Why ``rationale`` contradicts the numbers and must be dropped; None when it may be shown."""
    for match in _HR_MENTION.finditer(rationale):
        stated = float(match.group(1) or match.group(2))
        if evidence.hr_bpm is None or abs(stated - evidence.hr_bpm) > HR_TOLERANCE_BPM:
            measured = "not measurable" if evidence.hr_bpm is None else f"{evidence.hr_bpm:.0f} bpm"
            return f"rationale states HR {stated:g} bpm, measured {measured}"
    for check in (_ectopy_problem, _named_count_problem, _rhythm_problem):
        if (problem := check(rationale, evidence)) is not None:
            return problem
    others = [name for name, pattern in _RHYTHM_MENTIONS.items() if name != arrhythmia and pattern.search(rationale)]
    if others:
        return f"rationale names {', '.join(RHYTHM_NAMES[n] for n in others)}, forecast is {RHYTHM_NAMES[arrhythmia]}"
    if _NEGATION.search(rationale):
        return "rationale negates the forecast"
    ectopy = (evidence.pac_per_min or 0.0) + (evidence.pvc_per_min or 0.0)
    if ectopy > 0 and _NO_ECTOPY.search(rationale):
        return "rationale denies ectopy that was measured"
    return None


def _measured_ectopy(evidence: Evidence, ventricular: bool, per_minute: bool) -> float | None:
    """The measured PVC (or PAC) rate per minute, or count over the measured window; None when not measurable."""
    per_min = evidence.pvc_per_min if ventricular else evidence.pac_per_min
    if per_min is None:
        return None
    return per_min if per_minute else per_min * evidence.window_s / 60.0


def _ectopy_off(stated: float, measured: float) -> bool:
    return abs(stated - measured) > max(ECTOPY_TOLERANCE[0], ECTOPY_TOLERANCE[1] * measured)


def _ectopy_problem(rationale: str, evidence: Evidence) -> str | None:
    """A stated PAC/PVC count (over the measured window) or rate (per minute) far from the measured one."""
    for match in _ECTOPY_MENTION.finditer(rationale):
        ventricular = match.group("kind").lower().startswith(("pvc", "ventricular"))
        measured = _measured_ectopy(evidence, ventricular, per_minute=bool(match.group("rate")))
        if measured is None:
            continue
        stated = float(match.group(1))
        if _ectopy_off(stated, measured):
            name, unit = ("PVC" if ventricular else "PAC"), ("/min" if match.group("rate") else "")
            span = "" if match.group("rate") else f" in the last {evidence.window_s:.0f} s"
            return f"rationale states {stated:g} {name}{unit}, measured {measured:.0f}{unit}{span}"
    return None


def _named_count_problem(rationale: str, evidence: Evidence) -> str | None:
    """A count in the evidence line's own form ("PVC 14", "couplets 3", "longest V-run 2") that is not the
    measured one: what a base LM copying numbers from the wrong field writes."""
    found = [(m.group("kind"), m.group("n")) for m in _NAMED_COUNT.finditer(rationale)]
    found += [("couplets", m.group("n")) for m in _COUPLETS_FIRST.finditer(rationale)]
    for kind, number in found:
        word, stated = kind.lower(), float(number)
        if word.startswith(("pvc", "pac")):
            name = word[:3].upper()
            measured = _measured_ectopy(evidence, ventricular=name == "PVC", per_minute=False)
            wrong = measured is not None and _ectopy_off(stated, measured)
        else:
            name = "couplets" if word.startswith("couplet") else "longest ventricular run"
            measured = float(evidence.couplets if name == "couplets" else evidence.longest_ventricular_run)
            wrong = stated != measured
        if wrong:
            return f"rationale states {name} {stated:g}, measured {measured:.0f} in the last {evidence.window_s:.0f} s"
    return None


def _rhythm_problem(rationale: str, evidence: Evidence) -> str | None:
    """An irregularity figure far from the measured one, or "irregular" for a rhythm whose numbers say regular."""
    measured = evidence.rr_irregularity
    for match in _IRREGULARITY.finditer(rationale):
        stated = float(match.group("x"))
        if measured is None or abs(stated - measured) > IRREGULARITY_TOLERANCE:
            shown = "not measurable" if measured is None else f"{measured:.2f}"
            return f"rationale states irregularity {stated:g}, measured {shown}"
    cv = evidence.rr_cv
    regular = measured is not None and cv is not None and measured < REGULAR_BELOW[0] and cv < REGULAR_BELOW[1]
    if regular and _IRREGULAR_CLAIM.search(rationale):
        return f"rationale calls the rhythm irregular, measured irregularity {measured:.2f} and RR CV {cv:.2f}"
    return None


def forecast_text(
    arrhythmia: str,
    horizon_s: int,
    probability: float,
    threshold: float,
    evidence: Evidence,
    rationale: str | None,
    generation_note: str | None = None,
) -> Explanation:
    """The explanation of a forecast alert; the LM rationale is appended only if it passes :func:`check_rationale`.
    ``generation_note`` is the forecast's reason for having no rationale (a generation the runtime dropped)."""
    head = (
        f"Forecast advisory (a prediction, not a present rhythm): {RHYTHM_NAMES[arrhythmia]} may begin within "
        f"{_horizon(horizon_s)} (model onset probability {probability:.2f}, alert threshold {threshold:.2f})."
    )
    text = f"{head} {evidence_text(evidence)}"
    if rationale is None:
        if generation_note:
            return Explanation(text, f"model rationale dropped by the runtime: {generation_note}")
        return Explanation(text, "no model rationale was generated")
    problem = check_rationale(rationale, arrhythmia, evidence)
    if problem is not None:
        return Explanation(text, f"model rationale dropped: {problem}")
    return Explanation(f"{text} Model rationale: {rationale.strip()}", None)


def present_text(arrhythmia: str, run: Mapping[str, Any], threshold: float, evidence: Evidence) -> str:
    """The explanation of a present-rhythm alert: what was measured, for how long, and by which rule; ``run`` is
    :meth:`RhythmRun.summary` and ``threshold`` the AF irregular index or the VT rate the rule compares with."""
    rate = f"{run['hr_bpm']:.0f} bpm" if run.get("hr_bpm") is not None else "a rate not measurable"
    if arrhythmia == "vt":
        share = 100 * (run.get("ventricular_fraction") or 0.0)
        measured = (
            f"{share:.0f}% of beats ventricular at {rate} (VT from {threshold:.0f} bpm), longest run "
            f"{run['longest_ventricular_run']} beats"
        )
    else:
        index = run.get("rr_irregular_index")
        stated = "n/a" if index is None else f"{index:.2f}"
        measured = f"RR irregularly irregular (irregular index {stated}, AF from {threshold:.2f}) at {rate}"
    head = (
        f"{RHYTHM_NAMES[arrhythmia].capitalize()} under way (a detected present rhythm, not a forecast): "
        f"{measured}, over the last {run['lasted_s']:.0f} s."
    )
    return f"{head} {evidence_text(evidence)}"


def cannot_assess_text(problem: str, evidence: Evidence) -> str:
    return (
        f"Cannot assess: signal quality ({problem}). Arrhythmia forecasts are suppressed until the signal "
        f"recovers; this is not a negative result. {evidence_text(evidence)}"
    )
