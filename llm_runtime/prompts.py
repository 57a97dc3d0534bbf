"""Prompt text and its token ids: chat turns, the ECG block's surroundings, the questions and their options.

Prompt shape (Gemma turn markers; ``[...]`` is the ECG block, ``{...}`` differs per patient or question)::

    <bos><start_of_turn>user
    Answer these questions about the ECG below.
    Q1: {Which rhythm will this patient be in 300 seconds from now: ...?}
    Q2: {Will atrial fibrillation start within the next 300 seconds? Answer yes or no.}
    ...
    Continuous ECG, one token per lead-second, leads {II, V1}:
    [ECG block]
    {300} s.
    Evidence: {heart rate ..., RR ..., ectopy ..., signal quality ...}<end_of_turn>
    <start_of_turn>model
    Q{k}:{option}

Everything before the ECG block is fixed for a runner (leads and horizons), so it sits at the head of each
patient's KV cache; the questions come first for that reason. What follows the block is short: the evidence,
then one branch per question ("Q2:") with one sub-branch per option, all scored in one forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from transformers import PreTrainedTokenizerBase

__all__ = [
    "ARRHYTHMIAS",
    "EXPLAIN_REQUEST",
    "PROBE_QUERY",
    "RHYTHMS",
    "ChatFormat",
    "PromptBook",
    "Question",
    "questions_for",
]

RHYTHMS: dict[str, str] = {
    "sinus": "sinus rhythm",
    "af": "atrial fibrillation",
    "flutter": "atrial flutter",
    "vt": "ventricular tachycardia",
}
"""Answer options of the rhythm question, keyed as in the forecast object."""

ARRHYTHMIAS: dict[str, str] = {k: v for k, v in RHYTHMS.items() if k != "sinus"}

PROBE_QUERY = (
    "Forecast the rhythm over the coming minutes and any onset of atrial fibrillation, atrial flutter or "
    "ventricular tachycardia."
)
"""What the probe variant asks after the evidence: the forecast head reads the LM's state at the end of this turn."""

EXPLAIN_REQUEST = "In one or two sentences, explain this forecast for a nurse, citing the measured evidence."
"""The instruction ending the rationale prompt; a generation that merely repeats it is not an explanation."""


@dataclass(frozen=True)
class ChatFormat:
    """Turn markers of one backbone family."""

    user_start: str = "<start_of_turn>user\n"
    turn_end: str = "<end_of_turn>\n"
    model_start: str = "<start_of_turn>model\n"
    stop_tokens: tuple[str, ...] = ("<end_of_turn>", "<eos>")


CHAT_FORMATS = {"gemma": ChatFormat()}


@dataclass(frozen=True)
class Question:
    """One multiple-choice question. ``kind`` is "rhythm" (options = RHYTHMS) or "onset" (options yes/no about
    ``target``); ``horizon_s`` is how far ahead it asks."""

    kind: str
    horizon_s: int
    target: str | None
    text: str
    options: tuple[str, ...]  # option keys
    option_texts: tuple[str, ...]  # what the model is scored on, after "Q{k}:"


def questions_for(horizons_s: Sequence[int]) -> tuple[Question, ...]:
    """Per horizon: the rhythm question, then one onset yes/no question per arrhythmia."""
    out: list[Question] = []
    for h in horizons_s:
        out.append(
            Question(
                "rhythm",
                h,
                None,
                f"Which rhythm will this patient be in {h} seconds from now: " + ", ".join(RHYTHMS.values()) + "?",
                tuple(RHYTHMS),
                tuple(f" {v}" for v in RHYTHMS.values()),
            )
        )
        for key, name in ARRHYTHMIAS.items():
            out.append(
                Question(
                    "onset", h, key, f"Will {name} start within the next {h} seconds? Answer yes or no.",
                    ("yes", "no"), (" yes", " no"),
                )
            )  # fmt: skip
    return tuple(out)


class PromptBook:
    """Token ids of the prompt pieces for one tokenizer and chat format (fixed strings tokenised once)."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        chat: ChatFormat,
        leads: Sequence[str],
        questions: Sequence[Question],
    ) -> None:
        self.tokenizer = tokenizer
        self.chat = chat
        self.leads = tuple(leads)
        self.questions = tuple(questions)

    def ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    @property
    def probe(self) -> bool:
        """No questions: the probe variant, whose forecast head reads the state at the end of :meth:`context`."""
        return not self.questions

    @cached_property
    def head(self) -> list[int]:
        """<bos>, user turn, the questions (none in the probe variant), and the line announcing the ECG block."""
        names = ", ".join(lead.upper() for lead in self.leads)
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        listed = "".join(f"Q{k + 1}: {q.text}\n" for k, q in enumerate(self.questions))
        intro = "" if self.probe else f"Answer these questions about the ECG below.\n{listed}"
        return bos + self.ids(
            f"{self.chat.user_start}{intro}Continuous ECG, one token per lead-second, leads {names}:\n"
        )

    def context(self, window_s: int, evidence: str) -> list[int]:
        """After the ECG block: its length, the measured evidence (deterministic measurements, never the LM's),
        the probe variant's query, and the model turn that the answers continue. Kept short: these tokens are paid
        at every forecast."""
        query = f"\n{PROBE_QUERY}" if self.probe else ""
        return self.ids(
            f"\n{window_s} s.\nEvidence: {evidence.strip()}{query}{self.chat.turn_end}{self.chat.model_start}"
        )

    def answer_prefix(self, index: int) -> list[int]:
        """Branch opener of question ``index`` (0-based): "Q1:"."""
        return self.ids(f"Q{index + 1}:")

    def explain_context(self, window_s: int, evidence: str, scored_summary: str) -> list[int]:
        """After the ECG block, for the free-text rationale: evidence, the scored result, the request."""
        return self.ids(
            f"\n{window_s} s.\nEvidence: {evidence.strip()}\n"
            f"Scored forecast: {scored_summary}\n{EXPLAIN_REQUEST}{self.chat.turn_end}{self.chat.model_start}"
        )

    @cached_property
    def stop_ids(self) -> frozenset[int]:
        ids = {self.tokenizer.convert_tokens_to_ids(tok) for tok in self.chat.stop_tokens}
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return frozenset(i for i in ids if isinstance(i, int) and i != self.tokenizer.unk_token_id)
