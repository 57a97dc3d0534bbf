"""ModelRunner: owns the ECG-LM and one KV cache per patient; scores answer options and writes rationales.

Streaming layout: ``extend`` runs only the newest second's tokens on top of the patient's cache. The cache covers
between ``window_s`` and ``window_s + slack_s`` seconds: when it passes the upper bound, the oldest seconds are
evicted and the rest keep their keys/values with shifted rotary positions (``cache_slide``: no prefill, an
approximation whose effect on the forecasts is measured in docs/LLM_RUNTIME.md). With ``slide="rebuild"`` the
last ``window_s`` seconds are prefilled afresh instead, synchronously: the exact reference (tests, offline tools).

Feeding several patients: ``extend_batch`` runs the new seconds of up to ``feed_batch`` patients in one padded
forward pass (``scoring.extend_caches``), each patient keeping its own cache; ``extend_seconds`` is the one-patient
case and appends in place. Prefills (first seconds, rebuilds) stay one patient per call.

Upkeep accounting (``stats``): prefills and slides are counted and timed, so that a bench can say what keeping a
cache current costs; the agent times its own feeding calls, which include the slides.

CAMEL layout: nothing is cached (a new second shifts every later lead); ``score`` runs the full sequence.
``score(..., prefill=True)`` does the same for the streaming layout: the reference the cache must match.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import structlog
import torch
from transformers.cache_utils import DynamicCache

from core.errors import LifecycleError, ModelError
from llm_runtime.cache_slide import ContextLedger, evict_seconds_before, slide_point
from llm_runtime.layout import Layout, TokenMeta
from llm_runtime.model import EcgLanguageModel
from llm_runtime.packing import (
    Packed,
    SequenceBuilder,
    camel_block,
    streaming_close,
    streaming_header,
    streaming_second,
)
from llm_runtime.prompts import PromptBook
from llm_runtime.scoring import (
    BatchWorkspace,
    KeyValues,
    OptionTarget,
    ScoreRow,
    cache_layers,
    extend_caches,
    run_rows,
)

__all__ = [
    "Generation",
    "ModelRunner",
    "NewSeconds",
    "RunnerConfig",
    "RunnerStats",
    "ScoreRequest",
    "ScoreResult",
    "Slide",
]

log = structlog.get_logger(__name__)

Slide = Literal["evict", "rebuild"]  # how a cache past window + slack keeps only the window (module docstring)


@dataclass(frozen=True)
class RunnerConfig:
    layout: Layout = "streaming"
    window_s: int = 300  # seconds of ECG a forecast reads (ECGForecastBench's w = 300 s)
    slack_s: int = 60  # the cache may grow this far past the window before its oldest seconds are slid out
    slide: Slide = "evict"
    # Most patients whose new seconds share one forward pass. 8 measured best on the 2-core CPU (Gemma 3 270M,
    # 5-min caches, 10 s each: 1.5x cheaper per patient-second than one per call; 16 about the same, 32 slower:
    # its per-pass temporaries, the attention's expanded keys among them, pass glibc's mmap threshold and are
    # page-faulted in again at every pass).
    feed_batch: int = 8

    def __post_init__(self) -> None:
        if self.feed_batch < 1:
            raise ModelError(f"feed_batch must be at least 1, got {self.feed_batch}")


@dataclass(frozen=True)
class NewSeconds:
    """Seconds ``first_t …`` of one patient to append: (T, n_leads, 64) embeddings, leads in ``prompts.leads``
    order."""

    patient_id: str
    seconds: torch.Tensor
    first_t: int


@dataclass
class RunnerStats:
    """Cache upkeep the runner did, written only by the thread that calls the runner (the owner)."""

    prefills: int = 0  # first prefills, rebuilds and primes
    prefill_tokens: int = 0
    prefill_s: float = 0.0  # their wall time
    slides: int = 0  # evictions (``slide="evict"``)
    slid_tokens: int = 0  # tokens they dropped
    slide_s: float = 0.0  # their wall time
    batched_appends: int = 0  # forward passes that appended several patients' seconds


@dataclass(frozen=True, eq=False)
class ScoreRequest:
    patient_id: str
    evidence: str  # measured evidence as prompt text (deterministic measurements)
    trends: npt.NDArray[np.float64] | None = None  # the same window's trend features, for a head that reads them


@dataclass(frozen=True)
class ScoreResult:
    patient_id: str
    t_end_s: int  # last second in the window
    window_s: int  # seconds actually read
    probs: tuple[dict[str, float], ...]  # per question (PromptBook order): option key -> probability
    option_logprobs: tuple[tuple[torch.Tensor, ...], ...]  # per question, per option: (n_tokens,) log-probs


@dataclass(frozen=True)
class Generation:
    text: str
    token_ids: tuple[int, ...]
    stopped: bool  # True when a stop token ended it, False when max_new_tokens did


@dataclass
class _Prefix:
    """A patient's cached ECG prefix: the decoder cache and the metadata of its tokens."""

    cache: DynamicCache
    meta: TokenMeta  # (1, L)
    first_second: int
    last_second: int
    ledger: ContextLedger  # what each cached second could read (slid caches read evicted seconds)

    def appended(self, seconds: Sequence[tuple[int, torch.Tensor]]) -> None:
        """Record ``seconds`` as appended on top of the current cache."""
        self.ledger.append([t for t, _ in seconds], self.first_second)
        self.last_second = seconds[-1][0]


