"""The alerts config section: defaults, per-patient overrides validated at start-up, the public surface."""

from __future__ import annotations

from pathlib import Path

import pytest

import agent.alerts
from agent.alerts import AlertSettings
from agent.settings import load_settings
from core.config import DEFAULT_CONFIG_PATH
from core.errors import ConfigError


def test_default_config_has_the_alerts_section() -> None:
    alerts = load_settings(DEFAULT_CONFIG_PATH, env={}).alerts
    expected = AlertSettings.model_validate({"defaults": {"min_forecast_window_s": 300}})  # null -> llm.window_s
    assert alerts == expected  # the YAML mirrors the model's defaults
    assert alerts.store_path == Path("var/alerts.sqlite3")


def test_patient_override_merges_onto_unit_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("alerts:\n  patients:\n    P007:\n      af: {raise_at: 0.3}\n      renotify_after_s: 60\n")
    alerts = load_settings(path, env={}).alerts
    p7 = alerts.for_patient("P007")
    assert (p7.af.raise_at, p7.af.priority, p7.renotify_after_s) == (0.3, "low", 60)
    assert alerts.for_patient("P001") == alerts.defaults


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("alerts:\n  patients:\n    P007: {af: {raise_et: 0.3}}\n", "alerts.patients.P007"),
        ("alerts:\n  patients:\n    'bad/id': {}\n", "not a valid patient id"),
        ("alerts:\n  defaults: {persistence_k: 4, persistence_n: 3}\n", "persistence_k (4) exceeds"),
        ("alerts:\n  defaults: {af: {priority: medium, max_priority: low}}\n", "max_priority 'low' is below"),
        ("alerts:\n  defaults: {vt: {max_priority: high}}\n", "forecast alerts are advisories"),
        ("alerts:\n  patients:\n    P007: {af: {priority: high}}\n", "at most 'medium'"),
        ("alerts:\n  defaults: {af: {raise_at: 0.1}}\n", "could never clear"),
        ("alerts:\n  defaults: {af: {raise_at_by_horizon: {60: 1.5}}}\n", "thresholds in (0, 1]"),
        ("alerts:\n  defaults: {quality: {acceptable_verdicts: [fine]}}\n", "unknown verdicts"),
        ("alerts:\n  defautls: {}\n", "alerts.defautls"),
    ],
)
def test_bad_alert_config_is_refused(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert message in str(info.value)


def test_exports() -> None:
    expected = {
        "Ack", "AckReceived", "Alert", "AlertEvent", "AlertPolicy", "AlertService", "AlertSettings", "AlertStore",
        "AlertWindow", "CannotAssess", "Evidence", "ForecastSeen", "PatientAlerts", "PatientResolved",
        "PolicySettings", "SCHEMA_ALERT", "SCHEMA_ALERT_ACK", "TimerTick", "Track", "Transition", "build_evidence",
        "check_rationale", "decode_ack", "ihe_codes", "quality_problem",
        "Fence", "PostgresAlertStore", "StaleEpochError", "open_alert_store",
        "EPOCHS_DDL", "EPOCHS_TABLE", "ensure_tables",
        "MAX_MUTE_S", "MAX_REASON_CHARS", "MIN_MUTE_S", "SCHEMA_ALERT_MUTE", "SCHEMA_MUTE_STATE", "Mute",
        "MuteRequest", "MuteRequested", "decode_mute",
        "MAX_ACK_SKEW_S",
        "EctopyMeasured",
        "STORE_RETRY_S", "StoreHealth", "StoreUnavailable", "StoreWatcher",
    }  # fmt: skip
    assert set(agent.alerts.__all__) == expected
    assert all(hasattr(agent.alerts, name) for name in expected)
