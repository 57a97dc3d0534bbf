"""Stage tasks: questions and answers written from a strip's ground truth and its measured evidence.

* classify (stage 2): one multiple-choice or short-answer question (rhythm at the window end, PVCs present, PACs
  present, signal quality), answers are exact generator labels;
* measure (stage 3): one quantity of the deterministic measurement module (the numbers the runtime quotes);
* converse (stage 4): two or three turns combining the measurements with reasoning about rhythm and risk,
  phrased from several templates so the model does not learn one sentence;
* forecast (stage 5): the runtime's own questions (PromptBook) with the true option per question, or, for a
  share of samples, the runtime's explanation prompt with a short rationale citing the evidence.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.measurements import Measurements
from llm_runtime.prompts import RHYTHMS, Question
from simulators.records import AnnotatedRecord
from training.samples import Strip, WindowTruth, onset_within, rhythm_after

__all__ = ["QUANTITIES", "Dialogue", "ForecastItem", "classify_turn", "converse_turns", "forecast_item", "measure_turn"]


@dataclass(frozen=True, eq=False)
class Dialogue:
    """Stages 2-4: user/model turns about one strip. ``choices`` (stage 2) are the candidate answers of the first
    turn, ``quantity``/``value`` (stage 3) the measurement asked and its exact value (None: not measurable)."""

    stage: str
    strip: Strip
    turns: tuple[tuple[str, str], ...]
    choices: tuple[str, ...] = ()
    quantity: str = ""
    value: float | None = None


@dataclass(frozen=True, eq=False)
class ForecastItem:
    """Stage 5: the true option index per runtime question, the labels behind them, and an optional rationale
    (when set, the sample trains the runtime's explanation prompt instead of the scored answers)."""

    strip: Strip
    answers: tuple[int, ...]
    rhythm: dict[int, str]  # horizon -> class at at_s + h
    onset: dict[int, dict[str, bool]]  # horizon -> class -> onset within (at_s, at_s + h]
    explanation: str | None = None
    summary: str = ""
    meta: dict[str, str] = field(default_factory=dict)
    horizons: tuple[int, ...] = ()  # the prompt's horizons, in question order

    @property
    def positive(self) -> bool:
        """An arrhythmia starts within, or is present at, one of the asked horizons."""
        onsets = any(any(per.values()) for per in self.onset.values())
        return onsets or any(cls != "sinus" for cls in self.rhythm.values())


# --- stage 2 ------------------------------------------------------------------------------------------------------

_YES_NO = ("yes", "no")


def classify_turn(truth: WindowTruth, rng: random.Random) -> tuple[str, str, tuple[str, ...]]:
    """(question, answer, choices) for one classification question."""
    kind = rng.choice(("rhythm", "rhythm", "pvc", "pac", "quality"))
    if kind == "rhythm":
        names = list(RHYTHMS.values())
        rng.shuffle(names)
        lead_in = rng.choice(("Which rhythm does this ECG end in?", "What is the rhythm at the end of this strip?"))
        return f"{lead_in} Options: {', '.join(names)}.", RHYTHMS[truth.rhythm], tuple(RHYTHMS.values())
    if kind == "pvc":
        question = rng.choice(("Are there ventricular premature beats in this strip?", "Any PVCs on this ECG?"))
        return f"{question} Answer yes or no.", _YES_NO[truth.pvc == 0], _YES_NO
    if kind == "pac":
        question = rng.choice(("Are there atrial premature beats in this strip?", "Any PACs on this ECG?"))
        return f"{question} Answer yes or no.", _YES_NO[truth.pac == 0], _YES_NO
    quality = "poor" if truth.unusable_fraction > 0.2 else "good"
    return "Is the signal quality good or poor?", quality, ("good", "poor")


# --- stage 3 ------------------------------------------------------------------------------------------------------

QUANTITIES: dict[str, tuple[str, str, str]] = {
    "hr_bpm": ("What is the heart rate", "beats per minute", ".0f"),
    "rr_mean_ms": ("What is the mean RR interval", "milliseconds", ".0f"),
    "rr_sd_ms": ("What is the standard deviation of the RR intervals", "milliseconds", ".0f"),
    "rmssd_ms": ("What is the RMSSD of the normal-to-normal intervals", "milliseconds", ".0f"),
    "pac_count": ("How many atrial premature beats are there", "beats", "d"),
    "pvc_count": ("How many ventricular premature beats are there", "beats", "d"),
    "qrs_width_ms": ("What is the median QRS width", "milliseconds", ".0f"),
    "longest_ventricular_run": ("How many beats are in the longest run of ventricular beats", "beats", "d"),
}
"""Measurement field -> (question, unit, answer format). Values come from core.measurements."""


def format_quantity(quantity: str, value: float | None) -> str:
    if value is None:
        return "not measurable"
    return format(int(value) if QUANTITIES[quantity][2] == "d" else value, QUANTITIES[quantity][2])


def measure_turn(measured: Measurements, rng: random.Random) -> tuple[str, str, str, float | None]:
    """(question, answer, quantity, value) for one measurement."""
    quantity = rng.choice(tuple(QUANTITIES))
    question, unit, _ = QUANTITIES[quantity]
    value = getattr(measured, quantity)
    return f"{question}, in {unit}? Answer with a number.", format_quantity(quantity, value), quantity, value


# --- stage 4 ------------------------------------------------------------------------------------------------------

_OPENERS = ("Summarise this strip.", "What do you see on this monitor strip?", "Describe the rhythm and the rate.")
_ECTOPY_Q = ("Any ectopic beats?", "Is there ectopy?", "What about premature beats?")
_RISK_Q = (
    "Is this patient at risk of an arrhythmia in the next few minutes?",
    "Should the nurse expect a rhythm change soon?",
    "How worried should we be about the next five minutes?",
)


def _summary(m: Measurements, truth: WindowTruth, rng: random.Random) -> str:
    rhythm = RHYTHMS[truth.rhythm]
    if m.hr_bpm is None:
        return f"The signal is too poor to measure; the rhythm appears to be {rhythm}."
    hr, irr = f"{m.hr_bpm:.0f}", format_quantity("rr_sd_ms", m.rr_sd_ms)
    return rng.choice(
        (
            f"{rhythm.capitalize()} at about {hr} beats per minute.",
            f"The rhythm is {rhythm}, rate {hr} per minute, RR standard deviation {irr} ms.",
            f"Heart rate {hr} bpm in {rhythm}.",
        )
    )


def _ectopy(m: Measurements, rng: random.Random) -> str:
    if m.pac_count == 0 and m.pvc_count == 0:
        return rng.choice(("No premature beats were counted.", "None: no PACs or PVCs in this window."))
    run = f", the longest ventricular run is {m.longest_ventricular_run} beats" if m.longest_ventricular_run > 1 else ""
    return rng.choice(
        (
            f"{m.pac_count} atrial and {m.pvc_count} ventricular premature beats{run}.",
            f"PAC count {m.pac_count}, PVC count {m.pvc_count}{run}.",
        )
    )


def _risk(m: Measurements, truth: WindowTruth, onset: dict[str, bool], rng: random.Random) -> str:
    irregularity = "n/a" if m.rr_irregularity is None else f"{m.rr_irregularity:.2f}"
    evidence = f"RR irregularity {irregularity}, {m.pac_count} PACs, {m.pvc_count} PVCs"
    coming = [RHYTHMS[cls] for cls, yes in onset.items() if yes]
    if truth.rhythm != "sinus":
        return f"The patient is already in {RHYTHMS[truth.rhythm]} ({evidence}); this needs attention now."
    if coming:
        return rng.choice(
            (
                f"Yes: {coming[0]} is likely to start within five minutes; the evidence is {evidence}.",
                f"Risk is raised. Expect {coming[0]} soon ({evidence}).",
            )
        )
    return rng.choice(
        (
            f"No rhythm change is expected in the next five minutes ({evidence}).",
            f"Low risk: sinus rhythm should continue ({evidence}).",
        )
    )


def converse_turns(
    record: AnnotatedRecord, strip: Strip, truth: WindowTruth, rng: random.Random
) -> tuple[tuple[str, str], ...]:
    m = strip.measurements
    onset = onset_within(record, strip.at_s, 300)
    turns = [(rng.choice(_OPENERS), _summary(m, truth, rng)), (rng.choice(_ECTOPY_Q), _ectopy(m, rng))]
    turns.append((rng.choice(_RISK_Q), _risk(m, truth, onset, rng)))
    return tuple(turns[: rng.choice((2, 3, 3))])


# --- stage 5 ------------------------------------------------------------------------------------------------------


def _explanation(item_rhythm: dict[int, str], onset: dict[int, dict[str, bool]], m: Measurements, w: int) -> str:
    h = max(item_rhythm)
    coming = [RHYTHMS[cls] for cls, yes in onset[h].items() if yes]
    head = f"{RHYTHMS[item_rhythm[h]].capitalize()} is most likely in {h} seconds"
    head += f", with onset of {coming[0]} expected." if coming else "."
    if m.hr_bpm is None:
        return head + " The signal quality limits the measured evidence."
    irr = "n/a" if m.rr_irregularity is None else f"{m.rr_irregularity:.2f}"
    return head + (
        f" Evidence: heart rate {m.hr_bpm:.0f} bpm, RR irregularity {irr}, {m.pac_count} PACs and {m.pvc_count}"
        f" PVCs in {w} s."
    )


def _truth_summary(rhythm: dict[int, str], onset: dict[int, dict[str, bool]]) -> str:
    """The runtime's summary line, written from labels with fixed confident probabilities (it stands in for the
    scored result the runtime puts there)."""
    from llm_runtime.forecast import summarise

    probs = {h: {k: (0.85 if k == cls else 0.05) for k in RHYTHMS} for h, cls in rhythm.items()}
    onsets = {h: {k: (0.8 if yes else 0.1) for k, yes in per.items()} for h, per in onset.items()}
    return summarise(probs, onsets)


def forecast_item(record: AnnotatedRecord, strip: Strip, questions: Sequence[Question], explain: bool) -> ForecastItem:
    horizons = tuple(dict.fromkeys(q.horizon_s for q in questions))
    rhythm = {h: rhythm_after(record, strip.at_s, h) for h in horizons}
    onset = {h: onset_within(record, strip.at_s, h) for h in horizons}
    answers = []
    for q in questions:
        key = rhythm[q.horizon_s] if q.kind == "rhythm" else ("yes" if onset[q.horizon_s][str(q.target)] else "no")
        answers.append(q.options.index(key))
    explanation = _explanation(rhythm, onset, strip.measurements, strip.window_s) if explain else None
    summary = _truth_summary(rhythm, onset) if explain else ""
    meta = {"record": record.record_name}
    return ForecastItem(strip, tuple(answers), rhythm, onset, explanation, summary, meta, horizons)
