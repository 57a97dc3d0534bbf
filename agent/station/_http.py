"""The station's web server: sign-in, the page and its assets, a JSON API and the Server-Sent Event stream.

Stdlib server from agent/http_listen.py (like agent/observability.py): one thread per connection, at most
``station.max_connections``, each read and write (and the TLS handshake) bounded by ``station.request_timeout_s``.
SSE requests hold their thread for as long as the page is open, so they may take only half the connections.
Loopback by default; HTTPS when ``station.tls_cert_file`` is set, otherwise behind a reverse proxy that terminates
TLS, whose user header counts only from ``station.trusted_proxies`` (docs/STATION.md, docs/SECURITY.md).
"""

from __future__ import annotations

import ipaddress
import json
import math
import queue
import ssl
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

from agent.hospital import fhir
from agent.hospital.settings import HospitalSettings
from agent.http_listen import listen
from agent.station._auth import SessionStore, SignIn
from agent.station._feed import PushHub, StationFeed, sse_frame
from agent.station._state import StationState
from agent.station.settings import StationSettings, trusted_network
from core.errors import EcgcastError, ProtocolError

__all__ = ["StationHttp"]

log = structlog.get_logger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
}
COOKIE = "ecgcast_station"
SEARCHES_ONLY = "only searches of RiskAssessment and Observation by patient are served"
MAX_BODY = 4096
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class BadRequest(Exception):
    """A malformed request: answered with ``status`` and a short message, never a 500 or a traceback."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


class StationHttp:
    """Routes requests; owns the HTTP server thread. ``close()`` is idempotent."""

    def __init__(
        self,
        settings: StationSettings,
        state: StationState,
        hub: PushHub,
        feed: StationFeed,
        hospital: HospitalSettings | None = None,
    ) -> None:
        self._settings = settings
        self._hospital = hospital or HospitalSettings()  # who patients are in FHIR resources (unmapped: stream id)
        self._state = state
        self._hub = hub
        self._feed = feed
        self._sessions = SessionStore(settings.session_ttl_s)
        self._sign_in = SignIn(settings.users, settings.sign_in_max_failures, settings.sign_in_lockout_s)
        self._proxies = [trusted_network(entry) for entry in settings.trusted_proxies]
        self._streams = 0  # open event streams, at most half of max_connections
        self._streams_lock = threading.Lock()
        self._stopping = threading.Event()
        self._tls = settings.tls_cert_file is not None
        routes = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "ecgcast-station"

            def do_GET(self) -> None:
                routes._dispatch(self, "GET")

            def do_POST(self) -> None:
                routes._dispatch(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                return  # the page polls nothing, but SSE reconnects would still flood the structured log

        context = None
        if self._tls:  # the handshake runs on each connection's thread, never in accept() (http_listen.py)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(settings.tls_cert_file), str(settings.tls_key_file))
        self._httpd = listen(
            settings.host,
            settings.port,
            Handler,
            "station",
            max_connections=settings.max_connections,
            timeout_s=settings.request_timeout_s,
            tls=context,
        )
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="station-http", daemon=True)
        self._closed = False

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self._settings.host in ("0.0.0.0", "") else self._settings.host
        return f"{'https' if self._tls else 'http'}://{host}:{self.port}"

    def start(self) -> None:
        self._thread.start()
        log.info("station_listening", url=self.url)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self._thread.is_alive():
            self._httpd.shutdown()  # waits for serve_forever to return: never call it on a server never started
        self._httpd.server_close()

    # --- routing -------------------------------------------------------------------------------------------

    def _dispatch(self, request: BaseHTTPRequestHandler, method: str) -> None:
        path = urlsplit(request.path).path
        try:
            _check_path(path)
            self._route(request, method, path)
        except BadRequest as exc:
            self._json(request, exc.status, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            return  # the browser went away, or stopped sending or reading for request_timeout_s
        except Exception:
            log.exception("station_request_failed", method=method, path=path[:200])
            self._json(request, HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})

    def _route(self, request: BaseHTTPRequestHandler, method: str, path: str) -> None:
        public: dict[tuple[str, str], Callable[[BaseHTTPRequestHandler], None]] = {
            ("GET", "/login"): lambda r: self._static(r, "login.html"),
            ("POST", "/login"): self._login,
            ("POST", "/logout"): self._logout,
        }
        if (method, path) in public:
            public[(method, path)](request)
        elif method == "GET" and path.startswith("/static/"):
            self._static(request, path.removeprefix("/static/"))
        else:
            self._private(request, method, path)

    def _private(self, request: BaseHTTPRequestHandler, method: str, path: str) -> None:
        user = self._user(request)
        if user is None:
            if path == "/":
                self._redirect(request, "/login")
            else:
                self._json(request, HTTPStatus.UNAUTHORIZED, {"error": "sign in first"})
            return
        if method == "GET" and path == "/":
            self._static(request, "index.html")
        elif method == "GET" and path == "/api/me":
            me = {"user": user, "sound": self._settings.sound, "audio_pause_s": self._settings.audio_pause_s}
            self._json(request, HTTPStatus.OK, me)
        elif method == "GET" and path == "/api/state":
            self._json(request, HTTPStatus.OK, self._state_json())
        elif method == "GET" and path.startswith("/api/patient/"):
            detail = self._state.detail(path.removeprefix("/api/patient/"))
            code = HTTPStatus.OK if detail is not None else HTTPStatus.NOT_FOUND
            self._json(request, code, detail if detail is not None else {"error": "unknown patient"})
        elif method == "GET" and path == "/api/events":
            self._events(request)
        elif method == "POST" and path == "/api/ack":
            self._ack(request, user)
        elif method == "POST" and path == "/api/mute":
            self._mute(request, user)
        elif method == "GET" and path.startswith("/fhir/"):
            self._fhir_search(request, path.removeprefix("/fhir/"))
        else:
            self._json(request, HTTPStatus.NOT_FOUND, {"error": "not found"})

    # --- sign-in -------------------------------------------------------------------------------------------

    def _user(self, request: BaseHTTPRequestHandler) -> str | None:
        """The proxy's header when configured and present (403 unless a trusted proxy sent it), else the session
        cookie's user."""
        header = self._settings.proxy_user_header
        named = request.headers.get(header, "").strip() if header is not None else ""
        if named:
            if not self._from_trusted_proxy(request):
                log.warning("station_proxy_header_refused", address=request.client_address[0], header=header)
                raise BadRequest("proxy user header from an untrusted address", HTTPStatus.FORBIDDEN)
            return named[:128]
        cookie = SimpleCookie(request.headers.get("Cookie", ""))
        token = cookie[COOKIE].value if COOKIE in cookie else None
        return self._sessions.user(token)

    def _from_trusted_proxy(self, request: BaseHTTPRequestHandler) -> bool:
        peer = ipaddress.ip_address(request.client_address[0])
        return any(peer in network for network in self._proxies)

    def _login(self, request: BaseHTTPRequestHandler) -> None:
        form = parse_qs(self._body(request).decode("utf-8", "replace"))
        user = (form.get("username") or [""])[0].strip()
        password = (form.get("password") or [""])[0]
        verdict = self._sign_in.attempt(user, password, request.client_address[0])
        if verdict.outcome in ("locked", "busy"):
            code = HTTPStatus.TOO_MANY_REQUESTS if verdict.outcome == "locked" else HTTPStatus.SERVICE_UNAVAILABLE
            wait = math.ceil(verdict.retry_after_s)
            reason = "Too many failed sign-ins" if verdict.outcome == "locked" else "Sign-in is busy"
            text = f"{reason}: try again in {wait} s."
            self._send(request, code, text.encode(), "text/plain; charset=utf-8", {"Retry-After": str(wait)})
            return
        if verdict.outcome != "accepted":
            log.warning("station_sign_in_failed", user=user[:64])
            self._redirect(request, "/login?failed=1")
            return
        token = self._sessions.open(user)
        secure = "; Secure" if self._tls else ""
        cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={int(self._settings.session_ttl_s)}"
        log.info("station_signed_in", user=user)
        self._redirect(request, "/", {"Set-Cookie": cookie + secure})

    def _logout(self, request: BaseHTTPRequestHandler) -> None:
        cookie = SimpleCookie(request.headers.get("Cookie", ""))
        self._sessions.close(cookie[COOKIE].value if COOKIE in cookie else None)
        self._redirect(request, "/login", {"Set-Cookie": f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"})

    # --- API -----------------------------------------------------------------------------------------------

    def _ack(self, request: BaseHTTPRequestHandler, user: str) -> None:
        fields = self._json_fields(request)
        patient_id, alert_id = fields.get("patient_id"), fields.get("alert_id")
        if not isinstance(patient_id, str) or not isinstance(alert_id, str):
            raise BadRequest("need patient_id and alert_id")
        answer = {"by": user, "alert_id": alert_id}
        self._publish(request, lambda: self._feed.publish_ack(patient_id, alert_id, user), answer)

    def _mute(self, request: BaseHTTPRequestHandler, user: str) -> None:
        """``{"patient_id", "action": "mute"|"unmute", "reason", "duration_s"}``; ``by`` is the signed-in user."""
        fields = self._json_fields(request)
        patient_id = fields.get("patient_id")
        if not isinstance(patient_id, str):
            raise BadRequest("need patient_id")
        mute: dict[str, Any] = {k: fields[k] for k in ("action", "reason", "duration_s") if k in fields}
        answer = {"by": user, "action": mute.get("action")}
        self._publish(request, lambda: self._feed.publish_mute(patient_id, mute, user), answer)

    def _json_fields(self, request: BaseHTTPRequestHandler) -> dict[str, Any]:
        """The JSON object a page posted. Only ``application/json`` is read, so a cross-site form cannot post."""
        if not request.headers.get("Content-Type", "").startswith("application/json"):
            raise BadRequest("send application/json", HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
        body = _json_body(self._body(request))
        return body if isinstance(body, dict) else {}

    def _publish(self, request: BaseHTTPRequestHandler, send: Callable[[], None], answer: dict[str, Any]) -> None:
        """Run ``send`` (a publish to the broker) and answer 202, 400 with the refusal's reason, or 503."""
        try:
            send()
        except ProtocolError as exc:
            raise BadRequest(str(exc)) from None
        except EcgcastError as exc:
            raise BadRequest(str(exc), HTTPStatus.SERVICE_UNAVAILABLE) from None
        self._json(request, HTTPStatus.ACCEPTED, {"published": True, **answer})

    def _state_json(self) -> dict[str, Any]:
        """The snapshot, with the station's own health: broker connection and feed thread."""
        feed = {"alive": self._feed.alive, "restarts": self._feed.restarts}
        return {**self._state.snapshot(), "broker_connected": self._feed.connection.connected, "feed": feed}

    def _events(self, request: BaseHTTPRequestHandler) -> None:
        """Server-Sent Events, at most half of ``max_connections`` of them so sign-in and the API stay reachable."""
        with self._streams_lock:
            if self._streams >= self._settings.max_connections // 2:
                raise BadRequest("too many open pages", HTTPStatus.SERVICE_UNAVAILABLE)
            self._streams += 1
        try:
            self._stream(request)
        finally:
            with self._streams_lock:
                self._streams -= 1

    def _stream(self, request: BaseHTTPRequestHandler) -> None:
        """A full snapshot first, then pushes until the page or the server goes away."""
        request.send_response(HTTPStatus.OK)
        request.send_header("Content-Type", "text/event-stream")
        request.send_header("Cache-Control", "no-store")
        request.end_headers()
        q = self._hub.connect(b"retry: 2000\n\n" + sse_frame("snapshot", self._state.snapshot()))
        try:
            while not self._stopping.is_set():
                try:
                    frame = q.get(timeout=1.0)
                except queue.Empty:
                    continue
                request.wfile.write(frame)
                request.wfile.flush()
        finally:
            self._hub.disconnect(q)

    # --- FHIR ----------------------------------------------------------------------------------------------

    def _fhir_search(self, request: BaseHTTPRequestHandler, resource_type: str) -> None:
        """``GET /fhir/RiskAssessment?patient=<id>``: the latest forecast, its evidence Observations included;
        ``GET /fhir/Observation?patient=<id>``: that evidence alone. Both a searchset Bundle (docs/INTEGRATION.md)."""
        if resource_type not in ("RiskAssessment", "Observation"):
            self._fhir(request, HTTPStatus.NOT_FOUND, fhir.operation_outcome("not-supported", SEARCHES_ONLY))
            return
        try:
            query = parse_qs(urlsplit(request.path).query, max_num_fields=16)
            patient_id = fhir.search_patient(query, self._hospital)
        except ValueError as exc:
            self._fhir(request, HTTPStatus.BAD_REQUEST, fhir.operation_outcome("invalid", str(exc)))
            return
        self._fhir(request, HTTPStatus.OK, self._fhir_bundle(resource_type, patient_id))

    def _fhir_bundle(self, resource_type: str, patient_id: str | None) -> fhir.FhirJson:
        """Built per request from the forecast the state holds: no FHIR copy to keep in step with it."""
        forecast = self._state.forecast(patient_id) if patient_id is not None else None
        if forecast is None:
            return fhir.searchset([])
        found = fhir.forecast_resources(forecast, self._hospital)
        if resource_type == "RiskAssessment":
            return fhir.searchset([found.risk_assessment], found.observations)
        return fhir.searchset(found.observations)

    def _fhir(self, request: BaseHTTPRequestHandler, code: HTTPStatus, body: fhir.FhirJson) -> None:
        payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        self._send(request, code, payload, fhir.FHIR_JSON, {"Cache-Control": "no-store"})

    # --- plumbing ------------------------------------------------------------------------------------------

    @staticmethod
    def _body(request: BaseHTTPRequestHandler) -> bytes:
        """At most ``MAX_BODY`` bytes of the body; a Content-Length that is not a decimal count is a 400."""
        declared = (request.headers.get("Content-Length") or "0").strip()
        if not declared.isascii() or not declared.isdigit():
            raise BadRequest("Content-Length must be a non-negative decimal number")
        length = min(int(declared[:12]), MAX_BODY)
        return request.rfile.read(length) if length > 0 else b""

    def _static(self, request: BaseHTTPRequestHandler, name: str) -> None:
        if not name.isprintable() or "/" in name:
            raise BadRequest("not found", HTTPStatus.NOT_FOUND)
        path = (STATIC_DIR / name).resolve()
        if path.parent != STATIC_DIR or path.suffix not in CONTENT_TYPES or not path.is_file():
            self._json(request, HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        self._send(request, HTTPStatus.OK, path.read_bytes(), CONTENT_TYPES[path.suffix], {"Cache-Control": "no-cache"})

    def _json(self, request: BaseHTTPRequestHandler, code: HTTPStatus, body: Any) -> None:
        payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        self._send(request, code, payload, "application/json", {"Cache-Control": "no-store"})

    def _redirect(self, request: BaseHTTPRequestHandler, to: str, headers: dict[str, str] | None = None) -> None:
        self._send(request, HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": to, **(headers or {})})

    @staticmethod
    def _send(
        request: BaseHTTPRequestHandler, code: HTTPStatus, body: bytes, content_type: str, headers: dict[str, str]
    ) -> None:
        request.send_response(code)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        for name, value in {**SECURITY_HEADERS, **headers}.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(body)


def _check_path(path: str) -> None:
    """Control characters (a NUL, a newline) have no place in a URL path; refuse them before any route sees them."""
    if not path.isprintable():
        raise BadRequest("bad request path")


def _json_body(raw: bytes) -> Any:
    """The request body as JSON; malformed, undecodable or absurdly nested JSON is a 400."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest("body is not UTF-8 JSON") from None
    except RecursionError:
        raise BadRequest("body nests too deeply") from None
