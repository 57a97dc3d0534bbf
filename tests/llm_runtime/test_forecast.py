"""The forecast object's validation and the explanation parser's fall-backs."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from llm_runtime.forecast import SCHEMA, Forecast, parse_explanation, probabilities_by_horizon, summarise
from llm_runtime.prompts import EXPLAIN_REQUEST, questions_for


def scored() -> tuple[dict[int, dict[str, float]], dict[int, dict[str, float]]]:
    questions = questions_for([60, 300])
    probs = []
    for q in questions:
        probs.append(
            {"sinus": 0.7, "af": 0.2, "flutter": 0.05, "vt": 0.05} if q.kind == "rhythm" else {"yes": 0.3, "no": 0.7}
        )
    return probabilities_by_horizon(questions, probs)


def forecast(**overrides: object) -> Forecast:
    rhythm, onset = scored()
    fields = {
        "patient_id": "bed-7",
        "t_forecast": 600.0,
        "window_s": 300,
        "horizons_s": (60, 300),
        "rhythm_probs": rhythm,
        "onset_probs": onset,
        "model_id": "tiny",
        "model_version": "v0",
        "latency_ms": 12.5,
        **overrides,
    }
    return Forecast.model_validate(fields)


def test_forecast_round_trips_as_json() -> None:
    fc = forecast(explanation="Irregular RR intervals suggest atrial fibrillation.")
    data = json.loads(fc.to_json())
    assert data["schema"] == SCHEMA
    assert data["rhythm_probs"]["300"]["sinus"] == 0.7
    assert data["onset_probs"]["60"] == {"af": 0.3, "flutter": 0.3, "vt": 0.3}
    assert Forecast.model_validate(data) == fc


def test_invalid_forecasts_are_refused() -> None:
    rhythm, _ = scored()
    with pytest.raises(ValidationError, match="distribution"):
        forecast(rhythm_probs={**rhythm, 60: {"sinus": 0.9, "af": 0.9, "flutter": 0.0, "vt": 0.0}})
    with pytest.raises(ValidationError, match="one entry per horizon"):
        forecast(horizons_s=(60,))
    with pytest.raises(ValidationError, match="extra"):
        forecast(confidence=0.99)


def test_summary_names_the_top_rhythm() -> None:
    rhythm, onset = scored()
    assert summarise(rhythm, onset).startswith("at +60 s most likely sinus rhythm (p=0.70)")


@pytest.mark.parametrize(
    ("text", "stopped", "expected", "note"),
    [
        (
            "RR intervals are irregular and PACs are frequent.",
            True,
            "RR intervals are irregular and PACs are frequent.",
            None,
        ),
        ("Heart rate is stable at 70 bpm. The next sent", False, "Heart rate is stable at 70 bpm.", None),
        ("rate rate rate rate", False, None, "before a complete sentence"),
        ("ok.", True, None, "fewer than 4 words"),
        ("af af af af af af af af af af af af.", True, None, "degenerate repetition"),
        ("bad \x1b bytes here okay.", True, None, "control"),
        ("RR is irregular today. RR is irregular today.", True, None, "degenerate repetition"),
        (EXPLAIN_REQUEST, True, None, "repeats the prompt"),
    ],
)
def test_explanations_parse_or_fall_back_with_a_note(
    text: str, stopped: bool, expected: str | None, note: str | None
) -> None:
    explanation, why = parse_explanation(text, stopped, prompt=f"Lead II: HR 80 bpm.\n{EXPLAIN_REQUEST}")
    assert explanation == expected
    if note is None:
        assert why is None
    else:
        assert why is not None and note in why and "scored result only" in why
