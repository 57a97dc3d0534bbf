"""``core.tls.connection_failure``: the kind of failure first, the library's detail after, secrets masked. Real TLS
failures are logged end to end in tests/agent/test_agent_mqtt.py (the MQTT client) and
tests/agent/station/test_station_hardening.py (the HTTPS station); these cover the cases they cannot stage."""

from __future__ import annotations

import socket
import ssl

import pytest

from core.tls import connection_failure


def verify_error(message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
    exc.verify_message = message
    return exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (verify_error("unable to get local issuer certificate"), "certificate verify failed: unable to get local"),
        (verify_error("Hostname mismatch, certificate is not valid for 'x'."), "hostname mismatch: Hostname"),
        (verify_error("IP address mismatch, certificate is not valid for '10.0.0.1'."), "hostname mismatch: IP"),
        (TimeoutError("_ssl.c:989: The handshake operation timed out"), "handshake timed out: _ssl.c:989"),
        (TimeoutError(), "timed out: no answer"),
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (ConnectionResetError(104, "Connection reset by peer"), "connection lost: Connection reset by peer"),
        (socket.gaierror(-2, "Name or service not known"), "host name not resolved: Name or service not known"),
    ],
)
def test_the_reason_leads_with_the_kind_of_failure(exc: BaseException, expected: str) -> None:
    assert connection_failure(exc).startswith(expected)


def test_an_ssl_error_is_named_by_its_reason_with_a_hint() -> None:
    exc = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    exc.reason = "WRONG_VERSION_NUMBER"
    assert connection_failure(exc) == (
        "TLS error WRONG_VERSION_NUMBER: the peer does not speak TLS on this port (a plain-text listener?)"
    )


def test_a_password_in_a_url_is_masked() -> None:
    reason = connection_failure(OSError("cannot reach mqtts://kim:S3cret-PW-xyz@broker:8883"))
    assert "S3cret" not in reason and "mqtts://kim:***@broker:8883" in reason
