"""Result fan-out: one publisher, many subscribers, each with its own delivery policy.

The inference thread publishes every estimate once; what each consumer needs differs:

* a cheap hand-off such as Textual's thread-safe ``post_message`` runs synchronously inside
  ``publish`` (:meth:`ResultBus.subscribe_callback`); the dashboard coalesces on its side
  (Textual messages that ``can_replace``), so a display never queues stale items;
* a session logger needs every item in order (:meth:`ResultBus.subscribe_lossless`): a bounded
  queue drained by its own thread, where the publisher waits briefly rather than drop.

A consumer that fails (raises, or stays stuck so long that its queue stays full) is detached,
announced through ``on_failure`` and counted; the items it could not take are counted as
dropped, and the stream goes on for everyone else. For every subscriber,
``delivered + dropped (+ pending)`` equals the items published since it subscribed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

FailureHandler = Callable[[str, BaseException], None]


class _CallbackSubscription(Generic[T]):
    """A function run inside ``publish``; the first exception detaches it for good."""

    def __init__(self, name: str, fn: Callable[[T], None], announce: FailureHandler) -> None:
        self.name = name
        self._fn = fn
        self._announce = announce
        self._lock = threading.Lock()
        self.delivered = 0
        self.dropped = 0
        self.detached = False

    def _offer(self, item: T) -> None:
        if self.detached:
            with self._lock:
                self.dropped += 1
            return
        try:
            self._fn(item)
        except Exception as exc:
            with self._lock:
                self.detached = True
                self.dropped += 1
            self._announce(self.name, exc)
            return
        with self._lock:
            self.delivered += 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "delivered": self.delivered,
                "dropped": self.dropped,
                "detached": int(self.detached),
            }


class LosslessSubscription(Generic[T]):
    """Every item, in order, to ``fn`` on a consumer thread of its own.

    Buffer: a queue of ``capacity`` items. Policy when full: *block the publisher* for up to
    ``put_timeout_s``; past that the consumer is judged stuck and detached (so a dead disk
    cannot stall inference for ever). Everything it could not take counts in :attr:`dropped`.
    """

    def __init__(
        self,
        name: str,
        fn: Callable[[T], None],
        capacity: int,
        put_timeout_s: float,
        announce: FailureHandler,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if put_timeout_s < 0:
            raise ValueError(f"put_timeout_s must not be negative, got {put_timeout_s}")
        self.name = name
        self.capacity = capacity
        self.put_timeout_s = put_timeout_s
        self._fn = fn
        self._announce = announce
        self._cond = threading.Condition()
        self._queue: deque[T] = deque()
        self._stopping = False
        self.delivered = 0
        """Items ``fn`` returned from."""
        self.dropped = 0
        """Items this subscriber never got: failed, left queued or published after detaching."""
        self.detached = False
        self.failure: BaseException | None = None
        """Why the subscriber was detached, if it was."""
        self._thread = threading.Thread(target=self._run, name=f"bus-{name}", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Items queued and not yet handed to ``fn``."""
        with self._cond:
            return len(self._queue)

    def _offer(self, item: T) -> None:
        """Queue ``item``, waiting for room up to ``put_timeout_s``; detach if none comes."""
        with self._cond:
            if self.detached:
                self.dropped += 1
                return
            has_room = self._cond.wait_for(
                lambda: len(self._queue) < self.capacity or self.detached,
                timeout=self.put_timeout_s,
            )
            if self.detached:
                self.dropped += 1
                return
            if has_room:
                self._queue.append(item)
                self._cond.notify_all()
                return
            self.dropped += 1
            exc = TimeoutError(
                f"subscriber {self.name!r} kept its queue of {self.capacity} full "
                f"for {self.put_timeout_s} s"
            )
            self._detach_locked(exc)
        self._announce(self.name, exc)

    def _detach_locked(self, exc: BaseException) -> None:
        """Mark detached and drop the queue; the caller holds ``_cond`` and announces after."""
        self.detached = True
        self.failure = exc
        self.dropped += len(self._queue)
        self._queue.clear()
        self._cond.notify_all()

    def _run(self) -> None:
        """Consumer loop: hand items to ``fn`` in order until stopped and drained, or detached."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stopping or self.detached)
                if self.detached or not self._queue:
                    return
                item = self._queue.popleft()
                self._cond.notify_all()
            try:
                self._fn(item)
            except BaseException as exc:
                with self._cond:
                    self.dropped += 1
                    already_detached = self.detached
                    if not already_detached:
                        self._detach_locked(exc)
                if not already_detached:
                    self._announce(self.name, exc)
                return
            with self._cond:
                self.delivered += 1

    def _close(self, deadline: float) -> None:
        """Let the consumer drain its queue, then join it by ``deadline`` (monotonic seconds).

        A consumer still busy at the deadline is detached and announced, its queue counted as
        dropped: closing must not hang on a stuck consumer.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if threading.current_thread() is self._thread:
            return  # closed from inside fn: the loop ends by itself once the queue is drained
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if not self._thread.is_alive():
            return
        with self._cond:
            if self.detached:
                return
            exc = TimeoutError(f"subscriber {self.name!r} did not drain before the bus closed")
            self._detach_locked(exc)
        self._announce(self.name, exc)

    def stats(self) -> dict[str, int]:
        """Counters for the UI and meta.json."""
        with self._cond:
            return {
                "delivered": self.delivered,
                "dropped": self.dropped,
                "pending": len(self._queue),
                "detached": int(self.detached),
            }


