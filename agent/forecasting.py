"""The model worker: one thread that encodes completed windows, keeps each patient's LM cache current, and runs
scheduled forecasts. Ingest never waits for it; it reads ingest state only through snapshots.

One thread for encoder and LM on purpose: both are CPU-bound and share the same cores, and a single owner of the
encoder rings and the per-patient KV caches needs no locks.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import structlog
import torch
from pydantic import ValidationError

from agent.encoder_stage import EncoderStage, PatientEmbeddings, encode_ready
from agent.forecast_message import ForecastWindow, forecast_message
from agent.ingest_worker import IngestWorker, SignalSnapshot
from agent.measured_windows import MeasuredWindow, MeasuredWindows
from agent.patient import CompletedWindows
from agent.worker_thread import WorkerThread
from core.errors import BrokerError, LifecycleError
from core.measurements import (
    Measurements,
    RhythmSpan,
    analyse_best_lead,
    analysis_trends,
    measure_leads,
    rhythm_spans,
)
from core.protocol import Topics
from llm_runtime.engine import ForecastEngine
from llm_runtime.forecast import Forecast
from llm_runtime.runner import NewSeconds, ScoreRequest
from llm_runtime.scheduler import ForecastScheduler, Readiness, RunnerOutput

__all__ = ["AlertSink", "ModelWorker"]

log = structlog.get_logger(__name__)

Publish = Callable[[str, bytes, int, bool], Any]


class AlertSink(Protocol):
    """What the model worker tells the alert service (agent.alerts.AlertService implements it)."""

    def on_forecast(self, patient_id: str, forecast: Forecast, evidence: Any) -> Any: ...
    def on_cannot_assess(self, patient_id: str, evidence: Any) -> Any: ...
    def would_raise(self, patient_id: str, forecast: Forecast, evidence: Any) -> str | None: ...


EvidenceBuilder = Callable[
    [Measurements | None, Measurements | None, dict[str, str], float, float | None, tuple[RhythmSpan, ...]], Any
]  # (recent, earlier, quality verdicts, window_s, t_end_s, the recent window's rhythm spans) -> evidence


@dataclass
class _Feed:
    """How far a patient's LM cache has been fed from its embedding ring."""

    segment: int
    last_second: int = -1


@dataclass(frozen=True)
class _Measured:
    snapshot: SignalSnapshot | None
    recent: Measurements | None
    evidence: Any
    trends: np.ndarray  # the window's trend features (NaN where not measured), for a head that reads them

    def prompt_text(self) -> str:
        """The measured evidence as the prompt carries it (the same text training used)."""
        return self.recent.as_prompt_text() if self.recent else "no measurements available"


@dataclass
class ModelStats:
    forecasts: int = 0
    cannot_assess: int = 0
    seconds_fed: int = 0
    last_forecast_ms: float = 0.0
    forecast_errors: int = 0
    feed_s: float = 0.0  # wall time spent extending KV caches
    forecast_s: float = 0.0  # wall time spent in forecast batches (measurements + scoring + publishing)
    encode_s: float = 0.0  # wall time in encoder ticks that had windows (from the wait for the first one)
    rationales: int = 0  # LM rationales generated (only for forecasts about to raise an alert)
    rationale_s: float = 0.0  # wall time spent generating them
    earlier_reused: int = 0  # earlier (trend) windows taken from an earlier forecast's measurements
    earlier_measured: int = 0  # earlier windows measured afresh


