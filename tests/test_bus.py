"""Result bus: per-subscriber policies, detaching failed consumers, draining on close."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from streamser.engine.bus import ResultBus

WAIT_S = 5.0
"""Upper bound for any event a test waits on; reached only when the code under test is broken."""


class FailureLog:
    """``on_failure`` handler that records announcements and lets a test wait for them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.calls: list[tuple[str, BaseException]] = []

    def __call__(self, name: str, exc: BaseException) -> None:
        with self._cond:
            self.calls.append((name, exc))
            self._cond.notify_all()

    def wait_for(self, count: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.calls) >= count, timeout=WAIT_S)

    def by_name(self) -> dict[str, BaseException]:
        with self._cond:
            return dict(self.calls)


class GatedConsumer:
    """Collects items; blocks inside the first call until ``go`` is set."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.entered = threading.Event()
        self.go = threading.Event()

    def __call__(self, item: int) -> None:
        self.entered.set()
        assert self.go.wait(WAIT_S), "consumer was never released"
        self.items.append(item)


def run_in_thread(fn: Callable[[], None], name: str) -> tuple[threading.Thread, threading.Event]:
    done = threading.Event()

    def target() -> None:
        fn()
        done.set()

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread, done


def test_lossless_delivers_everything_in_order_to_a_slower_consumer() -> None:
    failures = FailureLog()
    bus: ResultBus[int] = ResultBus(on_failure=failures)
    consumer = GatedConsumer()
    sub = bus.subscribe_lossless("logger", consumer, capacity=2, put_timeout_s=WAIT_S)

    producer, produced = run_in_thread(lambda: [bus.publish(i) for i in range(20)], "producer")
    assert consumer.entered.wait(WAIT_S)
    # One item in the consumer and two queued: the producer must be waiting, not dropping.
    assert not produced.is_set()
    consumer.go.set()
    assert produced.wait(WAIT_S)
    producer.join(WAIT_S)
    bus.close()

    assert consumer.items == list(range(20))
    assert sub.stats() == {"delivered": 20, "dropped": 0, "pending": 0, "detached": 0}
    assert bus.failures == 0
    assert failures.calls == []


def test_raising_consumers_are_detached_announced_and_counted_while_others_receive() -> None:
    failures = FailureLog()
    bus: ResultBus[int] = ResultBus(on_failure=failures)
    good: list[int] = []
    good_cb: list[int] = []
    bad_seen: list[int] = []

    def bad_lossless(item: int) -> None:
        if item == 3:
            raise OSError("disk full")
        bad_seen.append(item)

    def bad_callback(item: int) -> None:
        raise ValueError(f"cannot render {item}")

    bus.subscribe_lossless("bad-logger", bad_lossless, capacity=4)
    bus.subscribe_callback("bad-ui", bad_callback)
    bus.subscribe_lossless("logger", good.append, capacity=4)
    bus.subscribe_callback("ui", good_cb.append)

    for i in range(10):
        bus.publish(i)
    assert failures.wait_for(2)
    bus.close()

    assert good == list(range(10))
    assert good_cb == list(range(10))
    assert bad_seen == [0, 1, 2]
    announced = failures.by_name()
    assert isinstance(announced["bad-logger"], OSError)
    assert isinstance(announced["bad-ui"], ValueError)
    assert bus.failures == 2
    stats = bus.stats()
    assert stats["bad-logger"]["detached"] == 1
    assert stats["bad-logger"]["delivered"] == 3
    assert stats["bad-logger"]["delivered"] + stats["bad-logger"]["dropped"] == 10
    assert stats["bad-ui"] == {"delivered": 0, "dropped": 10, "detached": 1}
    assert stats["logger"] == {"delivered": 10, "dropped": 0, "pending": 0, "detached": 0}
    assert stats["ui"] == {"delivered": 10, "dropped": 0, "detached": 0}


def test_stuck_consumer_is_detached_after_the_put_timeout() -> None:
    failures = FailureLog()
    bus: ResultBus[int] = ResultBus(on_failure=failures)
    stuck = GatedConsumer()
    good: list[int] = []
    sub = bus.subscribe_lossless("stuck", stuck, capacity=1, put_timeout_s=0.05)
    bus.subscribe_lossless("logger", good.append)

    bus.publish(0)
    assert stuck.entered.wait(WAIT_S)
    bus.publish(1)  # fills the queue of one
    t0 = time.monotonic()
    bus.publish(2)  # no room for put_timeout_s: the consumer is judged stuck
    waited_s = time.monotonic() - t0
    bus.publish(3)

    assert 0.05 <= waited_s < WAIT_S
    assert failures.wait_for(1)
    name, exc = failures.calls[0]
    assert name == "stuck"
    assert isinstance(exc, TimeoutError)
    assert sub.detached
    assert sub.failure is exc
    assert sub.stats() == {"delivered": 0, "dropped": 3, "pending": 0, "detached": 1}

    stuck.go.set()  # the item it was holding still completes
    bus.close()
    assert stuck.items == [0]
    assert sub.delivered + sub.dropped == bus.published == 4
    assert good == [0, 1, 2, 3]
    assert bus.failures == 1


def test_close_drains_everything_published_and_is_idempotent() -> None:
    bus: ResultBus[int] = ResultBus()
    consumer = GatedConsumer()
    sub = bus.subscribe_lossless("logger", consumer, capacity=100)
    for i in range(50):
        bus.publish(i)
    assert consumer.entered.wait(WAIT_S)
    assert consumer.items == []

    closer, closed = run_in_thread(lambda: bus.close(timeout_s=WAIT_S), "closer")
    consumer.go.set()
    assert closed.wait(WAIT_S)
    closer.join(WAIT_S)
    assert consumer.items == list(range(50))
    assert sub.stats() == {"delivered": 50, "dropped": 0, "pending": 0, "detached": 0}
    assert not any(t.name == "bus-logger" for t in threading.enumerate())

    bus.close()
    bus.close(timeout_s=0.0)
    assert sub.delivered == 50
    bus.publish(50)  # a late producer: dropped and counted, never delivered
    assert bus.rejected_after_close == 1
    assert bus.published == 50
    assert consumer.items == list(range(50))
    with pytest.raises(RuntimeError):
        bus.subscribe_callback("late", lambda item: None)


def test_close_gives_up_on_a_stuck_consumer_and_counts_its_queue() -> None:
    failures = FailureLog()
    bus: ResultBus[int] = ResultBus(on_failure=failures)
    stuck = GatedConsumer()
    sub = bus.subscribe_lossless("stuck", stuck, capacity=10)
    for i in range(5):
        bus.publish(i)
    assert stuck.entered.wait(WAIT_S)

    bus.close(timeout_s=0.05)
    assert failures.wait_for(1)
    assert isinstance(failures.calls[0][1], TimeoutError)
    assert sub.detached
    assert sub.dropped == 4
    assert bus.failures == 1
    stuck.go.set()


def test_consumer_threads_are_named_daemons_and_end_on_close() -> None:
    bus: ResultBus[int] = ResultBus()
    bus.subscribe_lossless("session-log", lambda item: None)
    threads = [t for t in threading.enumerate() if t.name == "bus-session-log"]
    assert len(threads) == 1
    assert threads[0].daemon
    with bus:
        bus.publish(1)
    threads[0].join(WAIT_S)
    assert not threads[0].is_alive()


def test_concurrent_publishers_give_every_subscriber_the_same_order() -> None:
    bus: ResultBus[int] = ResultBus()
    a: list[int] = []
    b: list[int] = []
    bus.subscribe_lossless("a", a.append, capacity=8)
    bus.subscribe_lossless("b", b.append, capacity=8)
    start = threading.Barrier(3, timeout=WAIT_S)

    def produce(offset: int) -> None:
        start.wait()
        for i in range(200):
            bus.publish(offset + i)

    producers = [run_in_thread(lambda o=o: produce(o), f"producer-{o}") for o in (0, 1000, 2000)]
    for _, done in producers:
        assert done.wait(WAIT_S)
    bus.close()
    assert a == b
    assert sorted(a) == sorted([o + i for o in (0, 1000, 2000) for i in range(200)])
    assert bus.published == 600


def test_subscriber_names_are_unique_and_arguments_checked() -> None:
    bus: ResultBus[int] = ResultBus()
    bus.subscribe_callback("display", lambda item: None)
    with pytest.raises(ValueError):
        bus.subscribe_callback("display", lambda item: None)
    with pytest.raises(ValueError):
        bus.subscribe_lossless("logger", lambda item: None, capacity=0)
    bus.subscribe_lossless("logger", lambda item: None, capacity=1)
    assert set(bus.stats()) == {"display", "logger"}
    bus.close()


def test_a_raising_failure_handler_is_logged_not_propagated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_handler(name: str, exc: BaseException) -> None:
        raise RuntimeError("handler broke")

    bus: ResultBus[int] = ResultBus(on_failure=broken_handler)
    bus.subscribe_callback("ui", lambda item: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="streamser.engine.bus"):
        bus.publish(1)
        bus.publish(2)
    assert bus.failures == 1
    assert any("'ui'" in r.getMessage() for r in caplog.records)
    assert bus.stats()["ui"]["detached"] == 1
    bus.close()
