"""A minimal IHE ACM Alert Manager for tests: an MLLP listener thread on 127.0.0.1 that parses every message with
hl7apy, answers each with an accept ACK built with hl7apy (or stays silent), and can push PCD-05 statuses on the
open connection, as an Alert Manager does when a nurse accepts an alert on a handheld."""

from __future__ import annotations

import queue
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_message

from agent.hospital import FrameReader, frame


def accept_ack(control_id: str, code: str = "CA") -> str:
    """ACK^R40^ACK for our message ``control_id``, built with hl7apy."""
    ack = Message("ACK", version="2.6", validation_level=VALIDATION_LEVEL.TOLERANT)
    ack.msh.msh_3.hd_1 = "AM"
    ack.msh.msh_9.msg_1, ack.msh.msh_9.msg_2, ack.msh.msh_9.msg_3 = "ACK", "R40", "ACK"
    ack.msh.msh_10 = f"ACK{control_id[:16]}"
    ack.msh.msh_11.pt_1 = "P"
    ack.msa.msa_1 = code
    ack.msa.msa_2 = control_id
    return str(ack.to_er7())


def alert_status(
    status: str, *, by: str | None = "nurse.kim", alert_id: str | None = None, control_id: str | None = None
) -> str:
    """A PCD-05 ``ORA^R41^ORA_R41`` (HL7 2.8.2, where ORA_R41 and PRT are defined), built with hl7apy."""
    ora = Message("ORA_R41", version="2.8.2", validation_level=VALIDATION_LEVEL.TOLERANT)
    ora.msh.msh_3.hd_1 = "AM"
    ora.msh.msh_9.msg_1, ora.msh.msh_9.msg_2, ora.msh.msh_9.msg_3 = "ORA", "R41", "ORA_R41"
    ora.msh.msh_10 = f"AM{time.monotonic_ns()}"
    ora.msh.msh_11.pt_1 = "P"
    ora.msa.msa_1 = "AA"
    if control_id is not None:
        ora.msa.msa_2 = control_id
    prt = ora.add_segment("PRT")
    prt.prt_2 = "UC"
    prt.prt_3.cwe_1 = status
    if by is not None:
        prt.prt_5.xcn_1 = by
    if alert_id is not None:
        ora.add_segment("OBR").obr_3.ei_1 = alert_id
    return str(ora.to_er7())


class AlertManagerStub:
    """Accepts one connection at a time; ``answer`` decides the ACK code for each message (None: no ACK)."""

    def __init__(self, port: int = 0, answer: Callable[[Any], str | None] = lambda message: "CA") -> None:
        self._server = socket.create_server(("127.0.0.1", port))
        self.port: int = self._server.getsockname()[1]
        self._answer = answer
        self.received: queue.Queue[Any] = queue.Queue()  # parsed hl7apy messages, in arrival order
        self.raw: list[str] = []
        self.connections = 0
        self._conn: socket.socket | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="alert-manager-stub", daemon=True)
        self._thread.start()

    def __enter__(self) -> AlertManagerStub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_message(self, timeout: float = 5.0) -> Any:
        return self.received.get(timeout=timeout)

    def send(self, message: str) -> None:
        """Push one message (a PCD-05) on the current connection."""
        deadline = time.monotonic() + 5.0
        while self._conn is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self._conn is not None, "no connection from the gateway"
        self._conn.sendall(frame(message))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._server.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self._server], [], [], 0.05)
            if readable:
                conn, _ = self._server.accept()
                self.connections += 1
                self._conn = conn
                try:
                    self._read(conn)
                finally:
                    self._conn = None
                    conn.close()

    def _read(self, conn: socket.socket) -> None:
        reader = FrameReader(1 << 20)
        while not self._stop.is_set():
            readable, _, _ = select.select([conn], [], [], 0.05)
            if not readable:
                continue
            data = conn.recv(65536)
            if not data:
                return
            for text in reader.feed(data):
                self.raw.append(text)
                message = parse_message(text, find_groups=False, validation_level=VALIDATION_LEVEL.TOLERANT)
                self.received.put(message)
                code = self._answer(message)
                if code is not None:
                    conn.sendall(frame(accept_ack(message.msh.msh_10.to_er7(), code)))
