"""The read-buffered socket under paho: paho's small reads served from one large read, errors passed through."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from agent.mqtt_socket import ReadBufferedSocket


@pytest.fixture
def pair() -> Iterator[tuple[ReadBufferedSocket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield ReadBufferedSocket(ours, read_size=64), theirs
    ours.close()
    theirs.close()


def test_small_reads_are_served_from_one_kernel_read(pair: tuple[ReadBufferedSocket, socket.socket]) -> None:
    sock, peer = pair
    peer.sendall(bytes(range(40)))
    assert sock.recv(1) == b"\x00"
    assert sock.pending() == 39  # the rest is buffered: paho must not wait in select for it
    assert sock.recv(2) == b"\x01\x02"
    assert sock.recv(100) == bytes(range(3, 40))  # never more than was buffered, never blocks
    assert sock.pending() == 0
    with pytest.raises(BlockingIOError):
        sock.recv(1)


def test_a_read_larger_than_the_buffer_passes_straight_through(pair: tuple[ReadBufferedSocket, socket.socket]) -> None:
    sock, peer = pair
    peer.sendall(b"x" * 10)
    assert sock.recv(500) == b"x" * 10
    assert sock.pending() == 0


def test_bytes_arrive_in_order_across_refills(pair: tuple[ReadBufferedSocket, socket.socket]) -> None:
    sock, peer = pair
    payload = bytes(i % 251 for i in range(1000))
    peer.sendall(payload)
    got = bytearray()
    while len(got) < len(payload):
        got += sock.recv(7)
    assert bytes(got) == payload


def test_end_of_stream_and_send_reach_paho_unchanged(pair: tuple[ReadBufferedSocket, socket.socket]) -> None:
    sock, peer = pair
    assert sock.send(b"ping") == 4
    assert peer.recv(4) == b"ping"
    peer.sendall(b"ab")
    peer.shutdown(socket.SHUT_WR)
    assert sock.recv(1) == b"a"
    assert sock.recv(1) == b"b"
    assert sock.recv(1) == b""  # paho reads b"" as connection lost
    assert sock.fileno() >= 0
    assert sock.getsockname() is not None  # other socket methods are the wrapped socket's
