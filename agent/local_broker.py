"""A private Mosquitto broker on a free loopback port, for the demo and the tests.

Why ship it: the demo must run on a fresh machine with one command, and the tests must control auth,
persistence and restarts without touching the shared broker on 1883. There is no pure-Python fallback broker:
mosquitto is what deployments run (compose.yaml), it speaks MQTT 5 and enforces the security profile's ACLs, and
``./run`` installs it where apt is available.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from agent.broker_profile import BrokerUser, acl_text
from core.errors import BrokerError

__all__ = ["LocalMosquitto", "broker_reachable", "free_port"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_reachable(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when something accepts TCP connections at host:port (a broker, we assume: the client will tell)."""
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError:
        return False
    return True


@dataclass
class LocalMosquitto:
    """``with LocalMosquitto() as broker: broker.url`` — stopped and cleaned up on exit.

    ``persistence`` keeps queued QoS 1 messages and sessions across :meth:`restart`, as a production broker
    would; ``users`` maps username to password and turns anonymous access off; ``acl`` (the text of a mosquitto
    ACL file) then limits what each user may read and write: :meth:`secured` sets both to the broker security
    profile.
    """

    port: int = field(default_factory=free_port)
    persistence: bool = True
    users: dict[str, str] = field(default_factory=dict)
    acl: str = ""
    extra_config: str = ""
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ecgcast-mosquitto-")))
    _proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def secured(cls, prefix: str, users: Sequence[BrokerUser], *, persistence: bool = True) -> LocalMosquitto:
        """A broker with the security profile (docs/SECURITY.md): only ``users`` sign in, each writes what its role
        publishes under topic ``prefix``."""
        passwords = {user.name: user.password for user in users}
        return cls(persistence=persistence, users=passwords, acl=acl_text(prefix, users))

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            "max_queued_messages 100000",
            "max_inflight_messages 0",
            f"log_dest file {self.workdir / 'mosquitto.log'}",
            # mosquitto drops root privileges to user 'mosquitto', who cannot read our temp dir: stay as we are.
            f"user {getpass.getuser()}",
        ]
        if self.users:
            passwd = self.workdir / "passwd"
            passwd.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            subprocess.run(["mosquitto_passwd", "-U", str(passwd)], check=True, capture_output=True)
            passwd.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl:
            if not self.users:
                raise BrokerError("an ACL needs users: with anonymous access every client would share one identity")
            acl_file = self.workdir / "acl"
            acl_file.write_text(self.acl)
            lines.append(f"acl_file {acl_file}")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n" + self.extra_config)
        return conf

    def start(self) -> LocalMosquitto:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        conf = self._write_config()
        self._proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise BrokerError(f"mosquitto exited at start-up: {err.strip()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise BrokerError(f"mosquitto did not listen on port {self.port} within 10 s")

    def stop(self) -> None:
        """SIGTERM and wait, so the persistence file is written before the process exits."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None and self._proc.stderr:
            self._proc.stderr.close()
        self._proc = None

    def restart(self, down_s: float = 0.5) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def __enter__(self) -> LocalMosquitto:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
