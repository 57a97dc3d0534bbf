"""Present-rhythm alerts ("AF now", "VT now") scored on whole benchmark records: per arrhythmia, episodes detected,
false detections per hour of the time not in that arrhythmia, and the delay from onset to the alert.

Why whole records replayed as the agent measures: the detector's delay and its false alarms both depend on the
measurement cadence and window (a 300-s window read every 60 s), on the run carried from one measurement to the
next and on the quality gate, so the score must come from the agent's own path, not from single strips. Each record
is read at the agent's cadence from ``forecast.min_seconds`` on (a young stream gives a shorter strip, as the
agent's snapshot does): ``analyse_best_lead`` and ``rhythm_spans`` on the recent window, the ingest's per-lead
verdict over its last ``quality.verdict_seconds``, ``build_evidence``, then ``AlertPolicy`` with the unit policy of
the config file and a forecast that raises nothing.

Scoring rules (stated in the output so a reader need not open this file):

- an *episode* is a stretch of one class between two class changes of the ground truth; only episodes lasting at
  least the detector's ``min_duration_s`` are counted for sensitivity (AF 30 s, VT 10 s; flutter as AF: the only
  alert it can raise is "AF now");
- an episode is *detected* when its detector's alert is raised in [onset, end + one 10-s span], or is already
  active at its onset (raised for an earlier episode and not yet cleared); the delay is from onset to that raise;
- a raise outside every episode of its class (any length, plus the span) is a *false detection*; the time exposed
  is the record time not in that class. "AF now" raised in a flutter episode counts as false for AF (it is not AF)
  and is also reported on its own, since docs/ALERTS.md states flutter with variable block can read AF-like.

There is no flutter detector (docs/ALERTS.md section 13), so flutter rows report "AF now" raised during flutter.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from agent.alerts import AlertPolicy, AlertSettings, ForecastSeen, PatientAlerts, build_evidence
from core.measurements import RHYTHM_SPAN_S, analyse_best_lead, rhythm_spans
from core.settings import QualitySettings
from core.windows import preprocess_record
from evaluation.data import ONSETS, EvalData, Record
from evaluation.embed import lead_verdict
from evaluation.replay import poisson_rate, wilson
from llm_runtime.forecast import Forecast

__all__ = [
    "DETECTOR_OF",
    "RULES",
    "Episode",
    "PresentConfig",
    "PresentEvent",
    "RecordScore",
    "agent_config",
    "episodes",
    "quiet_forecast",
    "record_kind",
    "replay_present",
    "score_record",
    "summarise",
]

DETECTOR_OF: dict[str, str] = {"af": "af", "flutter": "af", "vt": "vt"}
"""Which alert counts for an episode of each class: flutter has no detector, "AF now" is all it can raise."""
GRACE_S = RHYTHM_SPAN_S  # a raise this soon after an episode's end still read that episode in its newest span
RULES: dict[str, str] = {
    "episode": "a stretch of one class (af, flutter, vt) between two class changes of the ground truth",
    "counted": "episodes lasting at least the detector's min_duration_s (AF 30 s; flutter as AF; VT 10 s); "
    "shorter ones are reported apart",
    "detected": f"the episode's alert raised in [onset, end + {GRACE_S:.0f} s], or already active at onset",
    "delay": "stream seconds from the episode's onset to that raise (0 when already active)",
    "false": f"a raise outside every episode of its class (plus {GRACE_S:.0f} s); 'AF now' in flutter is false",
    "exposure": "record time not in the detector's class",
    "measured_inside": "episodes in which at least one of the agent's measurements (every_s apart from min_seconds) "
    "ends: 'VT now' needs the measured window to end in VT",
    "flutter": "no flutter detector: a flutter episode counts as detected when 'AF now' was raised in it",
}


@dataclass(frozen=True)
class PresentConfig:
    """The agent's measuring and alerting settings the replay uses (from config/default.yaml)."""

    alerts: AlertSettings
    quality: QualitySettings
    window_s: int = 300  # llm.window_s
    every_s: int = 60  # forecast.cadence_s
    min_seconds: int = 60  # forecast.min_seconds: the first measurement
    verdict_seconds: int = 5  # quality.verdict_seconds

    def min_duration_s(self, cls: str) -> float:
        """The shortest episode of ``cls`` counted: its detector's stated minimum duration."""
        rule = self.alerts.defaults.present_rhythm.rhythm(DETECTOR_OF[cls])
        return float(rule.min_duration_s)

    def as_dict(self) -> dict[str, Any]:
        rules = self.alerts.defaults.present_rhythm.model_dump(mode="json")
        return {
            "window_s": self.window_s,
            "every_s": self.every_s,
            "min_seconds": self.min_seconds,
            "verdict_seconds": self.verdict_seconds,
            "present_rhythm": rules,
        }


def agent_config(path: Path | None = None) -> PresentConfig:
    """The shipped config's settings (environment overrides ignored, so a run is reproducible)."""
    from agent.settings import load_settings

    settings = load_settings(path, env={})
    return PresentConfig(
        alerts=settings.alerts,
        quality=settings.quality,
        window_s=int(settings.llm.window_s),
        every_s=round(settings.forecast.cadence_s),
        min_seconds=int(settings.forecast.min_seconds),
        verdict_seconds=int(settings.quality.verdict_seconds),
    )