class ModelWorker(WorkerThread):
    """Encoder ticks, cache feeding and the forecast loop. ``step()`` is the whole algorithm."""

    error_pause_s = 0.5  # a failing model step (e.g. out of memory) must not spin

    def __init__(
        self,
        windows_ready: queue.Queue[CompletedWindows],
        stage: EncoderStage,
        engine: ForecastEngine,
        scheduler: ForecastScheduler,
        ingest: IngestWorker,
        publish: Publish,
        topics: Topics,
        alerts: AlertSink | None = None,
        evidence: EvidenceBuilder | None = None,
        clock: Callable[[], float] = time.monotonic,
        hold: Callable[[str], bool] | None = None,
    ) -> None:
        """``hold(patient_id)`` True keeps a patient warming up whatever its buffer holds (a cluster replica
        replaying a partition it just took over must not forecast, or alert, on history)."""
        self._ready = windows_ready
        self.stage = stage
        self.engine = engine
        self.scheduler = scheduler
        self._ingest = ingest
        self._publish = publish
        self._topics = topics
        self._alerts = alerts
        self._evidence = evidence
        self._clock = clock
        self._hold = hold
        self._leads = tuple(lead.lower() for lead in engine.settings.leads)
        self._feeds: dict[str, _Feed] = {}
        self._measured = MeasuredWindows(window_s=float(engine.settings.window_s))
        self.stats = ModelStats()
        self.loaded = True
        super().__init__("model-worker")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the step in flight (a forecast batch is never cut in half), then release the models:
        the runner's rebuild threads and the ORT session must end before the interpreter does."""
        super().stop(timeout)
        self.engine.runner.close()
        self.stage.runtime.close()
        self.loaded = False

    def now(self) -> float:
        """The scheduler's clock (seconds of signal time: wall time × replay speed in the demo)."""
        return self._clock()

    def step(self) -> None:
        """1 encode, 2 feed caches, 3 observe, 4 schedule, 5 free, 6 cannot-assess, 7 forecast."""
        busy_before = self.stage.busy_s
        encode_ready(self._ready, self.stage, timeout_s=0.2)  # 1
        self.stats.encode_s += self.stage.busy_s - busy_before  # the wait for windows is not encoder time
        self._feed_new_seconds(self.scheduler.settings.feed_every_s)  # 2
        now = self._clock()
        self.scheduler.observe(self._readiness(), now)  # 3
        batch = self.scheduler.schedule(now)  # 4
        self._forget(batch.finished_patient_ids + self._ingest.take_evicted())  # 5
        for pid in batch.cannot_assess:  # 6
            self._report_cannot_assess(pid)
        if batch.patient_ids:  # 7
            self._feed_new_seconds(1, only=set(batch.patient_ids))
            self.scheduler.update(self._forecast(batch.patient_ids), self._clock())

    # --- 2: the streaming cache follows the embedding ring ------------------------------------------------

    def _lead_rows(self, leads: tuple[str, ...]) -> list[int | None]:
        lower = [lead.lower() for lead in leads]
        return [lower.index(lead) if lead in lower else None for lead in self._leads]

    def _feed_new_seconds(self, min_new: int, only: set[str] | None = None) -> None:
        """Append each patient's new seconds to its LM cache once it holds ``min_new`` of them, all patients in one
        batched call (``feed_batch`` patients per forward pass).

        Why gather, and why batch: on a CPU a forward pass over 20 ECG tokens costs little more than over 2, and
        larger matrix products run nearer the CPU's peak (8 patients per pass: 1.5x cheaper per patient-second
        than one each, docs/BENCHMARKS.md); feeding second by second, patient by patient, made cache upkeep the
        agent's largest cost per patient.
        """
        t0 = time.perf_counter()
        patients = self.stage.patients
        chosen = patients.items() if only is None else ((pid, patients[pid]) for pid in only if pid in patients)
        feeds = [feed for pid, state in chosen if (feed := self._new_seconds(pid, state, min_new)) is not None]
        if feeds:
            self.engine.runner.extend_batch(feeds)
        for feed in feeds:
            self.stats.seconds_fed += feed.seconds.shape[0]
            self._feeds[feed.patient_id].last_second = feed.first_t + feed.seconds.shape[0] - 1
        self.stats.feed_s += time.perf_counter() - t0
        self._report_upkeep()

    def _new_seconds(self, pid: str, state: PatientEmbeddings, min_new: int) -> NewSeconds | None:
        """The seconds of ``pid`` its cache lacks, as the LM's leads, once there are ``min_new`` (a new segment
        starts the cache afresh)."""
        feed = self._feeds.get(pid)
        if feed is None or feed.segment != state.segment:
            self.engine.runner.finish([pid])
            feed = self._feeds[pid] = _Feed(state.segment, max(-1, state.ring.newest_second - self._window_s()))
        n_new = state.ring.newest_second - feed.last_second
        if n_new < max(1, min_new):
            return None
        window = state.ring.window(n_new)  # (n_leads, T, 64), zeros where not valid
        seconds = np.zeros((window.embeddings.shape[1], len(self._leads), state.ring.dim), np.float32)
        for i, row in enumerate(self._lead_rows(state.leads)):
            if row is not None:
                seconds[:, i] = window.embeddings[row]  # (T, 64) into (T, n_lm_leads, 64); missing leads stay 0
        first = state.ring.newest_second - seconds.shape[0] + 1
        return NewSeconds(pid, torch.from_numpy(seconds), first)

    def _report_upkeep(self) -> None:
        """Tell the scheduler what keeping one patient's cache current costs per second of signal, on this machine:
        this worker's own encoder and feeding time per patient-second fed (feeding includes the cache slides)."""
        if not self.stats.seconds_fed:
            return
        self.scheduler.record_upkeep((self.stats.feed_s + self.stats.encode_s) / self.stats.seconds_fed)

    def _window_s(self) -> int:
        return int(self.engine.settings.window_s)

    # --- 3..7 --------------------------------------------------------------------------------------------

    def _readiness(self) -> list[Readiness]:
        out = []
        for pid, state in self.stage.patients.items():
            window = state.ring.window(self._window_s())
            # Over the model's leads that the patient has: a lead it lacks is fed as zeros (absent), as training and
            # evaluation feed it, so a one-lead patient is assessed; a lead it has but that is off counts invalid.
            rows = [r for r in self._lead_rows(state.leads) if r is not None]
            valid = window.valid[rows].mean() if rows and window.valid.size else 0.0
            held = self._hold is not None and self._hold(pid)
            out.append(Readiness(pid, 0 if held else state.ring.embedded_seconds(), float(valid)))
        return out

    def _forget(self, patient_ids: list[str]) -> None:
        if not patient_ids:
            return
        self.engine.runner.finish(patient_ids)
        for pid in patient_ids:
            self._feeds.pop(pid, None)
            self._measured.forget(pid)
            self.stage.forget(pid)
            self.scheduler.evict(pid)

    def _measure(self, pid: str) -> _Measured:
        """Measured evidence over the forecast window, with the previous window for trends and the recent window's
        rhythm span by span (present-rhythm alerts read it from the same beats, at no extra analysis)."""
        window = self._window_s()
        snap = self._ingest.snapshot(pid, 2 * window)
        recent = earlier = analysis = None
        spans: tuple[RhythmSpan, ...] = ()
        if snap is not None and snap.p_signal.shape[0] >= snap.fs:
            n = round(window * snap.fs)
            analysis = analyse_best_lead(snap.p_signal[-n:], snap.fs, list(snap.leads))
            recent, spans = analysis.measurements, rhythm_spans(analysis)
            if snap.p_signal.shape[0] >= n:  # a whole window: it may stand in for a later forecast's earlier one
                self._measured.remember(pid, MeasuredWindow(snap.segment, snap.end_index, snap.fs, recent))
            if snap.p_signal.shape[0] >= 2 * n:
                earlier = self._earlier_window(snap, n)
        quality = snap.quality if snap is not None else {}
        state = self.stage.patients.get(pid)
        t_end = float(state.ring.newest_second + 1) if state is not None else None  # stream seconds, as forecasts
        evidence = self._evidence(recent, earlier, quality, float(window), t_end, spans) if self._evidence else None
        return _Measured(snap, recent, evidence, analysis_trends(analysis))

    def _earlier_window(self, snap: SignalSnapshot, n: int) -> Measurements:
        """The window of ``n`` samples before the snapshot's last ``n``: an earlier forecast's measurements when one
        ended there (agent.measured_windows), else measured now."""
        kept = self._measured.ending_near(snap.patient_id, snap.segment, snap.end_index - n, snap.fs)
        if kept is not None:
            self.stats.earlier_reused += 1
            return kept
        self.stats.earlier_measured += 1
        return measure_leads(snap.p_signal[-2 * n : -n], snap.fs, list(snap.leads))

    def _report_cannot_assess(self, pid: str) -> None:
        self.stats.cannot_assess += 1
        log.info("forecast_cannot_assess", patient_id=pid)
        if self._alerts is not None:
            self._alerts.on_cannot_assess(pid, self._measure(pid).evidence)

    def _forecast(self, patient_ids: list[str]) -> RunnerOutput:
        start = time.perf_counter()
        measured = {pid: self._measure(pid) for pid in patient_ids}
        requests = [ScoreRequest(pid, measured[pid].prompt_text(), measured[pid].trends) for pid in patient_ids]
        try:
            forecasts = self.engine.forecast(requests)
        except Exception:
            self.stats.forecast_errors += 1
            log.exception("forecast_failed", patients=patient_ids, cached=[self._feeds.get(p) for p in patient_ids])
            raise
        risks = {}
        for request, forecast in zip(requests, forecasts, strict=True):
            pid = forecast.patient_id
            forecast = self._explain_if_alerting(request, forecast, measured[pid].evidence)
            self._publish_forecast(forecast, measured[pid])
            risks[pid] = max(forecast.peak_risk.values())
            if self._alerts is not None:
                self._alerts.on_forecast(pid, forecast, measured[pid].evidence)
        elapsed = time.perf_counter() - start
        self.stats.forecast_s += elapsed
        self.stats.forecasts += len(forecasts)
        self.stats.last_forecast_ms = round(1000 * elapsed, 1)
        log.info("forecast_batch", patients=len(forecasts), elapsed_ms=self.stats.last_forecast_ms)
        return RunnerOutput(patient_ids, risks, elapsed)

    def _explain_if_alerting(self, request: ScoreRequest, forecast: Forecast, evidence: Any) -> Forecast:
        """Add the LM's rationale when this forecast is about to raise an alert: cheap risk on every forecast, the
        costly words only where a nurse will read them (the alert policy's guard then checks them)."""
        arrhythmia = None if self._alerts is None else self._alerts.would_raise(forecast.patient_id, forecast, evidence)
        if arrhythmia is None:
            return forecast
        t0 = time.perf_counter()
        explained = self.engine.with_rationale(request, forecast, arrhythmia)
        self.stats.rationales += 1
        self.stats.rationale_s += time.perf_counter() - t0
        log.info("forecast_rationale", patient_id=forecast.patient_id, note=explained.explanation_note)
        return explained

    def _publish_forecast(self, forecast: Forecast, measured: _Measured) -> None:
        """Publish the forecast from its wire model, the one the station parses with (agent.forecast_message). A
        message that model refuses, or a broker that refuses the publish, is logged: neither may cost the forecast
        its alerts, which the caller feeds next."""
        snapshot = measured.snapshot
        topic = self._topics.forecast(forecast.patient_id)
        try:
            message = forecast_message(
                forecast,
                published_at=time.time(),
                window=self._forecast_window(forecast),
                signal_quality=snapshot.quality if snapshot else {},
                measurements=measured.recent,
            )
            self._publish(topic, message.payload(), 1, True)
        except ValidationError as exc:
            log.error("forecast_message_invalid", patient_id=forecast.patient_id, error=str(exc)[:500])
        except (BrokerError, LifecycleError, OSError) as exc:
            log.error("forecast_publish_failed", patient_id=forecast.patient_id, topic=topic, error=str(exc))

    def _forecast_window(self, forecast: Forecast) -> ForecastWindow | None:
        """The device-time stretch the forecast read, from the patient's embedding ring (None once it is gone)."""
        state = self.stage.patients.get(forecast.patient_id)
        if state is None:
            return None
        t = state.ring.window(forecast.window_s).t_start
        finite = t[np.isfinite(t)]
        if not finite.size:
            return None
        return ForecastWindow(start=float(finite[0]), end=float(finite[-1]) + 1.0, segment=state.segment)
