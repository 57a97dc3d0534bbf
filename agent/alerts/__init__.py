"""Forecast, present-rhythm and ectopy alerts: policy, lifecycle, explanations, acknowledgements, per-patient mutes
and durable history (docs/ALERTS.md).

A forecast alert is an advisory: it predicts an arrhythmia, it never reports a present rhythm. A present-rhythm
alert ("AF now", "VT now") reports AF or VT measured under way, and stands the matching forecast down; the ectopy
advisory ("PVC burden high") reports a measured high ventricular ectopy burden.
:class:`AlertPolicy` decides (pure, no I/O); :class:`AlertService` stamps time, stores in SQLite and publishes
``ecgcast.alert/1`` lifecycle messages (``new`` / ``update`` / ``end``) on ``<prefix>/<patient_id>/alert``.
The partition-epoch table (``EPOCHS_TABLE``, ``EPOCHS_DDL``, ``ensure_tables``) is exported for ``agent.cluster``:
the shared PostgreSQL store fences its writes with it, so its schema is defined here, beside the store.
"""

from __future__ import annotations

from ._ack import MAX_ACK_SKEW_S, MAX_MUTE_S, MAX_REASON_CHARS, MIN_MUTE_S, decode_ack, decode_mute
from ._evidence import Evidence, build_evidence, quality_problem
from ._explain import check_rationale
from ._model import (
    SCHEMA_ALERT,
    SCHEMA_ALERT_ACK,
    SCHEMA_ALERT_MUTE,
    SCHEMA_MUTE_STATE,
    Ack,
    Alert,
    AlertEvent,
    AlertWindow,
    Mute,
    MuteRequest,
    Transition,
    ihe_codes,
)
from ._pg_store import EPOCHS_DDL, EPOCHS_TABLE, PostgresAlertStore, StaleEpochError, ensure_tables
from ._policy import (
    AckReceived,
    AlertPolicy,
    CannotAssess,
    EctopyMeasured,
    ForecastSeen,
    MuteRequested,
    PatientAlerts,
    PatientResolved,
    TimerTick,
    Track,
)
from ._service import STORE_RETRY_S, AlertService, StoreWatcher, open_alert_store
from ._store import AlertStore, Fence, StoreUnavailable
from ._unsaved import StoreHealth
from .settings import AlertSettings, PolicySettings

__all__ = [
    "EPOCHS_DDL",
    "EPOCHS_TABLE",
    "MAX_ACK_SKEW_S",
    "MAX_MUTE_S",
    "MAX_REASON_CHARS",
    "MIN_MUTE_S",
    "SCHEMA_ALERT",
    "SCHEMA_ALERT_ACK",
    "SCHEMA_ALERT_MUTE",
    "SCHEMA_MUTE_STATE",
    "STORE_RETRY_S",
    "Ack",
    "AckReceived",
    "Alert",
    "AlertEvent",
    "AlertPolicy",
    "AlertService",
    "AlertSettings",
    "AlertStore",
    "AlertWindow",
    "CannotAssess",
    "EctopyMeasured",
    "Evidence",
    "Fence",
    "ForecastSeen",
    "Mute",
    "MuteRequest",
    "MuteRequested",
    "PatientAlerts",
    "PatientResolved",
    "PolicySettings",
    "PostgresAlertStore",
    "StaleEpochError",
    "StoreHealth",
    "StoreUnavailable",
    "StoreWatcher",
    "TimerTick",
    "Track",
    "Transition",
    "build_evidence",
    "check_rationale",
    "decode_ack",
    "decode_mute",
    "ensure_tables",
    "ihe_codes",
    "open_alert_store",
    "quality_problem",
]
