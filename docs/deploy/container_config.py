"""Write the container's config: the installed default config with the few settings a container needs changed.

Why generate it instead of shipping a second YAML file: a copy of config/default.yaml would drift from it, and a
partial file is not an option (every section is validated, and a missing key takes the model default, not the
default file's value). Run at image build (Dockerfile); the result is validated before it is written.

    python container_config.py OUT.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from agent.settings import Settings
from core.config import DEFAULT_CONFIG_PATH

CONTAINER_OVERRIDES: dict[tuple[str, str], object] = {
    ("mqtt", "url"): "mqtt://mosquitto:1883",  # the compose service; ECGCAST_MQTT_URL still overrides it
    ("http", "host"): "0.0.0.0",  # published by the container runtime (compose binds it to the host's loopback)
    ("station", "host"): "0.0.0.0",  # likewise; put TLS or a reverse proxy in front off-host (docs/STATION.md)
    ("alerts", "store_path"): "/var/lib/ecgcast/alerts.sqlite3",  # the state volume
    ("logging", "format"): "json",  # one JSON object per line for the container log driver
}
HEADER = (
    "# ecgcast container configuration, generated at image build by docs/deploy/container_config.py from\n"
    "#   {source}\n"
    "# the commented original, where every key is explained. Relative model paths resolve against the installed\n"
    "# package, not the working directory.\n"
)


def container_config(default: dict[str, Any]) -> dict[str, Any]:
    """``default`` with ``CONTAINER_OVERRIDES`` applied (a new dict; the sections named must exist)."""
    data: dict[str, Any] = {key: dict(value) if isinstance(value, dict) else value for key, value in default.items()}
    for (section, key), value in CONTAINER_OVERRIDES.items():
        data[section][key] = value
    return data


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    data = container_config(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")))
    Settings.model_validate(data)  # a bad override fails the image build, naming the key
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(HEADER.format(source=DEFAULT_CONFIG_PATH) + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