@dataclass(frozen=True)
class PresentEvent:
    kind: str  # "new" (raised) or "end" (cleared)
    arrhythmia: str  # "af" or "vt"
    at_s: float  # stream time of the measurement


@dataclass(frozen=True)
class Episode:
    cls: str
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def episodes(changes: Sequence[tuple[float, str]], duration_s: float) -> list[Episode]:
    """The AF, flutter and VT stretches of a record from its class changes (the last runs to the record's end)."""
    ends = [t for t, _ in changes[1:]] + [duration_s]
    return [Episode(c, float(t), float(e)) for (t, c), e in zip(changes, ends, strict=True) if c in ONSETS]


def quiet_forecast(t_end: float) -> Forecast:
    """A forecast that raises nothing: only present rhythms are scored."""
    low = {"af": 0.01, "flutter": 0.01, "vt": 0.01}
    return Forecast.model_validate(
        {
            "patient_id": "bench",
            "t_forecast": t_end,
            "window_s": 60,
            "horizons_s": (60,),
            "rhythm_probs": {60: {"sinus": 0.97, **low}},
            "onset_probs": {60: low},
            "model_id": "bench",
            "model_version": "0",
            "latency_ms": 0.0,
        }
    )


def _verdicts(record: Record, config: PresentConfig) -> list[list[str | None]]:
    """Per lead and second, why the ingest would call it invalid (None: valid), from its offline twin."""
    return preprocess_record(record.p_signal, record.fs, quality=config.quality, sig_name=list(record.sig_name)).reasons


def replay_present(record: Record, config: PresentConfig) -> list[PresentEvent]:
    """Every present-rhythm raise and clear of one record, measured at the agent's cadence."""
    policy, state = AlertPolicy(config.alerts), PatientAlerts("bench")
    reasons = _verdicts(record, config)
    n_seconds = record.p_signal.shape[0] / record.fs
    out: list[PresentEvent] = []
    for t_end in range(config.min_seconds, int(n_seconds) + 1, config.every_s):
        start = max(0, t_end - config.window_s)
        strip = record.p_signal[round(start * record.fs) : round(t_end * record.fs)]
        analysis = analyse_best_lead(strip, record.fs, record.sig_name)
        recent = max(0, t_end - config.verdict_seconds)
        quality = {name: lead_verdict(reasons[i][recent:t_end]) for i, name in enumerate(record.sig_name)}
        evidence = build_evidence(
            analysis.measurements, None, quality, float(config.window_s), t_end_s=float(t_end),
            rhythm=rhythm_spans(analysis),
        )  # fmt: skip
        state, new = policy.decide(state, ForecastSeen(float(t_end), quiet_forecast(t_end), evidence))
        for event in new:
            if event.after.kind == "present_rhythm" and event.type in ("new", "end"):
                out.append(PresentEvent(event.type, event.after.arrhythmia or "", float(t_end)))
    return out


@dataclass
class RecordScore:
    record_id: str
    group: str
    duration_s: float
    episodes: list[Episode]
    events: list[PresentEvent] = field(default_factory=list)

    def time_in(self, cls: str) -> float:
        return sum(e.duration_s for e in self.episodes if e.cls == cls)

    def raises(self, detector: str) -> list[float]:
        return [e.at_s for e in self.events if e.kind == "new" and e.arrhythmia == detector]

    def active_at(self, detector: str, t_s: float) -> bool:
        """Whether ``detector``'s alert raised before ``t_s`` was still active at it."""
        active = False
        for e in self.events:
            if e.at_s >= t_s:
                break
            if e.arrhythmia == detector:
                active = e.kind == "new"
        return active

    def outcome(self, episode: Episode) -> dict[str, Any]:
        """Whether, and how soon, the episode's detector alerted for it."""
        detector = DETECTOR_OF[episode.cls]
        inside = [t for t in self.raises(detector) if episode.start_s <= t <= episode.end_s + GRACE_S]
        already = self.active_at(detector, episode.start_s)
        delay = 0.0 if already else (inside[0] - episode.start_s if inside else None)
        return {
            "record_id": self.record_id,
            "cls": episode.cls,
            "start_s": round(episode.start_s, 1),
            "duration_s": round(episode.duration_s, 1),
            "detected": delay is not None,
            "already_active": already,
            "delay_s": None if delay is None else round(delay, 1),
        }

    def false_raises(self, detector: str) -> list[tuple[float, str]]:
        """Raises of ``detector`` outside every episode of its own class, with the class they fell in."""
        own = [e for e in self.episodes if e.cls == detector]
        out = []
        for t in self.raises(detector):
            if not any(e.start_s <= t <= e.end_s + GRACE_S for e in own):
                during = next((e.cls for e in self.episodes if e.start_s <= t <= e.end_s + GRACE_S), "sinus")
                out.append((t, during))
        return out


