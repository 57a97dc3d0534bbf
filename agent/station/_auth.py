"""Sign-in: scrypt password hashes and in-memory session tokens.

Hashes look like ``scrypt$16384$8$1$<salt b64>$<hash b64>`` so the cost can be raised later without breaking
stored ones. Sessions are random 256-bit tokens held in memory: a station restart signs everyone out, which is
the safe direction for a shared ward screen.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SessionStore", "hash_password", "verify_password"]

_N, _R, _P = 16384, 8, 1  # scrypt cost: ~16 MiB and tens of ms per sign-in on the ward PC, fine for humans
_DKLEN = 32


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A storable scrypt hash of ``password`` for ``station.users``."""
    if not password:
        raise ValueError("password must not be empty")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a hash from :func:`hash_password`; malformed hashes fail."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, expected = base64.b64decode(parts[4]), base64.b64decode(parts[5])
        digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(digest, expected)


@dataclass(frozen=True)
class Session:
    user: str
    expires_at: float


class SessionStore:
    """Token -> user, with expiry. Thread-safe: every HTTP request thread reads it."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, user: str) -> str:
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._sessions = {t: s for t, s in self._sessions.items() if s.expires_at > now}
            self._sessions[token] = Session(user, now + self._ttl_s)
        return token

    def user(self, token: str | None) -> str | None:
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
        if session is None or session.expires_at <= self._clock():
            return None
        return session.user

    def close(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)
