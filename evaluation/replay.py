"""Alert-level view: held-out records replayed through the forecasting path as the agent runs it.

Per record: feed every new second's embeddings into the runner's streaming cache (``extend_seconds``, as the model
worker does), forecast every ``cadence_s`` seconds with the agent's measured evidence and lead verdicts, and pass
each forecast to the agent's ``AlertService`` (real policy and SQLite store, publish collected in memory, clock =
stream time). No MQTT: the same classes, offline, so a 30-minute record replays in the time its forecasts take.

Scoring: an onset of arrhythmia c is *alerted* when an alert for c was raised in [onset - lookback_s, onset);
lead time = onset - first such raise. On records that never convert, every raised alert is a false alert. As in
the agent, a forecast that is about to raise an alert first asks the LM for its rationale; the alert says whether
the rationale passed the guard. The forecaster issue's figures (onsets with a precursor alerted >= 2 min ahead,
false alerts per patient-day, alerts with a rationale) come with 95 % intervals (Wilson; exact Poisson).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from agent.alerts import AlertService, AlertSettings, build_evidence
from core.measurements import measure_leads
from core.protocol import Topics
from evaluation.data import ONSETS, Record, RecordTruth
from evaluation.embed import EmbeddedRecord, lead_verdict
from evaluation.lm import WindowEvidence, window_evidence
from llm_runtime.engine import ForecastEngine
from llm_runtime.runner import ScoreRequest

__all__ = [
    "RecordReplay",
    "ReplayAlert",
    "ReplayConfig",
    "measured_evidence",
    "poisson_rate",
    "replay_record",
    "replay_span",
    "summarise_replays",
    "threshold_sweep",
    "wilson",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ReplayConfig:
    cadence_s: int = 60  # the scheduler's default cadence
    min_seconds: int = 60  # the scheduler's default warm-up before the first forecast
    lookback_s: int = 300  # an alert counts for an onset when raised at most this long before it (h = 300 s)
    verdict_seconds: int = 5  # the ingest's verdict span (quality.verdict_seconds)
    max_minutes: float = 0.0  # 0: whole records; else a stretch this long (CPU budget), see :func:`replay_span`


def replay_span(
    n_seconds: int, onsets: list[tuple[float, str]], window_s: int, config: ReplayConfig
) -> tuple[int, int]:
    """[first forecast, end) seconds to replay. Whole records unless ``max_minutes``: then a stretch that long,
    starting ``lookback_s`` plus two cadences before the first onset on a converting record (so every alert that
    could count for it is seen), at ``window_s`` on a record that never converts. The seconds before the first
    forecast are fed to the cache first, as for an agent that has been monitoring all along."""
    if not config.max_minutes:
        return config.min_seconds, n_seconds + 1
    length = round(config.max_minutes * 60)
    start = window_s if not onsets else round(onsets[0][0]) - config.lookback_s - 2 * config.cadence_s
    start = max(config.min_seconds, start)
    return start, min(n_seconds + 1, start + length)


@dataclass(frozen=True)
class ReplayAlert:
    at_s: float  # stream time it was raised
    arrhythmia: str
    probability: float
    rationale: bool  # the LM's rationale passed the guard and is shown to the nurse


@dataclass
class RecordReplay:
    record_id: str
    group: str
    duration_s: float  # seconds of forecasting replayed
    onsets: list[tuple[float, str]]
    alerts: list[ReplayAlert] = field(default_factory=list)
    forecasts: int = 0
    cannot_assess: int = 0
    precursor: str | None = None  # the scripted precursor of its onset ("none": no warning); None: not known
    precursor_s: float | None = None
    risks: list[tuple[float, dict[str, float]]] = field(default_factory=list)  # per forecast: max onset risk

    def onset_outcomes(self, lookback_s: float) -> list[dict[str, Any]]:
        out = []
        for t_onset, cls in self.onsets:
            raised = [a.at_s for a in self.alerts if a.arrhythmia == cls and t_onset - lookback_s <= a.at_s < t_onset]
            out.append(
                {
                    "record_id": self.record_id,
                    "arrhythmia": cls,
                    "onset_s": t_onset,
                    "lead_time_s": t_onset - min(raised) if raised else None,
                    "precursor": self.precursor,
                    "precursor_s": self.precursor_s,
                }
            )
        return out


def measured_evidence(record: Record, emb: EmbeddedRecord, t_end: int, window_s: int) -> tuple[Any, WindowEvidence]:
    """The alert guard's evidence (with the previous window for trends and the lead verdicts) and the LM's evidence
    line for the window ending at ``t_end``, measured as the agent measures them."""
    fs = record.fs
    recent_lo = max(0, t_end - window_s)
    measured = window_evidence(record.p_signal[round(recent_lo * fs) : round(t_end * fs)], fs, record.sig_name)
    earlier = None
    if t_end >= 2 * window_s:
        span = record.p_signal[round((t_end - 2 * window_s) * fs) : round(recent_lo * fs)]
        earlier = measure_leads(span, fs, list(record.sig_name))
    quality = {name: lead_verdict(emb.reasons[i][max(0, t_end - 5) : t_end]) for i, name in enumerate(record.sig_name)}
    evidence = build_evidence(measured.measurements, earlier, quality, float(t_end - recent_lo), t_end_s=float(t_end))
    return evidence, measured


def replay_record(
    engine: ForecastEngine,
    record: Record,
    emb: EmbeddedRecord,
    truth: RecordTruth,
    alerts: AlertSettings,
    config: ReplayConfig,
) -> RecordReplay:
    """Replay one record; the engine's runner is left without this patient afterwards."""
    n_seconds = emb.embeddings.shape[1]
    onsets = [(t, c) for t, c in truth.changes[1:] if c in ONSETS]
    window_s = int(engine.settings.window_s)
    first, end = replay_span(n_seconds, onsets, window_s, config)
    scored = [(t, c) for t, c in onsets if first <= t < end]  # onsets inside the replayed stretch
    out = RecordReplay(
        record.record_id,
        record.group,
        float(end - first),
        scored,
        precursor=truth.precursor,
        precursor_s=truth.precursor_s,
    )
    leads = tuple(engine.settings.leads)
    now = [0.0]
    pid = record.patient_id
    with tempfile.TemporaryDirectory() as tmp:
        service = AlertService(alerts, Path(tmp) / "alerts.sqlite3", lambda *a: None, Topics("eval"), lambda: now[0])
        with service:
            fed = max(0, first - window_s)
            for t_end in range(first, end, config.cadence_s):
                engine.runner.extend_seconds(pid, torch.from_numpy(emb.lm_seconds(leads, fed, t_end)), fed)
                fed = t_end
                evidence, measured = measured_evidence(record, emb, t_end, window_s)
                request = ScoreRequest(pid, measured.text, measured.trends)
                (forecast,) = engine.forecast([request])
                now[0] = float(t_end)
                out.risks.append((float(t_end), forecast.peak_risk))
                if (raising := service.would_raise(pid, forecast, evidence)) is not None:  # as the agent does
                    forecast = engine.with_rationale(request, forecast, raising)
                for event in service.on_forecast(pid, forecast, evidence):
                    after = event.after
                    if event.type == "new" and after.arrhythmia is not None:
                        shown = after.rationale_note is None
                        out.alerts.append(
                            ReplayAlert(float(t_end), after.arrhythmia, float(after.probability or 0), shown)
                        )
                    elif event.type == "new":
                        out.cannot_assess += 1
                out.forecasts += 1
    engine.runner.finish([pid])
    log.info("replayed", record=record.record_id, forecasts=out.forecasts, alerts=len(out.alerts))
    return out


