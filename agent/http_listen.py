"""The agent's HTTP listeners (/healthz and friends, the station): bounded, with timeouts, and bound with an error a
user can act on.

The accept thread only accepts. Each connection runs on its own daemon thread, at most ``max_connections`` at once
(the next one is closed at once instead of queued without bound); its socket gets ``timeout_s`` for every read and
write, and under TLS the handshake runs there too, so one silent client cannot stall the listener (issue #19).
"""

from __future__ import annotations

import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from core.errors import ConfigError
from core.tls import connection_failure

__all__ = ["BoundedHTTPServer", "listen"]

log = structlog.get_logger(__name__)


class BoundedHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with a cap on concurrent connections, socket timeouts and an optional TLS context."""

    daemon_threads = True  # a stuck client never holds up the process's exit

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        max_connections: int,
        timeout_s: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(address, handler)
        self.max_connections = max_connections
        self.timeout_s = timeout_s
        self._tls = tls
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused = 0  # connections closed unserved because every slot was taken

    def process_request(self, request: Any, client_address: Any) -> None:
        """On the accept thread: take a slot or refuse, then hand the connection to its own thread."""
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            if self.refused % 1000 == 1:  # the first, then every thousandth: a flood must not flood the log
                log.warning("http_connections_refused", limit=self.max_connections, refused=self.refused)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # the OS refused another thread: drop this connection, keep serving
            self._slots.release()
            self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """On the connection's thread: timeout, TLS handshake, the request; network errors end only this one."""
        conn: socket.socket = request
        try:
            conn.settimeout(self.timeout_s)
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
                _handshake(conn, client_address)
            self.finish_request(conn, client_address)
        except OSError:  # timeouts, resets, failed handshakes (ssl.SSLError is an OSError): the client's problem
            pass
        except Exception:
            log.exception("http_request_crashed")
        finally:
            self.shutdown_request(conn)
            self._slots.release()


def _handshake(conn: ssl.SSLSocket, client_address: Any) -> None:
    """The TLS handshake; a failure is logged with its reason (plain HTTP on the TLS port, a client that refused
    our certificate, a silent client timing out) and raised. A warning, so a scanner cannot flood the log
    (``core.logs.RepeatLimiter``); a client that just closed (a port probe) only at debug level."""
    try:
        conn.do_handshake()
    except OSError as exc:
        closed = isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError | ConnectionResetError)
        level = log.debug if closed else log.warning
        level("https_handshake_failed", client=str(client_address[0])[:64], reason=connection_failure(exc))
        raise


def listen(
    host: str,
    port: int,
    handler: type[BaseHTTPRequestHandler],
    setting: str,
    *,
    max_connections: int = 16,
    timeout_s: float = 10.0,
    tls: ssl.SSLContext | None = None,
) -> BoundedHTTPServer:
    """A bound :class:`BoundedHTTPServer`; a busy or forbidden address raises ConfigError naming ``setting`` (the
    config section whose host and port these are), instead of an ``OSError`` traceback after the model has loaded."""
    try:
        return BoundedHTTPServer((host, port), handler, max_connections=max_connections, timeout_s=timeout_s, tls=tls)
    except OSError as exc:
        raise ConfigError(
            f"{setting}.port {port} on {setting}.host {host}: cannot listen ({exc.strerror or exc}); "
            f"stop what holds it or choose another {setting}.port"
        ) from exc
