"""core.config.load_config error messages: every bad key with its line and value, and never a secret (issue 19)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from core.config import StrictModel, load_config, mask_secrets
from core.errors import ConfigError
from core.settings import MqttSettings

SECRET = "S3cret-PW-xyz"


class Root(StrictModel):
    mqtt: MqttSettings = MqttSettings()
    users: dict[str, str] = Field(default_factory=dict)


def error_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(Root, path, env=env or {})
    assert info.value.__cause__ is None and info.value.__suppress_context__  # the raw pydantic error is not chained
    return str(info.value)


def test_a_password_in_the_mqtt_url_is_masked(tmp_path: Path) -> None:
    message = error_of(tmp_path, f"mqtt:\n  url: 'mqtt://kim:{SECRET}@broker:99x'\n")
    assert SECRET not in message
    assert "config.yaml:2: mqtt.url (value 'mqtt://kim:***@broker:99x')" in message and "bad port" in message


def test_a_password_in_the_url_from_the_environment_is_masked(tmp_path: Path) -> None:
    message = error_of(tmp_path, "mqtt: {}\n", env={"ECGCAST_MQTT_URL": f"http://kim:{SECRET}@broker"})
    assert SECRET not in message and "http://kim:***@broker" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (f"mqtt:\n  password: [{SECRET}]\n", "mqtt.password"),  # a list where a string belongs
        (f"users:\n  kim: [{SECRET}]\n", "users.kim"),  # like station.users: hashes, or a pasted plain password
    ],
)
def test_values_under_secret_keys_are_masked_entirely(tmp_path: Path, text: str, key: str) -> None:
    message = error_of(tmp_path, text)
    assert f"{key} (value ***)" in message and SECRET not in message


def test_values_under_other_keys_are_still_shown(tmp_path: Path) -> None:
    assert "mqtt.keepalive_s (value 'often')" in error_of(tmp_path, "mqtt:\n  keepalive_s: often\n")


def test_a_yaml_syntax_error_does_not_quote_the_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, f'mqtt:\n  password: "{SECRET}\n  url: x\n')
    assert SECRET not in message and "not valid YAML" in message and "line" in message


def test_mask_secrets() -> None:
    assert mask_secrets(f"mqtts://kim:{SECRET}@h:8883/x") == "mqtts://kim:***@h:8883/x"
    assert mask_secrets("mqtt://h:1883 and mqtt://kim@h") == "mqtt://h:1883 and mqtt://kim@h"  # nothing to mask
    assert mask_secrets(f"postgresql://app:{SECRET}@db/ecg") == "postgresql://app:***@db/ecg"
