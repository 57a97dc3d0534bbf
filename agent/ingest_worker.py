"""The ingest worker thread: queue → per-patient streams → acknowledgements, windows and status messages."""

from __future__ import annotations

import fnmatch
import json
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from agent.inbox import IngestInbox
from agent.ingest import RawWave, Rejection, decode_batch
from agent.mqtt_client import MqttConnection
from agent.patient import CompletedWindows, PatientStream, PatientUpdate
from agent.sequencer import Delivery
from agent.settings import Settings
from agent.worker_thread import WorkerThread
from core.protocol import PayloadLimits, Topics
from core.windows import WindowBatch

__all__ = [
    "NOT_PROVISIONED",
    "PATIENT_LIMIT",
    "IngestWorker",
    "SignalSnapshot",
    "StreamPosition",
    "WindowSink",
    "provisioned_matcher",
]

log = structlog.get_logger(__name__)

WindowSink = Callable[[CompletedWindows], None]
_HOUSEKEEPING_S = 0.2
_MAX_BATCH = 512  # queue items applied per lock hold: bounds how long a snapshot waits
_LINGER_S = 0.02
"""How long the worker waits for more chunks after the first of a batch. A lone chunk costs several times its
share of a batched filter call, so a worker that takes chunks one by one falls behind at high patient counts;
20 ms of added latency buys batches of ~20 chunks at 1,000 patients."""
PATIENT_LIMIT = "patient_limit"  # reject reason: a new patient while buffer.max_patients are held
NOT_PROVISIONED = "not_provisioned"  # reject reason: a patient id outside buffer.provisioned_patients
_REFUSAL_LOG_EVERY = 1000
"""A refused patient is logged on the first and every 1000th refusal of its reason: a flood of new ids is visible
without flooding the log (the reject counters count every one)."""
_WILDCARD = re.compile(r"[*?\[]")


def provisioned_matcher(patterns: list[str] | None) -> Callable[[str], bool]:
    """Whether a patient id is provisioned: exact ids by set lookup, shell-style patterns by one compiled regex
    (case-sensitive). ``None`` provisions every id."""
    if patterns is None:
        return lambda patient_id: True
    exact = frozenset(p for p in patterns if not _WILDCARD.search(p))
    wild = [p for p in patterns if p not in exact]
    regex = re.compile("|".join(fnmatch.translate(p) for p in wild)) if wild else None
    return lambda patient_id: patient_id in exact or (regex is not None and regex.match(patient_id) is not None)


@dataclass(frozen=True, eq=False)
class SignalSnapshot:
    """A copy of a patient's newest samples and signal-quality verdicts, for measurements off the ingest thread."""

    patient_id: str
    segment: int
    fs: float
    leads: tuple[str, ...]
    p_signal: npt.NDArray[np.float32]  # (sig_len, n_sig) mV, NaN where nothing valid was received
    quality: dict[str, str]  # lead -> verdict
    end_index: int  # absolute index (segment sample clock) one past the newest sample: where p_signal ends


@dataclass(frozen=True)
class StreamPosition:
    """Where a patient's current segment has got to: enough to decide whether a snapshot is worth taking."""

    segment: int
    fs: float
    start_index: int  # oldest sample still held
    end_index: int  # one past the newest


