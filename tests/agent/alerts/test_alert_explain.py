"""Explanations cite measured evidence, and a model rationale that contradicts the numbers is dropped."""

from __future__ import annotations

import pytest

from agent.alerts import AlertPolicy, AlertSettings, ForecastSeen, PatientAlerts, check_rationale

from .alert_builders import evidence, forecast


def raised_alert_text(rationale: str | None, **evidence_changes: object) -> tuple[str, str | None]:
    policy = AlertPolicy(AlertSettings.model_validate({"defaults": {"persistence_k": 1, "persistence_n": 1}}))
    f = forecast(af=(0.3, 0.72), explanation=rationale)
    _, events = policy.decide(PatientAlerts("P001"), ForecastSeen(1.0, f, evidence(**evidence_changes)))
    (event,) = events
    return event.after.explanation, event.after.rationale_note


def test_explanation_cites_measured_evidence_and_says_advisory() -> None:
    text, note = raised_alert_text(None, hr_bpm=96.4, hr_change_bpm=14.2, pvc_per_min=2.0)
    assert "prediction, not a present rhythm" in text
    assert "atrial fibrillation may begin within 5 min" in text
    assert "probability 0.72, alert threshold 0.50" in text
    assert "HR 96 bpm (+14 vs before)" in text
    assert "PAC 3.0/min (before 1.0/min)" in text
    assert "PVC 2.0/min" in text
    assert "signal quality: II good, V1 good" in text
    assert note == "no model rationale was generated"


def test_consistent_rationale_is_appended() -> None:
    rationale = "Rising atrial ectopy and a heart rate near 80 bpm often precede atrial fibrillation."
    text, note = raised_alert_text(rationale)
    assert text.endswith(f"Model rationale: {rationale}")
    assert note is None


@pytest.mark.parametrize(
    ("rationale", "why"),
    [
        ("The heart rate of 120 bpm suggests imminent AF.", "states HR 120 bpm, measured 78 bpm"),
        ("Frequent PVCs point to ventricular tachycardia.", "names ventricular tachycardia"),
        ("The pattern resembles atrial flutter more than anything else.", "names atrial flutter"),
        ("Atrial fibrillation is unlikely in the next minutes.", "negates the forecast"),
        ("There is no ectopy, yet atrial fibrillation may start.", "denies ectopy"),
    ],
)
def test_contradicting_rationale_is_dropped(rationale: str, why: str) -> None:
    text, note = raised_alert_text(rationale)
    assert "Model rationale" not in text
    assert note is not None and why in note
    assert "HR 78 bpm" in text  # the measured numbers stay


def test_rationale_with_hr_when_hr_not_measurable_is_dropped() -> None:
    problem = check_rationale("Heart rate is 70 bpm.", "af", evidence(hr_bpm=None))
    assert problem == "rationale states HR 70 bpm, measured not measurable"


def test_hr_within_tolerance_is_kept() -> None:
    assert check_rationale("A rate of 85 bpm with frequent PACs.", "af", evidence(hr_bpm=78.0)) is None


def test_the_rationale_from_the_issue_is_rejected_against_what_was_measured() -> None:
    """Issue #18: a CLI rationale said "heart rate 0.05 ... 4 PVCs in 4 hours" while 101 bpm and 44 PVCs were
    measured (over a 300-s window: 8.8 PVC/min)."""
    measured = evidence(hr_bpm=101.0, window_s=300.0, pvc_per_min=8.8)
    rationale = "The heart rate 0.05 is stable, with 4 PVCs in 4 hours."
    assert check_rationale(rationale, "vt", measured) == "rationale states HR 0.05 bpm, measured 101 bpm"
    ectopy_only = "There were 4 PVCs in 4 hours, which suggests ventricular tachycardia."
    assert check_rationale(ectopy_only, "vt", measured) == "rationale states 4 PVC, measured 44 in the last 300 s"


@pytest.mark.parametrize(
    ("rationale", "ok"),
    [
        ("About 44 PVCs over the window, rising.", True),
        ("Roughly 9 PVCs per minute precede VT here.", True),
        ("2 PVCs per minute.", False),
        ("HR 101 with 40 PVCs.", True),
        ("HR 60 with 40 PVCs.", False),
    ],
)
def test_ectopy_and_rate_statements_are_checked(rationale: str, ok: bool) -> None:
    measured = evidence(hr_bpm=101.0, window_s=300.0, pvc_per_min=8.8)
    assert (check_rationale(rationale, "vt", measured) is None) is ok


@pytest.mark.parametrize(
    ("rationale", "why"),
    [
        ("HR 101 bpm, PVC 14 in 300 s: findings that can precede VT.", "states PVC 14, measured 44"),
        ("HR 101 bpm, PVC 44 in 300 s with couplets 1: findings that can precede VT.", "states couplets 1, measured 3"),
        ("There were 5 couplets and frequent PVCs.", "states couplets 5, measured 3"),
        ("HR 101 bpm, PVC 44 with longest V-run 4.", "states longest ventricular run 4, measured 2"),
        ("HR 101 bpm, irregularity 0.15, PVC 44.", "states irregularity 0.15, measured 0.03"),
        ("An irregular rhythm at 101 bpm.", "calls the rhythm irregular, measured irregularity 0.03 and RR CV 0.06"),
    ],
)
def test_numbers_in_the_evidence_lines_own_form_are_checked(rationale: str, why: str) -> None:
    """What the base LM writes in the probe variant's few-shot prompt: each quantity named before its number, as
    in the evidence line; a number copied from the wrong field is dropped."""
    measured = evidence(
        hr_bpm=101.0,
        window_s=300.0,
        pvc_per_min=8.8,
        couplets=3,
        longest_ventricular_run=2,
        rr_irregularity=0.03,
        rr_cv=0.06,
    )
    problem = check_rationale(rationale, "vt", measured)
    assert problem is not None and why in problem


def test_a_note_that_copies_every_number_right_is_kept() -> None:
    note = "HR 66 bpm, PAC 7 and PVC 0 in 300 s, irregularity 0.04: findings that can precede atrial fibrillation."
    regular = evidence(hr_bpm=66.0, window_s=300.0, pac_per_min=1.4, rr_irregularity=0.04, rr_cv=0.07)
    assert check_rationale(note, "af", regular) is None
    ectopic = evidence(hr_bpm=66.0, window_s=300.0, pac_per_min=1.4, rr_irregularity=0.04, rr_cv=0.18)
    assert check_rationale("PACs make the rhythm irregular at 66 bpm.", "af", ectopic) is None


def test_a_rationale_the_runtime_dropped_says_so() -> None:
    """A generation that parse_explanation refused is not 'no rationale was generated'."""
    policy = AlertPolicy(AlertSettings.model_validate({"defaults": {"persistence_k": 1, "persistence_n": 1}}))
    f = forecast(af=(0.3, 0.72)).model_copy(update={"explanation_note": "generation dropped: repetitive text"})
    _, events = policy.decide(PatientAlerts("P001"), ForecastSeen(1.0, f, evidence()))
    (event,) = events
    assert event.after.rationale_note == "model rationale dropped by the runtime: generation dropped: repetitive text"
