"""Read-buffered sockets for paho: one ``recv`` system call per many MQTT packets instead of three or four per packet.

paho reads each packet with ``recv(1)`` for the command byte, ``recv(1)`` per remaining-length byte and one
``recv`` for the body. Every call is a system call that releases the GIL, and with the ingest worker busy the
network thread then waits for the GIL again after each of them (the convoy effect), so at thousands of messages
per second paho's thread spent more time waiting than parsing. Reading 64 KiB at a time and serving paho's small
reads from memory keeps the bytes and the GIL where they are.

paho's socket protocol (``recv``, ``send``, ``close``, ``fileno``, ``setblocking`` and the optional ``pending``
that its TLS path already uses to skip ``select`` while bytes are buffered) is all a wrapper has to offer; the
client subclass only wraps what paho's own ``_create_socket`` returns, so TLS, proxies and Unix sockets keep
working unchanged.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

__all__ = ["BufferedReadClient", "ReadBufferedSocket"]

READ_SIZE = 65536
"""Bytes asked of the kernel per read: ~45 wave messages of 1 s x 2 leads, and far below a socket's buffer."""


class ReadBufferedSocket:
    """A socket (plain or TLS) whose reads come from a local buffer refilled ``READ_SIZE`` bytes at a time.

    Errors and end of stream pass through unchanged: ``BlockingIOError`` or ``ssl.SSLWantReadError`` when
    nothing is buffered and nothing arrived, ``b""`` when the peer closed.
    """

    def __init__(self, sock: Any, read_size: int = READ_SIZE) -> None:
        self._sock = sock
        self._inner_pending = getattr(sock, "pending", None)  # TLS sockets buffer decrypted bytes too
        self._read_size = read_size
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            data: bytes = self._sock.recv(max(bufsize, self._read_size))
            if len(data) <= bufsize:
                return data  # exactly what was asked for, or end of stream
            self._buf, self._pos = data, 0
        start = self._pos
        self._pos = min(start + bufsize, len(self._buf))
        return self._buf[start : self._pos]

    def pending(self) -> int:
        """Bytes readable without the kernel: paho skips ``select`` while this is positive."""
        inner = self._inner_pending() if self._inner_pending is not None else 0
        return len(self._buf) - self._pos + inner

    def send(self, data: bytes | bytearray) -> int:
        return int(self._sock.send(data))

    def close(self) -> None:
        self._buf, self._pos = b"", 0
        self._sock.close()

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def __getattr__(self, name: str) -> Any:
        """Anything else (``settimeout``, ``getpeername`` for callers of ``client.socket()``) is the socket's."""
        return getattr(self._sock, name)


class BufferedReadClient(mqtt.Client):
    """paho's client with :class:`ReadBufferedSocket` around every connection it opens.

    Overrides paho's ``_create_socket`` and ``_ssl_wrap_socket`` (stable through paho-mqtt 2.x, which pyproject
    pins); the test suite's broker tests run every connection through them, TLS ones included, so a paho release
    that changed them would fail them.
    """

    on_socket_error: Callable[[OSError], None] | None = None
    """Told why opening the connection failed (TCP or TLS: a refused port, an unknown CA, a host name the certificate
    does not name), before paho swallows the error and retries: paho says nothing but "Connection failed"."""

    def _create_socket(self) -> Any:
        try:
            return ReadBufferedSocket(super()._create_socket())
        except OSError as exc:  # ssl.SSLError and CertificateError are OSErrors too
            if self.on_socket_error is not None:
                self.on_socket_error(exc)
            raise

    def close_sockets(self) -> None:
        """Close the connection and the wake-up socket pair ``loop_start`` made; call after ``loop_stop``. paho
        closes them only when the client is collected, and a client is collected late, by the cycle collector
        (its callbacks are bound methods of its owner), which may finalize the sockets first: a file descriptor
        held meanwhile and a ResourceWarning each."""
        self._reset_sockets()

    def _ssl_wrap_socket(self, tcp_sock: socket.socket) -> ssl.SSLSocket:
        """paho's TLS wrap, except that a failed handshake closes the socket: paho drops it open, for the collector
        to close (a ResourceWarning and a file descriptor per failed attempt, every reconnect). The host name is
        checked by the context, as in paho 2.x: ``tls_set`` turns ``check_hostname`` on, ``tls_insecure_set(True)``
        off (``core.mqtt.apply_credentials``)."""
        if self._ssl_context is None:
            raise ValueError("TLS is on but paho holds no SSL context")
        ssl_sock = self._ssl_context.wrap_socket(tcp_sock, server_hostname=self._host, do_handshake_on_connect=False)
        try:
            ssl_sock.settimeout(self._connect_timeout)
            ssl_sock.do_handshake()
        except BaseException:
            ssl_sock.close()
            raise
        return ssl_sock
