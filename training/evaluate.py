"""Held-out metrics per stage for an adapter next to the zero-shot backbone (untrained ECG parts), same samples.

* classify (2): accuracy, the candidate answer with the highest summed log-probability wins;
* measure (3): greedy answer, first number parsed, mean absolute error per quantity (and the parse rate);
* converse (4): held-out answer-token loss;
* forecast (5): through the runtime itself (``ModelRunner.prime`` + ``score``, the agent's path) on held-out
  windows of ``FORECAST_EVAL_WINDOW_S``: rhythm-at-horizon macro-F1 and accuracy, onset-within-h AUROC.

Every number is on synthetic held-out patients (seeds from 10**6); nothing here is clinical performance.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
from transformers.cache_utils import DynamicCache

from llm_runtime.backbones import load_backbone
from llm_runtime.checkpoints import load_adapter
from llm_runtime.model import EcgLanguageModel, EcgLmConfig
from llm_runtime.packing import Packed, SequenceBuilder
from llm_runtime.prompts import CHAT_FORMATS, RHYTHMS, PromptBook, questions_for
from llm_runtime.runner import ModelRunner, RunnerConfig, ScoreRequest
from training.config import CurriculumConfig, StageConfig
from training.dataset import Item, build_split, select
from training.loop import Trainer
from training.model import Trainable, ecg_rows, sequence_loss
from training.packing import IGNORE, TrainSequence, pack, pack_dialogue
from training.tasks import QUANTITIES, Dialogue, ForecastItem

__all__ = ["FORECAST_EVAL_WINDOW_S", "evaluate_run"]

log = structlog.get_logger(__name__)

FORECAST_EVAL_WINDOW_S = 300
FORECAST_EVAL_HORIZON_S = 300
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _trainable(run: CurriculumConfig, adapter: Path | None) -> Trainable:
    """The zero-shot model (adapter None: the runtime's untrained ECG parts, LoRA at zero) or an adapter."""
    from encoder_onnx.weights import file_sha256, load_encoder_weights

    backbone = load_backbone(run.backbone, dtype=torch.float32)  # fresh: peft injects into the LM in place
    if adapter is None:
        state = torch.random.get_rng_state()
        torch.manual_seed(0)  # as llm_runtime.engine builds its untrained model
        model = EcgLanguageModel(backbone.lm, EcgLmConfig(hidden_size=backbone.lm.config.hidden_size))
        torch.random.set_rng_state(state)
    else:
        model, _ = load_adapter(backbone.lm, adapter)
    weights = adapter / "encoder.pt" if adapter is not None and (adapter / "encoder.pt").exists() else None
    encoder, _ = load_encoder_weights(weights or run.encoder_weights)
    chat = CHAT_FORMATS[backbone.chat]
    book = PromptBook(backbone.tokenizer, chat, run.forecast_leads, questions_for(run.horizons_s))
    sha = file_sha256(weights or run.encoder_weights)
    return Trainable(backbone, model.eval(), encoder.eval(), sha, book, {}, False)


def _answer_logprob(t: Trainable, seq: TrainSequence) -> float:
    loss, _ = sequence_loss(t, seq)
    return -float(loss)


def eval_classify(t: Trainable, items: list[Dialogue]) -> dict[str, Any]:
    correct = 0
    for item in items:
        (question, answer), *_ = item.turns
        scores = []
        for choice in item.choices:
            candidate = replace(item, turns=((question, choice),))
            scores.append(_answer_logprob(t, pack_dialogue(candidate, t.book_for(item.strip.leads))))
        correct += int(item.choices[int(np.argmax(scores))] == answer)
    return {"accuracy": correct / max(1, len(items)), "n": len(items)}


def _greedy(t: Trainable, seq: TrainSequence, book: PromptBook, max_new_tokens: int = 8) -> str:
    """Greedy continuation after the first answer's prompt, on a KV cache (as ModelRunner.explain decodes)."""
    first = int((seq.targets != IGNORE).nonzero()[0])
    ecg = ecg_rows(t.encoder, seq.windows, False)
    prompt = Packed(seq.packed.ids[:, : first + 1], ecg, seq.packed.meta.slice(0, first + 1))
    cache = DynamicCache()
    keys = prompt.meta
    hidden = t.model.decode(t.model.embed(prompt), keys, keys, cache)
    out: list[int] = []
    for _ in range(max_new_tokens):
        token = int(t.model.logits(hidden[0, -1]).argmax())
        if token in book.stop_ids:
            break
        out.append(token)
        step = SequenceBuilder(start_pos=int(keys.pos.max()) + 1).text([token]).build()
        keys = keys.cat(step.meta)
        hidden = t.model.decode(t.model.embed(step), step.meta, keys, cache)
    return str(book.tokenizer.decode(out))


def eval_measure(t: Trainable, items: list[Dialogue]) -> dict[str, Any]:
    errors: dict[str, list[float]] = {q: [] for q in QUANTITIES}
    asked: dict[str, int] = dict.fromkeys(QUANTITIES, 0)
    for item in items:
        if item.value is None:
            continue
        book = t.book_for(item.strip.leads)
        text = _greedy(t, pack_dialogue(item, book), book)
        asked[item.quantity] += 1
        match = _NUMBER.search(text)
        if match:
            errors[item.quantity].append(abs(float(match.group()) - float(item.value)))
    return {
        q: {"mae": (float(np.mean(e)) if e else None), "parsed": len(e), "asked": asked[q]}
        for q, e in errors.items()
        if asked[q]
    }


def eval_loss(t: Trainable, items: list[Item]) -> dict[str, Any]:
    total, count = 0.0, 0
    for item in items:
        seq = pack(item, t.forecast_book if isinstance(item, ForecastItem) else t.book_for(item.strip.leads))
        loss, n = sequence_loss(t, seq)
        total, count = total + float(loss), count + n
    return {"answer_loss": total / max(1, count), "n": len(items)}


def _auroc(scores: list[float], labels: list[bool]) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < sum(labels) < len(labels) else None


def eval_forecast(t: Trainable, items: list[ForecastItem]) -> dict[str, Any]:
    """Score each held-out window through the runtime's ModelRunner (prime = one prefill, then score)."""
    from sklearn.metrics import f1_score

    h = FORECAST_EVAL_HORIZON_S
    questions = t.forecast_book.questions
    rhythm_q = next(i for i, q in enumerate(questions) if q.kind == "rhythm" and q.horizon_s == h)
    onset_q = {q.target: i for i, q in enumerate(questions) if q.kind == "onset" and q.horizon_s == h}
    truth, pred, onset_scores, onset_labels = [], [], [], []
    window = max(item.strip.window_s for item in items)
    with ModelRunner(t.model, t.forecast_book, RunnerConfig("streaming", window, 60, "rebuild")) as runner:
        for k, item in enumerate(items):
            strip = item.strip
            rows = ecg_rows(t.encoder, torch.from_numpy(strip.windows), False)  # (T*L, 64)
            seconds = rows.reshape(strip.window_s, len(strip.leads), -1)  # (T*L, 64) -> (T, L, 64)
            patient = f"p{k}"
            runner.prime(patient, seconds, strip.at_s - strip.window_s)
            (result,) = runner.score([ScoreRequest(patient, strip.evidence)])
            runner.finish([patient])
            probs = result.probs[rhythm_q]
            truth.append(item.rhythm[h])
            pred.append(max(probs, key=probs.__getitem__))
            for target, qi in onset_q.items():
                onset_scores.append(result.probs[qi]["yes"])
                onset_labels.append(item.onset[h][str(target)])
    labels = [c for c in RHYTHMS if c in truth]
    return {
        "window_s": window,
        "horizon_s": h,
        "n": len(items),
        "rhythm_macro_f1": float(f1_score(truth, pred, labels=labels, average="macro", zero_division=0)),
        "rhythm_accuracy": float(np.mean([a == b for a, b in zip(truth, pred, strict=True)])),
        "truth_counts": {c: truth.count(c) for c in RHYTHMS},
        "pred_counts": {c: pred.count(c) for c in RHYTHMS},
        "onset_auroc_pooled": _auroc(onset_scores, onset_labels),
        "onset_positives": int(sum(onset_labels)),
    }


def _held_out(trainer: Trainer, index: int, stage: StageConfig, limit: int, window_s: int) -> list[Item]:
    """The run's held-out split (stage 5: rebuilt at w = 300 s, cached next to it), ``limit`` items spread."""
    if stage.stage != "forecast":
        return select(trainer.split(index, held_out=True), limit)
    path = trainer.paths.root / "data" / f"stage{index}_eval{window_s}.pkl"
    if path.exists():
        with path.open("rb") as fh:
            items: list[Item] = pickle.load(fh)
    else:
        wide = stage.model_copy(update={"eval_window_s": window_s})
        items = build_split(trainer.run, wide, held_out=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            pickle.dump(items, fh)
    return select(items, limit)


_EVALUATORS: dict[str, Callable[[Trainable, list[Any]], dict[str, Any]]] = {
    "classify": eval_classify,
    "measure": eval_measure,
    "converse": eval_loss,
    "forecast": eval_forecast,
}


@torch.no_grad()
def evaluate_run(
    run_dir: Path,
    adapter: Path | None,
    limit: int,
    which: tuple[str, ...] = ("zero_shot", "adapter"),
    forecast_window_s: int = FORECAST_EVAL_WINDOW_S,
    forecast_limit: int | None = None,
    out: Path | None = None,
) -> dict[str, Any]:
    """Metrics of ``which`` models on the run's held-out patients; ``out`` is rewritten after every stage so a
    long evaluation keeps what it has measured."""
    run, stages = Trainer.saved_config(run_dir)
    trainer = Trainer(run, stages, run_dir, torch.device("cpu"))
    limits = {"converse": max(1, limit // 2), "forecast": forecast_limit or limit}
    held = {
        s.stage: _held_out(trainer, i, s, limits.get(s.stage, limit), forecast_window_s) for i, s in enumerate(stages)
    }
    results: dict[str, Any] = {"run": str(run_dir), "adapter": str(adapter), "data": "synthetic held-out patients"}
    results["n"] = {stage: len(items) for stage, items in held.items()}
    for name in which:
        t = _trainable(run, adapter if name == "adapter" else None)
        results[name] = {}
        for stage, items in held.items():
            log.info("evaluating", model=name, stage=stage, n=len(items))
            results[name][stage] = _EVALUATORS[stage](t, items)
            if stage != "converse":
                results[name][stage]["answer_loss"] = eval_loss(t, items)["answer_loss"]
            results["summary"] = {n: _summary(results[n]) for n in which if n in results}
            if out is not None:
                out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def _summary(per_stage: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "classify" in per_stage:
        out["stage2_accuracy"] = per_stage["classify"]["accuracy"]
    if "measure" in per_stage:
        out["stage3_mae"] = {q: v["mae"] for q, v in per_stage["measure"].items() if isinstance(v, dict)}
    if "forecast" in per_stage:
        f = per_stage["forecast"]
        out[f"stage5_macro_f1_w{f['window_s']}_h{f['horizon_s']}"] = f["rhythm_macro_f1"]
        out["stage5_onset_auroc"] = f["onset_auroc_pooled"]
    return out
