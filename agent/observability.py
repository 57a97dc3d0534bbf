"""Health, readiness and Prometheus metrics over HTTP (stdlib server, prometheus-client exposition).

``/healthz``: the process is alive. ``/readyz``: broker connected, model loaded, ingest and forecast lags within
bounds; 503 with the failing checks otherwise. ``/metrics``: Prometheus text format from a registry owned by this
agent (not the process-global default one, so tests can run several agents).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["AgentMetrics", "HealthServer", "Readiness"]

log = structlog.get_logger(__name__)


class AgentMetrics:
    """Every metric the agent exports, in one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("ecgcast_wave_messages", "Wave messages accepted", registry=r)
        self.rejects = Counter("ecgcast_wave_rejects", "Wave messages rejected", ["reason"], registry=r)
        self.patients = Gauge("ecgcast_patients", "Patients with ingest state", registry=r)
        self.windows_encoded = Counter("ecgcast_windows_encoded", "Lead-second windows encoded", registry=r)
        self.forecasts = Counter("ecgcast_forecasts", "Forecasts published", registry=r)
        self.cannot_assess = Counter("ecgcast_cannot_assess", "Due forecasts refused for signal quality", registry=r)
        self.model_latency = Histogram(
            "ecgcast_forecast_batch_seconds",
            "Wall time of one forecast batch",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.alerts = Gauge("ecgcast_alerts", "Alerts by state", ["state"], registry=r)
        self.ingest_queue = Gauge("ecgcast_ingest_queue_depth", "Chunks waiting for the ingest worker", registry=r)
        self.windows_queue = Gauge("ecgcast_windows_queue_depth", "Window batches waiting for the encoder", registry=r)
        self.cadence_stretch = Gauge("ecgcast_cadence_stretch", "Forecast cadence stretch (1 = on time)", registry=r)


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

        self._httpd = ThreadingHTTPServer((host, port), Handler)
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
        self._httpd.shutdown()
        self._httpd.server_close()
