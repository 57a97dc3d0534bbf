"""Items -> packed token sequences with answer-only targets, in the streaming (time-major) layout.

``targets[i]`` is the token that position ``i`` must predict, and -100 everywhere else: only answer tokens are
learned. With branches (stage 5 scores every question on its own branch, as the runtime does) the predictor of a
token is not always the previous position in the sequence, so targets are stored per predictor instead of being
shifted inside the loss.

Stage 5 sequences are built from the runtime's :class:`~llm_runtime.prompts.PromptBook` with the same calls, in
the same order, as ``ModelRunner.score(prefill=True)``: head, block header, seconds, block close, context, then per
question the branch "Q{k}:" followed by the true option. The ECG rows are placeholders (zeros) here: the encoder
fills them at training time (``TrainSequence.ecg_order``), so a frozen or fine-tuned encoder sees the same data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llm_runtime.packing import Packed, SequenceBuilder, streaming_close, streaming_header, streaming_second
from llm_runtime.prompts import PromptBook
from training.samples import Strip
from training.tasks import Dialogue, ForecastItem

__all__ = ["IGNORE", "TrainSequence", "pack_dialogue", "pack_forecast"]

IGNORE = -100


@dataclass(frozen=True, eq=False)
class TrainSequence:
    packed: Packed  # (1, n), ECG rows are zeros until the encoder fills them
    targets: torch.Tensor  # (n,) int64: token predicted at each position, IGNORE outside answers
    windows: torch.Tensor  # (n_leads, T, 256) float32 mV, the strip the ECG rows come from
    valid: torch.Tensor | None = None  # (n_leads, T) bool: seconds the agent encodes; the others read as zero rows
    weights: torch.Tensor | None = None  # (n,) float: loss weight per position (None: 1 for every answer token)

    @property
    def n_answer_tokens(self) -> int:
        return int((self.targets != IGNORE).sum())


class _Writer:
    """A SequenceBuilder that records which positions predict which answer tokens."""

    def __init__(self, ecg_dim: int) -> None:
        self.builder = SequenceBuilder(ecg_dim=ecg_dim)
        self.ecg_dim = ecg_dim
        self.predictors: list[int] = []
        self.answer_ids: list[int] = []
        self.answer_weights: list[float] = []

    def text(self, ids: list[int], learn: bool = False, weight: float = 1.0) -> None:
        for ident in ids:
            if learn:
                self.predictors.append(len(self.builder) - 1)
                self.answer_ids.append(ident)
                self.answer_weights.append(weight)
            self.builder.text([ident])

    def block(self, strip: Strip) -> None:
        """Time-major ECG block without its close (the close belongs to the question part, as in the runtime)."""
        streaming_header(self.builder, strip.leads)
        zeros = torch.zeros(len(strip.leads), self.ecg_dim)
        first = strip.at_s - strip.window_s
        for t in range(strip.window_s):
            streaming_second(self.builder, zeros, first + t)

    def finish(self, strip: Strip) -> TrainSequence:
        packed = self.builder.build()
        targets = torch.full((packed.length,), IGNORE, dtype=torch.long)
        targets[torch.tensor(self.predictors, dtype=torch.long)] = torch.tensor(self.answer_ids, dtype=torch.long)
        valid = None if strip.valid is None else torch.from_numpy(strip.valid)
        weights = None
        if any(w != 1.0 for w in self.answer_weights):
            weights = torch.ones(packed.length)
            weights[torch.tensor(self.predictors, dtype=torch.long)] = torch.tensor(self.answer_weights)
        return TrainSequence(packed, targets, torch.from_numpy(strip.windows), valid, weights)


def _leads_line(strip: Strip) -> str:
    return f"Continuous ECG, one token per lead-second, leads {', '.join(lead.upper() for lead in strip.leads)}:\n"


def pack_dialogue(item: Dialogue, book: PromptBook, ecg_dim: int = 64) -> TrainSequence:
    """Stages 2-4: first question before the ECG block (questions first, as in the runtime), answers after."""
    chat, strip = book.chat, item.strip
    w = _Writer(ecg_dim)
    bos = [book.tokenizer.bos_token_id] if book.tokenizer.bos_token_id is not None else []
    (first_q, first_a), *rest = item.turns
    w.text(bos + book.ids(f"{chat.user_start}{first_q}\n{_leads_line(strip)}"))
    w.block(strip)
    streaming_close(w.builder, strip.leads)
    w.text(book.ids(f"\n{strip.window_s} s.{chat.turn_end}{chat.model_start}"))  # as PromptBook.context, no evidence
    w.text(book.ids(first_a + chat.turn_end.rstrip("\n")), learn=True)
    for question, answer in rest:
        w.text(book.ids(f"\n{chat.user_start}{question}{chat.turn_end}{chat.model_start}"))
        w.text(book.ids(answer + chat.turn_end.rstrip("\n")), learn=True)
    return w.finish(strip)


def pack_forecast(
    item: ForecastItem, book: PromptBook, ecg_dim: int = 64, positive_weight: float = 1.0
) -> TrainSequence:
    """Stage 5 in the runtime's exact prompt: scored answers on branches, or the explanation prompt. Answer tokens
    of a positive (an onset "yes", a non-sinus rhythm) weigh ``positive_weight`` in the loss: most answers are
    "no" and "sinus", and an unweighted loss is won by always giving them."""
    strip = item.strip
    if strip.leads != book.leads:
        raise ValueError(f"stage-5 strip leads {strip.leads} differ from the prompt book's {book.leads}")
    w = _Writer(ecg_dim)
    w.text(book.head)
    w.block(strip)
    streaming_close(w.builder, strip.leads)
    if item.explanation is not None:
        w.text(book.explain_context(strip.window_s, strip.evidence, item.summary))
        w.text(book.ids(item.explanation + book.chat.turn_end.rstrip("\n")), learn=True)
        return w.finish(strip)
    w.text(book.context(strip.window_s, strip.evidence))
    for qi, (question, answer) in enumerate(zip(book.questions, item.answers, strict=True)):
        w.builder.branch(qi)
        w.text(book.answer_prefix(qi))
        w.builder.branch(qi, answer)
        positive = question.options[answer] not in ("no", "sinus")
        w.text(book.ids(question.option_texts[answer]), learn=True, weight=positive_weight if positive else 1.0)
    return w.finish(strip)


def pack(
    item: Dialogue | ForecastItem, book: PromptBook, ecg_dim: int = 64, positive_weight: float = 1.0
) -> TrainSequence:
    if isinstance(item, ForecastItem):
        return pack_forecast(item, book, ecg_dim, positive_weight)
    return pack_dialogue(item, book, ecg_dim)
