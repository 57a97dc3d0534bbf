"""What the station knows: latest status, forecast, alerts and forecast mute per patient, risk history and waveform
rings.

Plain class under one lock: the feed thread writes, HTTP threads read. It holds only validated messages (typed
models from ``core.wire`` and ``agent.station._messages``), so building a tile cannot trip over a forged field; a
tile that fails anyway is replaced by a placeholder and a technical alarm, never by a 500 for every patient.
Everything a browser gets is built here as JSON-ready dicts, so the page only draws.

Memory is bounded whatever the broker delivers (docs/SECURITY.md, Resource bounds): at most
``station.max_patients`` patients, each message kept at most ``station.max_message_bytes``, bounded histories,
and tiles removed when the agent reports the patient evicted or nothing is heard of it for
``station.forget_after_s``. A refusal raises ProtocolError, which the feed counts and logs like a forged message.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import numpy as np
import structlog
from pydantic import BaseModel

from agent.alerts import Alert
from agent.station._messages import AlertMessage, ForecastMessage, MuteMessage
from agent.station._wave import Strip, WaveRing, heart_rate_bpm
from agent.station.settings import StationSettings
from core.errors import ProtocolError
from core.protocol import WaveChunk
from core.wire import MeasuredRhythm, MeasuredWindow, StatusMessage

__all__ = [
    "AlertSource",
    "PatientView",
    "StationState",
    "TechnicalAlarm",
    "Updates",
    "alarm_state",
    "measured_lines",
    "order",
    "priority_rank",
    "quality_badge",
    "rhythm_summary",
    "with_measured_quality",
]

log = structlog.get_logger(__name__)

PRIORITY_RANK = {"high": 3, "medium": 2, "low": 1}
ACTIVE_STATES = ("raised", "acknowledged")
QUALITY_BADGE = {
    "good": "good",
    "noisy": "noisy",
    "saturated": "noisy",
    "leads_off": "leads off",
}
"""Ingest verdicts (docs/PROTOCOL.md) -> the four badges a nurse reads; anything else is 'cannot assess'."""
BADGE_ORDER = ("good", "noisy", "leads off", "cannot assess")
NO_SIGNAL = "no signal"
LIVE_BADGES = ("good", "noisy")
"""Badges that claim a live signal: while no wave data came for stale_after_s they give way to 'no signal' ('leads
off' and 'cannot assess' stay: they already say why there is none)."""
IRREGULAR_RR = 0.1  # normalised RMSSD above which RR is called irregular (docs/MEASUREMENTS.md: AF > 0.1)
HISTORY_KEPT = 200
MUTES_KEPT = 20  # mute changes seen per patient, shown in the detail view
ACTIVE_KEPT = 32
"""Active alerts per patient. The agent keeps one per arrhythmia and kind (a handful); past this a new one is refused
rather than displacing an alarm already shown."""
TREND_KEPT = 1500  # forecast risk points per patient: 24 h at one forecast a minute
EVICTED_KEPT_PER_PATIENT = 4  # evicted ids remembered per tracked-patient slot (see StationState._evicted)
LIMIT_ALARM = "station_patient_limit"
HR_INTERVAL_S = 5.0
"""Live heart rate refresh period. QRS detection costs about 17 ms per patient on a 10-s strip (2-core dev box), so
at every 0.5-s push 50 patients would need 1.7 cores; bedside monitors also refresh HR every few seconds."""


class AlertSource(Protocol):
    """The agent's alert service, when the station runs inside the agent: durable history and restored alerts."""

    def active(self, patient_id: str) -> list[Alert]: ...
    def history(self, patient_id: str, limit: int = 50) -> list[Alert]: ...


def priority_rank(alerts: list[dict[str, Any]]) -> int:
    """Highest priority among active alerts (3 high, 2 medium, 1 low, 0 none), acknowledged or not.

    Acknowledgement never changes the rank: it once doubled an unacknowledged alert's rank, and the page drew that
    rank as a border, so an unacknowledged medium alert looked high (issue #21). Acknowledged is its own cue
    (:func:`alarm_state`)."""
    return max((PRIORITY_RANK.get(a.get("priority", ""), 0) for a in alerts), default=0)


def alarm_state(alerts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The tile's alarm signal: the highest active priority, whether every alert of that priority is acknowledged
    (the page then stops flashing and marks it ACK, keeping the priority's colour), and whether they are all
    forecasts (advisories, labelled as such on the page). None: no alert."""
    rank = priority_rank(alerts)
    top = [a for a in alerts if PRIORITY_RANK.get(a.get("priority", ""), 0) == rank]
    if not rank:
        return None
    return {
        "priority": top[0]["priority"],
        "acknowledged": all(a.get("state") == "acknowledged" for a in top),
        "advisory": all(a.get("kind") == "forecast" for a in top),
    }


def forecast_hidden(stale: bool, alerts: list[dict[str, Any]]) -> str | None:
    """Why the tile must not show the latest forecast (None: it may). A forecast is retained at the broker, so it
    outlives the signal it was made on: with no signal, or while the agent suppresses forecasts (its "cannot
    assess" alert is active), the old numbers would read as current."""
    if stale:
        return "no signal: forecast hidden"
    if any(a.get("kind") == "cannot_assess" for a in alerts):
        return "forecasts suppressed: signal quality cannot be assessed"
    return None


def quality_badge(signal_quality: dict[str, str]) -> tuple[str, dict[str, str]]:
    """(worst badge over leads, badge per lead)."""
    per_lead = {lead: QUALITY_BADGE.get(v, "cannot assess") for lead, v in signal_quality.items()}
    worst = max(per_lead.values(), key=BADGE_ORDER.index, default="cannot assess")
    return worst, per_lead


def with_measured_quality(signal_quality: dict[str, str], measured: MeasuredRhythm | None) -> dict[str, str]:
    """The ingest's per-lead verdicts, with the rhythm monitor's lead called noisy while its newest refresh found
    noise that the per-second checks pass (electrode motion in the ECG band): one badge, the worse of the two."""
    if measured is None or measured.lead not in signal_quality or measured.quality in (None, "good"):
        return signal_quality
    if signal_quality[measured.lead] != "good":
        return signal_quality
    return {**signal_quality, measured.lead: "noisy"}


def measured_lines(measured: MeasuredRhythm | None) -> list[str]:
    """One plain line per window of the rhythm monitor, e.g. ``Last 5 min: PVC 20% of beats (19.4/min), PAC 1%;
    2 couplets, no ventricular runs; HR 95; signal good (97% measurable)``. Measured, not a diagnosis."""
    return [_window_line(w) for w in measured.windows] if measured is not None else []


def _window_line(w: MeasuredWindow) -> str:
    span = f"{w.window_s / 60:.0f} min" if w.window_s % 60 == 0 else f"{w.window_s:.0f} s"
    if not w.beats:
        return f"Last {span}: no beats measured; signal {w.quality}"
    rate = f" ({w.pvc_per_min:.1f}/min)" if w.pvc_per_min is not None else ""
    runs = (
        f"{w.ventricular_runs} ventricular run{'s' if w.ventricular_runs > 1 else ''} (longest "
        f"{w.longest_ventricular_run})"
        if w.ventricular_runs
        else "no ventricular runs"
    )
    hr = f"HR {w.hr_bpm:.0f}" if w.hr_bpm is not None else "HR not measurable"
    share = f"{100 * w.clean_s / w.covered_s:.0f}% measurable" if w.covered_s else "nothing measured"
    return (
        f"Last {span}: PVC {_percent(w.pvc_burden)} of beats{rate}, PAC {_percent(w.pac_burden)}; "
        f"{w.couplets} couplet{'s' if w.couplets != 1 else ''}, {runs}; {hr}; signal {w.quality} ({share})"
    )


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.0f}%"


def rhythm_summary(measurements: dict[str, Any] | None) -> str:
    """Measured rhythm in plain words from the forecast's deterministic measurements (not a diagnosis)."""
    if not measurements or measurements.get("hr_bpm") is None:
        return "cannot assess"
    irregularity = measurements.get("rr_irregularity")
    words = "irregular RR" if irregularity is not None and irregularity > IRREGULAR_RR else "regular RR"
    if irregularity is not None:
        words += f" (irregularity {irregularity:.2f})"
    runs = int(measurements.get("ventricular_run_count") or 0)
    ectopy = [
        f"{n} {name}"
        for name, n in (("PAC", measurements.get("pac_count")), ("PVC", measurements.get("pvc_count")))
        if n
    ]
    if runs:
        ectopy.append(f"{runs} ventricular run{'s' if runs > 1 else ''}")
    duration = measurements.get("duration_s") or 0
    return words + (f"; {', '.join(ectopy)} in {duration:.0f} s" if ectopy else "")


def _finite_list(values: np.ndarray, digits: int = 3) -> list[float | None]:
    return [None if not math.isfinite(v) else round(float(v), digits) for v in values]


def _rounded(value: float | None) -> int | None:
    return None if value is None else round(value)


def strip_json(strip: Strip) -> dict[str, Any]:
    return {
        "fs": strip.fs,
        "t0": float(strip.t[0]) if strip.t.size else None,
        "leads": {name: _finite_list(strip.p_signal[:, i]) for i, name in enumerate(strip.sig_name)},
    }


@dataclass
class PatientView:
    patient_id: str
    ring: WaveRing
    status: StatusMessage | None = None
    forecast: ForecastMessage | None = None
    alerts: dict[str, Alert] = field(default_factory=dict)  # alert_id -> latest version, active only
    history: dict[str, Alert] = field(default_factory=dict)  # every alert seen, latest version
    trend: deque[tuple[float, dict[str, float]]] = field(default_factory=deque)
    hr_bpm: float | None = None
    last_wave_at: float | None = None  # wall time the last chunk arrived
    pushed_count: int = 0
    hr_at: float = -math.inf  # when the live heart rate was last computed
    was_stale: bool = True
    mutes: deque[MuteMessage] = field(default_factory=lambda: deque(maxlen=MUTES_KEPT))  # newest last
    was_muted: bool = False
    heard_at: float = 0.0  # wall time of the last wave or live status (or of the tile's creation)

    def muted(self, now: float) -> MuteMessage | None:
        """The mute in force at ``now``: the latest change, if it is a mute whose time is not up (the station
        judges expiry itself, so a retained mute from an agent that went away does not outlive its time)."""
        latest = self.mutes[-1] if self.mutes else None
        return latest if latest is not None and latest.active(now) else None


@dataclass
class TechnicalAlarm:
    """A fault of the station itself (not of a patient): shown on every page until it clears."""

    source: str  # e.g. "station_feed"
    detail: str
    since: float  # wall time first raised
    count: int = 1  # times raised since

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "detail": self.detail, "since": self.since, "count": self.count}


@dataclass
class Updates:
    """One push to the browsers: changed tiles, their display order, strip increments and newly raised alerts."""

    tiles: list[dict[str, Any]] = field(default_factory=list)
    order: list[str] | None = None
    waves: list[dict[str, Any]] = field(default_factory=list)
    new_alerts: list[dict[str, Any]] = field(default_factory=list)


class StationState:
    """Patients by id, agent presence, and the set of patients changed since the last push."""

    def __init__(
        self,
        settings: StationSettings,
        source: AlertSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._source = source
        self._clock = clock
        self._lock = threading.Lock()
        self.patients: dict[str, PatientView] = {}
        self.agents: dict[str, str] = {}  # agent_id -> "online" / "offline"
        self._dirty: set[str] = set()
        self._new_alerts: list[dict[str, Any]] = []
        self._technical: dict[str, TechnicalAlarm] = {}
        self._rejected: Counter[tuple[str, str]] = Counter()  # (kind, reason) -> messages refused
        # Patients the agent reported evicted and not heard of live since (see _known); oldest forgotten first.
        self._evicted: OrderedDict[str, None] = OrderedDict()
        self._removed = False  # a tile went since the last push: the page needs the new order
        self._layout: list[str] | None = None  # the display order last pushed

    def _live(self, pid: str) -> PatientView:
        """The view of a patient whose wave or (not evicted) status came: the agent holds it, again if evicted."""
        view = self._patient(pid)
        view.heard_at = self._clock()
        return view

    def _known(self, pid: str) -> PatientView | None:
        """The view for a forecast, alert or mute state, which do not say that the agent holds the patient: None
        for an evicted patient (its retained messages come again on every reconnect, its alerts end after it)."""
        return None if pid in self._evicted else self._patient(pid)

    def _patient(self, pid: str) -> PatientView:
        """The patient's view, created if need be; a new patient past ``max_patients`` is refused."""
        view = self.patients.get(pid)
        if view is None:
            if not self._has_room(pid):
                self._refuse_over_limit(pid)
            self._evicted.pop(pid, None)
            view = PatientView(pid, WaveRing(self._settings.detail_s, self._settings.draw_hz), heard_at=self._clock())
            self.patients[pid] = view
            for alert in self._source.active(pid) if self._source else []:
                view.alerts[alert.alert_id] = view.history[alert.alert_id] = alert
        self._dirty.add(pid)
        return view

    def _has_room(self, pid: str) -> bool:
        """A configured bed always has room (settings keep ``beds`` within ``max_patients``); another patient
        only in the slots the configured beds do not hold, so unplanned streams can never crowd a bed out."""
        beds = self._settings.beds
        if pid in beds:
            return True
        others = sum(1 for p in self.patients if p not in beds)
        return others < self._settings.max_patients - len(beds)

    def _refuse_over_limit(self, pid: str) -> NoReturn:
        """Refuse a patient past the cap; every page shows that some patients are not on screen."""
        limit = self._settings.max_patients
        detail = f"the station tracks at most {limit} patients (station.max_patients); others are not shown"
        self._raise_technical_locked(LIMIT_ALARM, detail)
        raise ProtocolError("patient_limit", f"{detail}; {pid!r} refused")

    def _remove(self, pid: str) -> None:
        if self.patients.pop(pid, None) is None:
            return
        if pid in self._settings.beds:
            self._dirty.add(pid)  # the bed stays in the layout, empty
        else:
            self._dirty.discard(pid)
        self._removed = True
        if self._technical.pop(LIMIT_ALARM, None) is not None:
            log.info("station_technical_alarm_cleared", source=LIMIT_ALARM)

    def _forget_evicted(self, pid: str) -> None:
        """The agent evicted the patient (idle past its ``buffer.idle_evict_s``): remove the tile and remember the
        id, so that its retained messages do not bring it back."""
        self._remove(pid)
        self._evicted[pid] = None
        self._evicted.move_to_end(pid)
        while len(self._evicted) > EVICTED_KEPT_PER_PATIENT * self._settings.max_patients:
            self._evicted.popitem(last=False)

    def _forget_silent(self, now: float) -> None:
        """Remove tiles nothing was heard of for ``forget_after_s``; one with an active alert stays, so an alarm is
        never hidden by a timeout (an agent that died leaves it on screen, stale)."""
        horizon = now - self._settings.forget_after_s
        for pid in [p for p, v in self.patients.items() if v.heard_at < horizon and not v.alerts]:
            self._remove(pid)
            log.info("station_patient_forgotten", patient_id=pid, silent_s=self._settings.forget_after_s)

    def _check_size(self, message: BaseModel) -> None:
        """Refuse a message larger than ``max_message_bytes`` (as JSON) before anything keeps it."""
        size = len(message.model_dump_json(by_alias=True))
        if size > self._settings.max_message_bytes:
            raise ProtocolError(
                "oversize", f"{size} bytes exceed station.max_message_bytes ({self._settings.max_message_bytes})"
            )

    def on_status(self, pid: str, status: StatusMessage) -> None:
        self._check_size(status)
        with self._lock:
            if status.state == "evicted":
                self._forget_evicted(pid)
                return
            self._live(pid).status = status

    def on_forecast(self, pid: str, forecast: ForecastMessage) -> None:
        self._check_size(forecast)
        with self._lock:
            view = self._known(pid)
            if view is None:
                return
            view.forecast = forecast
            at = forecast.published_at
            if any(t == at for t, _ in view.trend):
                return  # a retained forecast delivered again after a reconnect
            view.trend.append((at, forecast.peak_risk))
            if len(view.trend) > 1 and view.trend[-2][0] > at:
                view.trend = deque(sorted(view.trend, key=lambda point: point[0]))
            while view.trend and (view.trend[0][0] < at - self._settings.trend_s or len(view.trend) > TREND_KEPT):
                view.trend.popleft()

    def forecast(self, pid: str) -> ForecastMessage | None:
        """The latest forecast kept for ``pid`` (None: none yet, or no such patient), as received: the FHIR API
        serves it with its own time, so the tile's hiding of an old forecast does not apply."""
        with self._lock:
            view = self.patients.get(pid)
            return view.forecast if view is not None else None

    def on_alert(self, pid: str, message: AlertMessage) -> None:
        self._check_size(message)
        after = message.after
        with self._lock:
            view = self._known(pid)
            if view is None:
                return
            if after.state in ACTIVE_STATES and after.alert_id not in view.alerts and len(view.alerts) >= ACTIVE_KEPT:
                raise ProtocolError("too_many_alerts", f"{pid!r} already has {ACTIVE_KEPT} active alerts")
            view.history[after.alert_id] = after
            if len(view.history) > HISTORY_KEPT:
                view.history.pop(next(iter(view.history)))
            if after.state in ACTIVE_STATES:
                view.alerts[after.alert_id] = after
            else:
                view.alerts.pop(after.alert_id, None)
            if message.announces:
                self._new_alerts.append(after.to_wire())

    def on_mute(self, pid: str, message: MuteMessage) -> None:
        self._check_size(message)
        with self._lock:
            view = self._known(pid)
            if view is None:
                return
            if any(m.at == message.at and m.action == message.action for m in view.mutes):
                return  # the retained state delivered again after a reconnect
            view.mutes.append(message)
            if len(view.mutes) > 1 and view.mutes[-2].at > message.at:
                view.mutes = deque(sorted(view.mutes, key=lambda m: m.at), maxlen=MUTES_KEPT)

    def on_wave(self, chunk: WaveChunk) -> None:
        with self._lock:
            view = self._live(chunk.patient_id)
            view.ring.append(chunk)
            view.last_wave_at = self._clock()

    def on_presence(self, agent_id: str, state: str) -> None:
        with self._lock:
            self.agents[agent_id] = state

    def presence(self) -> dict[str, str]:
        """Agent id -> last presence state seen ("online" / "offline")."""
        with self._lock:
            return dict(self.agents)

    def record_rejection(self, kind: str, reason: str) -> None:
        """Count a refused message (shown in /api/state, so a flood of forged messages is visible, not silent)."""
        with self._lock:
            self._rejected[(kind, reason)] += 1

    def rejected(self) -> dict[str, dict[str, int]]:
        """Kind -> reason -> messages refused since start."""
        with self._lock:
            out: dict[str, dict[str, int]] = {}
            for (kind, reason), n in sorted(self._rejected.items()):
                out.setdefault(kind, {})[reason] = n
            return out

    def raise_technical(self, source: str, detail: str) -> None:
        """Raise (or repeat) the technical alarm of ``source``; every page shows it until :meth:`clear_technical`."""
        with self._lock:
            self._raise_technical_locked(source, detail)

    def _raise_technical_locked(self, source: str, detail: str) -> None:
        alarm = self._technical.get(source)
        if alarm is None:
            self._technical[source] = TechnicalAlarm(source, detail, self._clock())
        else:
            alarm.detail, alarm.count = detail, alarm.count + 1

    def clear_technical(self, source: str) -> None:
        with self._lock:
            if self._technical.pop(source, None) is not None:
                log.info("station_technical_alarm_cleared", source=source)

    def technical(self) -> list[dict[str, Any]]:
        """Active technical alarms, oldest first."""
        with self._lock:
            return self._technical_json()

    def _technical_json(self) -> list[dict[str, Any]]:
        return [a.to_json() for a in sorted(self._technical.values(), key=lambda a: a.since)]

    def take_updates(self) -> Updates:
        """What changed since the last call; live heart rates and stale flags are refreshed on the way, and tiles
        silent past ``forget_after_s`` removed."""
        with self._lock:
            now = self._clock()
            self._forget_silent(now)
            dirty, self._dirty = self._dirty, set()
            removed, self._removed = self._removed, False
            updates = Updates(new_alerts=self._new_alerts)
            self._new_alerts = []
            for pid, view in self.patients.items():
                stale = self._stale(view, now)
                if stale != view.was_stale:
                    view.was_stale = stale
                    dirty.add(pid)
                muted = view.muted(now) is not None
                if muted != view.was_muted:  # a mute that ran out changes the tile without a message
                    view.was_muted = muted
                    dirty.add(pid)
                if view.ring.count == view.pushed_count:
                    continue
                increment = view.ring.since(view.pushed_count)
                view.pushed_count = increment.end_count
                updates.waves.append({"patient_id": pid, **strip_json(increment)})
                if now - view.hr_at >= HR_INTERVAL_S:
                    view.hr_at = now
                    hr_bpm = heart_rate_bpm(view.ring.last(self._settings.strip_s))[0]
                    if _rounded(hr_bpm) != _rounded(view.hr_bpm):
                        dirty.add(pid)
                    view.hr_bpm = hr_bpm
            updates.tiles = [self._tile_of(pid) for pid in sorted(dirty) if self._shown(pid)]
            layout = order(self.patients, self._settings.beds)
            if (dirty or removed) and layout != self._layout:
                updates.order = self._layout = layout
        return updates

    def snapshot(self) -> dict[str, Any]:
        """Everything a freshly connected page needs: tiles in display order with their last strip seconds."""
        with self._lock:
            tiles = [self._tile_of(pid, with_strip=True) for pid in order(self.patients, self._settings.beds)]
            agents = dict(self.agents)
            technical = self._technical_json()
        return {
            "tiles": tiles,
            "agents": agents,
            "technical": technical,
            "rejected": self.rejected(),
            "server_time": self._clock(),
            "strip_s": self._settings.strip_s,
            "stale_after_s": self._settings.stale_after_s,
        }

    def _shown(self, pid: str) -> bool:
        return pid in self.patients or pid in self._settings.beds

    def _tile_of(self, pid: str, with_strip: bool = False) -> dict[str, Any]:
        """A tracked patient's tile, or an empty configured bed (it keeps its place in the layout)."""
        view = self.patients.get(pid)
        if view is None:
            return _placeholder_tile(pid, self._settings.beds.get(pid), with_strip, "no data from this bed")
        return self._safe_tile(view, with_strip)

    def _stale(self, view: PatientView, now: float) -> bool:
        return view.last_wave_at is None or now - view.last_wave_at > self._settings.stale_after_s

    def _safe_tile(self, view: PatientView, with_strip: bool = False) -> dict[str, Any]:
        """The tile, or a placeholder saying it cannot be shown: one patient's bad data must not blank the others."""
        try:
            tile = self._tile(view)
            return {**tile, "strip": strip_json(view.ring.last(self._settings.strip_s))} if with_strip else tile
        except Exception as exc:  # a bug on one tile costs that tile, and raises a technical alarm
            log.exception("station_tile_failed", patient_id=view.patient_id)
            detail = f"a patient's tile could not be shown ({type(exc).__name__}); see the station log"
            self._technical.setdefault("station_tile", TechnicalAlarm("station_tile", detail, self._clock()))
            bed = self._settings.beds.get(view.patient_id)
            return _placeholder_tile(view.patient_id, bed, with_strip, "station error: this patient cannot be shown")

    def _tile(self, view: PatientView) -> dict[str, Any]:
        status, forecast = view.status, view.forecast
        signal_quality = (status.signal_quality if status else {}) or (forecast.signal_quality if forecast else {})
        measured = status.measured if status else None
        badge, per_lead = quality_badge(with_measured_quality(signal_quality, measured))
        if any(a.kind == "cannot_assess" for a in view.alerts.values()):
            badge = "cannot assess"
        alerts = [
            a.to_wire()
            for a in sorted(view.alerts.values(), key=lambda a: (-PRIORITY_RANK.get(a.priority, 0), -a.raised_at))
        ]
        risk = forecast.peak_risk if forecast else {}
        now = self._clock()
        stale = self._stale(view, now)
        hidden = forecast_hidden(stale, alerts)
        measurements = forecast.measurements if forecast and not hidden else None
        return {
            "patient_id": view.patient_id,
            "bed": self._settings.beds.get(view.patient_id),
            "state": (status.state if status else None) or "unknown",
            "stale": stale,
            "last_wave_at": view.last_wave_at,
            "leads": list(view.ring.sig_name),
            "hr_bpm": None if stale else _rounded(view.hr_bpm),  # a number with no signal behind it is blanked
            "rhythm": rhythm_summary(measurements.as_dict() if measurements else None),
            "quality": NO_SIGNAL if stale and badge in LIVE_BADGES else badge,
            "quality_by_lead": per_lead,
            "measured": [] if stale else measured_lines(measured),  # past windows, not what the signal is now
            "forecast": None if hidden else _forecast_json(forecast),
            "forecast_hidden": hidden if forecast else None,
            "risk": round(max(risk.values(), default=0.0), 3),
            "trend": [[round(t, 1), round(max(r.values(), default=0.0), 3)] for t, r in view.trend],
            "alerts": alerts,
            "rank": priority_rank(alerts),
            "alarm": alarm_state(alerts),
            "mute": _mute_json(view.muted(now)),
        }

    def detail(self, pid: str) -> dict[str, Any] | None:
        """The detail view: a long strip with beat marks, the forecast window, alert history and forecast timeline."""
        with self._lock:
            view = self.patients.get(pid)
            if view is None:
                return None
            strip = view.ring.last(self._settings.detail_s)
            tile = self._safe_tile(view)
            timeline = [{"at": round(t, 1), **{k: round(v, 3) for k, v in r.items()}} for t, r in view.trend]
            seen = list(view.history.values())
            window = view.forecast.window if view.forecast else None
            mutes = [_mute_json(m) for m in reversed(view.mutes)]
        _, beats = heart_rate_bpm(strip)
        alerts = self._source.history(pid, HISTORY_KEPT) if self._source else seen
        history = [a.to_wire() for a in sorted(alerts, key=lambda a: -a.raised_at)]
        return {
            **tile,
            "strip": strip_json(strip),
            "beats": [round(float(b), 3) for b in beats],
            "forecast_window": window.model_dump() if window else None,
            "history": history,
            "timeline": timeline,
            "mutes": mutes,
        }


def _forecast_json(forecast: ForecastMessage | None) -> dict[str, Any] | None:
    if forecast is None:
        return None
    return {
        "horizons_s": list(forecast.horizons_s),
        "onset_probs": {str(h): dict(p) for h, p in forecast.onset_probs.items()},
        "published_at": forecast.published_at,
        "model_id": forecast.model_id,
        "measurements": forecast.measurements.as_dict() if forecast.measurements else None,
    }


def _mute_json(mute: MuteMessage | None) -> dict[str, Any] | None:
    if mute is None:
        return None
    return {"action": mute.action, "at": mute.at, "by": mute.by, "reason": mute.reason, "until": mute.until}


def _placeholder_tile(patient_id: str, bed: str | None, with_strip: bool, note: str) -> dict[str, Any]:
    """What the page shows for a patient whose tile failed to build, or a configured bed with nothing heard of it:
    the patient and bed, and ``note`` saying why there is nothing more."""
    tile: dict[str, Any] = {
        "patient_id": patient_id,
        "bed": bed,
        "state": "unknown",
        "stale": True,
        "last_wave_at": None,
        "leads": [],
        "hr_bpm": None,
        "rhythm": note,
        "quality": NO_SIGNAL,
        "quality_by_lead": {},
        "measured": [],
        "forecast": None,
        "forecast_hidden": None,
        "risk": 0.0,
        "trend": [],
        "alerts": [],
        "rank": 0,
        "alarm": None,
        "mute": None,
    }
    return {**tile, "strip": {"fs": None, "t0": None, "leads": {}}} if with_strip else tile


def order(patient_ids: Iterable[str], beds: Mapping[str, str]) -> list[str]:
    """Display order, a fixed layout: every configured bed in its configured order (empty or not), then the other
    patients by id. Alerts never move a tile: a tile that jumps on an acknowledgement invites a wrong-patient click
    (issue #21); the alarm list beside the grid is what is sorted by priority."""
    return [*beds, *sorted(pid for pid in patient_ids if pid not in beds)]
