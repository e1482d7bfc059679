"""The executor's settings, errors and counters (the counters kept under its lock, read as
one frozen snapshot).

Every request ends in exactly one of ``windows_run``, ``failed`` or ``cancelled`` (superseded
requests are cancelled ones, also counted apart), so once the queue is empty and nothing is in
flight ``windows_run + failed + cancelled == submitted``: a metrics page can check that no
window was lost without being counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamser.errors import StreamserError

GPU_MAX_WAIT_S = 0.004
"""Default wait for a fuller batch on a GPU: small beside a window's hop, long enough for
streams whose windows fall due together to share a forward."""


class ExecutorError(StreamserError):
    """A window could not be run through the model."""


class ExecutorClosedError(ExecutorError):
    """Work was submitted after ``stop()`` (or after the executor thread failed)."""


class ExecutorFullError(ExecutorError):
    """The queue stayed full for ``submit_timeout_s``: compute is falling behind."""


@dataclass(frozen=True)
class ExecutorConfig:
    """How the executor batches and queues; one per loaded model."""

    max_batch: int = 8
    """Most windows in one forward pass."""
    max_wait_s: float | None = None
    """Longest wait, from the oldest waiting request's submission, for a fuller batch.
    ``None``: :data:`GPU_MAX_WAIT_S` on a GPU, 0 elsewhere."""
    max_pending: int = 256
    """Most requests waiting (not yet taken into a batch)."""
    submit_timeout_s: float = 5.0
    """How long a submitter blocks on a full queue before :class:`ExecutorFullError`."""
    stop_timeout_s: float = 10.0
    """Default wait in :meth:`Executor.stop` for the running batch (and, draining, the rest)."""

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_pending < 1:
            raise ValueError("max_batch and max_pending must be at least 1")
        if (self.max_wait_s is not None and self.max_wait_s < 0) or self.submit_timeout_s < 0:
            raise ValueError("max_wait_s and submit_timeout_s must not be negative")

    def resolved_max_wait_s(self, device: str) -> float:
        if self.max_wait_s is not None:
            return self.max_wait_s
        return GPU_MAX_WAIT_S if device == "cuda" else 0.0


@dataclass(frozen=True)
class ExecutorStats:
    """The executor's counters at one instant (running totals since it was created)."""

    submitted: int
    """Windows accepted by ``submit``/``submit_many`` (rejected non-finite ones included)."""
    windows_run: int
    """Windows whose logits reached their future."""
    failed: int
    """Futures that got an exception: non-finite input, a forward error, the thread's end."""
    cancelled: int
    """Futures cancelled before running: by the caller, by ``stop``, or superseded."""
    superseded: int
    """Of ``cancelled``: replaced by a newer window of the same key (newest wins)."""
    batches_run: int
    """Batches taken from the queue and run (a row-by-row retry is still one batch)."""
    batch_sizes: dict[int, int]
    """Batch size -> how many batches had it; this snapshot's own copy."""
    forward_calls: int
    """Model calls, row-by-row retries included."""
    forward_errors: int
    """Model calls that raised."""
    row_retries: int
    """Windows run again alone because their batch's forward raised."""
    queue_wait_s_total: float
    """Summed over run windows: seconds from submission to the start of their batch."""
    queue_wait_s_max: float
    compute_s_total: float
    """Seconds spent inside model calls."""
    full_events: int
    """Times a submitter found the queue full and had to wait."""
    full_timeouts: int
    """Of ``full_events``: waits that ran out (``ExecutorFullError``)."""
    queue_depth: int
    """Requests waiting now."""
    in_flight: int
    """Requests in the batch running now."""
    max_pending: int
    """The queue's declared size."""

    @property
    def mean_batch_size(self) -> float | None:
        return self.windows_run / self.batches_run if self.batches_run else None

    @property
    def mean_queue_wait_s(self) -> float | None:
        taken = sum(size * count for size, count in self.batch_sizes.items())
        return self.queue_wait_s_total / taken if taken else None


@dataclass
class ExecutorCounters:
    """Mutable totals; the executor changes and reads them only while holding its lock."""

    submitted: int = 0
    windows_run: int = 0
    failed: int = 0
    cancelled: int = 0
    superseded: int = 0
    batches_run: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)
    forward_calls: int = 0
    forward_errors: int = 0
    row_retries: int = 0
    queue_wait_s_total: float = 0.0
    queue_wait_s_max: float = 0.0
    compute_s_total: float = 0.0
    full_events: int = 0
    full_timeouts: int = 0

    def on_dequeue(self, wait_s: float) -> None:
        self.queue_wait_s_total += wait_s
        self.queue_wait_s_max = max(self.queue_wait_s_max, wait_s)

    def on_batch(self, size: int) -> None:
        self.batches_run += 1
        self.batch_sizes[size] = self.batch_sizes.get(size, 0) + 1

    def on_forward(self, seconds: float, failed: bool) -> None:
        self.forward_calls += 1
        self.forward_errors += failed
        self.compute_s_total += seconds

    def on_done(self, ok: bool) -> None:
        if ok:
            self.windows_run += 1
        else:
            self.failed += 1

    def snapshot(self, queue_depth: int, in_flight: int, max_pending: int) -> ExecutorStats:
        return ExecutorStats(
            submitted=self.submitted,
            windows_run=self.windows_run,
            failed=self.failed,
            cancelled=self.cancelled,
            superseded=self.superseded,
            batches_run=self.batches_run,
            batch_sizes=dict(self.batch_sizes),
            forward_calls=self.forward_calls,
            forward_errors=self.forward_errors,
            row_retries=self.row_retries,
            queue_wait_s_total=self.queue_wait_s_total,
            queue_wait_s_max=self.queue_wait_s_max,
            compute_s_total=self.compute_s_total,
            full_events=self.full_events,
            full_timeouts=self.full_timeouts,
            queue_depth=queue_depth,
            in_flight=in_flight,
            max_pending=max_pending,
        )