class IngestWorker(WorkerThread):
    """Owns every ``PatientStream``; the only thread that mutates ingest state.

    ``lock`` is held while a chunk is applied, so the model worker can take consistent snapshots.
    """

    def __init__(
        self,
        settings: Settings,
        connection: MqttConnection,
        inbox: IngestInbox,
        sink: WindowSink,
    ) -> None:
        self._settings = settings
        self._connection = connection
        self._inbox = inbox
        self._sink = sink
        self._topics = Topics(settings.protocol.topic_prefix)
        self._limits = PayloadLimits.from_settings(settings.protocol)
        self._provisioned = provisioned_matcher(settings.buffer.provisioned_patients)
        self.patients: dict[str, PatientStream] = {}
        self.rejected: Counter[str] = Counter()
        self.windows_emitted = 0
        self.accepted = 0  # valid wave messages handed to a patient stream
        self._status_due: dict[str, float] = {}
        self._next_housekeeping = 0.0
        self.lock = threading.Lock()
        self.evicted: list[str] = []  # patients dropped since the model worker last looked
        self.extra_status: Callable[[str], dict[str, Any]] | None = None  # fields other stages add to status
        self.on_evicted: Callable[[str], None] | None = None  # told of each idle eviction (not of a release)
        super().__init__("ingest-worker")

    def step(self) -> None:
        """Apply every queued item (up to a batch; waiting up to 200 ms for the first), then housekeeping, under the
        ingest lock. Draining in batches lets one filter and one quality call serve every patient in it."""
        items = self._inbox.take_batch(_MAX_BATCH, _HOUSEKEEPING_S, _LINGER_S)
        with self.lock:
            self.handle_batch(items)
            self.housekeeping(time.monotonic())

    def handle(self, item: RawWave | Delivery | Rejection) -> None:
        """Apply one queue item. Public so tests can drive the worker without a thread."""
        self.handle_batch([item])

    def handle_batch(self, items: list[RawWave | Delivery | Rejection]) -> None:
        """Decode the batch's raw waves, then sequence, store and window every chunk in one :class:`WindowBatch`."""
        batch = WindowBatch()
        updates: list[tuple[PatientStream, PatientUpdate]] = []
        now_mono, now_wall = time.monotonic(), time.time()
        for item in decode_batch(items, self._limits):
            if isinstance(item, Rejection):
                self.rejected[item.reason] += 1
                if item.patient_id in self.patients:
                    self.patients[item.patient_id].rejected[item.reason] += 1
                self._connection.ack(item.mid, item.qos)  # a no-op for rejections already acknowledged (qos 0)
                continue
            pid = item.chunk.patient_id
            patient = self.patients.get(pid)
            if patient is None:
                refusal = self._refusal(pid)
                if refusal is not None:
                    self._refuse(item, refusal)
                    continue
                patient = self.patients[pid] = PatientStream(pid, self._settings)
                log.info("patient_first_seen", patient_id=pid, stream_id=item.chunk.stream_id)
            self.accepted += 1
            segment_before = patient.segment.index if patient.segment else 0
            updates.append((patient, patient.accept(item, now_mono, now_wall, batch)))
            if patient.segment and patient.segment.index != segment_before:
                log.info(
                    "segment_started", patient_id=pid, segment=patient.segment.index, reason=patient.segment.reason
                )
                self._status_due[pid] = 0.0
        self._finish(batch, updates)

    def _refusal(self, patient_id: str) -> str | None:
        """Why a new patient may not be held (None: it may). A full agent refuses the newcomer rather than evict
        anyone: the patients it holds may be streaming, and their buffers and forecasts are what the ward relies on."""
        if not self._provisioned(patient_id):
            return NOT_PROVISIONED
        if len(self.patients) >= self._settings.buffer.max_patients:
            return PATIENT_LIMIT
        return None

    def _refuse(self, delivery: Delivery, reason: str) -> None:
        """Count, acknowledge (a redelivery would be refused again) and, rate-limited, log a refused message."""
        self.rejected[reason] += 1
        self._connection.ack(delivery.mid, delivery.qos)
        refused = self.rejected[reason]
        if refused == 1 or refused % _REFUSAL_LOG_EVERY == 0:
            log.warning(
                "patient_refused",
                reason=reason,
                patient_id=delivery.chunk.patient_id,
                refused=refused,
                held=len(self.patients),
                max_patients=self._settings.buffer.max_patients,
                note="logged on the first and every 1000th refusal; ecgcast_wave_rejects counts every one",
            )

    def _finish(self, batch: WindowBatch, updates: list[tuple[PatientStream, PatientUpdate]]) -> None:
        """Run the batch, then acknowledge (the samples are in the ring buffers) and forward the windows."""
        results = batch.run()
        ready_wall = time.time()
        for patient, update in updates:
            patient.complete(update, results, ready_wall)
            for delivery in update.handled:
                self._connection.ack(delivery.mid, delivery.qos)
            for completed in update.completed:
                self._sink(completed)
                self.windows_emitted += len(completed.windows)

    def housekeeping(self, now_mono: float) -> None:
        """Reorder timeouts, retained status messages and idle eviction, at most every 200 ms."""
        if now_mono < self._next_housekeeping:
            return
        self._next_housekeeping = now_mono + _HOUSEKEEPING_S
        batch = WindowBatch()
        waiting = [patient for patient in self.patients.values() if patient.pending_reorder]
        self._finish(batch, [(patient, patient.tick(now_mono, batch)) for patient in waiting])
        now_wall = time.time()
        # Spread status messages over the interval: a burst for every patient at once would stall ingest.
        budget = math.ceil(2 * len(self.patients) * _HOUSEKEEPING_S / self._settings.status.interval_s)
        for pid, patient in list(self.patients.items()):
            if now_mono - patient.last_seen_mono > self._settings.buffer.idle_evict_s:
                self._evict(pid, now_wall)
            elif now_mono >= self._status_due.get(pid, 0.0) and budget > 0:
                budget -= 1
                self.publish_status(patient, now_wall)
                self._status_due[pid] = now_mono + self._settings.status.interval_s

    def _evict(self, pid: str, now_wall: float) -> None:
        status = self.patients.pop(pid).status(now_wall)
        self._status_due.pop(pid, None)
        self.evicted.append(pid)
        status["state"] = "evicted"
        self._connection.publish(self._topics.status(pid), json.dumps(status).encode(), qos=1, retain=True)
        log.info("patient_evicted", patient_id=pid)
        if self.on_evicted is not None:
            self.on_evicted(pid)

    def release(self, patient_ids: list[str]) -> None:
        """Drop patients this agent no longer owns (another replica took them over): their state is freed and the
        model worker frees theirs, but no status is published, since the new owner speaks for them now."""
        with self.lock:
            for pid in patient_ids:
                if self.patients.pop(pid, None) is not None:
                    self._status_due.pop(pid, None)
                    self.evicted.append(pid)
                    log.info("patient_released", patient_id=pid)

    def publish_status(self, patient: PatientStream, now_wall: float) -> None:
        status = patient.status(now_wall)
        if self.extra_status is not None:
            status.update(self.extra_status(patient.patient_id))
        body = json.dumps(status).encode()
        self._connection.publish(self._topics.status(patient.patient_id), body, qos=1, retain=True)

    def summary(self) -> dict[str, Any]:
        return {
            "patients": len(self.patients),
            "rejected": dict(self.rejected),
            "windows_emitted": self.windows_emitted,
            "queue_depth": self._inbox.qsize(),
        }

    def snapshot(self, patient_id: str, seconds: float) -> SignalSnapshot | None:
        """Copy the newest ``seconds`` of a patient's current segment (None for an unknown patient)."""
        with self.lock:
            patient = self.patients.get(patient_id)
            if patient is None or patient.segment is None:
                return None
            seg = patient.segment
            block = seg.buffer.latest(round(seconds * seg.fs))  # (n_sig, n) copy
            quality = {lead: patient.lead_verdict(lead) for lead in seg.leads}
            return SignalSnapshot(patient_id, seg.index, seg.fs, seg.leads, block.T.copy(), quality, seg.buffer.end)

    def stream_position(self, patient_id: str) -> StreamPosition | None:
        """The patient's current segment and its held sample range, without copying samples (None if unknown)."""
        with self.lock:
            patient = self.patients.get(patient_id)
            if patient is None or patient.segment is None:
                return None
            seg = patient.segment
            return StreamPosition(seg.index, seg.fs, seg.buffer.start, seg.buffer.end)

    def take_evicted(self) -> list[str]:
        with self.lock:
            evicted, self.evicted = self.evicted, []
        return evicted
