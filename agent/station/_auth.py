"""Sign-in: scrypt password hashes, throttled password checks and in-memory session tokens.

Hashes look like ``scrypt$16384$8$1$<salt b64>$<hash b64>`` so the cost can be raised later without breaking
stored ones. Sessions are random 256-bit tokens held in memory: a station restart signs everyone out, which is
the safe direction for a shared ward screen. :class:`SignIn` is the only way the web server checks a password:
lock-outs per user and per address, a cap on concurrent scrypt, and the same cost for unknown users (issue #19).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Literal

import structlog

__all__ = ["SessionStore", "SignIn", "Strikes", "Verdict", "hash_password", "verify_password"]

log = structlog.get_logger(__name__)

_N, _R, _P = 16384, 8, 1  # scrypt cost: ~16 MiB and tens of ms per sign-in on the ward PC, fine for humans
_DKLEN = 32
MAX_CONCURRENT_HASHES = 2  # 40 parallel sign-ins once took the station from 349 to 907 MB: 2 x 16 MiB at most now
HASH_WAIT_S = 5.0  # a sign-in that waits longer than this for a free hash slot is answered 503
ADDRESS_FACTOR = 4  # one address (a shared ward PC, a NAT) may fail this many times more than one user


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


@cache
def _dummy_hash() -> str:
    """The hash an unknown user is checked against: a real scrypt of a random password, so it costs the same."""
    return hash_password(secrets.token_urlsafe(24))


class Strikes:
    """Failures per key within ``window_s``; ``limit`` of them lock the key for ``window_s``. Thread-safe, and
    bounded to ``max_keys`` (expired keys go first) so random user names cannot grow it without end."""

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic, max_keys: int = 4096
    ) -> None:
        self._limit = limit
        self._window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._keys: dict[str, tuple[int, float, float]] = {}  # key -> (failures, window start, locked until)
        self._lock = threading.Lock()

    def locked_for(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""
        with self._lock:
            _, _, until = self._keys.get(key, (0, 0.0, 0.0))
        return max(0.0, until - self._clock())

    def strike(self, key: str) -> bool:
        """Count a failure; True when this one started a lock-out."""
        now = self._clock()
        with self._lock:
            count, start, until = self._keys.pop(key, (0, now, 0.0))
            if now - start > self._window_s:
                count, start = 0, now
            count += 1
            locked = count >= self._limit
            self._keys[key] = (0, now, now + self._window_s) if locked else (count, start, until)
            if len(self._keys) > self._max_keys:
                self._prune(now)
        return locked

    def clear(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)

    def _prune(self, now: float) -> None:
        live = {k: v for k, v in self._keys.items() if v[2] > now or now - v[1] <= self._window_s}
        self._keys = live  # live lock-outs and counting windows stay
        while len(self._keys) > self._max_keys:
            del self._keys[next(iter(self._keys))]  # oldest touched first: dicts keep insertion order


@dataclass(frozen=True)
class Verdict:
    """What a sign-in attempt gets: ``accepted``, ``refused`` (wrong user or password), ``locked`` (too many
    failures: try again in ``retry_after_s``) or ``busy`` (every hash slot taken)."""

    outcome: Literal["accepted", "refused", "locked", "busy"]
    retry_after_s: float = 0.0


class SignIn:
    """Password checks for the sign-in form. The lock-out is checked before the hash (and again once a hash slot
    is free, so a parallel flood is cut off too), so during one even the right password is refused; a success
    clears its user's failures but not its address's, so one valid account cannot reset guessing at others."""

    def __init__(
        self,
        users: Mapping[str, str],
        max_failures: int,
        lockout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._users = dict(users)
        self._by_user = Strikes(max_failures, lockout_s, clock)
        self._by_address = Strikes(max_failures * ADDRESS_FACTOR, lockout_s, clock)
        self._hashing = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)
        _dummy_hash()  # once per process, at start-up rather than in the first unknown user's sign-in

    def attempt(self, user: str, password: str, address: str) -> Verdict:
        user = user[:128]
        stored = self._users.get(user)
        if (wait := self._locked_for(user, address)) > 0:
            return Verdict("locked", wait)
        if not self._hashing.acquire(timeout=HASH_WAIT_S):
            return Verdict("busy", HASH_WAIT_S)
        try:
            if (wait := self._locked_for(user, address)) > 0:
                return Verdict("locked", wait)
            matches = verify_password(password, stored if stored is not None else _dummy_hash())
        finally:
            self._hashing.release()
        if matches and stored is not None:
            self._by_user.clear(user)
            return Verdict("accepted")
        if self._by_user.strike(user):
            log.warning("station_sign_in_locked_out", user=user[:64], for_s=self._by_user.locked_for(user))
        if self._by_address.strike(address):
            log.warning("station_sign_in_locked_out", address=address, for_s=self._by_address.locked_for(address))
        return Verdict("refused")

    def _locked_for(self, user: str, address: str) -> float:
        return max(self._by_user.locked_for(user), self._by_address.locked_for(address))
