"""Health, readiness and Prometheus metrics over HTTP (stdlib server, prometheus-client exposition).

``/healthz``: the process is alive. ``/readyz``: broker connected, model loaded, ingest and forecast lags within
bounds, the alert store taking writes; 503 with the failing checks otherwise. ``/metrics``: Prometheus text format
from a registry owned by this agent (not the process-global default one, so tests can run several agents).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from agent.http_listen import listen

__all__ = ["AgentMetrics", "HealthServer", "MetricsSnapshot", "Readiness"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class MetricsSnapshot:
    """Counts read from the workers at scrape time (the workers own them; nothing is double-counted here)."""

    messages: int
    rejects: dict[str, int]
    patients: int
    ingest_queue: int
    windows_queue: int
    windows_encoded: int = 0
    forecasts: int = 0
    cannot_assess: int = 0
    forecast_errors: int = 0
    last_batch_ms: float = 0.0
    cadence_stretch: float = 1.0
    alerts_by_state: dict[str, int] = field(default_factory=dict)


class AgentMetrics:
    """A registry whose one collector turns a fresh ``MetricsSnapshot`` into Prometheus families per scrape."""

    def __init__(self, snapshot: Callable[[], MetricsSnapshot]) -> None:
        self.registry = CollectorRegistry()
        self._snapshot = snapshot
        self.registry.register(self)

    def describe(self) -> list[Metric]:
        return []  # families are built at scrape time; declaring none keeps registration cheap

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        for name, doc, value in (
            ("ecgcast_wave_messages", "Wave messages accepted", snap.messages),
            ("ecgcast_windows_encoded", "Lead-second windows encoded", snap.windows_encoded),
            ("ecgcast_forecasts", "Forecasts published", snap.forecasts),
            ("ecgcast_cannot_assess", "Due forecasts refused for signal quality", snap.cannot_assess),
            ("ecgcast_forecast_errors", "Forecast batches that failed", snap.forecast_errors),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        rejects = CounterMetricFamily("ecgcast_wave_rejects", "Wave messages rejected", labels=["reason"])
        for reason, count in sorted(snap.rejects.items()):
            rejects.add_metric([reason], count)
        yield rejects
        for name, doc, gauge in (
            ("ecgcast_patients", "Patients with ingest state", snap.patients),
            ("ecgcast_ingest_queue_depth", "Chunks waiting for the ingest worker", snap.ingest_queue),
            ("ecgcast_windows_queue_depth", "Window batches waiting for the encoder", snap.windows_queue),
            ("ecgcast_forecast_batch_ms", "Wall time of the last forecast batch", snap.last_batch_ms),
            ("ecgcast_cadence_stretch", "Forecast cadence stretch (1 = on time)", snap.cadence_stretch),
        ):
            yield GaugeMetricFamily(name, doc, value=gauge)
        alerts = GaugeMetricFamily("ecgcast_alerts", "Alerts by state", labels=["state"])
        for state, count in sorted(snap.alerts_by_state.items()):
            alerts.add_metric([state], count)
        yield alerts


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, Any]


class HealthServer:
    """Serves /healthz, /readyz and /metrics on a background thread; ``close()`` is idempotent."""

    def __init__(self, host: str, port: int, metrics: AgentMetrics, readiness: Callable[[], Readiness]) -> None:
        self._metrics = metrics
        self._readiness = readiness
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return  # access logs would drown the structured log; Prometheus scrapes every few seconds

        self._httpd = listen(host, port, Handler, "http")
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="health-http", daemon=True)
        self._closed = False

    def start(self) -> None:
        self._thread.start()
        log.info("http_listening", port=self.port)

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        if request.path == "/metrics":
            self._send(request, 200, generate_latest(self._metrics.registry), CONTENT_TYPE_LATEST)
        elif request.path == "/healthz":
            self._send(request, 200, b'{"alive": true}', "application/json")
        elif request.path == "/readyz":
            state = self._readiness()
            body = json.dumps({"ready": state.ready, "checks": state.checks}).encode()
            self._send(request, 200 if state.ready else 503, body, "application/json")
        else:
            self._send(request, 404, b'{"error": "not found"}', "application/json")

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, code: int, body: bytes, content_type: str) -> None:
        request.send_response(code)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which never ran if we never started
            self._httpd.shutdown()
        self._httpd.server_close()
