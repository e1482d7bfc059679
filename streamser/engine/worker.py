"""The inference thread: drains the capture ring into the analyzer and publishes estimates.

Policy follows the source:

* live (microphone, real-time replay): after each model run, only the newest due window is
  computed; older due ones are skipped and counted, so latency stays bounded when the model is
  slower than the hop;
* lossless (``--fast`` replay): every due window is computed, in order, in batches of up to
  ``max_batch``; the source waits on the ring meanwhile, so nothing is skipped.

Latency of an estimate = the moment it is published minus the capture time of its window's last
sample. The capture time comes from the ring's write counter: when the worker reads, the newest
frame written was captured "now" (the writer copies each block as it arrives), and earlier
frames are dated backwards at the nominal rate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from streamser.audio.gaps import GapDetector
from streamser.audio.ring import RingBuffer, RingReader
from streamser.constants import SAMPLE_RATE_HZ
from streamser.contracts import Estimate
from streamser.engine.analyzer import StreamAnalyzer
from streamser.engine.stats import RunStats

log = logging.getLogger("streamser")

POLL_S = 0.05
"""Longest the worker sleeps waiting for audio; it wakes at once when a block arrives."""
JOIN_TIMEOUT_S = 10.0
"""A model run in progress finishes before the thread ends; the full model takes ~2 s on a CPU."""


class InferenceWorker:
    """Drives a :class:`StreamAnalyzer` from a ring reader on its own thread."""

    def __init__(
        self,
        analyzer: StreamAnalyzer,
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
        self.analyzer = analyzer
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
        self.gaps = GapDetector(analyzer.in_rate_hz) if not lossless else None
        self.finished = threading.Event()
        """Set when the stream ended and every remaining window was published (or on error)."""
        self.error: BaseException | None = None
        self._anchor: tuple[int, float] = (0, time.monotonic())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streamser-inference", daemon=True)
        self._started = False
        self._silence_announced = False

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
        if self.gaps is not None and not self.ring.closed:
            # A closed ring's last frames were read late, not lost: no gap to count.
            self.analyzer.gap_frames += self.gaps.update(written, now)
        if self.is_muted():
            block = block * 0.0
        self.analyzer.push_capture(self.frame_offset + first, block)
        silent = self.analyzer.silence_warning is not None
        if silent and not self._silence_announced:
            log.warning("%s", self.analyzer.silence_warning)
        self._silence_announced = silent  # said again if the silence ends and comes back

    def _compute(self) -> None:
        if self.is_muted():
            self.stats.add_muted(len(self.analyzer.due_all()))
            return
        if self.lossless:
            due = self.analyzer.due_all()
            for i in range(0, len(due), self.max_batch):
                self._emit(self.analyzer.estimate(due[i : i + self.max_batch]))
                if self._stop.is_set():
                    return
        else:
            window = self.analyzer.due_latest()
            if window is not None:
                self._emit(self.analyzer.estimate([window], [self._capture_time(window)]))

    def _finish(self) -> None:
        tail = self.analyzer.finish()
        if self.is_muted():
            self.stats.add_muted(len(tail))
            return
        if not self.lossless and len(tail) > 1:
            self.analyzer.skip(len(tail) - 1)
            tail = tail[-1:]
        for i in range(0, len(tail), self.max_batch):
            self._emit(self.analyzer.estimate(tail[i : i + self.max_batch]))

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
            self.stats.record(est)
            self.publish(est)

    def _sync(self) -> None:
        a = self.analyzer
        w = a.windower
        self.stats.sync_stages(
            windows_due=w.windows_emitted + w.windows_skipped,
            skipped_windows=w.windows_skipped,
            ring_dropped_frames=a.dropped_frames,
            gap_frames=a.gap_frames,
            nonfinite_samples=a.nonfinite_samples,
            huge_samples=a.huge_samples,
            frames_in=a.frames_in,
            stream_samples=w.samples_total,
            vad_frames_evicted=a.vad.frames_evicted if a.vad is not None else 0,
        )
