"""The ingest inbox: batches of what is queued, lingering for more, and backpressure released as it empties."""

from __future__ import annotations

import threading
import time

from agent.inbox import IngestInbox
from agent.ingest import Rejection


def _items(n: int) -> list[Rejection]:
    return [Rejection(f"p{i}", "bad_json") for i in range(n)]


def test_takes_everything_queued_up_to_the_batch_size_in_order() -> None:
    inbox = IngestInbox(maxsize=100)
    sent = _items(10)
    for item in sent:
        inbox.put_nowait(item)
    assert inbox.take_batch(4, timeout=1.0, linger=0.0) == sent[:4]
    assert inbox.take_batch(100, timeout=1.0, linger=0.0) == sent[4:]
    assert inbox.qsize() == 0


def test_returns_empty_after_the_timeout_when_nothing_comes() -> None:
    t0 = time.monotonic()
    assert IngestInbox(maxsize=4).take_batch(10, timeout=0.05, linger=0.0) == []
    assert time.monotonic() - t0 >= 0.05


def test_lingers_for_items_that_arrive_after_the_first() -> None:
    inbox = IngestInbox(maxsize=10)
    first, late = _items(2)
    inbox.put_nowait(first)
    threading.Timer(0.02, inbox.put_nowait, args=(late,)).start()
    assert inbox.take_batch(10, timeout=1.0, linger=0.5) == [first, late]


def test_a_full_batch_returns_without_waiting_out_the_linger() -> None:
    inbox = IngestInbox(maxsize=10)
    first, late = _items(2)
    inbox.put_nowait(first)
    threading.Timer(0.02, inbox.put_nowait, args=(late,)).start()
    t0 = time.monotonic()
    assert inbox.take_batch(2, timeout=1.0, linger=5.0) == [first, late]
    assert time.monotonic() - t0 < 2.0


def test_a_producer_blocked_on_a_full_inbox_goes_on_once_a_batch_is_taken() -> None:
    inbox = IngestInbox(maxsize=2)
    a, b, c = _items(3)
    inbox.put_nowait(a)
    inbox.put_nowait(b)
    producer = threading.Thread(target=inbox.put, args=(c,))
    producer.start()
    time.sleep(0.05)
    assert producer.is_alive()  # backpressure: the network thread waits rather than dropping a QoS 1 chunk
    assert inbox.take_batch(10, timeout=1.0, linger=0.0) == [a, b]
    producer.join(2.0)
    assert not producer.is_alive()
    assert inbox.take_batch(10, timeout=1.0, linger=0.0) == [c]
