"""The ECG language model as a method: the runtime itself (``ForecastEngine``), one prefill per sample input.

Every sample input (record, anchor, w) is primed into the runner from the record's encoder embeddings (the
agent's offline twin) and scored once for every horizon; its evidence text is the agent's measurement line of
the same window. "Zero-shot" is the runtime with no adapter: the backbone with an untrained projector and ECG
tokens (a text LM cannot read ECG embeddings without a trained projector, so this is the floor, not a rival).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import structlog
import torch

from core.measurements import Measurements, analyse_best_lead, analysis_trends
from evaluation.data import CLASSES, ONSETS, EvalData, InputKey, Sample
from evaluation.embed import Embedder
from evaluation.predictions import Predictions
from llm_runtime.checkpoints import read_adapter_meta
from llm_runtime.engine import ForecastEngine
from llm_runtime.forecast import Forecast
from llm_runtime.runner import ScoreRequest, Slide
from llm_runtime.settings import LlmSettings

__all__ = ["LmForecaster", "WindowEvidence", "input_evidence", "load_engine", "window_evidence"]

log = structlog.get_logger(__name__)


def load_engine(
    base: LlmSettings, adapter_dir: Path | None, window_s: int, horizons_s: Sequence[int], slide: Slide = "rebuild"
) -> ForecastEngine:
    """The runtime as configured, with this method's adapter (None: zero-shot), window and horizons; ``slide`` as
    ``ForecastEngine.load`` (offline inputs are primed afresh: the exact ``rebuild`` unless a caller streams)."""
    update: dict[str, object] = {"adapter_dir": adapter_dir, "window_s": window_s, "horizons_s": tuple(horizons_s)}
    leads = _adapter_leads(adapter_dir)
    if leads:
        update["leads"] = leads  # the leads the adapter was trained on, in its token order
    settings = base.model_copy(update=update)
    return ForecastEngine.load(LlmSettings.model_validate(settings.model_dump()), slide=slide)


def _adapter_leads(adapter_dir: Path | None) -> tuple[str, ...]:
    return tuple(read_adapter_meta(adapter_dir).get("leads") or ()) if adapter_dir is not None else ()


@dataclass(frozen=True)
class WindowEvidence:
    """What the agent measures of the window it forecasts from: the summary, the prompt's evidence line and the
    trend features the forecast head reads beside the LM."""

    measurements: Measurements | None
    text: str
    trends: npt.NDArray[np.float64]


def window_evidence(p_signal: np.ndarray, fs: float, sig_name: Sequence[str]) -> WindowEvidence:
    """One analysis of the window (the best lead's beats), as the agent's ``ModelWorker._measure`` does."""
    if p_signal.shape[0] < fs:
        return WindowEvidence(None, "no measurements available", analysis_trends(None))
    analysis = analyse_best_lead(p_signal, fs, list(sig_name))
    return WindowEvidence(analysis.measurements, analysis.measurements.as_prompt_text(), analysis_trends(analysis))


def input_evidence(data: EvalData, key: InputKey) -> WindowEvidence:
    """:func:`window_evidence` of a benchmark input's window (the seconds before its anchor)."""
    record_id, anchor_s, window_s = key
    rec = data.record(record_id)
    end = min(int(anchor_s), int(rec.p_signal.shape[0] // rec.fs))
    lo, hi = round((end - window_s) * rec.fs), round(end * rec.fs)
    return window_evidence(rec.p_signal[lo:hi], rec.fs, rec.sig_name)


class LmForecaster:
    """Forecasts per sample input, cached: the horizons of one input come from one scoring pass."""

    def __init__(
        self,
        engine: ForecastEngine,
        data: EvalData,
        embedder: Embedder,
        zero_ecg: bool = False,
        evidence_from: dict[InputKey, InputKey] | None = None,
    ) -> None:
        """``zero_ecg`` and ``evidence_from`` are the ablations: ECG tokens of zeros (what a lead with no valid
        second gives), or each input's evidence line taken from another patient's input."""
        self.engine = engine
        self.data = data
        self.embedder = embedder
        self.zero_ecg = zero_ecg
        self.evidence_from = evidence_from or {}
        self._cache: dict[tuple[str, float, int], Forecast] = {}
        self.seconds_read = 0

    @property
    def inputs_scored(self) -> int:
        return len(self._cache)

    def forecast(self, key: tuple[str, float, int]) -> Forecast:
        if key not in self._cache:
            start = time.perf_counter()
            try:
                (self._cache[key],) = self.engine.forecast([self._prime(key)])
            finally:
                self.engine.runner.finish(["eval"])
            log.info("lm_input_scored", record=key[0], window_s=key[2], ms=round(1000 * (time.perf_counter() - start)))
        return self._cache[key]

    def features(self, key: tuple[str, float, int]) -> npt.NDArray[np.float32]:
        """What the probe variant's forecast head reads for this input, (F,); not cached (extraction writes them)."""
        try:
            return self.engine.probe_features([self._prime(key)])[0].numpy()
        finally:
            self.engine.runner.finish(["eval"])

    def _prime(self, key: tuple[str, float, int]) -> ScoreRequest:
        """Prime the runner with input ``key``'s window (seconds before the anchor) and return its request."""
        record_id, anchor_s, window_s = key
        rec = self.data.record(record_id)
        emb = self.embedder(rec)
        end = min(int(anchor_s), emb.embeddings.shape[1])
        seconds = emb.lm_seconds(tuple(self.engine.settings.leads), end - window_s, end)  # (w, L, 64)
        if self.zero_ecg:
            seconds[:] = 0.0
        self.engine.runner.prime("eval", torch.from_numpy(seconds), end - window_s)
        self.seconds_read += window_s
        evidence = input_evidence(self.data, self.evidence_from.get(key, key))
        return ScoreRequest("eval", evidence.text, evidence.trends)

    def predict(self, samples: Sequence[Sample]) -> Predictions:
        rhythm = np.zeros((len(samples), len(CLASSES)))
        onset = np.zeros((len(samples), len(ONSETS)))
        for i, s in enumerate(samples):
            f = self.forecast(s.key)
            rhythm[i] = [f.rhythm_probs[s.horizon_s][c] for c in CLASSES]
            onset[i] = [f.onset_probs[s.horizon_s][c] for c in ONSETS]
        return Predictions(rhythm, onset)
