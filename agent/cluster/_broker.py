"""A private RabbitMQ 4 on loopback for development and tests, run from a Debian 13 root file system.

Why a root file system: Debian 12's rabbitmq-server is 3.10 (no MQTT 5, no super streams, and single active consumer
on streams silently ignored), and RabbitMQ 4 ships in Debian 13 packages. ``debootstrap --variant=minbase
--include=rabbitmq-server trixie`` builds one once (a few minutes, 370 MB) under the ecgcast cache folder; each
broker then runs chrooted into it with its own data folder and ports, so it never clashes with the machine's
mosquitto (1883), RabbitMQ (5672) or epmd (4369).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import structlog

from agent.local_broker import broker_reachable, free_port
from core.errors import BrokerError, LifecycleError

__all__ = ["DEFAULT_ROOTFS", "BrokerPorts", "PrivateRabbitMQ", "prepare_rootfs", "rootfs_ready"]

log = structlog.get_logger(__name__)

# Beside the model cache, outside the work tree: every clone (and CI on the same machine) reuses one build.
DEFAULT_ROOTFS = (
    Path(os.environ.get("ECGCAST_CACHE_DIR") or Path.home() / ".cache" / "ecgcast") / "rabbitmq4" / "rootfs"
)
_SUITE = "trixie"  # Debian 13: RabbitMQ 4.0
_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the real script: Debian's wrapper would su to 'rabbitmq'
_PLUGINS = ("rabbitmq_mqtt", "rabbitmq_stream", "rabbitmq_consistent_hash_exchange")


def rootfs_ready(rootfs: Path = DEFAULT_ROOTFS) -> bool:
    return (rootfs / _SERVER.lstrip("/")).exists()


def prepare_rootfs(rootfs: Path = DEFAULT_ROOTFS, mirror: str | None = None) -> Path:
    """Build the RabbitMQ 4 root file system once (needs root and debootstrap); a finished one is reused."""
    if rootfs_ready(rootfs):
        return rootfs
    if shutil.which("debootstrap") is None:
        raise BrokerError(
            "debootstrap is not installed: apt-get install debootstrap (needed once, to build RabbitMQ 4)"
        )
    if os.geteuid() != 0:
        raise BrokerError("building the RabbitMQ 4 root file system needs root (debootstrap and chroot)")
    partial = rootfs.with_name(rootfs.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["debootstrap", "--variant=minbase", "--include=rabbitmq-server", _SUITE, str(partial)]
    log.info("rabbitmq_rootfs_building", rootfs=str(rootfs), suite=_SUITE)
    started = time.monotonic()
    result = subprocess.run([*cmd, *([mirror] if mirror else [])], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(f"debootstrap failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    partial.rename(rootfs)
    log.info("rabbitmq_rootfs_built", rootfs=str(rootfs), seconds=round(time.monotonic() - started, 1))
    return rootfs


@dataclass(frozen=True)
class BrokerPorts:
    """Every port the node opens; free loopback ports by default."""

    amqp: int = field(default_factory=free_port)
    stream: int = field(default_factory=free_port)
    mqtt: int = field(default_factory=free_port)
    dist: int = field(default_factory=free_port)
    epmd: int = field(default_factory=free_port)


def _config(ports: BrokerPorts, mqtt_exchange: str) -> str:
    return "\n".join(
        [
            f"listeners.tcp.default = 127.0.0.1:{ports.amqp}",
            f"stream.listeners.tcp.default = 127.0.0.1:{ports.stream}",
            "stream.advertised_host = 127.0.0.1",  # what the stream protocol tells clients to connect to
            f"stream.advertised_port = {ports.stream}",
            f"mqtt.listeners.tcp.default = 127.0.0.1:{ports.mqtt}",
            f"mqtt.exchange = {mqtt_exchange}",  # declared by 'cluster init' with an alternate exchange
            "",
        ]
    )


@dataclass
class PrivateRabbitMQ:
    """``with PrivateRabbitMQ() as rabbit: rabbit.ports.mqtt``: one RabbitMQ 4 node on loopback, stopped on exit.

    The data folder lives inside the root file system (``/var/lib/ecgcast/<name>``) and is removed on stop unless
    ``keep_data``; :meth:`restart` keeps it, as a production node's disk would.
    """

    rootfs: Path = DEFAULT_ROOTFS
    ports: BrokerPorts = field(default_factory=BrokerPorts)
    mqtt_exchange: str = "ecg.ingress"
    name: str = field(default_factory=lambda: f"node-{uuid.uuid4().hex[:8]}")
    keep_data: bool = False
    _proc: subprocess.Popen[bytes] | None = None
    _closed: bool = False

    @property
    def data_dir(self) -> Path:
        """The node's folder as seen from outside the chroot."""
        return self.rootfs / "var" / "lib" / "ecgcast" / self.name

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.ports.mqtt}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "node.log"

    def _env(self) -> dict[str, str]:
        inner = f"/var/lib/ecgcast/{self.name}"
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": inner,  # the Erlang cookie is created here
            "LANG": "C.UTF-8",
            "ERL_EPMD_PORT": str(self.ports.epmd),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(self.ports.dist),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_NODENAME": "rabbit@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_CONFIG_FILE": f"{inner}/rabbitmq.conf",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{inner}/enabled_plugins",
            "RABBITMQ_MNESIA_BASE": f"{inner}/mnesia",
            "RABBITMQ_LOG_BASE": f"{inner}/log",
            "RABBITMQ_LOGS": "-",
        }

    def start(self, timeout_s: float = 90.0) -> PrivateRabbitMQ:
        if self._closed:
            raise LifecycleError("PrivateRabbitMQ was stopped; build a new one")
        if not rootfs_ready(self.rootfs):
            raise BrokerError(f"no RabbitMQ 4 root file system at {self.rootfs}: run 'python main.py cluster broker'")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "rabbitmq.conf").write_text(_config(self.ports, self.mqtt_exchange))
        (self.data_dir / "enabled_plugins").write_text(f"[{','.join(_PLUGINS)}].\n")
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                ["chroot", str(self.rootfs), "env", "-i", *(f"{k}={v}" for k, v in self._env().items()), _SERVER],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stop() signals the whole group: the shell script, beam and epmd
            )
        deadline = time.monotonic() + timeout_s
        while not all(
            broker_reachable("127.0.0.1", p, 0.5) for p in (self.ports.amqp, self.ports.stream, self.ports.mqtt)
        ):
            if self._proc.poll() is not None:
                raise BrokerError(f"RabbitMQ exited with {self._proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                self._signal(signal.SIGKILL)
                raise BrokerError(f"RabbitMQ did not open its ports within {timeout_s:.0f} s; see {self.log_path}")
            time.sleep(0.3)
        log.info("rabbitmq_started", amqp=self.ports.amqp, stream=self.ports.stream, mqtt=self.ports.mqtt)
        return self

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, sig)
            except ProcessLookupError:
                return

    def _halt(self, timeout_s: float) -> None:
        """SIGTERM the node's process group (RabbitMQ shuts down cleanly on it), SIGKILL if it lingers, then epmd."""
        if self._proc is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self._proc.wait(5)
        self._proc = None
        # epmd daemonises out of our process group: ask it to leave through its own port.
        subprocess.run(
            ["chroot", str(self.rootfs), "env", f"ERL_EPMD_PORT={self.ports.epmd}", "epmd", "-kill"],
            capture_output=True,
            check=False,
        )

    def restart(self, timeout_s: float = 90.0) -> None:
        """Stop and start on the same data and ports (durable streams and exchanges survive)."""
        self._halt(30.0)
        self.start(timeout_s)

    def stop(self) -> None:
        """Idempotent: stop the node and remove its data unless ``keep_data``."""
        if self._closed:
            return
        self._closed = True
        self._halt(30.0)
        if not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> PrivateRabbitMQ:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
