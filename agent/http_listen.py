"""Binding the agent's HTTP listeners (/healthz and friends, the station) with an error a user can act on."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from core.errors import ConfigError

__all__ = ["listen"]


def listen(host: str, port: int, handler: type[BaseHTTPRequestHandler], setting: str) -> ThreadingHTTPServer:
    """A bound ``ThreadingHTTPServer``; a busy or forbidden address raises ConfigError naming ``setting`` (the config
    section whose host and port these are), instead of an ``OSError`` traceback after the model has loaded."""
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise ConfigError(
            f"{setting}.port {port} on {setting}.host {host}: cannot listen ({exc.strerror or exc}); "
            f"stop what holds it or choose another {setting}.port"
        ) from exc
