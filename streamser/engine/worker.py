"""The inference thread: drains the capture ring into the analyzers and publishes estimates.

One worker drives every stream of a run (one analyzer per stream: the mono mix, or one per
input channel with ``--per-channel``). Each round, the windows all streams have due go through
the model together, in one batch, and each stream gets its own rows back. Policy follows the
source:

* live (microphone, real-time replay): each round computes only the newest due window of each
  stream; older due ones are skipped and counted per stream, so latency stays bounded when the
  model is slower than the hop;
* lossless (``--fast`` replay): every due window is computed, in order, in batches of about
  ``max_batch`` windows shared among the streams; the source waits on the ring meanwhile, so
  nothing is skipped.

Latency of an estimate = the moment it is published minus the capture time of its window's last
sample. The capture time comes from the ring's write counter: when the worker reads, the newest
frame written was captured "now" (the writer copies each block as it arrives), and earlier
frames are dated backwards at the nominal rate.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from streamser.audio.gaps import GapDetector
from streamser.audio.ring import RingBuffer, RingReader
from streamser.audio.windows import Window
from streamser.constants import NUM_CLASSES, SAMPLE_RATE_HZ
from streamser.contracts import Estimate
from streamser.engine.analyzer import PreparedWindows, StreamAnalyzer
from streamser.engine.stats import RunStats

log = logging.getLogger("streamser")

POLL_S = 0.05
"""Longest the worker sleeps waiting for audio; it wakes at once when a block arrives."""
JOIN_TIMEOUT_S = 10.0
"""A model run in progress finishes before the thread ends; the full model takes ~2 s on a CPU."""


class InferenceWorker:
    """Drives the run's :class:`StreamAnalyzer` objects (one per stream, all reading the same
    capture ring, all sharing one model) from a ring reader on its own thread."""

    def __init__(
        self,
        analyzers: StreamAnalyzer | Sequence[StreamAnalyzer],
        ring: RingBuffer,
        reader: RingReader,
        publish: Callable[[Estimate], None],
        stats: RunStats,
        *,
        lossless: bool,
        max_batch: int = 8,
        is_muted: Callable[[], bool] = lambda: False,
        awaits_reconnect: Callable[[], bool] = lambda: False,
    ) -> None:
        self.analyzers = [analyzers] if isinstance(analyzers, StreamAnalyzer) else list(analyzers)
        if not self.analyzers:
            raise ValueError("a worker needs at least one stream")
        self.analyzer = self.analyzers[0]
        """The first stream: the capture clock (frames in, ring drops) is the same for all."""
        self.model = self.analyzer.model
        """The model every stream shares (one forward pass per round runs all of them)."""
        self.model_calls = 0
        """Forward passes requested: one per round, whatever the number of streams."""
        self.ring = ring
        self.reader = reader
        self.publish = publish
        self.stats = stats
        self.lossless = lossless
        self.max_batch = max(1, max_batch)
        self.is_muted = is_muted
        self.awaits_reconnect = awaits_reconnect
        """True when the source failed and a replacement is being sought: keep the stream open."""
        self.frame_offset = 0
        """Stream frame of the current ring's frame 0 (non-zero after a reconnect)."""
        self._rebound = threading.Event()
        self.gaps = GapDetector(self.analyzer.in_rate_hz) if not lossless else None
        self.finished = threading.Event()
        """Set when the stream ended and every remaining window was published (or on error)."""
        self.error: BaseException | None = None
        self._anchor: tuple[int, float] = (0, time.monotonic())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streamser-inference", daemon=True)
        self._started = False
        self._silence_announced = False
        self._seq = itertools.count()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self, timeout_s: float = JOIN_TIMEOUT_S) -> None:
        """Ask the thread to end after the current model run and wait for it. Idempotent."""
        self._stop.set()
        if self._started and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def rebind(self, ring: RingBuffer, reader: RingReader, frame_offset: int) -> None:
        """Continue from a new capture ring (a reconnected device) at ``frame_offset``.

        Frames between the end of the old ring and ``frame_offset`` were never captured: the
        analyzer fills them with zeros and counts them as dropped, so the clock stays true.
        """
        self.ring, self.reader, self.frame_offset = ring, reader, frame_offset
        if self.gaps is not None:
            self.gaps.reset()
        self._rebound.set()

    # -- the loop -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.reader.wait(POLL_S)
                self._drain()
                self._compute()
                self._sync()
                if self.ring.closed and self.reader.available() == 0:
                    if self.awaits_reconnect():
                        self._rebound.wait(POLL_S)
                        self._rebound.clear()
                        continue
                    self._finish()
                    self._sync()
                    return
        except Exception as e:  # reported by the pipeline; the thread must not die silently
            self.error = e
            log.error("inference stopped: %s: %s", type(e).__name__, e)
        finally:
            self.finished.set()

    def _drain(self) -> None:
        first, block = self.reader.read_new()
        now = time.monotonic()
        if len(block) == 0:
            return
        written = self.ring.frames_written
        self._anchor = (self.frame_offset + written, now)
        gap = 0
        if self.gaps is not None and not self.ring.closed:
            # A closed ring's last frames were read late, not lost: no gap to count.
            gap = self.gaps.update(written, now)
        if self.is_muted():
            block = block * 0.0
        for a in self.analyzers:
            a.gap_frames += gap
            a.push_capture(self.frame_offset + first, block)
        warning = self.silence_warning()
        if warning is not None and not self._silence_announced:
            log.warning("%s", warning)
        self._silence_announced = warning is not None  # said again if the silence comes back

    def silence_warning(self) -> str | None:
        """The silence watch's message: for the run (one stream), or naming the silent streams
        (several: one muted microphone among live ones must not pass unnoticed)."""
        if len(self.analyzers) == 1:
            return self.analyzer.silence_warning
        silent = [a for a in self.analyzers if a.silence_warning is not None]
        if not silent:
            return None
        return f"{', '.join(a.stream.name for a in silent)}: {silent[0].silence_warning}"

    def _compute(self) -> None:
        if self.is_muted():
            self.stats.add_muted(sum(len(a.due_all()) for a in self.analyzers))
            return
        if self.lossless:
            self._run_lossless([a.due_all() for a in self.analyzers])
            return
        due = [(a, a.due_latest()) for a in self.analyzers]
        self._run_round([(a, [w], [self._capture_time(w)]) for a, w in due if w is not None])

    def _run_lossless(self, due: list[list[Window]]) -> None:
        """Every due window of every stream, in rounds of about ``max_batch`` windows."""
        per_stream = max(1, math.ceil(self.max_batch / len(self.analyzers)))
        start = 0
        while any(len(d) > start for d in due):
            stop = start + per_stream
            self._run_round(
                [(a, d[start:stop], None) for a, d in zip(self.analyzers, due) if d[start:stop]]
            )
            start = stop
            if self._stop.is_set():
                return

    def _run_round(
        self,
        work: list[tuple[StreamAnalyzer, Sequence[Window], Sequence[float | None] | None]],
    ) -> None:
        """One forward pass for the windows of every stream in ``work``; the estimates are
        published in stream-clock order (streams in run order within one instant)."""
        if not work:
            return
        prepared: list[tuple[StreamAnalyzer, PreparedWindows]] = [
            (a, a.prepare(windows, caps)) for a, windows, caps in work
        ]
        inputs = [p.inputs for _, p in prepared if len(p.inputs)]
        t0 = time.perf_counter()
        logits = self.model.logits(np.concatenate(inputs)) if inputs else None
        compute_s = time.perf_counter() - t0
        if inputs:
            self.model_calls += 1
        n_run = sum(len(x) for x in inputs)
        estimates: list[Estimate] = []
        row = 0
        for a, p in prepared:
            rows = len(p.inputs)
            mine = logits[row : row + rows] if logits is not None else _no_logits(rows)
            row += rows
            # Each stream's share of the pass: the time per window of the whole batch.
            estimates += a.complete(p, mine, compute_s * rows / max(1, n_run))
        order = {a.stream.name: i for i, a in enumerate(self.analyzers)}
        estimates.sort(key=lambda e: (e.t_end_s, order[e.stream]))
        self._emit(estimates)

    def _finish(self) -> None:
        tails = [a.finish() for a in self.analyzers]
        if self.is_muted():
            self.stats.add_muted(sum(len(t) for t in tails))
            return
        if not self.lossless:
            for a, tail in zip(self.analyzers, tails):
                if len(tail) > 1:
                    a.skip(len(tail) - 1)
            tails = [tail[-1:] for tail in tails]
        self._run_lossless(tails)

    def _capture_time(self, window: object) -> float | None:
        end_sample = getattr(window, "end_sample", None)
        if end_sample is None:
            return None
        rate = self.analyzer.in_rate_hz
        native_end = end_sample * rate / SAMPLE_RATE_HZ
        written, at = self._anchor
        return at - max(0.0, written - native_end) / rate

    def _emit(self, estimates: list[Estimate]) -> None:
        self._sync()  # the counters an estimate carries are in the snapshot before it is seen
        for est in estimates:
            # One sequence for the run, in publishing order, whatever the stream.
            est = replace(est, seq=next(self._seq))
            self.stats.record(est)
            self.publish(est)

    def _sync(self) -> None:
        first = self.analyzer
        self.stats.sync_stages(
            windows_due=sum(a.windower.windows_emitted + a.skipped_windows for a in self.analyzers),
            skipped_windows=sum(a.skipped_windows for a in self.analyzers),
            ring_dropped_frames=first.dropped_frames,
            gap_frames=first.gap_frames,
            nonfinite_samples=sum(a.nonfinite_samples for a in self.analyzers),
            huge_samples=sum(a.huge_samples for a in self.analyzers),
            frames_in=first.frames_in,
            stream_samples=first.windower.samples_total,
            vad_frames_evicted=sum(
                a.vad.frames_evicted for a in self.analyzers if a.vad is not None
            ),
        )
        self.stats.sync_streams(
            {
                a.stream.name: (a.windower.windows_emitted + a.skipped_windows, a.skipped_windows)
                for a in self.analyzers
            }
        )


def _no_logits(rows: int) -> np.ndarray:
    """No logits: a stream whose every due window was skipped as non-speech."""
    return np.zeros((rows, NUM_CLASSES), dtype=np.float32)
