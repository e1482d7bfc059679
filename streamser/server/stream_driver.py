"""One client connection's streams, driven on a thread of their own.

The event loop only moves bytes; everything that costs CPU for a stream (resampling, the speech
detector, cutting and preprocessing windows) happens here, in a :class:`StreamAnalyzer` per
stream, as in a local run. Windows go to the one shared :class:`Executor`, so every client's
windows are batched together; results come back through the futures' done-callbacks, which only
post a notice to this thread's inbox (the executor thread must not wait on anyone).

Policy follows the client's mode, as the local worker's follows its source:

* live: each stream has at most one window at the model; when it returns, the newest due
  window goes next and older ones are skipped and counted (latency stays bounded);
* file: every window is computed, in order; once ``max_inflight_windows`` wait for the model,
  this thread stops taking audio, so the connection stops reading its socket (backpressure
  instead of an unbounded buffer).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from streamser.audio.vad import SpeechDetector
from streamser.audio.windows import Window
from streamser.constants import NUM_CLASSES, SAMPLE_RATE_HZ
from streamser.contracts import Estimate
from streamser.engine.analyzer import PreparedWindows, StreamAnalyzer
from streamser.engine.executor import Executor, ExecutorClosedError
from streamser.server.protocol import Hello, dumps

log = logging.getLogger("streamser")

CALM_ESTIMATES = 3
"""Estimates in a row without a new skip after which a stream is no longer behind: the next
skip then announces ``busy`` (reason ``behind``) again."""
JOIN_TIMEOUT_S = 10.0

_NO_LOGITS = np.zeros((0, NUM_CLASSES), dtype=np.float32)


class EstimateLog(Protocol):
    """Where a server keeps a stream's estimates (a session on disk), when asked to."""

    def write_estimate(self, estimate: Estimate) -> None: ...

    def close(self, counters: dict[str, Any]) -> None: ...


class _Lossless:
    """One stream's windows submitted together, waiting for their logits (file mode)."""

    __slots__ = ("analyzer", "futures", "prepared")

    def __init__(
        self, analyzer: StreamAnalyzer, prepared: PreparedWindows, futures: list[Future[Any]]
    ) -> None:
        self.analyzer, self.prepared, self.futures = analyzer, prepared, futures


