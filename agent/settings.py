"""The agent's validated configuration: one strict pydantic tree, loaded from YAML at start-up.

Why strict: a typo in a clinical monitoring config (``treshold``) must stop the daemon at start-up with a message
naming the key, not be ignored. Every field has bounds and a description; ``config/default.yaml`` mirrors it with
comments.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agent.alerts.settings import AlertSettings
from agent.hospital.settings import HospitalSettings
from agent.station.settings import StationSettings
from core.config import StrictModel, load_config
from core.settings import LoggingSettings, MqttSettings, ProtocolSettings, QualitySettings, WindowSettings
from encoder_onnx.settings import EncoderSettings
from llm_runtime.scheduler import SchedulerSettings
from llm_runtime.settings import LlmSettings

__all__ = [
    "BufferSettings",
    "HttpSettings",
    "IngestSettings",
    "MonitorSettings",
    "Settings",
    "StatusSettings",
    "SuperStreamSettings",
    "load_settings",
]


_ID_PATTERN = re.compile(r"[A-Za-z0-9._*?\[\]!-]{1,64}")
"""A provisioned entry: a patient id (core.protocol.PATIENT_ID_PATTERN) or a shell-style pattern of ids."""


class BufferSettings(StrictModel):
    minutes: float = Field(10.0, gt=0, le=120, description="Ring buffer length per patient and lead, minutes")
    reorder_window: int = Field(
        8, ge=0, le=256, description="Chunks held while waiting for a missing seq before declaring a gap"
    )
    reorder_timeout_s: float = Field(
        2.0, ge=0, le=60, description="Longest a chunk is held for reordering before the gap is declared"
    )
    clock_tolerance_s: float = Field(
        0.05, ge=0, le=5, description="t0 disagreement with the sample clock tolerated before a clock jump"
    )
    idle_evict_s: float = Field(
        600.0, gt=0, description="A patient silent for this long is dropped from memory (status says so)"
    )
    max_patients: int = Field(
        2000,
        ge=1,
        le=100_000,
        description="Patients held at once; a new one past this is refused (reject reason patient_limit)",
    )
    provisioned_patients: list[str] | None = Field(
        None,
        description="Patient ids (shell-style patterns such as 'ICU-*' allowed) this agent accepts; others are "
        "refused (reject reason not_provisioned). None accepts any id",
    )

    @field_validator("provisioned_patients")
    @classmethod
    def _patterns(cls, value: list[str] | None) -> list[str] | None:
        if value == []:
            raise ValueError("an empty list would refuse every patient; null accepts any id")
        for pattern in value or []:
            if not _ID_PATTERN.fullmatch(pattern):
                raise ValueError(f"{pattern[:80]!r} is not a patient id or pattern (letters, digits, . _ - * ? [ ])")
        return value


class StatusSettings(StrictModel):
    interval_s: float = Field(5.0, gt=0, le=3600, description="Publish each patient's retained status this often")
    stale_after_s: float = Field(10.0, gt=0, description="A patient silent this long is reported as stale")


class MonitorSettings(StrictModel):
    """The agent's own rhythm measurements of every patient (agent/rhythm_monitor.py): HR, PVC/PAC burden, runs and
    measured signal quality over recent windows, in the status message and behind the ectopy advisory."""

    enabled: bool = Field(True, description="Measure every patient and publish the result in its status")
    interval_s: float = Field(
        15.0, ge=5, le=30, description="Refresh each patient once this much new signal has arrived (stream seconds)"
    )
    context_s: float = Field(
        30.0, ge=10, le=120, description="Signal before the new seconds analysed with them (templates, local RR)"
    )
    windows_s: tuple[int, ...] = Field(
        (60, 300), min_length=1, max_length=4, description="Windows summarised in status, shortest first (seconds)"
    )

    @field_validator("windows_s")
    @classmethod
    def _ascending(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if list(value) != sorted(set(value)) or not all(30 <= w <= 3600 for w in value):
            raise ValueError(f"windows must be distinct seconds in [30, 3600], shortest first, got {list(value)}")
        return value


class HttpSettings(StrictModel):
    host: str = Field("127.0.0.1", description="Bind address of /healthz, /readyz, /metrics (loopback by default)")
    port: int = Field(8088, ge=0, le=65535, description="HTTP port; 0 disables the server")
    max_ingest_lag_s: float = Field(5.0, gt=0, description="/readyz fails when the ingest queue is older than this")
    max_forecast_lag_s: float = Field(
        300.0, gt=0, description="/readyz fails when an active patient's forecast is this overdue"
    )


_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class SuperStreamSettings(StrictModel):
    """Where the partitioned wave streams live and how this replica joins the consumer group (docs/SCALING.md)."""

    host: str = Field("127.0.0.1", description="RabbitMQ node to bootstrap from (stream protocol and AMQP)")
    stream_port: int = Field(5552, ge=1, le=65535, description="RabbitMQ stream protocol port")
    amqp_port: int = Field(5672, ge=1, le=65535, description="AMQP 0-9-1 port, used by 'cluster init' only")
    username: str = Field("guest", min_length=1, description="RabbitMQ user (guest only works over loopback)")
    password: str = Field("guest", description="RabbitMQ password")
    vhost: str = Field("/", min_length=1, description="RabbitMQ virtual host")
    ingress_exchange: str = Field(
        "ecg.ingress",
        pattern=_NAME,
        description="Topic exchange the MQTT plugin publishes to (the broker's mqtt.exchange setting)",
    )
    super_stream: str = Field(
        "ecg.waves", pattern=_NAME, description="The x-consistent-hash exchange used as super stream"
    )
    unroutable_exchange: str = Field(
        "ecg.unroutable", pattern=_NAME, description="Alternate exchange (and queue) for wave messages nothing took"
    )
    partitions: int = Field(
        16, ge=1, le=256, description="Partition streams; fixed for the life of the cluster (removing one reshuffles)"
    )
    retention_margin_min: float = Field(
        5.0, ge=1, le=1440, description="Streams keep buffer.minutes plus this many minutes (x-max-age)"
    )
    replay_margin_s: float = Field(
        30.0, ge=0, le=3600, description="A new owner replays buffer.minutes plus this many seconds"
    )
    consumer_group: str = Field(
        "ecgcast-agents", pattern=_NAME, description="Single-active-consumer group name shared by all replicas"
    )
    credit: int = Field(10, ge=1, le=1000, description="Chunks the broker may send ahead per partition")
    heartbeat_s: int = Field(
        60, ge=5, le=600, description="Stream heartbeat: a replica whose machine vanished is declared dead after ~2x"
    )


class IngestSettings(StrictModel):
    source: Literal["mqtt", "rabbitmq-superstream"] = Field(
        "mqtt", description="mqtt: subscribe to waves (one node); rabbitmq-superstream: a partition of a cluster"
    )
    superstream: SuperStreamSettings = Field(
        default_factory=SuperStreamSettings, description="Used when source is rabbitmq-superstream"
    )


class Settings(StrictModel):
    agent_id: str = Field(
        "agent-1",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="This agent's id on the presence topic",
    )
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    protocol: ProtocolSettings = Field(default_factory=ProtocolSettings)
    buffer: BufferSettings = Field(default_factory=BufferSettings)
    windows: WindowSettings = Field(default_factory=WindowSettings)
    encoder: EncoderSettings = Field(default_factory=EncoderSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    forecast: SchedulerSettings = Field(default_factory=SchedulerSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    status: StatusSettings = Field(default_factory=StatusSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    station: StationSettings = Field(default_factory=StationSettings)
    hospital: HospitalSettings = Field(default_factory=HospitalSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    @model_validator(mode="before")
    @classmethod
    def _beds_from_hospital(cls, data: Any) -> Any:
        """One bed configuration: with ``station.beds`` empty, the station lays out the beds of
        ``hospital.patients`` (those with a bed), in their configured order."""
        if not isinstance(data, dict):
            return data
        station, hospital = data.get("station") or {}, data.get("hospital") or {}
        if not isinstance(station, dict) or station.get("beds") or not isinstance(hospital, dict):
            return data
        patients = hospital.get("patients") or {}
        beds = {pid: who["bed"] for pid, who in patients.items() if isinstance(who, dict) and who.get("bed")}
        return {**data, "station": {**station, "beds": beds}} if beds else data

    @model_validator(mode="before")
    @classmethod
    def _warm_up_is_one_forecast_window(cls, data: Any) -> Any:
        """Unless ``alerts.defaults.min_forecast_window_s`` is set, forecast alerts wait for a full forecast window
        (``llm.window_s``): the window the forecaster's thresholds were set on."""
        if not isinstance(data, dict):
            return data
        alerts, llm = data.get("alerts") or {}, data.get("llm") or {}
        defaults = (alerts.get("defaults") or {}) if isinstance(alerts, dict) else None
        if not isinstance(defaults, dict) or defaults.get("min_forecast_window_s") is not None:
            return data
        window = llm.get("window_s") if isinstance(llm, dict) else None
        window = LlmSettings.model_fields["window_s"].default if window is None else window
        return {**data, "alerts": {**alerts, "defaults": {**defaults, "min_forecast_window_s": window}}}

    @model_validator(mode="after")
    def _beds_agree(self) -> Settings:
        """The station's beds name the same bed as the hospital identity, and fit the agent's patient limits: a
        bed the agent would refuse (not provisioned, past ``buffer.max_patients``) would show "no signal" forever."""
        for pid, bed in self.station.beds.items():
            identity = self.hospital.identity(pid)
            if identity is not None and identity.bed is not None and identity.bed != bed:
                raise ValueError(f"station.beds.{pid} is {bed!r} but hospital.patients.{pid}.bed is {identity.bed!r}")
            patterns = self.buffer.provisioned_patients
            if patterns is not None and not any(fnmatch.fnmatchcase(pid, p) for p in patterns):
                raise ValueError(f"station.beds.{pid}: not in buffer.provisioned_patients, so never streamed")
        if len(self.station.beds) > self.buffer.max_patients:
            beds, limit = len(self.station.beds), self.buffer.max_patients
            raise ValueError(f"station.beds lists {beds} beds, over buffer.max_patients ({limit})")
        return self

    @model_validator(mode="after")
    def _cluster_needs_shared_alerts(self) -> Settings:
        if self.ingest.source == "rabbitmq-superstream" and self.alerts.store_url is None:
            raise ValueError(
                "ingest.source rabbitmq-superstream needs alerts.store_url (postgresql://...): alert state must "
                "survive a handover between replicas, and partition epochs are kept beside it"
            )
        return self


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load the agent's whole config tree. Raises ConfigError naming every bad key."""
    return load_config(Settings, path, env)
