"""Composition: settings -> backbone + ECG-LM + runner, and scored results -> validated forecast objects."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import structlog
import torch

from core.errors import ConfigError
from core.measurements import TREND_FEATURE_NAMES
from llm_runtime.backbones import Backbone, load_backbone
from llm_runtime.calibration import OnsetCalibration
from llm_runtime.checkpoints import load_adapter, load_camel_checkpoint, read_adapter_meta
from llm_runtime.forecast import SCHEMA, Forecast, parse_explanation, probabilities_by_horizon, summarise
from llm_runtime.model import EcgLanguageModel, EcgLmConfig
from llm_runtime.probe import ProbeHead
from llm_runtime.prompts import ARRHYTHMIAS, CHAT_FORMATS, PromptBook, Question, questions_for
from llm_runtime.runner import ModelRunner, RunnerConfig, ScoreRequest, Slide
from llm_runtime.settings import LlmSettings
from llm_runtime.slide_shift import SlideShift

__all__ = ["ForecastEngine", "resolve_device"]

log = structlog.get_logger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_UNTRAINED_SEED = 0  # the untrained projector and special tokens are a fixed function of this seed


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("llm.device: cuda requested but torch sees no CUDA device")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def _adapter_backbone(adapter_dir: Path) -> str | None:
    """The backbone an adapter was trained on (its adapter.json), None when it does not say."""
    backbone = read_adapter_meta(adapter_dir).get("backbone")
    return backbone if isinstance(backbone, str) else None


def _ecg_model(backbone: Backbone, settings: LlmSettings) -> tuple[EcgLanguageModel, str, str]:
    """The ECG-LM on ``backbone`` and a label (what ECG weights it carries) for the model id and version."""
    if settings.camel_checkpoint is not None:
        model, _ = load_camel_checkpoint(backbone.lm, settings.camel_checkpoint)
        return model, f"CAMEL checkpoint {settings.camel_checkpoint.name}", "camel"
    if settings.adapter_dir is not None and _adapter_backbone(settings.adapter_dir) not in (None, backbone.name):
        # The default config ships an adapter for gemma3-270m; "--backbone tiny-random" smoke runs cannot load it.
        log.warning("adapter_skipped", adapter_dir=str(settings.adapter_dir), backbone=backbone.name)
    elif settings.adapter_dir is not None:
        model, meta = load_adapter(backbone.lm, settings.adapter_dir)
        # adapter.json names the version: a new forecast head (probe_head.*) ships without rewriting the weights file
        version = read_adapter_meta(settings.adapter_dir).get("version") or meta.get("version", "unversioned")
        return model, f"adapter {settings.adapter_dir.name}", str(version)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(_UNTRAINED_SEED)
        model = EcgLanguageModel(backbone.lm, EcgLmConfig(hidden_size=backbone.lm.config.hidden_size))
    finally:
        torch.random.set_rng_state(state)
    return model, "UNTRAINED ECG adapter (random projector, LoRA at zero): forecasts carry no information", "untrained"


_Read = tuple[int, int, dict[int, dict[str, float]], dict[int, dict[str, float]]]


def _forecast_readout(settings: LlmSettings, label: str) -> tuple[tuple[Question, ...], ProbeHead | None]:
    """Questions to score, or none and the forecast head, as the adapter says (adapter.json ``prompt``)."""
    adapter = settings.adapter_dir
    meta = read_adapter_meta(adapter) if adapter is not None and label.startswith("adapter") else {}
    if adapter is None or meta.get("prompt") != "probe":
        return questions_for(settings.horizons_s), None
    leads = tuple(str(lead) for lead in meta.get("leads", []))
    if leads != tuple(settings.leads):
        raise ConfigError(f"llm.leads {list(settings.leads)} differ from the adapter's {list(leads)} ({adapter})")
    if not ProbeHead.exists(adapter):
        return (), None
    head = ProbeHead.load(adapter)
    missing = sorted(set(settings.horizons_s) - set(head.horizons_s))
    if missing:
        raise ConfigError(f"llm.horizons_s {missing} are not forecast by the head in {adapter} ({head.horizons_s})")
    return (), head


RATIONALE_TRIES: Final[tuple[tuple[int, int], ...]] = ((0, 2), (1, 2), (0, 1))
"""(rotate, worked notes shown) of each prompt the probe variant's rationale tries, in order, until one gives a
well-formed note whose numbers are all in the evidence line: a base LM copies some numbers from the worked note
nearest to it, and another order or fewer notes puts other numbers nearest."""

_CITED: Final = re.compile(r"\b(HR|PAC|PVC|couplets|longest V-run|irregularity)\s+(\d+(?:\.\d+)?)\b")


def ungrounded(note: str, evidence: str) -> str | None:
    """The first "NAME number" the note cites (in the evidence line's own names) that the evidence line does not
    say, e.g. "PVC 0" when the line says "PVC 13"; None when every cited number is the line's."""
    said = {(name, value) for name, value in _CITED.findall(evidence)}
    for name, value in _CITED.findall(note):
        if (name, value) not in said:
            return f"{name} {value}"
    return None


@dataclass(frozen=True)
class ForecastEngine:
    """A runner plus what the forecast object needs to say about the model."""

    runner: ModelRunner
    settings: LlmSettings
    model_id: str
    model_version: str
    calibration: OnsetCalibration | None = None  # the adapter's onset calibration (adapter.json), applied in forecast
    probe: ProbeHead | None = None  # the probe variant's forecast head; None: options are scored (generative)
    slide_shift: SlideShift | None = None  # the head's correction for caches slid by eviction (slide_shift.py)

    @staticmethod
    def load(settings: LlmSettings, slide: Slide = "evict", calibrated: bool = True) -> ForecastEngine:
        """``slide="rebuild"`` prefills a slid window afresh (exact, slow: offline tools); ``calibrated=False``
        reports the raw scored onset probabilities (what a calibration is fitted on)."""
        if settings.num_threads:
            torch.set_num_threads(settings.num_threads)
        device = resolve_device(settings.device)
        backbone = load_backbone(
            settings.backbone, settings.backbones_file, settings.cache_dir, _DTYPES[settings.dtype]
        )
        model, label, version = _ecg_model(backbone, settings)
        calibration = None
        if calibrated and settings.adapter_dir is not None and label.startswith("adapter"):
            calibration = OnsetCalibration.from_meta(read_adapter_meta(settings.adapter_dir))
        model = model.to(device=device, dtype=_DTYPES[settings.dtype])
        questions, probe = _forecast_readout(settings, label)
        prompts = PromptBook(backbone.tokenizer, CHAT_FORMATS[backbone.chat], settings.leads, questions)
        config = RunnerConfig(settings.layout, settings.window_s, settings.slack_s, slide)
        runner = ModelRunner(model, prompts, config)
        model_id = f"{backbone.model_id} + {label}; layout {settings.layout}"
        log.info(
            "forecast_engine_ready",
            model_id=model_id,
            device=str(device),
            dtype=settings.dtype,
            calibrated=calibration is not None,
        )
        shift = SlideShift.load(settings.adapter_dir) if probe is not None and settings.adapter_dir else None
        version_id = f"{backbone.model_version}/{version}"
        return ForecastEngine(runner, settings, model_id, version_id, calibration, probe, shift)

    def probe_features(self, requests: Sequence[ScoreRequest]) -> torch.Tensor:
        """What the forecast head reads, (B, F): a probe-variant adapter's features, with or without its head."""
        if not self.runner.prompts.probe:
            raise ConfigError("this adapter scores answer options; it has no probe features (adapter.json prompt)")
        return self.runner.probe_features(requests, self.probe_layers)

    @property
    def probe_layers(self) -> tuple[int, ...]:
        """The layers the head reads: its own, or for a new head the middle decoder layer (9 of Gemma 3 270M's 18)
        and the final normed output."""
        if self.probe is not None:
            return self.probe.layers
        return (self.runner.model.lm.config.num_hidden_layers // 2, -1)

    def _read(self, requests: Sequence[ScoreRequest]) -> list[_Read]:
        """Per request: last second read, seconds read, rhythm_probs, onset_probs; from the forecast head or from
        scored options."""
        if self.runner.prompts.probe:
            if self.probe is None:
                raise ConfigError(f"{self.settings.adapter_dir}: probe adapter without a forecast head (train it)")
            wanted = self.settings.horizons_s
            read, spans = self.runner.probe_read(requests, self.probe_layers)
            features = read.numpy().astype(np.float64)
            if self.slide_shift is not None:
                staleness = [self.runner.staleness(r.patient_id) for r in requests]
                features = self.slide_shift.correct(features, staleness)
            trends = self._trends(requests) if self.probe.reads_trends or self.probe.precursor else None
            out = self.probe.predict(features, trends, [window_s for _, window_s in spans])
            return [
                (*span, {h: r[h] for h in wanted}, {h: o[h] for h in wanted})
                for span, (r, o) in zip(spans, out, strict=True)
            ]
        questions = self.runner.prompts.questions
        return [
            (result.t_end_s, result.window_s, *probabilities_by_horizon(questions, result.probs))
            for result in self.runner.score(requests)
        ]

    @staticmethod
    def _trends(requests: Sequence[ScoreRequest]) -> npt.NDArray[np.float64]:
        """(B, E): each request's trend features; a request without them (no measurement) is a row of NaN."""
        n = len(TREND_FEATURE_NAMES)
        return np.stack([np.full(n, np.nan) if r.trends is None else np.asarray(r.trends, float) for r in requests])

    def forecast(self, requests: Sequence[ScoreRequest], explain: bool = False) -> list[Forecast]:
        """Score every patient in one batch; with ``explain``, add a generated rationale per patient."""
        start = time.perf_counter()
        read = self._read(requests)
        batch_ms = (time.perf_counter() - start) * 1000
        out = []
        for request, (t_end_s, window_s, rhythm, onset) in zip(requests, read, strict=True):
            if self.calibration is not None:
                onset = self.calibration.apply(onset)
            explanation, note, extra_ms = None, None, 0.0
            if explain:
                t0 = time.perf_counter()
                explanation, note = self._rationale(request, rhythm, onset)
                extra_ms = (time.perf_counter() - t0) * 1000
            out.append(
                Forecast(
                    schema=SCHEMA,
                    patient_id=request.patient_id,
                    t_forecast=float(t_end_s + 1),
                    window_s=window_s,
                    horizons_s=tuple(self.settings.horizons_s),
                    rhythm_probs=rhythm,
                    onset_probs=onset,
                    explanation=explanation,
                    explanation_note=note,
                    model_id=self.model_id,
                    model_version=self.model_version,
                    latency_ms=round(batch_ms + extra_ms, 2),
                )
            )
        return out

    def _rationale(
        self,
        request: ScoreRequest,
        rhythm: dict[int, dict[str, float]],
        onset: dict[int, dict[str, float]],
        arrhythmia: str | None = None,
    ) -> tuple[str | None, str | None]:
        """(explanation, note): the LM's short free-text rationale for these scores. The probe variant's frozen base
        LM writes a note in a few-shot prompt about ``arrhythmia`` (default: the highest onset risk), with a second
        try on the notes in another order when the first is malformed; a generative adapter answers on the
        patient's cache, as it was trained. The copy check reads the whole prompt's text: a base model often
        continues by repeating what it was shown."""
        prompts = self.runner.prompts
        if not prompts.probe:
            summary = summarise(rhythm, onset)
            generation = self.runner.explain(request, summary, self.settings.explain_max_tokens)
            _, n_seconds = self.runner.window_span(request.patient_id)
            said = prompts.tokenizer.decode(
                prompts.head + prompts.explain_context(n_seconds, request.evidence, summary)
            )
            return parse_explanation(generation.text, generation.stopped, prompt=str(said))
        focus = arrhythmia or max(ARRHYTHMIAS, key=lambda a: max(onset[h][a] for h in onset))
        horizon = max(onset, key=lambda h: onset[h][focus])
        result: tuple[str | None, str | None] = (None, None)
        for shown in RATIONALE_TRIES:
            ids = prompts.rationale_prompt(request.evidence, focus, horizon, onset[horizon][focus], *shown)
            line = self.runner.complete_line(ids, self.settings.explain_max_tokens)
            # a note is one line ending as a sentence; a line without an end is a fragment (often the evidence line
            # copied on), kept only up to its last complete sentence, as a cut generation is
            ended = line.stopped and line.text.rstrip().endswith((".", "!", "?"))
            said = str(prompts.tokenizer.decode(ids, skip_special_tokens=True))
            result = parse_explanation(line.text, ended, prompt=said)
            if result[0] is not None and (miss := ungrounded(result[0], request.evidence)) is not None:
                result = None, f"generation cites {miss}, not in the measured evidence; scored result only"
            if result[0] is not None:
                break
        return result

    def with_rationale(self, request: ScoreRequest, forecast: Forecast, arrhythmia: str | None = None) -> Forecast:
        """``forecast`` with the LM's rationale about ``arrhythmia`` (the alert's; default: the highest onset risk)
        added: generation is costly (tens of decoding steps), so the agent asks for it only when an alert is about
        to be raised, not on every forecast (docs/LLM_RUNTIME.md)."""
        t0 = time.perf_counter()
        explanation, note = self._rationale(request, forecast.rhythm_probs, forecast.onset_probs, arrhythmia)
        extra_ms = (time.perf_counter() - t0) * 1000
        update = {"explanation": explanation, "explanation_note": note, "latency_ms": forecast.latency_ms + extra_ms}
        return forecast.model_copy(update=update)
