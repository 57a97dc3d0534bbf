"""Stage data generators give the right answers on hand-checked cases."""

import random

import numpy as np

from core.measurements import measure_leads
from llm_runtime.prompts import questions_for
from simulators.records import AnnotatedRecord, BeatAnnotations, RhythmSegment
from simulators.scenarios import generate_scenario
from training.samples import cut_strip, onset_within, rhythm_after, window_truth
from training.tasks import QUANTITIES, classify_turn, forecast_item, measure_turn


def _hand_record(fs: float = 250.0) -> AnnotatedRecord:
    """10 minutes: sinus, AF from 300 s; a PVC at 10 s and a PAC at 20 s."""
    sig_len = int(600 * fs)
    beats = BeatAnnotations(np.array([int(10 * fs), int(20 * fs)]), np.array(["V", "A"]))
    rhythms = [RhythmSegment(0, int(300 * fs), "(N"), RhythmSegment(int(300 * fs), sig_len, "(AFIB")]
    return AnnotatedRecord(
        "hand", fs, ["II"], np.zeros((sig_len, 1), np.float32), beats, rhythms, np.zeros(sig_len, bool), {"AF": 300.0}
    )


def test_labels_on_a_hand_built_record() -> None:
    rec = _hand_record()
    assert rhythm_after(rec, 200, 60) == "sinus" and rhythm_after(rec, 250, 60) == "af"
    assert onset_within(rec, 250, 60) == {"af": True, "flutter": False, "vt": False}
    assert onset_within(rec, 300, 60)["af"] is False  # already started: not an onset within the horizon
    truth = window_truth(rec, 30, 30)
    assert (truth.pvc, truth.pac, truth.rhythm) == (1, 1, "sinus")
    assert window_truth(rec, 330, 10).rhythm == "af"


def test_forecast_answers_follow_the_runtime_questions() -> None:
    rec = generate_scenario("af_onset", seed=5, minutes=8, leads=("II", "V1"), noise="low")
    onset = rec.onsets["AF"]
    at = int(onset) - 20  # AF starts 20 s after the window ends
    questions = questions_for((10, 60))
    item = forecast_item(rec, cut_strip(rec, at, 10), questions, explain=False)
    chosen = {(q.kind, q.horizon_s, q.target): q.options[a] for q, a in zip(questions, item.answers, strict=True)}
    assert chosen[("rhythm", 10, None)] == "sinus" and chosen[("rhythm", 60, None)] == "af"
    assert chosen[("onset", 10, "af")] == "no" and chosen[("onset", 60, "af")] == "yes"
    assert chosen[("onset", 60, "vt")] == "no"


def test_measure_answer_is_the_measurement_module_value() -> None:
    rec = generate_scenario("sinus_stable", seed=2, minutes=1, leads=("II",), noise="none")
    strip = cut_strip(rec, 40, 30)
    expected = measure_leads(rec.p_signal[10 * 250 : 40 * 250], rec.fs, rec.sig_name)
    rng = random.Random(0)
    seen = set()
    for _ in range(40):
        question, answer, quantity, value = measure_turn(strip.measurements, rng)
        seen.add(quantity)
        assert value == getattr(expected, quantity)
        if quantity == "hr_bpm":
            assert answer == f"{expected.hr_bpm:.0f}" and "heart rate" in question
    assert seen == set(QUANTITIES)


def test_classify_rhythm_answer_is_the_label() -> None:
    rec = _hand_record()
    rng = random.Random(1)
    for at in (100, 400):
        truth = window_truth(rec, at, 10)
        for _ in range(30):
            question, answer, choices = classify_turn(truth, rng)
            assert answer in choices
            if "rhythm" in question:
                assert answer == ("sinus rhythm" if at == 100 else "atrial fibrillation")
