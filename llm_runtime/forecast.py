"""The forecast object, and turning scored options plus an optional generation into one.

A forecast's numbers always come from scoring (one forward pass over the answer options). Free text only adds a
rationale; a generation that does not parse (no complete sentence, degenerate repetition, control characters)
is dropped with a note, never replaced by invented text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llm_runtime.prompts import ARRHYTHMIAS, RHYTHMS, Question

__all__ = ["SCHEMA", "Forecast", "parse_explanation", "probabilities_by_horizon", "summarise"]

SCHEMA = "ecgcast.forecast/1"
_SUM_TOLERANCE = 1e-3


class Forecast(BaseModel):
    """One patient's forecast at ``t_forecast`` (seconds since the stream started)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_name: str = Field(SCHEMA, alias="schema", description="Payload schema and version")
    patient_id: str = Field(min_length=1)
    t_forecast: float = Field(description="Stream time of the last second read, seconds")
    window_s: int = Field(gt=0, description="Seconds of ECG the model read")
    horizons_s: tuple[int, ...] = Field(min_length=1)
    rhythm_probs: dict[int, dict[str, float]] = Field(description="horizon -> {sinus, af, flutter, vt}")
    onset_probs: dict[int, dict[str, float]] = Field(description="horizon -> {af, flutter, vt}: P(starts within)")
    explanation: str | None = None
    explanation_note: str | None = None
    model_id: str
    model_version: str
    latency_ms: float = Field(ge=0)

    @model_validator(mode="after")
    def _check_probabilities(self) -> Forecast:
        if set(self.rhythm_probs) != set(self.horizons_s) or set(self.onset_probs) != set(self.horizons_s):
            raise ValueError("rhythm_probs and onset_probs must have exactly one entry per horizon")
        for h, probs in self.rhythm_probs.items():
            if set(probs) != set(RHYTHMS) or abs(sum(probs.values()) - 1) > _SUM_TOLERANCE:
                raise ValueError(f"rhythm_probs[{h}] must be a distribution over {sorted(RHYTHMS)}")
        for h, probs in self.onset_probs.items():
            if set(probs) != set(ARRHYTHMIAS) or not all(0 <= p <= 1 for p in probs.values()):
                raise ValueError(f"onset_probs[{h}] must give a probability for each of {sorted(ARRHYTHMIAS)}")
        return self

    @property
    def peak_risk(self) -> dict[str, float]:
        """Highest onset probability over horizons, per arrhythmia (what the agent's alert path and the station's
        risk trend read of a forecast)."""
        return {a: max(per_h[a] for per_h in self.onset_probs.values()) for a in ARRHYTHMIAS}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True), indent=indent)


def probabilities_by_horizon(
    questions: Sequence[Question], probs: Sequence[dict[str, float]]
) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, float]]]:
    """Per-question option probabilities -> (rhythm_probs, onset_probs) keyed by horizon."""
    rhythm: dict[int, dict[str, float]] = {}
    onset: dict[int, dict[str, float]] = {}
    for question, p in zip(questions, probs, strict=True):
        if question.kind == "rhythm":
            rhythm[question.horizon_s] = dict(p)
        elif question.target is not None:
            onset.setdefault(question.horizon_s, {})[question.target] = p["yes"]
    return rhythm, onset


def summarise(rhythm: dict[int, dict[str, float]], onset: dict[int, dict[str, float]]) -> str:
    """One line of the scored result, for the explanation prompt and the CLI."""
    parts = []
    for h in sorted(rhythm):
        top = max(rhythm[h], key=rhythm[h].__getitem__)
        onsets = ", ".join(f"{k} {v:.2f}" for k, v in onset[h].items())
        parts.append(f"at +{h} s most likely {RHYTHMS[top]} (p={rhythm[h][top]:.2f}); onset within {h} s: {onsets}")
    return "; ".join(parts)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffd]")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def _words(text: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Za-z0-9]+", text)]


def parse_explanation(text: str, stopped: bool, prompt: str = "", min_words: int = 4) -> tuple[str | None, str | None]:
    """(explanation, note). A generation cut by the token limit keeps its complete sentences only; one that
    repeats a sentence, or copies a sentence of ``prompt`` (the text it was asked with), is not an explanation."""
    text = text.strip()
    if _CONTROL.search(text):
        return None, "generation malformed (control or undecodable characters); scored result only"
    if not stopped:
        ends = [m.end() for m in _SENTENCE_END.finditer(text)]
        if not ends:
            return None, "generation malformed (cut by the token limit before a complete sentence); scored result only"
        text = text[: ends[-1]]
    words = _words(text)
    if len(words) < min_words:
        return None, f"generation malformed (fewer than {min_words} words); scored result only"
    sentences = [tuple(_words(s)) for s in re.split(r"(?<=[.!?])\s+", text) if _words(s)]
    if len(set(words)) < 0.3 * len(words) or len(set(sentences)) < len(sentences):
        return None, "generation malformed (degenerate repetition); scored result only"
    prompt_words = " ".join(_words(prompt))
    if any(len(s) >= min_words and " ".join(s) in prompt_words for s in sentences):
        return None, "generation malformed (repeats the prompt); scored result only"
    return text, None
