"""An archive analysed with the model kept busy: decoding in worker processes, the model here.

Decoding, resampling and speech detection cost CPU in proportion to the audio and need no
model, so a bounded pool of worker processes (``concurrent.futures.ProcessPoolExecutor`` with
the spawn context: never a fork of a process whose threads may hold torch's locks, and, unlike
forkserver, no socket opened, not even a Unix one) prepares whole files
(``archive_files.prepare_file``) ahead of the model, while this process feeds their windows
to the one executor in large batches (``engine.window_feed``). At most ``files_in_flight``
files are decoded, waiting, or in the model at once, so memory stays flat however many files
the archive holds (a file in flight holds its 16 kHz signal: 230 MB per hour of audio and
stream). Files come back in the order they were given, so the rows are written in that order,
each file's rows at once.

A worker process that dies (a decoder crash) breaks the pool: the file at the head is reported
and skipped (the next run retries it), a new pool takes the others.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from streamser.config import AnalyzeConfig
from streamser.constants import ANALYZE_FILES_PER_WORKER, ANALYZE_MAX_WORKERS
from streamser.contracts import Estimate
from streamser.engine.executor import Executor
from streamser.engine.window_feed import FedFile, WindowFeed
from streamser.session.archive_files import (
    FileError,
    FileFailure,
    FileInfo,
    PreparedFile,
    prepare_file,
)

BATCHES_OUTSTANDING = 4
"""Batches of windows submitted to the executor and not yet resolved: enough that the next
batch is always waiting when one finishes, few enough to bound the memory (192 kB a window)."""


def default_workers() -> int:
    """One decoding process per core but one (the model's), at least one, at most
    ``ANALYZE_MAX_WORKERS``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(ANALYZE_MAX_WORKERS, (cores or 1) - 1))


@dataclass(frozen=True)
class PoolSettings:
    workers: int
    batch: int
    files_in_flight: int

    @classmethod
    def of(cls, cfg: AnalyzeConfig, batch: int) -> PoolSettings:
        workers = cfg.workers if cfg.workers is not None else default_workers()
        return cls(workers, batch, max(2, workers * ANALYZE_FILES_PER_WORKER))


def analyze_in_pool(
    executor: Executor,
    cfg: AnalyzeConfig,
    settings: PoolSettings,
    todo: list[Path],
    done: Callable[[FileInfo, list[list[Estimate]]], None],
    skip: Callable[[Path, Exception], None],
    say: Callable[[str], None],
) -> None:
    """Analyse ``todo``: ``done`` gets each file's estimates (one list per stream), in order;
    ``skip`` each file that failed, with its one-line error."""
    feed = WindowFeed(executor, cfg.windows, settings.batch, BATCHES_OUTSTANDING * settings.batch)
    paths = {str(p): p for p in todo}
    pool = _Pool(settings.workers, cfg)
    try:
        queue: deque[tuple[str, Future[PreparedFile | FileFailure]]] = deque()
        waiting = iter(str(p) for p in todo)

        def fill() -> None:
            while len(queue) + feed.pending_files < settings.files_in_flight:
                path = next(waiting, None)
                if path is None:
                    return
                queue.append((path, pool.submit(path)))

        def hand_back(fed_files: list[FedFile]) -> None:
            for fed in fed_files:
                info = fed.key
                assert isinstance(info, FileInfo)
                if fed.estimates is None:
                    skip(paths[info.path], fed.error or FileError(f"{info.path} failed"))
                else:
                    done(info, fed.estimates)

        fill()
        while queue or feed.pending_files:
            if not queue:  # every file in flight is in the model: wait for the oldest one
                hand_back(feed.wait_oldest())
                fill()
                continue
            path, future = queue.popleft()
            try:
                result = future.result()
            except BrokenProcessPool as e:
                result = FileFailure(path, f"a decoding process died on {path} ({e})")
                queue = deque((p, pool.restart_with(p)) for p, _ in queue)
            if isinstance(result, FileFailure):
                skip(paths[path], FileError(result.reason))
            else:
                if result.info.note is not None:
                    say(result.info.note)
                hand_back(feed.add(result.info, result.streams))
            fill()
        hand_back(feed.drain())
    finally:
        pool.shutdown()


class _Pool:
    """The worker processes, restartable after one of them died."""

    def __init__(self, workers: int, cfg: AnalyzeConfig) -> None:
        self.workers, self.cfg = workers, cfg
        self._pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        ctx = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker)

    def submit(self, path: str) -> Future[PreparedFile | FileFailure]:
        return self._pool.submit(prepare_file, path, self.cfg.windows, self.cfg.streams)

    def restart_with(self, path: str) -> Future[PreparedFile | FileFailure]:
        """Submit ``path`` again, on a new pool if this one broke."""
        try:
            return self.submit(path)
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new()
            return self.submit(path)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _init_worker() -> None:
    """A worker's torch (the speech detector) on one thread: the processes share the cores."""
    import torch

    torch.set_num_threads(1)
