"""Config sections shared by more than one package: the broker connection, the wire limits, the 1-s window
preprocessing, signal-quality thresholds and logging.

They live here, not in the agent's root ``Settings`` module, because the simulator's publisher, the encoder's
training data and the offline tools read them too; ``agent.settings.Settings`` composes them with the agent's own
sections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator

from core.config import StrictModel

__all__ = ["LoggingSettings", "MqttSettings", "ProtocolSettings", "QualitySettings", "WindowSettings"]


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


class LoggingSettings(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Lowest level logged")
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a terminal, JSON otherwise"
    )
