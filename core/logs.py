"""structlog set-up: JSON lines in production (not a TTY, or asked), a readable console in development, and
repeated warnings rate-limited so that a flood of bad input cannot flood the log."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any, Literal

import structlog

__all__ = ["RepeatLimiter", "configure_logging"]


class RepeatLimiter:
    """structlog processor: at most ``burst`` warnings of one event name per ``window_s``; the first one after a
    window in which some were dropped carries ``suppressed`` (how many). Errors and lower levels pass untouched:
    10,000 malformed messages write tens of lines, each still naming what was wrong, and no error is lost."""

    def __init__(self, burst: int = 20, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.window_s, self._clock = burst, window_s, clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int, int]] = {}  # event -> (window start, seen, suppressed)

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if method_name != "warning":
            return event_dict
        now, key = self._clock(), str(event_dict.get("event"))
        with self._lock:
            start, seen, suppressed = self._windows.get(key, (now, 0, 0))
            if now - start >= self.window_s:
                start, seen = now, 0
            seen += 1
            if seen > self.burst:
                self._windows[key] = (start, seen, suppressed + 1)
                raise structlog.DropEvent
            self._windows[key] = (start, seen, 0)
        if suppressed:
            event_dict["suppressed"] = suppressed
        return event_dict


def configure_logging(
    level: Literal["debug", "info", "warning", "error"] = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    limiter: RepeatLimiter | None = None,
) -> None:
    """Configure structlog and route stdlib logging (paho, onnxruntime, transformers) through it; warnings of
    structlog loggers go through ``limiter`` (default: 20 per event name per minute)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    numeric = getattr(logging, level.upper())
    structlog.configure(
        processors=[*shared, limiter or RepeatLimiter(), structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(processors=[*shared, renderer], foreign_pre_chain=shared))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.INFO))
