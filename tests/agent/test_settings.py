from __future__ import annotations

from pathlib import Path

import pytest

import main
from agent.settings import load_settings
from core.config import DEFAULT_CONFIG_PATH
from core.errors import ConfigError


def test_default_config_is_valid_and_points_at_local_broker() -> None:
    settings = load_settings(DEFAULT_CONFIG_PATH, env={})
    assert settings.mqtt.url == "mqtt://127.0.0.1:1883"
    assert settings.protocol.topic_prefix == "ecg/v1"
    assert settings.buffer.minutes == 10


def test_unknown_key_is_refused_with_key_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("mqtt:\n  url: mqtt://127.0.0.1:1883\nbuffer:\n  minuts: 5\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert "buffer.minuts" in message
    assert f"{path}:4" in message
    assert "Extra inputs are not permitted" in message


def test_out_of_range_value_names_key_value_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("mqtt:\n  qos: 3\nbuffer:\n  minutes: -1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert "mqtt.qos (value 3)" in message
    assert "buffer.minutes (value -1)" in message


def test_bad_url_scheme_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("mqtt:\n  url: http://localhost\n")
    with pytest.raises(ConfigError, match=r"mqtt\.url.*scheme must be mqtt:// or mqtts://"):
        load_settings(path, env={})


def test_environment_overrides_broker_url_and_credentials() -> None:
    env = {"ECGCAST_MQTT_URL": "mqtts://nurse:s%40cret@broker.example:8884", "ECGCAST_MQTT_PASSWORD": "other"}
    mqtt = load_settings(DEFAULT_CONFIG_PATH, env=env).mqtt
    assert (mqtt.host, mqtt.port, mqtt.use_tls) == ("broker.example", 8884, True)
    assert mqtt.credentials == ("nurse", "other")
    url_only = load_settings(DEFAULT_CONFIG_PATH, env={"ECGCAST_MQTT_URL": "mqtt://u:p%40ss@h"}).mqtt
    assert url_only.credentials == ("u", "p@ss")
    assert url_only.port == 1883


def test_validate_config_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["validate-config", str(DEFAULT_CONFIG_PATH)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("windows:\n  window_samples: 128\n")
    assert main.main(["validate-config", str(bad)]) == 2
    assert "windows.window_samples (value 128)" in capsys.readouterr().err


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(path, env={})


def test_the_run_command_says_what_the_daemon_does(capsys: pytest.CaptureFixture[str]) -> None:
    """Its help once read "ingest, buffer, windows, status": the daemon also encodes, forecasts and alerts."""
    with pytest.raises(SystemExit):
        main.main(["--help"])
    listing = capsys.readouterr().out
    run_line = " ".join(listing[listing.index("    run ") :].split("validate-config")[0].split())
    assert all(word in run_line for word in ("ingest", "encoder", "forecasts", "alerts")), run_line


def test_forecast_alerts_wait_for_one_forecast_window_unless_told_otherwise() -> None:
    from agent.settings import Settings, load_settings

    assert load_settings().alerts.defaults.min_forecast_window_s == 300  # default.yaml's null: llm.window_s
    short = Settings.model_validate({"llm": {"window_s": 20}})
    assert short.alerts.defaults.min_forecast_window_s == 20
    assert short.alerts.for_patient("P1").min_forecast_window_s == 20  # a patient's policy inherits it
    told = Settings.model_validate({"llm": {"window_s": 20}, "alerts": {"defaults": {"min_forecast_window_s": 0}}})
    assert told.alerts.defaults.min_forecast_window_s == 0


def test_an_alerts_section_that_is_not_a_mapping_is_a_clear_error() -> None:
    import pydantic

    from agent.settings import Settings

    with pytest.raises(pydantic.ValidationError, match="alerts"):
        Settings.model_validate({"alerts": ["not", "a", "mapping"]})
