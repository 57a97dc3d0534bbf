"""Validated configuration: one strict pydantic tree, loaded from YAML at start-up.

Why strict: a typo in a clinical monitoring config (``treshold``) must stop the daemon at start-up with a message
naming the key, not be ignored. Every field has bounds and a description; ``config/default.yaml`` mirrors it with
comments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from agent.alerts.settings import AlertSettings
from agent.config_base import StrictModel
from agent.errors import ConfigError
from agent.station.settings import StationSettings
from encoder_onnx.settings import EncoderSettings
from llm_runtime.scheduler import SchedulerSettings
from llm_runtime.settings import LlmSettings

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "BufferSettings",
    "HttpSettings",
    "IngestSettings",
    "LoggingSettings",
    "MqttSettings",
    "ProtocolSettings",
    "QualitySettings",
    "Settings",
    "StatusSettings",
    "StrictModel",
    "SuperStreamSettings",
    "WindowSettings",
    "load_settings",
]

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "default.yaml"
ENV_MQTT_URL = "ECGCAST_MQTT_URL"
ENV_MQTT_USERNAME = "ECGCAST_MQTT_USERNAME"
ENV_MQTT_PASSWORD = "ECGCAST_MQTT_PASSWORD"


class MqttSettings(StrictModel):
    url: str = Field("mqtt://127.0.0.1:1883", description="Broker URL, mqtt:// or mqtts://, optional user:pass@")
    username: str | None = Field(None, description="Username; overrides one given in the URL")
    password: str | None = Field(None, description="Password; overrides one given in the URL")
    client_id: str = Field("ecgcast-agent", min_length=1, max_length=64, description="MQTT client id")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version")
    keepalive_s: int = Field(30, ge=5, le=600, description="Keep-alive interval in seconds")
    qos: Literal[0, 1, 2] = Field(1, description="QoS for wave subscriptions and published alerts")
    session_expiry_s: int = Field(
        3600, ge=0, le=7 * 24 * 3600, description="Persistent-session lifetime after a disconnect (MQTT 5)"
    )
    receive_maximum: int = Field(
        1000, ge=1, le=65535, description="Unacknowledged QoS 1/2 messages the broker may send us at once"
    )
    reconnect_min_s: float = Field(1.0, gt=0, le=60, description="First reconnect back-off delay")
    reconnect_max_s: float = Field(30.0, gt=0, le=600, description="Largest reconnect back-off delay")
    tls_ca_file: Path | None = Field(None, description="CA bundle for mqtts://; system CAs when unset")
    tls_cert_file: Path | None = Field(None, description="Client certificate for mutual TLS")
    tls_key_file: Path | None = Field(None, description="Client key for mutual TLS")
    tls_insecure: bool = Field(False, description="Skip server hostname verification (testing only)")

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"scheme must be mqtt:// or mqtts://, got {parts.scheme or 'none'!r}")
        if not parts.hostname:
            raise ValueError("URL has no host")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from exc
        return value

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def use_tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def credentials(self) -> tuple[str | None, str | None]:
        """(username, password): explicit fields win over those embedded in the URL."""
        parts = urlsplit(self.url)
        user = self.username or (unquote(parts.username) if parts.username else None)
        password = self.password or (unquote(parts.password) if parts.password else None)
        return user, password


class ProtocolSettings(StrictModel):
    topic_prefix: str = Field("ecg/v1", pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$", description="Topic prefix")
    max_payload_bytes: int = Field(262_144, ge=1024, le=16_777_216, description="Largest accepted wave payload")
    max_samples_per_lead: int = Field(5000, ge=1, le=100_000, description="Largest chunk, samples per lead")
    max_leads: int = Field(12, ge=1, le=16, description="Most leads in one stream")
    min_fs: float = Field(100.0, gt=0, description="Lowest accepted sampling rate, Hz")
    max_fs: float = Field(1000.0, gt=0, le=10_000, description="Highest accepted sampling rate, Hz")
    max_abs_mv: float = Field(
        20.0,
        gt=0,
        le=1000,
        description="Samples beyond ±this many mV are physically impossible: marked invalid",
    )


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


class WindowSettings(StrictModel):
    window_samples: int = Field(256, description="Samples per 1-second encoder window (CAMEL: 256)")
    mains_hz: Literal[50, 60] | None = Field(50, description="Mains frequency to notch; null disables the notch")
    notch_q: float = Field(30.0, gt=1, le=200, description="Quality factor of the mains notch")
    highpass_hz: float | None = Field(0.5, gt=0, le=5, description="Causal baseline-wander high-pass corner")
    highpass_order: int = Field(2, ge=1, le=8, description="Butterworth order of the high-pass")

    @field_validator("window_samples")
    @classmethod
    def _camel_window(cls, value: int) -> int:
        if value != 256:
            raise ValueError("the encoder is CAMEL's: windows are exactly 256 samples")
        return value


class QualitySettings(StrictModel):
    flat_ptp_mv: float = Field(0.05, gt=0, description="Peak-to-peak below this over 1 s means lead off/flat line")
    saturation_mv: float = Field(10.0, gt=0, description="|sample| at or beyond this counts as saturated")
    saturation_fraction: float = Field(
        0.05, gt=0, le=1, description="Fraction of a window pinned at its extreme to call it saturated"
    )
    noise_ratio: float = Field(
        1.0, gt=0, description="High-frequency (>40 Hz) to ECG-band power ratio above which a window is noisy"
    )
    verdict_seconds: int = Field(5, ge=1, le=60, description="Seconds of windows behind each lead's verdict")


class StatusSettings(StrictModel):
    interval_s: float = Field(5.0, gt=0, le=3600, description="Publish each patient's retained status this often")
    stale_after_s: float = Field(10.0, gt=0, description="A patient silent this long is reported as stale")


class HttpSettings(StrictModel):
    host: str = Field("127.0.0.1", description="Bind address of /healthz, /readyz, /metrics (loopback by default)")
    port: int = Field(8088, ge=0, le=65535, description="HTTP port; 0 disables the server")
    max_ingest_lag_s: float = Field(5.0, gt=0, description="/readyz fails when the ingest queue is older than this")
    max_forecast_lag_s: float = Field(
        300.0, gt=0, description="/readyz fails when an active patient's forecast is this overdue"
    )


class LoggingSettings(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Lowest level logged")
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a terminal, JSON otherwise"
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
    http: HttpSettings = Field(default_factory=HttpSettings)
    station: StationSettings = Field(default_factory=StationSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    @model_validator(mode="after")
    def _cluster_needs_shared_alerts(self) -> Settings:
        if self.ingest.source == "rabbitmq-superstream" and self.alerts.store_url is None:
            raise ValueError(
                "ingest.source rabbitmq-superstream needs alerts.store_url (postgresql://...): alert state must "
                "survive a handover between replicas, and partition epochs are kept beside it"
            )
        return self


def _yaml_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path in the YAML document to its 1-based line, so errors can point at the file."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key_path = (*path, str(key_node.value))
                lines[key_path] = key_node.start_mark.line + 1
                walk(value_node, key_path)

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return lines


def _format_errors(exc: ValidationError, source: str, lines: Mapping[tuple[str, ...], int]) -> str:
    messages = []
    for error in exc.errors():
        path = tuple(str(p) for p in error["loc"])
        key = ".".join(path) or "<root>"
        line = next((lines[path[:n]] for n in range(len(path), 0, -1) if path[:n] in lines), None)
        where = f"{source}:{line}" if line else source
        value = error.get("input")
        shown = "" if isinstance(value, dict) else f" (value {value!r})"
        messages.append(f"{where}: {key}{shown}: {error['msg']}")
    return "config invalid:\n  " + "\n  ".join(messages)


def _env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Apply ECGCAST_MQTT_URL / _USERNAME / _PASSWORD on top of the file's mqtt section."""
    mqtt = dict(data.get("mqtt") or {})
    for var, key in ((ENV_MQTT_URL, "url"), (ENV_MQTT_USERNAME, "username"), (ENV_MQTT_PASSWORD, "password")):
        if env.get(var):
            mqtt[key] = env[var]
    return {**data, "mqtt": mqtt} if mqtt else data


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Load, override from the environment, and validate. Raises ConfigError naming every bad key."""
    path = path or DEFAULT_CONFIG_PATH
    env = os.environ if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
        lines = _yaml_lines(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    try:
        return Settings.model_validate(_env_overrides(data, env))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(path), lines)) from exc
