"""The one loop every agent worker runs: call ``step()`` until stopped, and survive a failed step."""

from __future__ import annotations

import threading
import time

import structlog

__all__ = ["WorkerThread"]

log = structlog.get_logger(__name__)


class WorkerThread:
    """A named daemon thread around ``step()``. A step that raises is logged with its traceback and the loop goes
    on after ``error_pause_s``: one bad message or forecast must not stop the agent."""

    error_pause_s = 0.0

    def __init__(self, name: str) -> None:
        self.name = name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def step(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to end after the step in flight and wait at most ``timeout`` seconds."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """The loop's thread is running (false before start and after stop)."""
        return self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("worker_step_failed", worker=self.name)
                time.sleep(self.error_pause_s)
