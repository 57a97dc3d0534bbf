"""Config section ``station``: the nurse-facing central station (docs/STATION.md).

Off by default. When on, it must know who may sign in: users with password hashes, or a trusted reverse-proxy
header (honoured only from ``trusted_proxies``, and refused with a non-loopback host unless the station serves
TLS itself, so the header cannot be forged or read on the way). Its HTTP limits are here too (docs/SECURITY.md).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from core.config import StrictModel
from core.protocol import PATIENT_ID_PATTERN

__all__ = ["StationSettings"]

BED_LABEL_MAX = 32
BED_LABEL = re.compile(rf"\A[^\x00-\x1f\x7f-\x9f\u2028\u2029]{{1,{BED_LABEL_MAX}}}\Z")
"""A bed label as the tile shows it: short, one line, no control characters (it is drawn as text, never markup)."""


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
        default_factory=dict,
        description="patient id -> bed label: the fixed tile layout, in this order (e.g. {P001: '12A'}); empty: "
        "the beds of hospital.patients, in their order",
    )
    proxy_user_header: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="Header set by a trusted reverse proxy naming the signed-in user (e.g. X-Remote-User)",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or CIDR networks of the reverse proxy: the only peers whose proxy_user_header counts",
    )
    session_ttl_s: float = Field(12 * 3600.0, ge=60, le=7 * 24 * 3600, description="Sign-in lifetime, seconds")
    tls_cert_file: Path | None = Field(None, description="PEM certificate: serve HTTPS directly (else plain HTTP)")
    tls_key_file: Path | None = Field(None, description="PEM private key for tls_cert_file")
    max_connections: int = Field(
        64, ge=4, le=1024, description="Connections served at once (each open page holds one for its event stream)"
    )
    request_timeout_s: float = Field(
        10.0, ge=0.5, le=300, description="Longest wait on a client: TLS handshake, each read and each write, seconds"
    )
    sign_in_max_failures: int = Field(
        5, ge=1, le=100, description="Wrong passwords for one user (4x that from one address) before a lock-out"
    )
    sign_in_lockout_s: float = Field(
        300.0, ge=1, le=86400, description="How long a lock-out lasts, and the window failures are counted in"
    )
    sound: bool = Field(True, description="Alarm tones per priority (each browser may switch them off; remembered)")
    audio_pause_s: float = Field(
        120.0, ge=10, le=300, description="How long the page's Audio pause silences alarm tones, seconds"
    )
    strip_s: float = Field(10.0, ge=2, le=60, description="Seconds of ECG on each tile's live strip")
    detail_s: float = Field(300.0, ge=10, le=1800, description="Seconds of ECG kept for the patient detail view")
    draw_hz: float = Field(125.0, ge=50, le=500, description="Waveforms are decimated to about this rate for drawing")
    trend_s: float = Field(3600.0, ge=60, le=86400, description="Forecast risk history kept per patient, seconds")
    stale_after_s: float = Field(
        15.0, gt=0, le=600, description="A patient with no wave data for this long is shown as stale"
    )
    push_interval_s: float = Field(0.5, ge=0.1, le=5, description="How often updates are pushed to browsers")
    max_patients: int = Field(
        2000, ge=1, le=100_000, description="Patients tracked at once; messages for another are refused (alarm shown)"
    )
    forget_after_s: float = Field(
        900.0,
        ge=60,
        le=7 * 24 * 3600,
        description="A tile with no wave or status for this long is removed, unless it has an active alert",
    )
    max_message_bytes: int = Field(
        16_384, ge=1024, le=65_536, description="Largest status, forecast, alert or mute message the station keeps"
    )

    @field_validator("beds")
    @classmethod
    def _bed_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for patient_id, bed in value.items():
            if not PATIENT_ID_PATTERN.fullmatch(patient_id):
                raise ValueError(f"{patient_id[:80]!r} is not a valid patient id")
            if not BED_LABEL.fullmatch(bed):
                raise ValueError(f"bed label {bed[:80]!r} of {patient_id!r}: 1-{BED_LABEL_MAX} printable characters")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return [str(trusted_network(entry)) for entry in value]

    @model_validator(mode="after")
    def _check(self) -> StationSettings:
        verify_beds(self)
        verify_sign_in(self)
        verify_tls_pair(self)
        verify_proxy(self)
        return self


def verify_beds(s: StationSettings) -> None:
    """Every configured bed has a tile from start-up, so the beds must fit in the station's patient limit."""
    if len(s.beds) > s.max_patients:
        raise ValueError(f"station.beds lists {len(s.beds)} beds, over station.max_patients ({s.max_patients})")


def trusted_network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """One ``trusted_proxies`` entry as a network; "trust every address" (a /0) is the issue's bug, so refused."""
    try:
        network = ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
    if network.prefixlen == 0:
        raise ValueError(f"{entry!r} trusts every address: name the reverse proxy's address")
    return network


def verify_proxy(s: StationSettings) -> None:
    """The proxy header names the user outright, so only the proxy may send it, and never in the clear off-host."""
    if s.proxy_user_header is None:
        return
    if not s.trusted_proxies:
        raise ValueError(
            "station.proxy_user_header needs station.trusted_proxies (the reverse proxy's address): "
            "otherwise any client could name any user"
        )
    if s.tls_cert_file is None and not is_loopback(s.host):
        raise ValueError(
            f"station.proxy_user_header with station.host {s.host!r} and no TLS: bind 127.0.0.1 behind the proxy, "
            "or set station.tls_cert_file and station.tls_key_file"
        )


def is_loopback(host: str) -> bool:
    """True for a loopback address or ``localhost``; '' and 0.0.0.0 (every interface) and host names are not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
