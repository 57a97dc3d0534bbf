"""Packaging: the ``ecgcast`` console script, ``--version``, and an installation that finds its own config and models.

A real ``pip install`` into a fresh venv is too slow for the suite (docs/INTEGRATION.md, "Deployment"); these
checks cover what it depends on: the entry point, the version, package data that ships every file the default
config names, and relative config paths that resolve against the installation, not the working directory.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

import main
from agent.settings import load_settings
from core.config import DEFAULT_CONFIG_PATH, PROJECT_ROOT, project_path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIRS = ("config", "models")


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _shipped(relative: str, package_data: dict[str, list[str]]) -> bool:
    """Whether setuptools' package-data globs (per package, relative to its folder) take the file ``relative``."""
    for package, patterns in package_data.items():
        folder = package.replace(".", "/") + "/"
        if relative.startswith(folder) and any(fnmatch.fnmatch(relative[len(folder) :], p) for p in patterns):
            return True
    return False


def test_version_flag_prints_the_distribution_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"ecgcast {metadata.version('ecgcast')}"
    assert metadata.version("ecgcast") == _pyproject()["project"]["version"]


def test_console_script_runs_main_under_its_own_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _pyproject()["project"]["scripts"]["ecgcast"] == "main:console"
    monkeypatch.setattr("sys.argv", ["ecgcast", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        main.console()
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ecgcast ")
    assert "forecast" in out and "--version" in out


def test_checkout_and_console_script_expose_the_same_commands() -> None:
    def commands(prog: str) -> set[str]:
        parser = main.build_parser(prog)
        sub = next(a for a in parser._actions if a.dest == "command")
        return set(sub.choices or ())

    assert commands(main.CONSOLE_PROG) == commands(main.CHECKOUT_PROG)
    assert {"run", "forecast", "demo", "validate-config"} <= commands(main.CONSOLE_PROG)


def test_default_config_model_paths_resolve_from_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stray models/ folder in the working directory must not replace the model alerts come from."""
    (tmp_path / "models" / "forecaster").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(DEFAULT_CONFIG_PATH, env={})
    paths = [settings.encoder.weights_path, settings.encoder.onnx_path, settings.llm.backbones_file]
    paths += [settings.llm.adapter_dir] if settings.llm.adapter_dir is not None else []
    for path in paths:
        assert path.is_absolute() and path.exists(), path
        assert path.is_relative_to(PROJECT_ROOT) and not path.is_relative_to(tmp_path), path
    assert project_path(Path("/etc/ecgcast/x.yaml")) == Path("/etc/ecgcast/x.yaml")


def test_package_data_ships_config_and_models() -> None:
    """Every file under config/ and models/ is in the wheel's package data, so an installed copy has what the
    default config names (a new model folder needs a line in pyproject.toml)."""
    setuptools = _pyproject()["tool"]["setuptools"]
    package_data: dict[str, list[str]] = setuptools["package-data"]
    included: list[str] = setuptools["packages"]["find"]["include"]
    files = [p for d in DATA_DIRS for p in (ROOT / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert files
    missing = [str(p.relative_to(ROOT)) for p in files if not _shipped(str(p.relative_to(ROOT)), package_data)]
    assert missing == []
    assert all(package in included for package in package_data if package.split(".")[0] in DATA_DIRS)


def _container_config_module() -> Any:
    """docs/deploy/container_config.py, which the Dockerfile runs at image build (not a package: loaded by path)."""
    spec = importlib.util.spec_from_file_location("container_config", ROOT / "docs" / "deploy" / "container_config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_container_config_is_the_default_with_container_addresses(tmp_path: Path) -> None:
    module = _container_config_module()
    out = tmp_path / "etc" / "ecgcast.yaml"
    assert module.main([str(out)]) == 0
    settings = load_settings(out, env={})
    default = load_settings(DEFAULT_CONFIG_PATH, env={})
    assert (settings.http.host, settings.station.host) == ("0.0.0.0", "0.0.0.0")
    assert settings.alerts.store_path == Path("/var/lib/ecgcast/alerts.sqlite3")
    assert settings.llm == default.llm and settings.encoder == default.encoder  # same models, resolved the same way


def test_compose_and_image_commands_parse() -> None:
    """Each ecgcast service of compose.yaml and the image's default command are commands this CLI accepts."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert {"mosquitto", "agent", "station"} <= set(compose["services"])
    commands = [s["command"] for s in compose["services"].values() if s.get("image", "").startswith("ecgcast:")]
    cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(encoding="utf-8"), re.MULTILINE)
    assert cmd is not None and len(commands) >= 3
    for argv in [*commands, json.loads(cmd.group(1))]:
        args = main.build_parser(main.CONSOLE_PROG).parse_args(argv)
        assert callable(args.func), argv