def score_record(
    record: Record, changes: Sequence[tuple[float, str]], config: PresentConfig, kind: str | None = None
) -> RecordScore:
    """Replay one record and keep what scoring needs; ``kind`` (the record's scenario) replaces its group."""
    duration = record.p_signal.shape[0] / record.fs
    events = replay_present(record, config)
    return RecordScore(record.record_id, kind or record.group, duration, episodes(changes, duration), events)


def record_kind(data: EvalData, record_id: str) -> str:
    """The scenario a record was made from: a synthetic benchmark stores it as the record's origin, a WFDB record
    made by a generator carries it in its header ("kind"); the benchmark group otherwise. False detections are
    read per kind (which decoys raise them)."""
    origin = data.meta["records"][record_id].get("origin")
    if origin:
        return str(origin["scenario"])
    source = str(data.meta.get("source", ""))
    if source.startswith("wfdb:"):
        from simulators.wfdb_io import read_record

        header = next(Path(source.removeprefix("wfdb:")).rglob(f"{record_id}.hea"), None)
        if header is not None:
            return str(read_record(header).meta.get("kind") or data.record(record_id).group)
    return data.record(record_id).group


def _delays(outcomes: list[dict[str, Any]]) -> dict[str, float | None]:
    values = [o["delay_s"] for o in outcomes if o["delay_s"] is not None]
    return {
        "median_delay_s": round(median(values), 1) if values else None,
        "max_delay_s": round(max(values), 1) if values else None,
        "min_delay_s": round(min(values), 1) if values else None,
    }


def _measured_inside(episode: Episode, config: PresentConfig) -> int:
    """How many of the agent's measurements end inside the episode: "VT now" needs the measured window to end in
    VT, so an episode with none (a short VT between two measurements) cannot be detected at this cadence."""
    k = max(0, math.ceil((episode.start_s - config.min_seconds) / config.every_s))
    first = config.min_seconds + k * config.every_s
    return len(range(first, math.floor(episode.end_s) + 1, config.every_s))


def _sensitivity(scores: Sequence[RecordScore], cls: str, config: PresentConfig) -> dict[str, Any]:
    """Episodes of ``cls`` at least the detector's minimum long detected by it, with Wilson CI and delays; the
    shorter ones reported apart, and how many counted ones any measurement fell inside (what the cadence allows)."""
    min_s = config.min_duration_s(cls)
    outcomes = [
        s.outcome(e) | {"measurements_inside": _measured_inside(e, config)}
        for s in scores
        for e in s.episodes
        if e.cls == cls
    ]
    counted = [o for o in outcomes if o["duration_s"] >= min_s]
    short = [o for o in outcomes if o["duration_s"] < min_s]
    hit = sum(o["detected"] for o in counted)
    return {
        "detector": DETECTOR_OF[cls],
        "min_episode_s": min_s,
        "episodes": len(counted),
        "detected": hit,
        "sensitivity": round(hit / len(counted), 4) if counted else None,
        "sensitivity_ci95": wilson(hit, len(counted)),
        **_delays([o for o in counted if o["detected"]]),
        "episodes_measured_inside": sum(o["measurements_inside"] > 0 for o in counted),
        "shorter_episodes": len(short),
        "shorter_detected": sum(o["detected"] for o in short),
        "outcomes": outcomes,
    }


def _false_rate(scores: Sequence[RecordScore], detector: str) -> dict[str, Any]:
    """False raises of ``detector`` per hour of record time not in its class, with the exact Poisson CI; counted
    by the rhythm they fell in and by the record's kind, since which decoys raise them is what a reader needs."""
    false = [(s.record_id, s.group, t, during) for s in scores for t, during in s.false_raises(detector)]
    hours = sum(s.duration_s - s.time_in(detector) for s in scores) / 3600.0
    k = len(false)
    return {
        "false_detections": k,
        "exposure_h": round(hours, 2),
        "per_hour": round(k / hours, 4) if hours > 0 else None,
        "per_hour_ci95": poisson_rate(k, hours),
        "during": {c: sum(1 for *_, d in false if d == c) for c in ("sinus", *ONSETS) if c != detector},
        "by_kind": dict(sorted(Counter(kind for _, kind, _, _ in false).items())),
        "records_with_false": len({r for r, *_ in false}),
        "raises": [{"record_id": r, "kind": g, "at_s": t, "during": d} for r, g, t, d in false],
    }


def summarise(scores: Sequence[RecordScore], config: PresentConfig) -> dict[str, Any]:
    """Per arrhythmia: sensitivity on the counted episodes and false detections per hour of the rest."""
    out: dict[str, Any] = {"records": len(scores), "hours": round(sum(s.duration_s for s in scores) / 3600.0, 2)}
    for cls in ONSETS:
        row = _sensitivity(scores, cls, config)
        if cls == DETECTOR_OF[cls]:
            row["false"] = _false_rate(scores, cls)
        out[cls] = row
    out["flutter"]["note"] = "no flutter detector: 'detected' means 'AF now' was raised in the flutter episode"
    return out
