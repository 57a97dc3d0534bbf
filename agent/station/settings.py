"""Config section ``station``: the nurse-facing central station (docs/STATION.md).

Off by default. When on, it must know who may sign in: users with password hashes, or a trusted reverse-proxy
header (then the station must only be reachable through that proxy, which is why it binds loopback by default).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from core.config import StrictModel

__all__ = ["StationSettings"]


class StationSettings(StrictModel):
    enabled: bool = Field(False, description="Serve the central station from the agent process")
    host: str = Field("127.0.0.1", description="Bind address; loopback unless a proxy or TLS is set up on purpose")
    port: int = Field(8090, ge=0, le=65535, description="HTTP(S) port of the station; 0 picks a free port")
    client_id: str = Field(
        "ecgcast-station", min_length=1, max_length=64, description="MQTT client id (never the agent's own)"
    )
    users: dict[str, str] = Field(
        default_factory=dict,
        description="user -> password hash from 'python main.py station hash-password'",
    )
    beds: dict[str, str] = Field(
        default_factory=dict, description="patient id -> bed label shown on the tile (e.g. {P001: '12A'})"
    )
    proxy_user_header: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="Header set by a trusted reverse proxy naming the signed-in user (e.g. X-Remote-User)",
    )
    session_ttl_s: float = Field(12 * 3600.0, ge=60, le=7 * 24 * 3600, description="Sign-in lifetime, seconds")
    tls_cert_file: Path | None = Field(None, description="PEM certificate: serve HTTPS directly (else plain HTTP)")
    tls_key_file: Path | None = Field(None, description="PEM private key for tls_cert_file")
    sound: bool = Field(True, description="Offer a tone on new alerts (each browser still opts in once)")
    strip_s: float = Field(10.0, ge=2, le=60, description="Seconds of ECG on each tile's live strip")
    detail_s: float = Field(300.0, ge=10, le=1800, description="Seconds of ECG kept for the patient detail view")
    draw_hz: float = Field(125.0, ge=50, le=500, description="Waveforms are decimated to about this rate for drawing")
    trend_s: float = Field(3600.0, ge=60, le=86400, description="Forecast risk history kept per patient, seconds")
    stale_after_s: float = Field(
        15.0, gt=0, le=600, description="A patient with no wave data for this long is shown as stale"
    )
    push_interval_s: float = Field(0.5, ge=0.1, le=5, description="How often updates are pushed to browsers")

    @model_validator(mode="after")
    def _check(self) -> StationSettings:
        verify_sign_in(self)
        verify_tls_pair(self)
        return self


def verify_sign_in(s: StationSettings) -> None:
    """An enabled station without any way to sign in would be either open or useless: refuse both."""
    if s.enabled and not s.users and s.proxy_user_header is None:
        raise ValueError("station.enabled needs station.users or station.proxy_user_header")
    for user, hashed in s.users.items():
        if not hashed.startswith("scrypt$"):
            raise ValueError(f"station.users.{user}: not a hash from 'python main.py station hash-password'")


def verify_tls_pair(s: StationSettings) -> None:
    if (s.tls_cert_file is None) != (s.tls_key_file is None):
        raise ValueError("station.tls_cert_file and station.tls_key_file must be set together")