class StreamDriver:
    """Analyzers for one connection's streams, on one thread; see the module doc."""

    def __init__(
        self,
        hello: Hello,
        executor: Executor,
        *,
        key: object,
        emit: Callable[[str], object],
        on_estimate: Callable[[Estimate], object] = lambda est: None,
        on_consumed: Callable[[], object] = lambda: None,
        on_finished: Callable[[], object] = lambda: None,
        vad_factory: Callable[[], SpeechDetector] = SpeechDetector,
        estimate_log: EstimateLog | None = None,
        max_inflight_windows: int = 16,
    ) -> None:
        self.hello = hello
        self.executor = executor
        self.key = key
        self._emit_text = emit
        self._on_estimate = on_estimate
        self._on_consumed = on_consumed
        self._on_finished = on_finished
        self.estimate_log = estimate_log
        self.max_inflight_windows = max(1, max_inflight_windows)
        self._vad_factory = vad_factory
        self.analyzers: list[StreamAnalyzer] = []
        """One per stream, built on the driver's thread (loading a speech detector takes
        a moment the event loop must not wait for)."""
        self.estimates = 0
        self.failed_windows = 0
        """Windows the model failed on (live: counted as skipped too)."""
        self.frames_received = 0
        """Frames handed to :meth:`push` (written on the event loop's thread)."""
        self.last_t_end_s = 0.0
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._aborted = threading.Event()
        self._inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._live: dict[int, tuple[PreparedWindows, Future[np.ndarray]]] = {}
        self._pending: deque[_Lossless] = deque()
        self._anchor: tuple[int, float] = (0, time.monotonic())
        self._seq = itertools.count()
        self._skipped_seen = 0
        self._behind = False
        self._calm = 0
        self._thread = threading.Thread(
            target=self._run, name="streamser-serve-stream", daemon=True
        )

    # -- the event loop's side (thread-safe) ----------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def push(self, first_frame: int, block: np.ndarray, arrived_s: float) -> None:
        """Frames from ``first_frame`` on (a gap before it is counted as dropped)."""
        self.frames_received = first_frame + len(block)
        self._inbox.put(("audio", first_frame, block, arrived_s))

    def end(self) -> None:
        """The client ended its stream: compute what remains, then send ``end``."""
        self._inbox.put(("end",))

    def drain(self) -> None:
        """Shutdown: finish the windows already at the model, deliver them, compute no more."""
        self._inbox.put(("drain",))

    def abort(self) -> None:
        """The client is gone: cancel what waits for the model, deliver nothing more."""
        self._aborted.set()
        self._inbox.put(("abort",))

    def join(self, timeout_s: float = JOIN_TIMEOUT_S) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def status(self) -> dict[str, Any]:
        """The ``status`` message (read on the loop's thread; counters are plain ints)."""
        received_s = self.frames_received / self.hello.sample_rate_hz
        wait_s = self.executor.stats().mean_queue_wait_s
        analyzers = list(self.analyzers)
        return {
            "type": "status",
            "lag_s": round(max(0.0, received_s - self.last_t_end_s), 4),
            "skipped_windows": sum(a.skipped_windows for a in analyzers),
            "dropped_samples": max((a.dropped_samples for a in analyzers), default=0),
            "queue_wait_s": round(wait_s, 4) if wait_s is not None else None,
            "estimates": self.estimates,
        }

    def counters(self) -> dict[str, Any]:
        """Per stream: windows due, estimates, skipped; for a session's meta.json."""
        analyzers = list(self.analyzers)
        return {
            "estimates": self.estimates,
            "skipped_windows": sum(a.skipped_windows for a in analyzers),
            "dropped_samples": max((a.dropped_samples for a in analyzers), default=0),
            "failed_windows": self.failed_windows,
            "frames_in": analyzers[0].frames_in if analyzers else 0,
            "stream_s": analyzers[0].windower.samples_total / SAMPLE_RATE_HZ if analyzers else 0.0,
            "streams": [
                {
                    "name": a.stream.name,
                    "windows_due": a.windower.windows_emitted + a.skipped_windows,
                    "skipped_windows": a.skipped_windows,
                    "estimates": a.estimates,
                }
                for a in analyzers
            ],
        }

    # -- the thread -----------------------------------------------------------------------

    def _build(self) -> list[StreamAnalyzer]:
        h = self.hello
        return [
            StreamAnalyzer(
                self.executor.model,
                h.windows,
                h.sample_rate_hz,
                self._vad_factory() if h.windows.vad else None,
                watch_silence=False,
                stream=stream,
            )
            for stream in h.streams
        ]

    def _run(self) -> None:
        try:
            self.analyzers = self._build()
            while True:
                item = self._inbox.get()
                kind = item[0]
                if self._aborted.is_set():  # skip what the client sent before it went
                    self._cancel_all()
                    return
                if kind == "audio":
                    self._take(item[1], item[2], item[3])
                    self._schedule()
                elif kind == "done":
                    self._collect()
                    self._schedule()
                elif kind == "end":
                    self._finish()
                    self._emit_text(dumps({"type": "end", "estimates": self.estimates}))
                    return
                elif kind == "drain":
                    self._wait_all()
                    return
        except Exception as e:  # told to the client as an internal error by the connection
            self.error = e
            log.error("serve: stream %s failed: %s: %s", self.key, type(e).__name__, e)
            self._cancel_all()
        finally:
            self.finished.set()
            self._on_finished()

    def _take(self, first_frame: int, block: np.ndarray, arrived_s: float) -> None:
        self._on_consumed()
        for a in self.analyzers:
            a.push_capture(first_frame, block)
        self._anchor = (first_frame + len(block), arrived_s)

    def _capture_time(self, window: Window) -> float:
        """When the window's last sample arrived (frames are dated back from the newest)."""
        rate = self.hello.sample_rate_hz
        received, at = self._anchor
        return at - max(0.0, received - window.end_sample * rate / SAMPLE_RATE_HZ) / rate

    def _schedule(self) -> None:
        for index, a in enumerate(self.analyzers):
            if self.hello.lossless:
                windows = a.due_all()
                if windows:
                    self._submit_all(a, windows)
            elif index not in self._live:
                window = a.due_latest()
                if window is not None:
                    self._submit_latest(index, a, window)

    def _submit_latest(self, index: int, a: StreamAnalyzer, window: Window) -> None:
        prepared = a.prepare([window], [self._capture_time(window)])
        if not len(prepared.inputs):  # a non-speech window the client asked not to compute
            self._publish(a.complete(prepared, _NO_LOGITS, 0.0))
            return
        try:
            future = self.executor.submit(prepared.inputs[0], key=(self.key, index), replace=True)
        except ExecutorClosedError:
            a.skip(1)
            return
        self._live[index] = (prepared, future)
        future.add_done_callback(self._notice)

    def _submit_all(self, a: StreamAnalyzer, windows: Sequence[Window]) -> None:
        prepared = a.prepare(windows)
        futures = self.executor.submit_many(prepared.inputs) if len(prepared.inputs) else []
        entry = _Lossless(a, prepared, futures)
        self._pending.append(entry)
        for f in futures:
            f.add_done_callback(self._notice)
        while sum(len(p.futures) for p in self._pending) > self.max_inflight_windows:
            self._complete_oldest()

    def _notice(self, _future: Future[Any]) -> None:
        """On the executor's thread: only tell this thread to look."""
        self._inbox.put(("done",))

    def _collect(self) -> None:
        """Complete whatever the model has returned, in order."""
        for index in [i for i, (_, f) in self._live.items() if f.done()]:
            self._complete_latest(index)
        while self._pending and all(f.done() for f in self._pending[0].futures):
            self._complete_oldest()

    def _complete_latest(self, index: int) -> None:
        prepared, future = self._live.pop(index)
        a = self.analyzers[index]
        if future.cancelled():
            a.skip(1)
            return
        error = future.exception()
        if error is not None:
            self.failed_windows += 1
            a.skip(1)
            log.warning("serve: a window of %s failed: %s", a.stream.name, error)
            return
        self._publish(a.complete(prepared, future.result()[None, :], self._compute_s()))

    def _complete_oldest(self) -> None:
        entry = self._pending.popleft()
        rows = [f.result() for f in entry.futures]  # raises a model failure: the stream fails
        logits = np.stack(rows) if rows else _NO_LOGITS
        self._publish(entry.analyzer.complete(entry.prepared, logits, self._compute_s()))

    def _compute_s(self) -> float:
        """The model's mean forward time per window so far: the executor batches windows of
        many streams, so one window's own share is not known."""
        s = self.executor.stats()
        return s.compute_s_total / s.windows_run if s.windows_run else 0.0

    def _wait_all(self) -> None:
        live = [f for _, f in self._live.values()]
        if live:
            wait_futures(live)
        for index in list(self._live):
            self._complete_latest(index)
        while self._pending:
            self._complete_oldest()

    def _finish(self) -> None:
        """End of the client's stream: every remaining window (file) or the newest (live)."""
        self._wait_all()
        for index, a in enumerate(self.analyzers):
            tail = a.finish()
            if not tail:
                continue
            if self.hello.lossless:
                self._submit_all(a, tail)
            else:
                a.skip(len(tail) - 1)
                self._submit_latest(index, a, tail[-1])
        self._wait_all()

    def _cancel_all(self) -> None:
        for _, f in self._live.values():
            f.cancel()
        for entry in self._pending:
            for f in entry.futures:
                f.cancel()
        self._live.clear()
        self._pending.clear()

    def _publish(self, estimates: list[Estimate]) -> None:
        for est in estimates:
            est = replace(est, seq=next(self._seq))
            self.estimates += 1
            self.last_t_end_s = max(self.last_t_end_s, est.t_end_s)
            if self.estimate_log is not None:
                self.estimate_log.write_estimate(est)
            self._on_estimate(est)
            self._emit_text(dumps({"type": "estimate", **est.to_json_dict()}))
        if not self.hello.lossless:
            self._watch_skips()

    def _watch_skips(self) -> None:
        """Announce ``busy`` (``behind``) when skipping starts, not once per skipped window."""
        skipped = sum(a.skipped_windows for a in self.analyzers)
        if skipped > self._skipped_seen:
            self._calm = 0
            if not self._behind:
                self._behind = True
                self._emit_text(
                    dumps(
                        {
                            "type": "busy",
                            "reason": "behind",
                            "message": "the model cannot keep up with this stream: only the "
                            "newest window is computed and skipped windows are counted",
                        }
                    )
                )
        else:
            self._calm += 1
            if self._calm >= CALM_ESTIMATES:
                self._behind = False
        self._skipped_seen = skipped