def wilson(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """95 % Wilson score interval of a proportion k / n (None for n = 0)."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(float(centre - half), 4), round(float(centre + half), 4)]


def poisson_rate(k: int, exposure: float) -> list[float] | None:
    """Exact (Garwood) 95 % interval of a rate: k events over ``exposure`` units (None for no exposure)."""
    from scipy.stats import chi2

    if exposure <= 0:
        return None
    lo = 0.0 if k == 0 else chi2.ppf(0.025, 2 * k) / 2
    hi = chi2.ppf(0.975, 2 * k + 2) / 2
    return [round(float(lo / exposure), 3), round(float(hi / exposure), 3)]


def _acceptance(
    outcomes: list[dict[str, Any]], alerts: list[ReplayAlert], false_alerts: int, quiet_days: float
) -> dict[str, Any]:
    """The forecaster issue's replay figures, as counts with 95 % intervals."""
    warned = [o for o in outcomes if o["precursor"] not in (None, "none")]
    ahead = sum(o["lead_time_s"] is not None and o["lead_time_s"] >= 120 for o in warned)
    explained = sum(a.rationale for a in alerts)
    return {
        "onsets_with_precursor": len(warned),
        "alerted_2min_ahead": ahead,
        "alerted_2min_ahead_ci": wilson(ahead, len(warned)),
        "false_alerts": false_alerts,
        "false_alerts_per_patient_day_ci": poisson_rate(false_alerts, quiet_days),
        "forecast_alerts": len(alerts),
        "with_guarded_rationale": explained,
        "with_guarded_rationale_ci": wilson(explained, len(alerts)),
    }


def _raises(risks: list[tuple[float, dict[str, float]]], cls: str, threshold: float, k: int, n: int) -> list[float]:
    """Times at which a k-of-n persistence rule on the recorded risks would raise (rising edges)."""
    hits = [r[cls] >= threshold for _, r in risks]
    on = [sum(hits[max(0, i - n + 1) : i + 1]) >= k for i in range(len(hits))]
    return [risks[i][0] for i in range(len(on)) if on[i] and (i == 0 or not on[i - 1])]


def threshold_sweep(replays: list[RecordReplay], config: ReplayConfig, k: int = 2, n: int = 3) -> list[dict[str, Any]]:
    """What other ``raise_at`` values would have given on the same forecasts: onsets with a precursor alerted
    >= 2 min ahead and false raises on non-converting records, under the policy's k-of-n persistence only (no
    hysteresis, clearing or mute: an approximation of AlertPolicy, for choosing a threshold, not for reporting)."""
    rows = []
    quiet_days = sum(r.duration_s for r in replays if not r.onsets) / 86400.0
    for threshold in (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7):
        ahead = warned = false = 0
        for r in replays:
            if not r.onsets:
                false += sum(len(_raises(r.risks, c, threshold, k, n)) for c in ONSETS)
            for t_onset, cls in r.onsets if r.precursor not in (None, "none") else []:
                warned += 1
                raised = [t for t in _raises(r.risks, cls, threshold, k, n) if t_onset - config.lookback_s <= t]
                ahead += any(t <= t_onset - 120 for t in raised)
        rows.append(
            {
                "raise_at": threshold,
                "onsets_with_precursor": warned,
                "alerted_2min_ahead": ahead,
                "false_raises": false,
                "false_raises_per_patient_day": round(false / quiet_days, 1) if quiet_days else None,
            }
        )
    return rows


def summarise_replays(replays: list[RecordReplay], config: ReplayConfig) -> dict[str, Any]:
    """Per onset: alerted or missed and lead time; false alerts per patient-day on records that never convert."""
    outcomes = [o for r in replays for o in r.onset_outcomes(config.lookback_s)]
    quiet = [r for r in replays if not r.onsets]
    quiet_days = sum(r.duration_s for r in quiet) / 86400.0
    false_alerts = sum(len(r.alerts) for r in quiet)
    per_class = {}
    for cls in ONSETS:
        mine = [o for o in outcomes if o["arrhythmia"] == cls]
        leads = [o["lead_time_s"] for o in mine if o["lead_time_s"] is not None]
        per_class[cls] = {
            "onsets": len(mine),
            "alerted": len(leads),
            "alerted_2min_ahead": sum(lead >= 120 for lead in leads),
            "median_lead_time_s": float(np.median(leads)) if leads else None,
        }
    return {
        "config": asdict(config),
        "onsets": outcomes,
        "per_arrhythmia": per_class,
        "acceptance": _acceptance(outcomes, [a for r in replays for a in r.alerts], false_alerts, quiet_days),
        "threshold_sweep": threshold_sweep(replays, config),
        "non_converting_records": len(quiet),
        "non_converting_hours": round(quiet_days * 24, 3),
        "false_alerts": false_alerts,
        "false_alerts_per_patient_day": (false_alerts / quiet_days) if quiet_days else None,
        "records": [
            {
                "record_id": r.record_id,
                "group": r.group,
                "precursor": r.precursor,
                "forecasts": r.forecasts,
                "alerts": [asdict(a) for a in r.alerts],
                "risks": [[t, {c: round(p, 4) for c, p in risk.items()}] for t, risk in r.risks],
            }
            for r in replays
        ],
    }
