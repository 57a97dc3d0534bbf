"""Why a TLS (or TCP) connection failed, in words an operator can act on, with secrets masked.

Python's errors for a failed connection are precise but scattered: a certificate the CA does not vouch for and a
certificate for another host are both ``SSLCertVerificationError`` (told apart by ``verify_message``), a peer that
speaks plain text on a TLS port is an ``SSLError`` with reason ``WRONG_VERSION_NUMBER``, a silent peer a
``TimeoutError``. Without a reason in the log a wrong host name or an unknown CA looked like nothing at all (issue
#19). Every client and server of ours logs :func:`connection_failure` of the exception instead of the exception.
"""

from __future__ import annotations

import socket
import ssl
from typing import Final

from core.config import mask_secrets

__all__ = ["connection_failure"]

_HINTS: Final = {
    "WRONG_VERSION_NUMBER": "the peer does not speak TLS on this port (a plain-text listener?)",
    "HTTP_REQUEST": "a plain HTTP request on the TLS port",
    "TLSV1_ALERT_UNKNOWN_CA": "the peer does not trust the CA of our certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the peer refused our certificate",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the peer refused our certificate",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the peer requires a client certificate",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "no TLS version or cipher in common",
    "UNSUPPORTED_PROTOCOL": "no TLS version in common",
}


def connection_failure(exc: BaseException) -> str:
    """One line: the kind of failure first (``certificate verify failed``, ``hostname mismatch``, ``handshake timed
    out``, ``connection refused``, ...), then the library's detail; URL passwords masked."""
    return mask_secrets(_describe(exc))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        kind = "hostname mismatch" if "mismatch" in detail.lower() else "certificate verify failed"
        return f"{kind}: {detail}"
    if isinstance(exc, TimeoutError):  # socket.timeout; ssl raises it for a handshake that took too long
        return f"handshake timed out: {exc}" if "handshake" in str(exc) else f"timed out: {str(exc) or 'no answer'}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or type(exc).__name__
        hint = _HINTS.get(reason)
        return f"TLS error {reason}: {hint}" if hint else f"TLS error {reason}: {exc}"
    if isinstance(exc, socket.gaierror):
        return f"host name not resolved: {exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port?)"
    if isinstance(exc, ConnectionError):
        return f"connection lost: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"
