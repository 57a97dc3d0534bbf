"""The base of every config section and the YAML loader every command shares.

``StrictModel`` is the base of each section, wherever the section lives (core, encoder_onnx, llm_runtime, agent).
``load_config`` reads a YAML file, applies the ``ECGCAST_MQTT_*`` environment overrides and validates it against
any root model, reporting every bad key with its YAML line: the agent validates its whole ``Settings`` tree, the
simulator only the sections it reads.

Relative file paths in a config (``models/forecaster``, ``config/backbones.yaml``) name files of the ecgcast
installation and resolve against ``PROJECT_ROOT`` (:func:`project_path`), never the working directory: the result
must not depend on where the daemon was started, and a stray ``models/`` folder in the working directory must not
swap the model a clinical alert comes from. ``PROJECT_ROOT`` is the directory holding the top-level packages: the
checkout, or ``site-packages`` of an installed wheel, which ships ``config/`` and ``models/`` beside the packages
(pyproject.toml package data). State the config path absolutely for a file outside the installation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from core.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_MQTT_PASSWORD",
    "ENV_MQTT_URL",
    "ENV_MQTT_USERNAME",
    "PROJECT_ROOT",
    "StrictModel",
    "load_config",
    "mask_secrets",
    "project_path",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The checkout root, or the site-packages directory an installed wheel put config/ and models/ into."""
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "default.yaml"
ENV_MQTT_URL = "ECGCAST_MQTT_URL"
ENV_MQTT_USERNAME = "ECGCAST_MQTT_USERNAME"
ENV_MQTT_PASSWORD = "ECGCAST_MQTT_PASSWORD"

ModelT = TypeVar("ModelT", bound=BaseModel)

_SECRET_KEY = re.compile(r"pass|secret|token|credential|private|users|api_?key", re.IGNORECASE)
"""Key names whose values are never printed: passwords, tokens, and station.users (password hashes)."""
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@")
MASK = "***"


def project_path(path: Path) -> Path:
    """``path`` if absolute, else the file of that name under ``PROJECT_ROOT`` (see the module docstring for why)."""
    return path if path.is_absolute() else PROJECT_ROOT / path


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo must stop start-up), and objects are immutable after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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


def mask_secrets(text: str) -> str:
    """``text`` with the password of any ``scheme://user:password@host`` URL replaced by ``***``."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)


def _shown_value(path: tuple[str, ...], value: object) -> str:
    """The ``(value …)`` part of an error line: masked under a secret-looking key, URL passwords masked anywhere."""
    if isinstance(value, dict):
        return ""
    if any(_SECRET_KEY.search(part) for part in path):
        return f" (value {MASK})"
    return f" (value {mask_secrets(repr(value))})"


def _format_errors(exc: ValidationError, source: str, lines: Mapping[tuple[str, ...], int]) -> str:
    """One line per error: file and line, dotted key, the value (secrets masked), and the reason."""
    messages = []
    for error in exc.errors(include_url=False):
        path = tuple(str(p) for p in error["loc"])
        key = ".".join(path) or "<root>"
        line = next((lines[path[:n]] for n in range(len(path), 0, -1) if path[:n] in lines), None)
        where = f"{source}:{line}" if line else source
        shown = _shown_value(path, error.get("input"))
        messages.append(f"{where}: {key}{shown}: {mask_secrets(error['msg'])}")
    return "config invalid:\n  " + "\n  ".join(messages)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The YAML error without the quoted source line PyYAML appends, which may hold a password."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem or exc.context or 'syntax error'}"
    return mask_secrets(str(exc))


def _env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Apply ECGCAST_MQTT_URL / _USERNAME / _PASSWORD on top of the file's mqtt section."""
    mqtt = dict(data.get("mqtt") or {})
    for var, key in ((ENV_MQTT_URL, "url"), (ENV_MQTT_USERNAME, "username"), (ENV_MQTT_PASSWORD, "password")):
        if env.get(var):
            mqtt[key] = env[var]
    return {**data, "mqtt": mqtt} if mqtt else data


def load_config(model: type[ModelT], path: Path | None = None, env: Mapping[str, str] | None = None) -> ModelT:
    """Load ``path`` (default: config/default.yaml), override from the environment, validate as ``model``.

    Raises ConfigError naming every bad key, its value and its line.
    """
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
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    try:
        return model.model_validate(_env_overrides(data, env))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(path), lines)) from None  # the chained one prints raw values
