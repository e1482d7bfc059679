"""One executor per loaded model: every stream submits windows, one thread runs the network.

Why one thread owns the model: a forward pass uses every core (CPU) or the whole device (GPU),
so two callers computing at once only slow each other down; batching what several streams
have waiting instead runs more windows per forward at nearly the cost of one on a GPU.

* Callers ``submit`` one preprocessed window (or ``submit_many``) and get a
  :class:`concurrent.futures.Future` that resolves to that window's ``(6,)`` float32 logits.
* The thread takes up to ``max_batch`` waiting requests, in submission order, across all
  callers. On a GPU it may wait up to ``max_wait_s`` after the oldest request was submitted for
  more to arrive; on a CPU it runs what is there (a larger batch saves little per window there,
  and waiting would add latency).
* A batch whose forward raises is run again row by row, once, so only the failing windows get
  the exception; nothing is retried more than that.
* The queue holds at most ``max_pending`` requests. Policy when full: the submitter blocks up
  to ``submit_timeout_s``, then :class:`ExecutorFullError`; each time a submitter finds it full
  is counted. A live stream should submit with ``key=stream, replace=True`` (newest wins): its
  still-pending window is replaced instead of queueing stale work, and never blocks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future

import numpy as np

from streamser.constants import NUM_CLASSES, WINDOW_SAMPLES
from streamser.contracts import AnalysisModel
from streamser.engine.executor_types import (
    GPU_MAX_WAIT_S,
    ExecutorClosedError,
    ExecutorConfig,
    ExecutorCounters,
    ExecutorError,
    ExecutorFullError,
    ExecutorStats,
)

log = logging.getLogger("streamser")

__all__ = [
    "GPU_MAX_WAIT_S",
    "Executor",
    "ExecutorClosedError",
    "ExecutorConfig",
    "ExecutorError",
    "ExecutorFullError",
    "ExecutorStats",
]


class _Request:
    """One window waiting for its batch; mutable so newest-wins can replace it in place."""

    __slots__ = ("future", "key", "t_submit", "window")

    def __init__(self, window: np.ndarray, key: Hashable | None) -> None:
        self.window = window
        self.key = key
        self.future: Future[np.ndarray] = Future()
        self.t_submit = time.monotonic()


class Executor:
    """Runs one model for every caller on its own thread, in batches (see the module doc)."""

    def __init__(
        self,
        model: AnalysisModel,
        config: ExecutorConfig | None = None,
        *,
        forward: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        """``forward`` may replace ``model.logits`` with a faster path to the same network
        (a CUDA-graph replay); the executor is still the only caller of either."""
        self.model = model
        self.config = config = config if config is not None else ExecutorConfig()
        self.max_wait_s = config.resolved_max_wait_s(model.compute_info().device)
        self._forward = forward if forward is not None else model.logits
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._queue: deque[_Request] = deque()
        self._by_key: dict[Hashable, _Request] = {}
        self._in_flight: list[_Request] = []
        self._counters = ExecutorCounters()
        self._started = self._stopping = False
        self.error: BaseException | None = None
        """Set when the thread ended on an unexpected error (every pending future got it)."""
        self._thread = threading.Thread(target=self._run, name="streamser-executor", daemon=True)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Executor:
        """Start the thread; again is a no-op. Work submitted before starting waits for it."""
        with self._lock:
            if self._stopping:
                raise ExecutorClosedError("the executor was stopped: create a new one")
            if self._started:
                return self
            self._started = True
        self._thread.start()
        return self

    def stop(self, drain: bool = True, timeout_s: float | None = None) -> bool:
        """Stop taking work and end the thread; idempotent. Returns whether it ended in time.

        ``drain=True`` runs everything already submitted first; ``drain=False`` cancels what
        is still waiting (a batch already running completes). Whatever is still waiting when
        ``timeout_s`` passes is cancelled, so no caller waits for ever.
        """
        timeout_s = self.config.stop_timeout_s if timeout_s is None else timeout_s
        with self._lock:
            self._stopping = True
            cancelled = [] if drain and self._started else self._cancel_pending()
            self._not_empty.notify_all()
            self._not_full.notify_all()
        _cancel(cancelled)
        if self._thread is threading.current_thread():
            return True  # from a done-callback: the loop ends by itself once it returns
        if self._started:
            self._thread.join(timeout_s)
        if not self._thread.is_alive():
            return True
        with self._lock:
            late = self._cancel_pending()
        _cancel(late)
        log.warning("executor: stop timed out after %.1f s; waiting windows cancelled", timeout_s)
        return False

    def __enter__(self) -> Executor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(drain=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- submitting ---------------------------------------------------------------------

    def submit(
        self, window: np.ndarray, *, key: Hashable | None = None, replace: bool = False
    ) -> Future[np.ndarray]:
        """Queue one preprocessed ``(48000,)`` float32 window; the future gets ``(6,)`` logits.

        With ``replace=True`` a still-waiting request of the same ``key`` is replaced (its
        future cancelled, counted as superseded): the stream's newest window wins its place in
        the queue. A wrong shape or dtype raises ``ValueError`` here; non-finite samples fail
        the returned future only. Done-callbacks run on the executor's thread: keep them short
        (hand the result on), or every stream waits for them.
        """
        _check_windows(window, 1)
        return self._enqueue(window[None, :], key, replace)[0]

    def submit_many(self, windows: np.ndarray) -> list[Future[np.ndarray]]:
        """Queue ``(n, 48000)`` float32 windows in order: one future per row.

        Blocks until there is room for all of them (at most ``submit_timeout_s``).
        """
        _check_windows(windows, 2)
        if len(windows) > self.config.max_pending:
            raise ValueError(f"{len(windows)} windows exceed max_pending {self.config.max_pending}")
        return self._enqueue(windows, None, False)

    def _enqueue(
        self, windows: np.ndarray, key: Hashable | None, replace: bool
    ) -> list[Future[np.ndarray]]:
        # A copy: the caller may reuse its buffer before the batch runs.
        rows = np.array(windows, dtype=np.float32, copy=True)
        requests = [_Request(row, key) for row in rows]
        finite = [bool(np.isfinite(row).all()) for row in rows]
        accepted = [r for r, ok in zip(requests, finite) if ok]
        superseded: list[Future[np.ndarray]] = []
        with self._lock:
            self._check_open()
            old = self._by_key.get(key) if replace and key is not None and accepted else None
            if old is not None:  # newest wins, in the old request's place in the queue
                superseded.append(old.future)
                new = accepted[0]
                old.window, old.future, old.t_submit = new.window, new.future, new.t_submit
            elif accepted:
                self._wait_for_room(len(accepted))
                self._queue.extend(accepted)
                if key is not None:
                    self._by_key[key] = accepted[-1]
                self._not_empty.notify()
            c = self._counters
            c.submitted += len(requests)
            c.failed += len(requests) - len(accepted)
            c.cancelled += len(superseded)
            c.superseded += len(superseded)
        for r, ok in zip(requests, finite):
            if not ok:
                r.future.set_exception(ValueError("window has non-finite samples (NaN or inf)"))
        for f in superseded:
            f.cancel()
        return [r.future for r in requests]

    def _wait_for_room(self, n: int) -> None:
        """Called with the lock held: the documented full-queue policy (block, then fail)."""
        if len(self._queue) + n <= self.config.max_pending:
            return
        self._counters.full_events += 1
        deadline = time.monotonic() + self.config.submit_timeout_s
        while len(self._queue) + n > self.config.max_pending:
            left = deadline - time.monotonic()
            if left <= 0:
                self._counters.full_timeouts += 1
                raise ExecutorFullError(
                    f"the model's queue stayed full ({self.config.max_pending} windows) for "
                    f"{self.config.submit_timeout_s:g} s: compute is falling behind"
                )
            self._not_full.wait(left)
            self._check_open()

    def _check_open(self) -> None:
        if self._stopping or self.error is not None:
            raise ExecutorClosedError("the executor is stopped: no more windows are accepted")

    # -- counters -----------------------------------------------------------------------

    def stats(self) -> ExecutorStats:
        """A consistent snapshot of every counter, safe to read on any thread."""
        with self._lock:
            return self._counters.snapshot(
                len(self._queue), len(self._in_flight), self.config.max_pending
            )

    # -- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                self._run_batch(batch)
                with self._lock:
                    self._in_flight = []
        except BaseException as e:  # the thread must never die silently
            self._fail_everything(e)

    def _next_batch(self) -> list[_Request] | None:
        """Wait for work and take a batch: up to ``max_batch`` requests, oldest first."""
        with self._lock:
            while not self._queue:
                if self._stopping:
                    return None
                self._not_empty.wait()
            if not self._stopping and self.max_wait_s > 0:
                deadline = self._queue[0].t_submit + self.max_wait_s
                while len(self._queue) < self.config.max_batch and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._not_empty.wait(left)
            batch: list[_Request] = []
            now = time.monotonic()
            while self._queue and len(batch) < self.config.max_batch:
                req = self._queue.popleft()
                if self._by_key.get(req.key) is req:
                    del self._by_key[req.key]
                if not req.future.set_running_or_notify_cancel():
                    self._counters.cancelled += 1  # cancelled by its caller while waiting
                    continue
                self._counters.on_dequeue(now - req.t_submit)
                batch.append(req)
            self._in_flight = batch
            self._not_full.notify_all()
            return batch

    def _run_batch(self, batch: list[_Request]) -> None:
        if not batch:
            return
        with self._lock:
            self._counters.on_batch(len(batch))
        try:
            out = self._call(np.stack([r.window for r in batch]))
        except Exception as e:
            if len(batch) == 1:
                self._resolve(batch[0], e)
                return
            log.warning("executor: a batch of %d failed (%s); running it row by row", len(batch), e)
            with self._lock:
                self._counters.row_retries += len(batch)
            for req in batch:
                try:
                    self._resolve(req, self._call(req.window[None, :])[0])
                except Exception as row_error:
                    self._resolve(req, row_error)
            return
        for req, row in zip(batch, out):
            self._resolve(req, row)

    def _call(self, inputs: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            out = np.asarray(self._forward(inputs))
        except Exception:
            with self._lock:
                self._counters.on_forward(time.perf_counter() - t0, failed=True)
            raise
        with self._lock:
            self._counters.on_forward(time.perf_counter() - t0, failed=False)
        if out.shape != (len(inputs), NUM_CLASSES):
            raise ExecutorError(
                f"the model returned logits of shape {out.shape} for {len(inputs)} windows"
            )
        return out

    def _resolve(self, req: _Request, result: np.ndarray | BaseException) -> None:
        if not isinstance(result, BaseException) and not np.isfinite(result).all():
            result = ExecutorError("the model returned non-finite logits for this window")
        with self._lock:
            self._counters.on_done(ok=not isinstance(result, BaseException))
        if isinstance(result, BaseException):
            req.future.set_exception(result)
        else:
            req.future.set_result(np.array(result, dtype=np.float32))

    def _fail_everything(self, error: BaseException) -> None:
        log.error("executor stopped: %s: %s", type(error).__name__, error)
        failure = ExecutorError(f"the executor thread failed: {error}")
        failure.__cause__ = error
        with self._lock:
            self.error = error
            victims = [r for r in self._in_flight if not r.future.done()]
            victims += self._queue
            self._queue.clear()
            self._by_key.clear()
            self._in_flight = []
            self._not_full.notify_all()
        failed = 0
        for r in victims:
            if r.future.running() or r.future.set_running_or_notify_cancel():
                r.future.set_exception(failure)
                failed += 1
        with self._lock:
            self._counters.failed += failed
            self._counters.cancelled += len(victims) - failed

    def _cancel_pending(self) -> list[_Request]:
        """Called with the lock held: empties the queue, counting its requests as cancelled."""
        pending = list(self._queue)
        self._queue.clear()
        self._by_key.clear()
        self._counters.cancelled += len(pending)
        self._not_full.notify_all()
        return pending


def _cancel(requests: list[_Request]) -> None:
    """Outside the lock: a cancelled future runs its callbacks, which may submit again."""
    for r in requests:
        r.future.cancel()


def _check_windows(windows: np.ndarray, ndim: int) -> None:
    shape = "(48000,)" if ndim == 1 else "(n, 48000)"
    if not isinstance(windows, np.ndarray) or windows.dtype != np.float32:
        raise ValueError(
            f"expected float32 {shape} windows, got {type(windows).__name__}"
            f" of {getattr(windows, 'dtype', '?')}"
        )
    if windows.ndim != ndim or windows.shape[-1] != WINDOW_SAMPLES:
        raise ValueError(f"expected a {shape} float32 array, got shape {windows.shape}")
