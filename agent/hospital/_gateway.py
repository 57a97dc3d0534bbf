"""The HL7 Alert Reporter: every alert lifecycle event out as a PCD-04 over MLLP, PCD-05 acceptances back in as
acknowledgements.

Why it can never hold the alert path up: :meth:`Hl7AlertGateway.offer` (the alert service's listener) only appends
to a bounded queue, and everything slow (building the message, the network, an absent receiver) happens on this
gateway's own thread. While the receiver is away the queue keeps the newest ``hl7.queue_size`` events and drops the
oldest, counted and logged; MQTT alerts, the store and re-notification are untouched.

Messages go one at a time: the next is sent only once the receiver's accept ACK for the previous has arrived (an
Alert Manager then sees each alert's steps in order). No ACK within ``hl7.ack_timeout_s`` closes the connection and
the same message is sent again on the next one, after a back-off. A PCD-05 ``accepted`` status becomes an
:class:`Ack` handed to ``acknowledge``: the daemon passes the same request queue the MQTT ack topic fills, so the
alert worker applies both through :meth:`AlertService.acknowledge` with the same checks.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog
from hl7apy.exceptions import HL7apyException

from agent.alerts import Ack, AlertEvent
from agent.worker_thread import WorkerThread
from core.errors import ProtocolError
from core.protocol import PATIENT_ID_PATTERN

from ._mllp import MllpConnection
from ._pcd04 import build_report_alert
from ._pcd05 import AcceptAck, AlertStatus, decode_reply
from .settings import HospitalSettings

__all__ = ["Connect", "GatewayStats", "Hl7AlertGateway"]

log = structlog.get_logger(__name__)

Connect = Callable[[str, int, float, int], MllpConnection]  # (host, port, timeout_s, max_bytes)
POLL_S: Final = 0.2  # longest a new event waits for the gateway thread while connected and idle
REMEMBERED: Final = 10_000  # alert ids and control ids kept for naming PCD-05 statuses back (oldest forgotten)


@dataclass
class _Outbound:
    """The message in flight: built once, sent on each connection until its ACK arrives."""

    event: AlertEvent
    control_id: str
    message: str
    sent_at: float | None = None  # monotonic time it went out on the current connection


@dataclass(frozen=True)
class GatewayStats:
    queued: int  # waiting, the one in flight included
    delivered: int  # accepted by the receiver (AA/CA)
    refused: int  # answered with an error or reject (AE/AR/CE/CR): dropped, never retried
    dropped: int  # pushed out of a full queue while the receiver was away
    connected: bool


class Hl7AlertGateway(WorkerThread):
    """Owns the MLLP connection to the Alert Manager. Start it, hand :meth:`offer` to the alert service as a
    listener, and :meth:`stop` it after the service."""

    error_pause_s = 1.0

    def __init__(
        self,
        hospital: HospitalSettings,
        acknowledge: Callable[[Ack], None],
        *,
        clock: Callable[[], float] = time.time,
        connect: Connect = MllpConnection.open,
    ) -> None:
        self._hospital = hospital
        self._hl7 = hospital.hl7
        self._acknowledge = acknowledge
        self._clock = clock
        self._connect = connect
        self._lock = threading.Lock()  # guards the queue, the counters and the remembered ids
        self._pending: deque[AlertEvent] = deque()
        self._patients: OrderedDict[str, str] = OrderedDict()  # alert id -> patient id
        self._alerts_by_control: OrderedDict[str, str] = OrderedDict()  # our MSH-10 -> alert id
        self._delivered = self._refused = self._dropped = 0
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._inflight: _Outbound | None = None  # gateway thread only, like everything below
        self._link: MllpConnection | None = None
        self._retry_at = 0.0
        self._backoff_s = self._hl7.reconnect_min_s
        super().__init__("hl7-gateway")

    # --- any thread ---------------------------------------------------------------------------------------------

    def offer(self, event: AlertEvent) -> None:
        """Queue one lifecycle event for the Alert Manager; never blocks. A full queue drops its oldest event."""
        with self._lock:
            _remember(self._patients, event.after.alert_id, event.after.patient_id)
            if len(self._pending) >= self._hl7.queue_size:
                lost = self._pending.popleft()
                self._dropped += 1
                log.warning(
                    "hl7_alert_dropped",
                    alert_id=lost.after.alert_id,
                    patient_id=lost.after.patient_id,
                    type=lost.type,
                    dropped=self._dropped,
                    queue_size=self._hl7.queue_size,
                )
            self._pending.append(event)
        self._wake.set()

    def stats(self) -> GatewayStats:
        with self._lock:
            queued = len(self._pending) + (self._inflight is not None)
            return GatewayStats(queued, self._delivered, self._refused, self._dropped, self._link is not None)

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (what is still queued is not sent) and close the connection."""
        self._closing.set()
        self._wake.set()
        super().stop(timeout)
        self._disconnect()

    # --- the gateway thread -------------------------------------------------------------------------------------

    def step(self) -> None:
        link = self._link or self._open()
        if link is None:
            return
        try:
            self._send_next(link)
            for text in link.receive(POLL_S):
                self._on_message(text)
            self._check_ack_deadline()
        except (OSError, ProtocolError) as exc:  # TimeoutError and ConnectionError are OSErrors
            self._fail(exc)

    def _open(self) -> MllpConnection | None:
        """A new connection once the back-off has passed; None while waiting or after a failed attempt."""
        wait_s = self._retry_at - time.monotonic()
        if wait_s > 0:
            self._pause(wait_s)
            return None
        hl7 = self._hl7
        try:
            link = self._connect(hl7.host, hl7.port, hl7.connect_timeout_s, hl7.max_message_bytes)
        except OSError as exc:
            self._fail(exc)
            return None
        with self._lock:
            self._link = link
        self._backoff_s = hl7.reconnect_min_s
        if self._inflight is not None:
            self._inflight.sent_at = None  # unacknowledged on the old connection: send it again
        log.info("hl7_connected", host=hl7.host, port=hl7.port, queued=self.stats().queued)
        return link

    def _send_next(self, link: MllpConnection) -> None:
        if self._inflight is None:
            self._inflight = self._next_outbound()
        if self._inflight is not None and self._inflight.sent_at is None:
            link.send(self._inflight.message)
            self._inflight.sent_at = time.monotonic()

    def _next_outbound(self) -> _Outbound | None:
        """The oldest queued event as a built PCD-04; one that cannot be built is logged and skipped."""
        while True:
            with self._lock:
                if not self._pending:
                    return None
                event = self._pending.popleft()
                control_id = uuid.uuid4().hex
                _remember(self._alerts_by_control, control_id, event.after.alert_id)
            try:
                return _Outbound(
                    event, control_id, build_report_alert(event, self._hospital, control_id, self._clock())
                )
            except (HL7apyException, ValueError) as exc:
                log.error("hl7_build_failed", alert_id=event.after.alert_id, error=str(exc)[:200])

    def _check_ack_deadline(self) -> None:
        sent_at = self._inflight.sent_at if self._inflight is not None else None
        if sent_at is not None and time.monotonic() - sent_at > self._hl7.ack_timeout_s:
            raise TimeoutError(f"no accept ACK within {self._hl7.ack_timeout_s} s")

    def _on_message(self, text: str) -> None:
        try:
            reply = decode_reply(text)
        except ProtocolError as exc:
            log.warning("hl7_message_rejected", reason=exc.reason, field=exc.field, detail=exc.detail[:200])
            return
        if isinstance(reply, AcceptAck):
            self._on_accept_ack(reply)
        else:
            self._on_status(reply)

    def _on_accept_ack(self, ack: AcceptAck) -> None:
        outbound = self._inflight
        if outbound is None or ack.control_id != outbound.control_id:
            log.warning("hl7_ack_unexpected", control_id=ack.control_id, code=ack.code)
            return
        self._inflight = None
        alert = outbound.event.after
        with self._lock:
            if ack.accepted:
                self._delivered += 1
            else:
                self._refused += 1
        if ack.accepted:
            log.info(
                "hl7_alert_delivered", alert_id=alert.alert_id, patient_id=alert.patient_id, type=outbound.event.type
            )
        else:  # the receiver will not take this message: sending it again would be refused again
            log.error("hl7_alert_refused", alert_id=alert.alert_id, code=ack.code, text=ack.text)

    def _on_status(self, status: AlertStatus) -> None:
        """A PCD-05: ``accepted`` acknowledges the alert through the agent's one ack path; the rest are logged."""
        alert_id = status.alert_id or self._alert_of_control(status.control_id)
        log.info("hl7_alert_status", alert_id=alert_id, status=status.status, by=status.by)
        if not status.accepted:
            return
        patient_id = self._patient_of(status, alert_id)
        if alert_id is None or patient_id is None or status.by is None:
            reason = "unknown_alert" if alert_id is None else "unknown_patient" if patient_id is None else "no_user"
            log.warning("hl7_ack_rejected", reason=reason, alert_id=alert_id, control_id=status.control_id)
            return
        try:
            self._acknowledge(Ack(patient_id=patient_id, alert_id=alert_id, by=status.by, at=None))
        except queue.Full:
            log.error("hl7_ack_queue_full", alert_id=alert_id)

    def _alert_of_control(self, control_id: str | None) -> str | None:
        with self._lock:
            return self._alerts_by_control.get(control_id) if control_id is not None else None

    def _patient_of(self, status: AlertStatus, alert_id: str | None) -> str | None:
        """The stream's patient: from PID-3 when the PCD-05 names one we can map, else from the alerts reported."""
        if status.patient is not None:
            identifier, kind = status.patient
            if kind == "MR" and (patient_id := self._hospital.patient_of_mrn(identifier)) is not None:
                return patient_id
            if kind == "PI" and PATIENT_ID_PATTERN.fullmatch(identifier):
                return identifier
        with self._lock:
            return self._patients.get(alert_id) if alert_id is not None else None

    def _fail(self, exc: Exception) -> None:
        """Close the connection and try again after the back-off (doubling up to ``reconnect_max_s``)."""
        self._disconnect()
        self._retry_at = time.monotonic() + self._backoff_s
        log.warning(
            "hl7_link_down",
            host=self._hl7.host,
            port=self._hl7.port,
            error=str(exc)[:200] or type(exc).__name__,
            retry_in_s=round(self._backoff_s, 1),
            queued=self.stats().queued,
        )
        self._backoff_s = min(self._backoff_s * 2, self._hl7.reconnect_max_s)

    def _disconnect(self) -> None:
        with self._lock:
            link, self._link = self._link, None
        if link is not None:
            link.close()

    def _pause(self, seconds: float) -> None:
        """Sleep until the back-off ends, a new event arrives or the gateway stops."""
        self._wake.wait(seconds)
        if not self._closing.is_set():
            self._wake.clear()


def _remember(table: OrderedDict[str, str], key: str, value: str) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > REMEMBERED:
        table.popitem(last=False)
