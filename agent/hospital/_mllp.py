"""MLLP, HL7's minimal lower-layer protocol: each message framed as ``<VT> message <FS><CR>`` on a TCP stream.

The framing is all this module knows; what a message says is hl7apy's business (``_pcd04``, ``_pcd05``). Every
wait is bounded (connect, each send, each receive), and an inbound frame is capped, so a slow, silent or hostile
peer costs a timeout and a reconnect, never a stuck thread or unbounded memory.
"""

from __future__ import annotations

import select
import socket
from typing import Final

from core.errors import ProtocolError

__all__ = ["END_BLOCK", "START_BLOCK", "FrameReader", "MllpConnection", "frame"]

START_BLOCK: Final = b"\x0b"
END_BLOCK: Final = b"\x1c\x0d"
ENCODING: Final = "utf-8"  # MSH-18 "UNICODE UTF-8" on what we send; a peer's stray bytes are replaced, not fatal


def frame(message: str) -> bytes:
    """One message as MLLP bytes."""
    return START_BLOCK + message.encode(ENCODING) + END_BLOCK


class FrameReader:
    """Splits a byte stream into messages. Bytes outside a frame (a peer's keep-alive newlines) are skipped; a frame
    growing past ``max_bytes`` without its end raises ``ProtocolError("oversize")``."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[str]:
        self._buffer += data
        messages: list[str] = []
        while True:
            start = self._buffer.find(START_BLOCK)
            if start < 0:
                self._buffer.clear()
                return messages
            end = self._buffer.find(END_BLOCK, start + 1)
            if end < 0:
                del self._buffer[:start]
                if len(self._buffer) > self._max_bytes:
                    raise ProtocolError("oversize", f"MLLP frame over {self._max_bytes} bytes without its end")
                return messages
            messages.append(self._buffer[start + 1 : end].decode(ENCODING, errors="replace"))
            del self._buffer[: end + len(END_BLOCK)]


class MllpConnection:
    """One client connection to an MLLP listener. Not thread-safe: one owner thread sends and receives."""

    def __init__(self, sock: socket.socket, max_bytes: int) -> None:
        self._sock = sock
        self._reader = FrameReader(max_bytes)

    @classmethod
    def open(cls, host: str, port: int, timeout_s: float, max_bytes: int) -> MllpConnection:
        """Connect within ``timeout_s``; later sends are bounded by the same timeout. Raises OSError."""
        sock = socket.create_connection((host, port), timeout=timeout_s)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return cls(sock, max_bytes)

    def send(self, message: str) -> None:
        """Write one framed message (bounded by the socket timeout; raises OSError)."""
        self._sock.sendall(frame(message))

    def receive(self, timeout_s: float) -> list[str]:
        """The messages that arrived within ``timeout_s`` (often none). Raises ConnectionError when the peer has
        closed, ProtocolError for an oversize frame."""
        readable, _, _ = select.select([self._sock], [], [], max(timeout_s, 0.0))
        if not readable:
            return []
        data = self._sock.recv(65536)
        if not data:
            raise ConnectionError("the HL7 receiver closed the connection")
        return self._reader.feed(data)

    def close(self) -> None:
        self._sock.close()
