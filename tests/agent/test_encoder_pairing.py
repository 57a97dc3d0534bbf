"""The agent refuses an encoder other than the one its LM adapter was trained with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.daemon import check_encoder_pairing
from agent.settings import Settings, load_settings
from core.config import DEFAULT_CONFIG_PATH
from core.errors import ConfigError


def settings_with(adapter: Path, encoder: Path, backbone: str = "gemma3-270m") -> Settings:
    data = load_settings(DEFAULT_CONFIG_PATH, env={}).model_dump()
    data["llm"].update(adapter_dir=adapter, backbone=backbone)
    data["encoder"]["weights_path"] = encoder
    return Settings.model_validate(data)


def test_shipped_defaults_are_paired() -> None:
    check_encoder_pairing(load_settings(DEFAULT_CONFIG_PATH, env={}))


def test_mismatched_encoder_is_refused_naming_both(tmp_path: Path) -> None:
    encoder = tmp_path / "other.pt"
    encoder.write_bytes(b"not the trained encoder")
    (tmp_path / "adapter.json").write_text(json.dumps({"backbone": "gemma3-270m", "encoder_sha256": "ab" * 32}))
    with pytest.raises(ConfigError, match=r"encoder.weights_path .*other\.pt .* is not the encoder the adapter"):
        check_encoder_pairing(settings_with(tmp_path, encoder))
    check_encoder_pairing(settings_with(tmp_path, encoder, backbone="tiny-random"))  # adapter unused: no check