@dataclass
class _Patient:
    seconds: deque[tuple[int, torch.Tensor]] = field(default_factory=deque)  # (t, (n_leads, 64)), oldest first
    prefix: _Prefix | None = None


class ModelRunner:
    """Per-patient streaming state plus the batched ``score`` and the on-demand ``explain``.

    A context manager: ``close()`` frees every cache; it is idempotent.
    """

    def __init__(self, model: EcgLanguageModel, prompts: PromptBook, config: RunnerConfig) -> None:
        self.model = model.eval()
        self.prompts = prompts
        self.config = config
        self._patients: dict[str, _Patient] = {}
        self._closed = False
        self.stats = RunnerStats()
        self._workspace = BatchWorkspace()  # padded batch keys/values, reused by every batched pass

    def __enter__(self) -> ModelRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._patients.clear()
            self._workspace.clear()
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise LifecycleError("ModelRunner is closed; build a new one")

    @property
    def patient_ids(self) -> tuple[str, ...]:
        return tuple(self._patients)

    def staleness(self, patient_id: str) -> float:
        """How much evicted signal the patient's cached tokens had read (``ContextLedger.staleness``): 0 for a
        cache as a fresh prefill would make it."""
        prefix = self._patients[patient_id].prefix
        return 0.0 if prefix is None else prefix.ledger.staleness(prefix.first_second, self.config.window_s)

    def cached_seconds(self, patient_id: str) -> int:
        prefix = self._patients[patient_id].prefix
        return 0 if prefix is None else prefix.last_second - prefix.first_second + 1

    # --- streaming state -------------------------------------------------------------------------------------

    @torch.inference_mode()
    def extend(self, patient_id: str, second_embeddings: torch.Tensor, t: int) -> None:
        """Append second ``t`` of one patient: (n_leads, 64) encoder embeddings, leads in ``prompts.leads`` order."""
        self.extend_seconds(patient_id, second_embeddings.unsqueeze(0), t)

    @torch.inference_mode()
    def extend_seconds(self, patient_id: str, seconds: torch.Tensor, first_t: int) -> None:
        """Append seconds ``first_t …`` of one patient in one forward pass: (T, n_leads, 64) embeddings.

        Feeding several seconds at once costs one model call instead of T (what an accelerated replay, or an agent
        catching up after a busy forecast batch, needs); the cache is the same as T single-second appends.
        """
        self.extend_batch([NewSeconds(patient_id, seconds, first_t)])

    @torch.inference_mode()
    def extend_batch(self, feeds: Sequence[NewSeconds]) -> None:
        """Append the new seconds of several patients, ``feed_batch`` patients per forward pass.

        Every feed is checked before any patient's state changes. The caches equal those of one
        ``extend_seconds`` call per patient (to float rounding: the padded batch runs other matrix shapes).
        """
        self._check_open()
        for feed in feeds:
            self._check_feed(feed)
        if len({feed.patient_id for feed in feeds}) != len(feeds):
            raise ModelError(f"extend_batch: a patient appears twice in {[f.patient_id for f in feeds]}")
        states = [self._accept(feed) for feed in feeds]
        if self.config.layout != "streaming":
            return
        appends = []
        for state in states:
            pending = self._pending(state)
            if pending and state.prefix is not None:
                appends.append((state.prefix, pending))
        appends.sort(key=lambda item: len(item[1]))  # like lengths share a chunk: less padding
        for start in range(0, len(appends), self.config.feed_batch):
            self._append_many(appends[start : start + self.config.feed_batch])
        for state in states:
            self._slide_if_too_long(state)

    def _check_feed(self, feed: NewSeconds) -> None:
        expected = (len(self.prompts.leads), self.model.config.ecg_dim)
        if feed.seconds.ndim != 3 or tuple(feed.seconds.shape[1:]) != expected:
            raise ModelError(
                f"patient {feed.patient_id}: seconds must be (T, n_leads={expected[0]}, {expected[1]}), "
                f"got {tuple(feed.seconds.shape)}"
            )
        state = self._patients.get(feed.patient_id)
        if state is not None and state.seconds and feed.first_t <= state.seconds[-1][0]:
            raise ModelError(f"patient {feed.patient_id}: second {feed.first_t} is not after {state.seconds[-1][0]}")

    def _accept(self, feed: NewSeconds) -> _Patient:
        """Store a checked feed's seconds in the patient's window (oldest dropped past ``window_s + slack_s``)."""
        state = self._patients.setdefault(feed.patient_id, _Patient())
        seconds = feed.seconds.detach().to("cpu", torch.float32)
        state.seconds.extend((feed.first_t + i, seconds[i]) for i in range(seconds.shape[0]))
        while (
            state.seconds and state.seconds[-1][0] - state.seconds[0][0] >= self.config.window_s + self.config.slack_s
        ):
            state.seconds.popleft()
        return state

    @torch.inference_mode()
    def prime(self, patient_id: str, seconds: torch.Tensor, first_second: int) -> None:
        """Start (or restart) a patient from a stored window in one prefill: (T, n_leads, 64), seconds
        ``first_second`` … ``first_second + T - 1``. For a record replayed offline or an agent restart; the live
        path is ``extend``."""
        self._check_open()
        self.finish([patient_id])
        window = seconds[-(self.config.window_s + self.config.slack_s - 1) :].detach().to("cpu", torch.float32)
        first = first_second + seconds.shape[0] - window.shape[0]
        state = self._patients.setdefault(patient_id, _Patient())
        state.seconds.extend((first + i, window[i]) for i in range(window.shape[0]))
        if self.config.layout == "streaming":
            state.prefix = self._prefill(list(state.seconds)[-self.config.window_s :])

    def _pending(self, state: _Patient) -> list[tuple[int, torch.Tensor]]:
        """The stored seconds the patient's cache lacks; a patient without a cache is prefilled here (one patient per
        call) and lacks none."""
        if state.prefix is None:
            if state.seconds:
                state.prefix = self._prefill(list(state.seconds))
            return []
        last = state.prefix.last_second
        return [(t, emb) for t, emb in state.seconds if t > last]

    def _append_many(self, appends: Sequence[tuple[_Prefix, list[tuple[int, torch.Tensor]]]]) -> None:
        """Append each cache's pending seconds: in place for one patient, one padded forward pass for several."""
        if len(appends) == 1:
            self._append_seconds(*appends[0])
            return
        packs = [self._seconds_packed(prefix, seconds) for prefix, seconds in appends]
        extend_caches(self.model, [(prefix.cache, prefix.meta) for prefix, _ in appends], packs, self._workspace)
        for (prefix, seconds), packed in zip(appends, packs, strict=True):
            prefix.meta = prefix.meta.cat(packed.meta)
            prefix.appended(seconds)
        self.stats.batched_appends += 1

    def _slide_if_too_long(self, state: _Patient) -> None:
        """Once the cache passes ``window_s + slack_s`` seconds, keep only the last ``window_s``: evicted in place
        (``cache_slide``) or, with ``slide="rebuild"``, prefilled afresh."""
        prefix = state.prefix
        if prefix is None:
            return
        first_kept = slide_point(prefix.first_second, prefix.last_second, self.config.window_s, self.config.slack_s)
        if first_kept is None:
            return
        if self.config.slide == "rebuild":
            state.prefix = self._prefill([(t, emb) for t, emb in state.seconds if t >= first_kept])
            return
        start = time.perf_counter()
        prefix.meta, dropped = evict_seconds_before(self.model, prefix.cache, prefix.meta, first_kept)
        prefix.first_second = first_kept
        prefix.ledger.evict_before(first_kept)
        self.stats.slides += 1
        self.stats.slid_tokens += dropped
        self.stats.slide_s += time.perf_counter() - start

    def finish(self, finished_patient_ids: Sequence[str]) -> None:
        """Free the caches of patients that left (discharged, evicted, leads off for good)."""
        for patient_id in finished_patient_ids:
            self._patients.pop(patient_id, None)

    @torch.inference_mode()
    def _prefill(self, seconds: Sequence[tuple[int, torch.Tensor]]) -> _Prefix:
        """Head text + block header + ``seconds`` in one forward pass into a fresh cache, counted in ``stats``."""
        start = time.perf_counter()
        builder = SequenceBuilder(ecg_dim=self.model.config.ecg_dim).text(self.prompts.head)
        streaming_header(builder, self.prompts.leads)
        for t, emb in seconds:
            streaming_second(builder, emb, t)
        packed = builder.build()
        cache = DynamicCache()
        self.model.decode(self.model.embed(packed), packed.meta, packed.meta, cache)
        first = seconds[0][0] if seconds else 0
        last = seconds[-1][0] if seconds else -1
        self.stats.prefills += 1
        self.stats.prefill_tokens += packed.length
        self.stats.prefill_s += time.perf_counter() - start
        ledger = ContextLedger()
        ledger.append([t for t, _ in seconds], first)
        return _Prefix(cache, packed.meta, first, last, ledger)

    def _seconds_packed(self, prefix: _Prefix, seconds: Sequence[tuple[int, torch.Tensor]]) -> Packed:
        """The tokens of ``seconds`` (time-major), positioned after the cached prefix."""
        builder = SequenceBuilder(start_pos=prefix.meta.length, ecg_dim=self.model.config.ecg_dim)
        for t, emb in seconds:
            streaming_second(builder, emb.to(torch.float32), t)
        return builder.build()

    def _append_seconds(self, prefix: _Prefix, seconds: Sequence[tuple[int, torch.Tensor]]) -> None:
        """Run the tokens of ``seconds`` (time-major) on top of the cached prefix in one forward pass."""
        if not seconds:
            return
        packed = self._seconds_packed(prefix, seconds)
        keys = prefix.meta.cat(packed.meta)
        self.model.decode(self.model.embed(packed), packed.meta, keys, prefix.cache)
        prefix.meta = keys
        prefix.appended(seconds)

    # --- scoring ---------------------------------------------------------------------------------------------

    def _window(self, patient_id: str) -> list[tuple[int, torch.Tensor]]:
        """The seconds a forecast reads: the last ``window_s`` (CAMEL), or exactly those in the streaming cache,
        so that a full prefill is the reference for the cached path."""
        state = self._patients.get(patient_id)
        if state is None or not state.seconds:
            raise ModelError(f"patient {patient_id}: no ECG seconds yet")
        if state.prefix is not None:
            return [(t, emb) for t, emb in state.seconds if t >= state.prefix.first_second]
        return list(state.seconds)[-self.config.window_s :]

    def window_span(self, patient_id: str) -> tuple[int, int]:
        """(last second, seconds) that a forecast of ``patient_id`` reads now."""
        self._check_open()
        state = self._patients.get(patient_id)
        if state is None or not state.seconds:
            raise ModelError(f"patient {patient_id}: no ECG seconds yet")
        prefix = state.prefix
        if prefix is not None:
            return prefix.last_second, prefix.last_second - prefix.first_second + 1
        return state.seconds[-1][0], len(self._window(patient_id))

    def _row_start(self, patient_id: str, prefill: bool) -> tuple[SequenceBuilder, KeyValues | None, TokenMeta, int]:
        """Builder for the part to run now, positioned after the cached prefix (if one is used)."""
        ecg_dim = self.model.config.ecg_dim
        state = self._patients.get(patient_id)
        if state is None:
            raise ModelError(f"patient {patient_id}: no ECG seconds yet")
        if self.config.layout == "streaming" and not prefill:
            if state.prefix is None:
                raise ModelError(f"patient {patient_id}: no ECG seconds yet")
            prefix = state.prefix
            seconds = prefix.last_second - prefix.first_second + 1
            builder = SequenceBuilder(start_pos=prefix.meta.length, ecg_dim=ecg_dim)
            streaming_close(builder, self.prompts.leads)
            return builder, cache_layers(prefix.cache), prefix.meta, seconds
        window = self._window(patient_id)
        builder = SequenceBuilder(ecg_dim=ecg_dim).text(self.prompts.head)
        if self.config.layout == "camel":
            ecg = torch.stack([emb for _, emb in window], dim=1)  # T x (n_leads, 64) -> (n_leads, T, 64)
            camel_block(builder, ecg, self.prompts.leads, first_second=window[0][0])
        else:
            streaming_header(builder, self.prompts.leads)
            for t, emb in window:
                streaming_second(builder, emb, t)
            streaming_close(builder, self.prompts.leads)
        return builder, None, TokenMeta.of([], [], []), len(window)

    def _score_row(self, request: ScoreRequest, prefill: bool) -> tuple[ScoreRow, int, int]:
        builder, kv, meta, n_seconds = self._row_start(request.patient_id, prefill)
        t_end = self._patients[request.patient_id].seconds[-1][0]
        builder.text(self.prompts.context(n_seconds, request.evidence))
        targets: list[OptionTarget] = []
        for qi, question in enumerate(self.prompts.questions):
            builder.branch(qi).text(self.prompts.answer_prefix(qi))
            question_end = len(builder)
            for oi, option_text in enumerate(question.option_texts):
                ids = self.prompts.ids(option_text)
                start = len(builder)
                builder.branch(qi, oi).text(ids)
                predictors = (question_end - 1, *range(start, start + len(ids) - 1))
                targets.append(OptionTarget(qi, oi, predictors, tuple(ids)))
        return ScoreRow(kv, meta, builder.build(), tuple(targets)), t_end, n_seconds

    @torch.inference_mode()
    def score(self, requests: Sequence[ScoreRequest], prefill: bool = False) -> list[ScoreResult]:
        """Probabilities of every answer option for every question, one forward pass for the whole batch.

        An option's score is the sum of its tokens' log-probabilities; a softmax over a question's options turns
        the scores into probabilities that sum to 1.
        """
        self._check_open()
        built = [self._score_row(r, prefill) for r in requests]
        logprobs = run_rows(self.model, [row for row, _, _ in built], self._workspace)
        results = []
        for request, (row, t_end, n_seconds), per_option in zip(requests, built, logprobs, strict=True):
            probs, grouped = [], []
            for qi, question in enumerate(self.prompts.questions):
                opts = [lp for target, lp in zip(row.options, per_option, strict=True) if target.question == qi]
                p = torch.softmax(torch.stack([lp.sum() for lp in opts]), dim=0)
                probs.append({key: float(v) for key, v in zip(question.options, p, strict=True)})
                grouped.append(tuple(opts))
            results.append(ScoreResult(request.patient_id, t_end, n_seconds, tuple(probs), tuple(grouped)))
        return results

    def probe_features(self, requests: Sequence[ScoreRequest], layers: Sequence[int]) -> torch.Tensor:
        """The probe variant's features: for each request, the states after ``layers`` at the last token of the
        prompt (cached ECG block, its close, evidence and query), concatenated: (B, len(layers) * hidden)."""
        return self.probe_read(requests, layers)[0]

    @torch.inference_mode()
    def probe_read(
        self, requests: Sequence[ScoreRequest], layers: Sequence[int]
    ) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Features as :meth:`probe_features`, and per request the (last second, seconds) they were read from,
        taken together."""
        self._check_open()
        rows, spans = [], []
        for request in requests:
            builder, kv, meta, n_seconds = self._row_start(request.patient_id, prefill=False)
            spans.append((self._last_second(request.patient_id), n_seconds))
            builder.text(self.prompts.context(n_seconds, request.evidence))
            packed = builder.build()
            cache = DynamicCache(ddp_cache_data=kv) if kv else DynamicCache()
            states = self.model.layer_states(
                self.model.embed(packed), packed.meta, meta.cat(packed.meta), cache, layers
            )
            rows.append(torch.cat([state[0, -1] for state in states]).float().cpu())
        return torch.stack(rows), spans

    def _last_second(self, patient_id: str) -> int:
        """The last second a row started now reads."""
        state = self._patients[patient_id]
        return state.prefix.last_second if state.prefix is not None else state.seconds[-1][0]

    # --- explanation -----------------------------------------------------------------------------------------

    @torch.inference_mode()
    def explain(self, request: ScoreRequest, scored_summary: str, max_new_tokens: int = 64) -> Generation:
        """Greedy rationale on top of the patient's cache (copied, never modified), stopping at end-of-turn: the
        generative variant's prompt, which its LoRA was trained on."""
        self._check_open()
        builder, kv, meta, n_seconds = self._row_start(request.patient_id, prefill=False)
        builder.text(self.prompts.explain_context(n_seconds, request.evidence, scored_summary))
        packed = builder.build()
        cache = DynamicCache(ddp_cache_data=kv) if kv else DynamicCache()
        return self._greedy(packed, meta.cat(packed.meta), cache, max_new_tokens, end_of_line=False)

    @torch.inference_mode()
    def complete_line(self, prompt_ids: Sequence[int], max_new_tokens: int = 64) -> Generation:
        """Greedy continuation of a text-only prompt (no patient cache) up to the end of its line: the probe
        variant's few-shot rationale (:meth:`PromptBook.rationale_prompt`)."""
        self._check_open()
        packed = SequenceBuilder(ecg_dim=self.model.config.ecg_dim).text(list(prompt_ids)).build()
        return self._greedy(packed, packed.meta, DynamicCache(), max_new_tokens, end_of_line=True)

    def _greedy(
        self, packed: Packed, keys: TokenMeta, cache: DynamicCache, max_new_tokens: int, end_of_line: bool
    ) -> Generation:
        """Greedy decoding after ``packed``; stops at a stop token or, with ``end_of_line``, at a newline (which is
        not kept)."""
        decode = self.prompts.tokenizer.decode
        hidden = self.model.decode(self.model.embed(packed), packed.meta, keys, cache)
        generated: list[int] = []
        for _ in range(max_new_tokens):
            token = int(self.model.logits(hidden[0, -1]).argmax())
            if token in self.prompts.stop_ids or (end_of_line and "\n" in str(decode([token]))):
                return Generation(str(decode(generated)), tuple(generated), True)
            generated.append(token)
            step = SequenceBuilder(start_pos=int(keys.pos.max()) + 1).text([token]).build()
            keys = keys.cat(step.meta)
            hidden = self.model.decode(self.model.embed(step), step.meta, keys, cache)
        return Generation(str(decode(generated)), tuple(generated), False)
