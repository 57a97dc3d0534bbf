"""The nurse-facing central station: a live web view of patients, forecasts and alerts, with acknowledgement.

It listens to the agent's own MQTT topics with its own client (so it works for any agent on the broker), keeps
the latest status, forecast, alerts and a short waveform ring per patient, and pushes updates to signed-in
browsers with Server-Sent Events. An acknowledgement from the page is published as the same
``ecgcast.alert_ack/1`` message a pager sends (docs/STATION.md).
"""

from __future__ import annotations

from ._auth import SessionStore, hash_password, verify_password
from ._state import StationState, order, priority_rank, quality_badge, rhythm_summary
from ._wave import WaveRing, heart_rate_bpm
from .server import StationServer
from .settings import StationSettings

__all__ = [
    "SessionStore",
    "StationServer",
    "StationSettings",
    "StationState",
    "WaveRing",
    "hash_password",
    "heart_rate_bpm",
    "order",
    "priority_rank",
    "quality_badge",
    "rhythm_summary",
    "verify_password",
]