class ResultBus(Generic[T]):
    """Publish each item to every subscriber under that subscriber's own policy.

    Thread-safe: ``publish`` may be called from the inference thread while subscribers are
    added or read elsewhere; concurrent publishers are serialised so every subscriber sees
    one order. Within ``publish``, callbacks are served before lossless queues, so a slow
    logger never delays the display.
    """

    def __init__(self, on_failure: FailureHandler | None = None) -> None:
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self._publish_lock = threading.RLock()
        self._callbacks: tuple[_CallbackSubscription[T], ...] = ()
        self._lossless: tuple[LosslessSubscription[T], ...] = ()
        self._names: set[str] = set()
        self._closed = False
        self.published = 0
        """Items published so far (before close)."""
        self.rejected_after_close = 0
        """Items published after close, dropped: a worker outliving its join timeout."""
        self.failures = 0
        """Subscribers detached because they raised or stayed stuck."""

    def _claim_name(self, name: str) -> None:
        """Register ``name``; the caller holds ``_lock``."""
        if self._closed:
            raise RuntimeError("the result bus is closed")
        if name in self._names:
            raise ValueError(f"a subscriber named {name!r} already exists")
        self._names.add(name)

    def subscribe_callback(self, name: str, fn: Callable[[T], None]) -> None:
        """Run ``fn`` synchronously in ``publish``; it must be cheap and thread-safe.

        The first exception it raises detaches it. Only ``Exception`` is caught, so a
        ``KeyboardInterrupt`` in a publisher on the main thread still stops the program.
        """
        sub = _CallbackSubscription(name, fn, self._announce)
        with self._lock:
            self._claim_name(name)
            self._callbacks = (*self._callbacks, sub)

    def subscribe_lossless(
        self,
        name: str,
        fn: Callable[[T], None],
        capacity: int = 1024,
        put_timeout_s: float = 2.0,
    ) -> LosslessSubscription[T]:
        """Deliver every item, in order, to ``fn`` on a consumer thread (see the class)."""
        with self._lock:
            self._claim_name(name)
            try:
                sub = LosslessSubscription(name, fn, capacity, put_timeout_s, self._announce)
            except Exception:
                self._names.discard(name)
                raise
            self._lossless = (*self._lossless, sub)
        return sub

    def publish(self, item: T) -> None:
        """Hand ``item`` to every subscriber; may wait up to ``put_timeout_s`` per full queue.

        After :meth:`close` the item is dropped and counted in :attr:`rejected_after_close`
        rather than raising, so a producer thread that outlived its join timeout during
        shutdown ends quietly instead of reporting a spurious failure.
        """
        with self._publish_lock:
            with self._lock:
                if self._closed:
                    self.rejected_after_close += 1
                    return
                self.published += 1
                callbacks, lossless = self._callbacks, self._lossless
            for cb in callbacks:
                cb._offer(item)
            for sub in lossless:
                sub._offer(item)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop accepting items, let lossless consumers drain, join their threads; idempotent.

        Nothing already published is lost unless a consumer is still busy after ``timeout_s``
        (shared by all consumers): that one is detached, announced and its queue counted.
        """
        with self._publish_lock, self._lock:
            if self._closed:
                return
            self._closed = True
            lossless = self._lossless
        deadline = time.monotonic() + timeout_s
        for sub in lossless:
            sub._close(deadline)

    def __enter__(self) -> ResultBus[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _announce(self, name: str, exc: BaseException) -> None:
        """Count a detached subscriber and tell ``on_failure``, whose own errors are logged."""
        with self._lock:
            self.failures += 1
        if self._on_failure is None:
            log.warning("result subscriber %r detached: %r", name, exc)
            return
        try:
            self._on_failure(name, exc)
        except Exception:
            log.exception("on_failure handler raised while announcing %r", name)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per subscriber: delivered, dropped, detached 0/1."""
        with self._lock:
            subs: tuple[_CallbackSubscription[T] | LosslessSubscription[T], ...] = (
                *self._callbacks,
                *self._lossless,
            )
        return {sub.name: sub.stats() for sub in subs}
