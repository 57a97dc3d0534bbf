"""The bounded hand-off from the network thread(s) to the ingest worker, emptied a batch at a time."""

from __future__ import annotations

import queue
import time

from agent.ingest import RawWave, Rejection
from agent.sequencer import Delivery

__all__ = ["IngestInbox"]


class IngestInbox(queue.Queue[RawWave | Delivery | Rejection]):
    """A ``queue.Queue`` (producers keep ``put``/``put_nowait`` and its blocking backpressure) whose consumer takes
    everything queued under one lock acquisition.

    Why: the worker applies chunks in batches of hundreds; taking them one ``get`` at a time cost a lock round
    trip and a condition notify per chunk on the GIL the network thread needs too. Built on the hooks
    ``queue.Queue`` documents for subclasses (``_qsize``, ``_get``, and its ``not_empty``/``not_full`` conditions).
    """

    def oldest_received_mono(self) -> float | None:
        """When the oldest waiting message arrived (``time.monotonic()``); None when the inbox is empty or its head
        is a rejection (which carries no arrival time and costs no work). What ``/readyz`` measures lag from."""
        with self.mutex:
            head = self.queue[0] if self._qsize() else None
        return head.received_mono if isinstance(head, RawWave | Delivery) else None

    def take_batch(self, max_items: int, timeout: float, linger: float) -> list[RawWave | Delivery | Rejection]:
        """Wait up to ``timeout`` s for a first item, then up to ``linger`` s for more; return at most
        ``max_items`` (an empty list when nothing came)."""
        items: list[RawWave | Delivery | Rejection] = []
        with self.not_empty:
            deadline = time.monotonic() + timeout
            while not self._qsize():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return items
                self.not_empty.wait(remaining)
            linger_until = time.monotonic() + linger
            while True:
                while self._qsize() and len(items) < max_items:
                    items.append(self._get())
                self.not_full.notify_all()  # producers blocked on a full inbox may go on
                remaining = linger_until - time.monotonic()
                if len(items) >= max_items or remaining <= 0:
                    return items
                self.not_empty.wait(remaining)
