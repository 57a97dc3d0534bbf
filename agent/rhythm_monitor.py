"""The rhythm monitor: every patient's heart rate, PVC and PAC burden, ventricular runs and measured signal quality
over the last minutes, refreshed every ``monitor.interval_s`` of signal, for the status message and the ectopy
advisory (docs/PROTOCOL.md, docs/ALERTS.md section 14).

Why its own worker, not the forecast's measurements: those come once per forecast (a minute apart, later under
load), over the forecast window, and only once the model has loaded; a nurse reading "PVC burden 20 %" wants it
for the last minutes, refreshed within 30 s, whatever the model is doing.

Why a log of beats, not a fresh analysis of the whole window: each refresh analyses only the signal that arrived
since the last one, with ``context_s`` before it so beat templates and the local RR have a past (labels near a
strip's start are the least sure, and they were logged by the previous refresh). The beats it labels, and the
measurable share of each second, go into a per-patient log from which any window is summarised
(:func:`core.measurements.ectopy_burden`): 5 minutes refreshed every 15 s cost about three times real time of
analysis instead of twenty.

Beats in noise as large as the QRS (:func:`core.measurements.noisy_beats`) are left out of the log, and the seconds
they cover count as not measurable: a burst of electrode motion shows as degraded quality instead of as a run of
false PVCs.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import structlog

from agent.ingest_worker import IngestWorker, StreamPosition
from agent.settings import MonitorSettings
from agent.worker_thread import WorkerThread
from core.measurements import (
    EctopyBurden,
    LeadAnalysis,
    WindowQuality,
    analyse_leads,
    best_lead,
    clean_mask,
    ectopy_burden,
    noisy_beats,
    window_quality,
)

__all__ = ["GUARD_S", "BeatLog", "EctopySink", "MeasuredRhythm", "RhythmMonitor"]

log = structlog.get_logger(__name__)

GUARD_S: Final = 1.0  # the newest second is left for the next refresh: a beat cut off by the strip's end is unjudged
SAME_BEAT_S: Final = 0.15  # a beat this close to the last one logged is that beat, found again across the boundary
POLL_S: Final = 0.5  # how often (wall seconds) the worker looks for patients due a refresh


class EctopySink(Protocol):
    """Who is told each refresh (agent.alerts.AlertService: the ectopy advisory)."""

    def on_ectopy(self, patient_id: str, windows: Sequence[EctopyBurden], lead: str | None = None) -> Any: ...


@dataclass(frozen=True)
class MeasuredRhythm:
    """One refresh of one patient, as its status carries it."""

    lead: str | None  # the lead the newest beats were labelled on (the best-quality one)
    quality: WindowQuality | None  # measurable share of the newest refresh's seconds on that lead
    t_end_s: float  # stream seconds (segment sample clock) the windows end at
    measured_at: float  # wall-clock seconds of the refresh
    interval_s: float
    windows: tuple[EctopyBurden, ...]  # shortest first

    def as_status(self) -> dict[str, Any]:
        """The ``measured`` field of ``ecgcast.status/1`` (docs/PROTOCOL.md)."""
        return {
            "lead": self.lead,
            "quality": self.quality,
            "t_end_s": round(self.t_end_s, 3),
            "measured_at": round(self.measured_at, 3),
            "interval_s": self.interval_s,
            "windows": [w.as_dict() for w in self.windows],
        }


class BeatLog:
    """One segment of one patient: the labelled beats and measurable seconds logged so far (the newest ``keep_s``).

    Plain class, one owner (the monitor's thread). Times are stream seconds on the segment's sample clock.
    """

    def __init__(self, position: StreamPosition, leads: tuple[str, ...], keep_s: float) -> None:
        self.segment = position.segment
        self.fs = position.fs
        self.leads = leads
        self.keep_s = keep_s
        self.committed_to = self._whole_second(position.start_index, up=True)  # sample index logged up to
        self.lead: str | None = None
        self.quality: WindowQuality | None = None  # of the newest refresh's seconds, on ``lead``
        self._beat_s: deque[float] = deque()
        self._symbols: deque[str] = deque()
        self._rr_prev_ms: deque[float] = deque()
        self._second_s: deque[float] = deque()
        self._clean: deque[float] = deque()

    def _whole_second(self, index: int, up: bool = False) -> int:
        """The sample index of the whole stream second at or before (``up``: at or after) ``index``."""
        seconds = index / self.fs
        return round((math.ceil(seconds - 1e-9) if up else math.floor(seconds + 1e-9)) * self.fs)

    def commit_end(self, end_index: int) -> int:
        """Up to where a strip ending at ``end_index`` can be logged: whole seconds, the newest ``GUARD_S`` left."""
        return self._whole_second(end_index - round(GUARD_S * self.fs))

    def absorb(self, p_signal: npt.NDArray[np.floating], end_index: int) -> bool:
        """Analyse a strip ``(n, n_leads)`` ending at ``end_index`` and log its beats and seconds from
        :attr:`committed_to` on; the samples before that are context only. False when nothing new could be logged."""
        start_index = end_index - p_signal.shape[0]
        new_from = max(self.committed_to, self._whole_second(start_index, up=True))
        end = self.commit_end(end_index)
        if end <= new_from:
            return False
        analyses = analyse_leads(np.asarray(p_signal, dtype=np.float64), self.fs, list(self.leads))
        analysis = analyses[best_lead(analyses)]
        noisy = noisy_beats(analysis)
        clean = clean_mask(analysis, noisy)[new_from - start_index : end - start_index].astype(np.float64)
        self._log_beats(analysis, noisy, start_index, new_from, end)
        self._log_seconds(clean, new_from)
        self.lead = analysis.measurements.lead
        self.quality = window_quality(float(clean.sum()) / self.fs, clean.size / self.fs)
        self.committed_to = end
        self._trim(end / self.fs - self.keep_s)
        return True

    def _log_beats(
        self, analysis: LeadAnalysis, noisy: npt.NDArray[np.bool_], start_index: int, new_from: int, end: int
    ) -> None:
        """The beats from ``new_from`` (less a beat's tolerance, so one placed a few ms either side of the previous
        boundary is neither lost nor doubled) to ``end``, without those in noise; the interval after a beat in
        noise is unknown (NaN), so a burst neither reads as a pause nor joins two runs."""
        peaks = analysis.r_peaks + start_index
        after_noise = np.concatenate(([False], noisy[:-1]))
        tolerance = round(SAME_BEAT_S * self.fs)
        newest = self._beat_s[-1] if self._beat_s else -math.inf
        for i in np.flatnonzero((peaks >= new_from - tolerance) & (peaks < end) & ~noisy):
            t = float(peaks[i]) / self.fs
            if t - newest < SAME_BEAT_S:
                continue
            rr = float(analysis.features.rr_prev_ms[i])
            self._beat_s.append(t)
            self._symbols.append(str(analysis.symbols[i]))
            self._rr_prev_ms.append(math.nan if after_noise[i] else rr)
            newest = t

    def _log_seconds(self, clean: npt.NDArray[np.float64], new_from: int) -> None:
        """The measurable share of each whole second from ``new_from`` on."""
        first = new_from / self.fs
        n_seconds = round(clean.size / self.fs)
        for k in range(n_seconds):
            part = clean[round(k * self.fs) : round((k + 1) * self.fs)]
            self._second_s.append(first + k)
            self._clean.append(float(part.mean()) if part.size else 0.0)

    def _trim(self, oldest_s: float) -> None:
        while self._beat_s and self._beat_s[0] < oldest_s:
            self._beat_s.popleft()
            self._symbols.popleft()
            self._rr_prev_ms.popleft()
        while self._second_s and self._second_s[0] < oldest_s:
            self._second_s.popleft()
            self._clean.popleft()

    def windows(self, windows_s: Sequence[float]) -> tuple[EctopyBurden, ...]:
        """Each window's summary, ending where the log ends."""
        t_end = self.committed_to / self.fs
        beat_s = np.fromiter(self._beat_s, np.float64, len(self._beat_s))
        symbols = np.array(self._symbols, dtype="<U1")
        rr = np.fromiter(self._rr_prev_ms, np.float64, len(self._rr_prev_ms))
        second_s = np.fromiter(self._second_s, np.float64, len(self._second_s))
        clean = np.fromiter(self._clean, np.float64, len(self._clean))
        return tuple(ectopy_burden(beat_s, symbols, rr, second_s, clean, t_end, w) for w in windows_s)


class RhythmMonitor(WorkerThread):
    """Refreshes every held patient's :class:`MeasuredRhythm` once ``interval_s`` of new signal has arrived.

    Reads ingest only through :meth:`IngestWorker.stream_position` and :meth:`IngestWorker.snapshot` (copies under
    the ingest lock); its results are read by the ingest thread's status publisher through :meth:`status_fields`,
    one dict per patient replaced whole under a lock of its own, held for a dictionary lookup: publishing a status
    never waits for an analysis.
    """

    def __init__(
        self,
        settings: MonitorSettings,
        ingest: IngestWorker,
        sink: EctopySink | None = None,
        wall_clock: Callable[[], float] = time.time,
        hold: Callable[[str], bool] | None = None,
    ) -> None:
        """``hold(patient_id)`` True leaves a patient unmeasured (a cluster replica replaying a partition it just took
        over: its refreshes would state, and judge the advisory on, history as if it were now)."""
        self.settings = settings
        self._ingest = ingest
        self._sink = sink
        self._wall_clock = wall_clock
        self._hold = hold
        self._logs: dict[str, BeatLog] = {}
        self._latest: dict[str, dict[str, Any]] = {}  # patient -> its status field, replaced whole on each refresh
        self._lock = threading.Lock()  # only around _latest's membership, for status readers on another thread
        self.refreshes = 0
        super().__init__("rhythm-monitor")

    def step(self) -> None:
        self.refresh_due()
        self._stop.wait(POLL_S)

    def refresh_due(self) -> int:
        """Refresh every patient with ``interval_s`` of new signal; forget patients ingest no longer holds. Public
        so tests can drive the monitor without its thread. Returns how many were refreshed."""
        held = list(self._ingest.patients)
        self._forget(set(self._logs) - set(held))
        refreshed = 0
        for pid in held:
            if self._hold is not None and self._hold(pid):
                continue
            position = self._ingest.stream_position(pid)
            if position is not None and self._refresh(pid, position):
                refreshed += 1
        return refreshed

    def status_fields(self, patient_id: str) -> dict[str, Any]:
        """``{"measured": {...}}`` for the patient's status once measured, else nothing."""
        with self._lock:
            latest = self._latest.get(patient_id)
        return {"measured": latest} if latest is not None else {}

    def _refresh(self, pid: str, position: StreamPosition) -> bool:
        beat_log = self._logs.get(pid)
        if beat_log is None or beat_log.segment != position.segment:
            beat_log = None  # a new segment (device restart, new lead set): its clock and leads start afresh
        since = beat_log.committed_to if beat_log else position.start_index
        if position.end_index - since < (self.settings.interval_s + GUARD_S) * position.fs:
            return False
        seconds = (position.end_index - since) / position.fs + self.settings.context_s
        snap = self._ingest.snapshot(pid, seconds)
        if snap is None or snap.segment != position.segment:
            return False
        if beat_log is None:
            beat_log = self._logs[pid] = BeatLog(position, snap.leads, max(self.settings.windows_s))
        if not beat_log.absorb(snap.p_signal, snap.end_index):
            return False
        windows = beat_log.windows(self.settings.windows_s)
        measured = MeasuredRhythm(
            beat_log.lead, beat_log.quality, windows[0].t_end_s, self._wall_clock(), self.settings.interval_s, windows
        )
        with self._lock:
            self._latest[pid] = measured.as_status()
        self.refreshes += 1
        if self._sink is not None:
            self._sink.on_ectopy(pid, windows, beat_log.lead)
        return True

    def _forget(self, patient_ids: set[str]) -> None:
        with self._lock:
            for pid in patient_ids:
                self._logs.pop(pid, None)
                self._latest.pop(pid, None)
