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
    "RATIONALE_NOTES",
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


RATIONALE_NOTES: dict[str, tuple[tuple[str, str], ...]] = {
    "af": (
        (
            "Lead II, 300 s: HR 88 bpm; RR mean 682 ms, CV 0.11, RMSSD 61 ms, irregularity 0.06; PAC 37, PVC 1, "
            "couplets 0; longest V-run 0; QRS 84 ms; usable 100%",
            "HR 88 bpm, PAC 37, PVC 1 in 300 s, irregularity 0.06: findings that can precede atrial fibrillation.",
        ),
        (
            "Lead II, 300 s: HR 104 bpm; RR mean 577 ms, CV 0.19, RMSSD 97 ms, irregularity 0.14; PAC 9, PVC 0, "
            "couplets 0; longest V-run 0; QRS 80 ms; usable 97%",
            "HR 104 bpm, PAC 9, PVC 0 in 300 s, irregularity 0.14: findings that can precede atrial fibrillation.",
        ),
    ),
    "flutter": (
        (
            "Lead II, 300 s: HR 71 bpm; RR mean 845 ms, CV 0.05, RMSSD 22 ms, irregularity 0.02; PAC 18, PVC 0, "
            "couplets 0; longest V-run 0; QRS 78 ms; usable 100%",
            "HR 71 bpm, PAC 18, PVC 0 in 300 s, irregularity 0.02: findings that can precede atrial flutter.",
        ),
        (
            "Lead II, 300 s: HR 96 bpm; RR mean 625 ms, CV 0.04, RMSSD 18 ms, irregularity 0.02; PAC 5, PVC 2, "
            "couplets 0; longest V-run 1; QRS 76 ms; usable 99%",
            "HR 96 bpm, PAC 5, PVC 2 in 300 s, irregularity 0.02: findings that can precede atrial flutter.",
        ),
    ),
    "vt": (
        (
            "Lead II, 300 s: HR 79 bpm; RR mean 759 ms, CV 0.12, RMSSD 88 ms, irregularity 0.09; PAC 2, PVC 31, "
            "couplets 4; longest V-run 3; QRS 92 ms; usable 100%",
            "HR 79 bpm, PVC 31 in 300 s with couplets 4 and longest V-run 3: findings that can precede ventricular "
            "tachycardia.",
        ),
        (
            "Lead II, 300 s: HR 93 bpm; RR mean 645 ms, CV 0.08, RMSSD 40 ms, irregularity 0.04; PAC 0, PVC 12, "
            "couplets 1; longest V-run 2; QRS 88 ms; usable 100%",
            "HR 93 bpm, PVC 12 in 300 s with couplets 1 and longest V-run 2: findings that can precede ventricular "
            "tachycardia.",
        ),
    ),
}
"""Worked notes (an evidence line in :meth:`Measurements.as_prompt_text`'s format, the note) that the probe
variant's rationale prompt shows its base LM, per arrhythmia. Each note names a quantity before its number and
joins PAC and PVC as the evidence line does (", PVC"), so the LM copies each number from the patient's line rather
than from a worked note, and it ends on no claim the numbers do not make. Chosen on 29 validation windows (docs/
EVALUATION.md): number-first notes passed the alert guard 0 of 8 times, "PAC 8 and PVC 3" 23 of 29, these 27 of 29."""


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

    def rationale_prompt(
        self, evidence: str, arrhythmia: str, horizon_s: int, probability: float, rotate: int = 0, shown: int = 2
    ) -> list[int]:
        """A few-shot prompt for the probe variant's rationale, without the ECG block: its backbone is a frozen base
        LM (Gemma 3 270M), which continues the ECG header when asked on the cache and copies a chat request back,
        but continues a pattern of notes. The LM writes the text after the last "Note:" up to the end of its line.
        ``rotate`` shifts the worked notes' order and ``shown`` keeps that many of them: another prompt, hence
        another greedy note, for a further try."""
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        name = ARRHYTHMIAS[arrhythmia]
        notes = RATIONALE_NOTES[arrhythmia]
        shift = rotate % len(notes)
        text = "Telemetry forecast notes. Each note cites only the measured numbers above it.\n\n"
        for line, note in (notes[shift:] + notes[:shift])[:shown]:
            text += f"Measured: {line}\nForecast: {name} within 5 min, probability 0.55\nNote: {note}\n\n"
        window = f"{horizon_s // 60} min" if horizon_s % 60 == 0 else f"{horizon_s} s"
        text += f"Measured: {evidence.strip()}\nForecast: {name} within {window}, probability {probability:.2f}\nNote:"
        return bos + self.ids(text)

    @cached_property
    def stop_ids(self) -> frozenset[int]:
        ids = {self.tokenizer.convert_tokens_to_ids(tok) for tok in self.chat.stop_tokens}
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return frozenset(i for i in ids if isinstance(i, int) and i != self.tokenizer.unk_token_id)
