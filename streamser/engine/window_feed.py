"""Prepared windows of many files fed to the one executor in large batches, results in order.

Why a feed: windows prepared ahead of the model (``engine.offline.prepare_audio``, in worker
processes) arrive a whole file at a time; the executor should always have the next batch
waiting, so the feed submits them in chunks of one batch and lets the next file's windows queue
behind the last one's, while it never holds more than ``max_outstanding`` windows submitted and
unresolved (each is 192 kB of model input). Files are handed back whole and in the order they
were added, with their estimates built (``engine.offline.build_estimates``), or with the error
that failed one of their windows.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from streamser.config import WindowConfig
from streamser.constants import NUM_CLASSES
from streamser.contracts import Estimate
from streamser.engine.executor import Executor
from streamser.engine.offline import PreparedStream, build_estimates


@dataclass
class FedFile:
    """One file's windows in the feed; ``estimates`` (one list per stream) once it is done."""

    key: Hashable
    streams: Sequence[PreparedStream]
    futures: list[list[Future[np.ndarray]]] = field(default_factory=list)
    t_submit: float = field(default_factory=time.monotonic)
    submitted: bool = False
    estimates: list[list[Estimate]] | None = None
    error: Exception | None = None

    @property
    def windows(self) -> int:
        return sum(s.windows for s in self.streams)


class WindowFeed:
    """Submits prepared files' windows to ``executor`` in chunks of ``batch`` (see module doc)."""

    def __init__(
        self, executor: Executor, cfg: WindowConfig, batch: int, max_outstanding: int
    ) -> None:
        if max_outstanding < batch:
            raise ValueError(f"max_outstanding {max_outstanding} is below one batch ({batch})")
        self.executor = executor
        self.cfg = cfg
        self.batch = batch
        self.max_outstanding = max_outstanding
        self._files: deque[FedFile] = deque()
        self._outstanding: deque[Future[np.ndarray]] = deque()

    def add(self, key: Hashable, streams: Sequence[PreparedStream]) -> list[FedFile]:
        """Submit one file's windows (waiting for room as needed); returns the files, added
        earlier or this one, that completed meanwhile, in order."""
        fed = FedFile(key, streams)
        self._files.append(fed)
        for stream in streams:
            futures: list[Future[np.ndarray]] = []
            fed.futures.append(futures)
            for first in range(0, stream.windows, self.batch):
                inputs = stream.inputs(first, min(first + self.batch, stream.windows))
                if not len(inputs):
                    continue
                self._make_room(len(inputs))
                chunk = self.executor.submit_many(inputs)
                futures += chunk
                self._outstanding.extend(chunk)
        fed.submitted = True
        return self._completed()

    def wait_oldest(self) -> list[FedFile]:
        """Wait for the oldest file's windows; the files completed by then, in order."""
        if self._files:
            for futures in self._files[0].futures:
                for f in futures:
                    f.exception()
        return self._completed()

    def drain(self) -> list[FedFile]:
        """Wait for every window submitted; the files not yet handed back, in order."""
        while self._outstanding:
            self._outstanding.popleft().exception()
        return self._completed()

    @property
    def pending_files(self) -> int:
        return len(self._files)

    def _make_room(self, n: int) -> None:
        while self._outstanding and len(self._outstanding) + n > self.max_outstanding:
            self._outstanding.popleft().exception()  # waits; the error is read when it is built
        while self._outstanding and self._outstanding[0].done():
            self._outstanding.popleft()

    def _completed(self) -> list[FedFile]:
        done: list[FedFile] = []
        while self._files and self._files[0].submitted and _all_done(self._files[0]):
            fed = self._files.popleft()
            self._build(fed)
            done.append(fed)
        return done

    def _build(self, fed: FedFile) -> None:
        stats = self.executor.stats()
        compute_s = stats.compute_s_total / stats.windows_run if stats.windows_run else 0.0
        latency_s = time.monotonic() - fed.t_submit
        try:
            fed.estimates = [
                build_estimates(
                    stream,
                    _logits(futures),
                    self.cfg,
                    compute_s=compute_s,
                    latency_s=latency_s,
                )
                for stream, futures in zip(fed.streams, fed.futures)
            ]
        except Exception as e:  # a window's forward failed: the file fails, the run goes on
            fed.error = e
        fed.streams = ()  # the signals are no longer needed: free them now


def _all_done(fed: FedFile) -> bool:
    return all(f.done() for futures in fed.futures for f in futures)


def _logits(futures: list[Future[np.ndarray]]) -> np.ndarray:
    if not futures:
        return np.zeros((0, NUM_CLASSES), dtype=np.float32)
    return np.stack([f.result() for f in futures])
