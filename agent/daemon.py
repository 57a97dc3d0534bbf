"""The agent daemon: the composition root. It wires the stages in data-path order and runs until SIGINT/SIGTERM.

ingest (MQTT callback) → ingest worker (sequencer, ring buffer, windows) → model worker (encoder, LM caches,
scheduler, forecasts) → alert service (policy, store, MQTT alerts); acknowledgements and forecast mute requests
come back through the alert worker. Every stage is built and typed here; none creates another.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
import structlog

from agent.alerts import Ack, AlertService, MuteRequest, StoreHealth, build_evidence, decode_ack, decode_mute
from agent.hospital import Hl7AlertGateway
from agent.inbox import IngestInbox
from agent.ingest import WaveIngest
from agent.ingest_worker import IngestWorker, WindowSink
from agent.mqtt_client import MqttConnection
from agent.observability import AgentMetrics, HealthServer, MetricsSnapshot, Readiness
from agent.patient import CompletedWindows
from agent.rhythm_monitor import RhythmMonitor
from agent.settings import Settings
from agent.station import StationServer
from agent.worker_thread import WorkerThread
from core.errors import ConfigError, ProtocolError
from core.logs import configure_logging
from core.protocol import PayloadLimits, Topics

if TYPE_CHECKING:
    from agent.cluster import ClusterReplica
    from agent.forecasting import ModelWorker

__all__ = ["Agent", "AlertWorker", "check_encoder_pairing", "run_daemon", "tune_process_for_streaming"]

log = structlog.get_logger(__name__)


def check_encoder_pairing(settings: Settings) -> None:
    """Refuse an encoder other than the one the LM adapter was trained on: its projector would read embeddings
    from a different distribution and forecast nonsense without any error. (Adapters for another backbone are
    skipped by the engine, so they are not checked.)"""
    from encoder_onnx.weights import file_sha256

    adapter = settings.llm.adapter_dir
    meta_path = adapter / "adapter.json" if adapter is not None else None
    if meta_path is None or not meta_path.exists():
        return
    meta = json.loads(meta_path.read_text())
    expected = meta.get("encoder_sha256")
    if meta.get("backbone") != settings.llm.backbone or not expected:
        return
    actual = file_sha256(settings.encoder.weights_path)
    if actual != expected:
        raise ConfigError(
            f"encoder.weights_path {settings.encoder.weights_path} (sha256 {actual[:12]}…) is not the encoder the "
            f"adapter {adapter} was trained with (sha256 {expected[:12]}…): point encoder.weights_path at that "
            "encoder (the adapter folder ships it as encoder.pt)"
        )


EVICTED_REASON = "stream evicted: no samples for buffer.idle_evict_s"
STORE_ALARM = "alert_store"  # the station's technical alarm while the alert store fails


NurseRequest = Ack | MuteRequest


class AlertWorker(WorkerThread):
    """Applies acknowledgements and mute requests, resolves the alerts of evicted patients and runs re-notification
    and mute-expiry timers, off the MQTT and ingest threads, about once a second."""

    def __init__(
        self, service: AlertService, requests: queue.Queue[NurseRequest], departures: queue.SimpleQueue[str]
    ) -> None:
        self.service = service
        self._requests = requests
        self._departures = departures
        super().__init__("alert-worker")

    def step(self) -> None:
        with contextlib.suppress(queue.Empty):
            self._apply(self._requests.get(timeout=1.0))
        while not self._departures.empty():
            patient_id = self._departures.get_nowait()
            ended = self.service.resolve_patient(patient_id, EVICTED_REASON)
            log.info("patient_alerts_resolved", patient_id=patient_id, alerts=len(ended), reason=EVICTED_REASON)
        self.service.tick()

    def _apply(self, request: NurseRequest) -> None:
        if isinstance(request, MuteRequest):
            mute = self.service.mute(request)
            state = mute.action if mute is not None else None
            log.info("alert_mute_request", patient_id=request.patient_id, action=request.action, state=state)
            return
        try:
            alert = self.service.acknowledge(request)
            # The recorded acknowledger: a second ack of an acknowledged alert changes nothing, and the log says so.
            log.info(
                "alert_acknowledged",
                patient_id=alert.patient_id,
                alert_id=alert.alert_id,
                by=alert.acknowledged_by,
                requested_by=request.by,
            )
        except ProtocolError as exc:
            log.warning("ack_rejected", reason=exc.reason, detail=exc.detail, alert_id=request.alert_id)


class Agent:
    """All running stages of one agent process."""

    def __init__(
        self,
        settings: Settings,
        sink: WindowSink | None = None,
        *,
        with_model: bool = True,
        clock: Callable[[], float] = time.monotonic,
        alert_store: Path | None = None,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.protocol.topic_prefix)
        limits = PayloadLimits.from_settings(settings.protocol)
        self.metrics = AgentMetrics(self.metrics_snapshot)
        self.inbox = IngestInbox(maxsize=settings.mqtt.receive_maximum)
        self.connection = MqttConnection(settings.mqtt, self.topics.presence(settings.agent_id), settings.agent_id)
        self.ingest: WaveIngest | None = None
        self.cluster: ClusterReplica | None = None
        if settings.ingest.source == "mqtt":
            self.ingest = WaveIngest(self.connection, self.topics, self.inbox, settings.mqtt.qos)
        else:
            from agent.cluster import ClusterReplica

            self.cluster = ClusterReplica(settings, limits, self.inbox, self.connection, self.release)
        self.windows_ready: queue.Queue[CompletedWindows] = queue.Queue(maxsize=100_000)
        self.worker = IngestWorker(settings, self.connection, self.inbox, sink or self._enqueue_windows)
        self.acks: queue.Queue[NurseRequest] = queue.Queue(maxsize=1000)  # acknowledgements and mute requests
        self.departures: queue.SimpleQueue[str] = queue.SimpleQueue()  # evicted patients whose alerts must end
        self.alerts: AlertService | None = None
        self.hl7: Hl7AlertGateway | None = None  # HL7 PCD-04/05 to the Alert Manager, when hospital.hl7.enabled
        self.alert_worker: AlertWorker | None = None
        self.model: ModelWorker | None = None
        self.model_error: BaseException | None = None  # the background load failed: run_daemon exits non-zero
        self._with_model = with_model
        self._clock = clock
        self._model_done = threading.Event()
        self._stopping = threading.Event()
        self._loader: threading.Thread | None = None
        self.health: HealthServer | None = None
        if settings.http.port:  # bound before the model loads: a busy port fails in a second, not after the load
            self.health = HealthServer(settings.http.host, settings.http.port, self.metrics, self.readiness)
        if with_model:
            try:
                check_encoder_pairing(settings)  # a config mismatch fails at once; the load itself runs in start()
                self._build_alert_stages(alert_store)
            except BaseException:
                if self.health is not None:
                    self.health.close()
                raise
        self.monitor: RhythmMonitor | None = None  # HR, ectopy burden and measured quality in every status
        if settings.monitor.enabled:
            hold = self.cluster.replaying if self.cluster is not None else None
            self.monitor = RhythmMonitor(settings.monitor, self.worker, self.alerts, hold=hold)
        self.worker.extra_status = self._extra_status
        self.station: StationServer | None = None
        if settings.station.enabled:
            self.station = StationServer(
                settings.station, settings.mqtt, self.topics, limits, self.alerts, hospital=settings.hospital
            )
            if self.alerts is not None:
                self.alerts.watch_store(self._store_alarm)

    def _build_alert_stages(self, alert_store: Path | None) -> None:
        """Alerts, their worker and the nurses' request topics: cheap, and needed before the model is."""
        s = self.settings
        fence = self.cluster.fence if self.cluster is not None else None
        self.hl7 = self._build_hl7_gateway()
        listeners = [self.hl7.offer] if self.hl7 is not None else []
        self.alerts = AlertService(s.alerts, alert_store, self._publish, self.topics, fence=fence, listeners=listeners)
        self.alert_worker = AlertWorker(self.alerts, self.acks, self.departures)
        self.worker.on_evicted = self.departures.put  # an evicted patient's alerts end (a released one's do not)
        self.connection.subscribe(self.topics.ack_subscription, self.on_ack)
        self.connection.subscribe(self.topics.mute_subscription, self.on_mute)

    def _build_hl7_gateway(self) -> Hl7AlertGateway | None:
        """The HL7 Alert Reporter (docs/INTEGRATION.md) when configured. Its PCD-05 acceptances join the MQTT acks'
        queue, so the alert worker applies both the same way."""
        if not self.settings.hospital.hl7.enabled:
            return None
        return Hl7AlertGateway(self.settings.hospital, self.acks.put_nowait)

    def _store_alarm(self, health: StoreHealth) -> None:
        """The embedded station's technical alarm while the alert store fails: alerts still reach the screen, but
        a restart now would lose what is not yet stored."""
        if self.station is None:
            return
        if health.ok:
            self.station.state.clear_technical(STORE_ALARM)
        else:
            detail = f"alert store failing ({health.reason}); alerts are shown but not yet stored"
            self.station.state.raise_technical(STORE_ALARM, detail)

    def _load_model(self) -> None:
        """Encoder → LM → scheduler, in the background after ingest has started: loading takes 15-20 s (minutes on
        a first run), and the windows completed meanwhile wait in ``windows_ready`` instead of being lost."""
        from agent.encoder_stage import EncoderStage
        from agent.forecasting import ModelWorker
        from encoder_onnx.export import ensure_onnx
        from encoder_onnx.runtime import EncoderRuntime
        from llm_runtime.engine import ForecastEngine
        from llm_runtime.scheduler import ForecastScheduler

        s = self.settings
        try:
            runtime = EncoderRuntime(ensure_onnx(s.encoder), s.encoder)
            engine = ForecastEngine.load(s.llm)
            model = ModelWorker(
                self.windows_ready,
                EncoderStage(runtime, capacity_s=round(s.buffer.minutes * 60)),
                engine,
                ForecastScheduler(s.forecast),
                self.worker,
                self._publish,
                self.topics,
                alerts=self.alerts,
                evidence=lambda recent, earlier, quality, window_s, t_end, spans: build_evidence(
                    recent, earlier, quality, window_s, t_end_s=t_end, rhythm=spans
                ),
                clock=self._clock,
                hold=self.cluster.replaying if self.cluster is not None else None,
            )
            if not self._stopping.is_set():
                self.model = model
                model.start()
                log.info("model_loaded", model_id=engine.model_id, backlog=self.windows_ready.qsize())
        except Exception as exc:  # any load failure ends the daemon, with its reason, through run_daemon
            self.model_error = exc
            log.exception("model_load_failed", error=str(exc)[:500])
        finally:
            self._model_done.set()

    def wait_for_model(self, timeout: float | None = None) -> ModelWorker:
        """Block until the background load ends; the running model worker, or the load's error raised here."""
        if not self._with_model:
            raise ConfigError("this agent was built without a model")
        if not self._model_done.wait(timeout):
            raise TimeoutError(f"the model did not finish loading in {timeout} s")
        if self.model_error is not None:
            raise self.model_error
        assert self.model is not None
        return self.model

    def _extra_status(self, patient_id: str) -> dict[str, object]:
        """What the later stages add to a patient's status: the rhythm monitor's measurements, the model's phase."""
        fields: dict[str, object] = self.monitor.status_fields(patient_id) if self.monitor is not None else {}
        if self._with_model:
            fields.update(self._model_status(patient_id))
        return fields

    def _model_status(self, patient_id: str) -> dict[str, object]:
        if self.model is None:
            return {"forecast_phase": "model_failed" if self.model_error is not None else "model_loading"}
        return {
            **self.model.stage.status_fields(patient_id),
            "forecast_phase": self.model.scheduler.phase(patient_id).value,
        }

    def release(self, patient_ids: list[str]) -> None:
        """Another replica owns these patients now: drop their ingest, model and alert state, publish nothing."""
        self.worker.release(patient_ids)
        if self.alerts is not None:
            self.alerts.release(patient_ids)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.connection.publish(topic, payload, qos=qos, retain=retain)

    def _enqueue_windows(self, completed: CompletedWindows) -> None:
        try:
            self.windows_ready.put_nowait(completed)
        except queue.Full:
            log.error("windows_queue_full", patient_id=completed.patient_id)

    def on_ack(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        """MQTT callback: validate and enqueue; the alert worker applies it. ``at`` is bounded to receipt now."""
        received_at = time.time()
        self._on_request(
            message, "ack", lambda payload, pid, user: decode_ack(payload, pid, user, received_at=received_at)
        )

    def on_mute(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        """MQTT callback for forecast mute requests, validated strictly like acks; the alert worker applies them."""
        self._on_request(message, "mute", decode_mute)

    def _on_request(
        self, message: mqtt.MQTTMessage, kind: str, decode: Callable[[bytes, str, str], NurseRequest]
    ) -> None:
        """The topic's patient and user, then the payload: the user the broker let publish is who asked."""
        topic = message.topic[:200]
        try:
            patient_id, user = self.topics.request_of(message.topic, f"alert/{kind}")
            self.acks.put_nowait(decode(bytes(message.payload), patient_id, user))
        except ProtocolError as exc:
            log.warning(
                "request_rejected", kind=kind, reason=exc.reason, field=exc.field, detail=exc.detail[:200], topic=topic
            )
        except queue.Full:
            log.error("request_queue_full", kind=kind, topic=topic)
        finally:
            self.connection.ack(message.mid, message.qos)

    def start(self) -> None:
        if self.health is not None:
            self.health.start()
        self.worker.start()
        if self.monitor is not None:
            self.monitor.start()
        if self.alert_worker is not None:
            self.alert_worker.start()
        if self.hl7 is not None:
            self.hl7.start()
        self.connection.open()  # ingest first: subscribed and buffering before the model has loaded
        if self._with_model:
            self._loader = threading.Thread(target=self._load_model, name="model-loader", daemon=True)
            self._loader.start()
        if self.cluster is not None:
            self.cluster.start()
        if self.station is not None:
            self.station.start()
        log.info("agent_started", agent_id=self.settings.agent_id, broker=self.settings.mqtt.url.split("@")[-1])

    def stop(self) -> None:
        """Reverse order, bounded joins: station, intake, ingest, model (finishes its batch), alerts, offline, HTTP."""
        if self.station is not None:
            self.station.close()
        if self.cluster is not None:
            self.cluster.stop()  # first: the other replicas start taking over while this one winds down
        self.worker.stop(timeout=5.0)
        if self.monitor is not None:
            self.monitor.stop()  # before the alert service closes: it feeds the ectopy advisory
        self._stopping.set()  # a load still running will not start its worker
        if self._loader is not None:
            self._loader.join(timeout=120.0)
        if self.model is not None:
            self.model.stop(timeout=60.0)
        if self.alert_worker is not None:
            self.alert_worker.stop()
        if self.alerts is not None:
            self.alerts.close()
        if self.hl7 is not None:
            self.hl7.stop()
        self.connection.close()
        if self.health is not None:
            self.health.close()
        log.info("agent_stopped", **self.worker.summary())

    def readiness(self) -> Readiness:
        """Ready when connected, the model is loaded, neither ingest nor forecasting lags beyond the limits in the
        ``http`` config section, and the alert store takes writes (``alert_store`` names it and, while it fails,
        why: forecasts and alerts still go out, but a restart would lose what is not yet stored)."""
        model_loaded = not self._with_model or (self.model is not None and self.model.loaded)
        checks: dict[str, object] = {
            "broker_connected": self.connection.connected,
            "model": self._model_state(),
            "model_loaded": model_loaded,
            "ingest_queue": self.inbox.qsize(),
            "windows_queue": self.windows_ready.qsize(),
        }
        oldest = self.inbox.oldest_received_mono()
        ingest_lag = time.monotonic() - oldest if oldest is not None else 0.0
        checks["ingest_lag_s"] = round(ingest_lag, 3)
        ok = self.connection.connected and model_loaded
        ok = ok and ingest_lag <= self.settings.http.max_ingest_lag_s
        if self.model is not None:
            forecast_lag = self.model.scheduler.max_overdue(self.model.now())
            checks["forecast"] = self.model.scheduler.summary()
            checks["forecast_lag_s"] = round(forecast_lag, 1)
            ok = ok and forecast_lag <= self.settings.http.max_forecast_lag_s
        if self.alerts is not None:
            store = self.alerts.store_health()
            checks["alert_store"] = store.as_check()
            ok = ok and store.ok
        return Readiness(ok, checks)

    def _model_state(self) -> str:
        if not self._with_model:
            return "none"
        if self.model_error is not None:
            return "failed"
        return "loaded" if self.model is not None and self.model.loaded else "loading"

    def metrics_snapshot(self) -> MetricsSnapshot:
        summary = self.worker.summary()
        snap = MetricsSnapshot(
            messages=self.worker.accepted,
            rejects=dict(summary["rejected"]),
            patients=int(summary["patients"]),
            ingest_queue=self.inbox.qsize(),
            windows_queue=self.windows_ready.qsize(),
        )
        if self.model is None:
            return snap
        stats = self.model.stats
        return dataclasses.replace(
            snap,
            windows_encoded=self.model.stage.windows_encoded,
            forecasts=stats.forecasts,
            cannot_assess=stats.cannot_assess,
            forecast_errors=stats.forecast_errors,
            last_batch_ms=stats.last_forecast_ms,
            cadence_stretch=self.model.scheduler.stretch,
            alerts_by_state=self._alerts_by_state(),
        )

    def _alerts_by_state(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        if self.alerts is not None:
            for pid in list(self.worker.patients):
                for alert in self.alerts.active(pid):
                    counts[str(alert.state)] = counts.get(str(alert.state), 0) + 1
        return counts

    def publish_summary(self) -> None:
        body: dict[str, object] = {
            "schema": "ecgcast.agent_status/1",
            "agent_id": self.settings.agent_id,
            "at": time.time(),
            "model": self._model_state(),
        }
        body.update(self.worker.summary())
        if self.model is not None:
            body["forecast"] = self.model.scheduler.summary()
        if self.alerts is not None:
            body["alert_store"] = self.alerts.store_health().as_check()
        if self.cluster is not None:
            body["cluster"] = self.cluster.summary()
        topic = self.topics.agent_status(self.settings.agent_id)
        self.connection.publish(topic, json.dumps(body).encode(), qos=1, retain=True)


GIL_SWITCH_INTERVAL_S = 0.0005


def tune_process_for_streaming() -> None:
    """Process-wide interpreter settings for a running agent; call once per process, after :meth:`Agent.start`.

    - ``gc.freeze()``: with torch and transformers loaded a full collection walks ~440k objects (about 0.3-0.5 s
      on the project's 2-core machine, ``python bench/gc_pause.py``), stalling ingest and forecasting alike.
      Modules, models and configs live as long as the process, so collecting them is wasted work.
    - GIL switch interval 0.5 ms instead of 5 ms: paho's network thread gave up the GIL on every socket read and
      then waited up to 5 ms behind the ingest worker's batches, which capped intake below 1,000 patients
      (steady-state p99 at 1,000 real-time patients ≈ 870 ms → ≈ 280 ms, docs/BENCHMARKS.md). Reads are buffered
      since (``agent.mqtt_socket``), but the thread still releases the GIL at every ``select`` and send; the drain
      rate measured the same at 0.5, 2 and 5 ms, and the latency figures were not re-measured at 5 ms.
    """
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def run_daemon(settings: Settings, log_format: str | None = None) -> int:
    """``python main.py run``: build, start, wait for SIGINT/SIGTERM, stop gracefully."""
    configure_logging(settings.logging.level, log_format or settings.logging.format)  # type: ignore[arg-type]
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal_received", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    agent = Agent(settings)
    agent.start()
    tune_process_for_streaming()
    while not stop.wait(settings.status.interval_s) and agent.model_error is None:
        if agent.connection.connected:
            agent.publish_summary()
    agent.stop()
    if agent.model_error is not None:
        print(f"error: the model failed to load: {agent.model_error}", file=sys.stderr)
        return 1
    return 0
