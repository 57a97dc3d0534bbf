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

    Overrides paho's ``_create_socket`` (stable through paho-mqtt 2.x, which pyproject pins); the test suite's
    broker tests run every connection through it, so a paho release that changed it would fail them.
    """

    def _create_socket(self) -> Any:
        return ReadBufferedSocket(super()._create_socket())
