"""``listen --server``: the run's worker sends the audio to a ``streamser serve`` and publishes
the estimates that come back, so everything else of the run (the session on disk, the
recording, the headless output, the dashboard) works as with a local model.

It is the pipeline's worker seam (``Pipeline(worker_factory=...)``), not a second pipeline: it
reads the same capture ring (a reader of its own beside the analyzers'), keeps the local
analyzers for what they measure here (level, silence, ring drops, the stream clock and the
windows due) and never runs a model. Its loop sends; a receiver thread reads the server's
messages and publishes the estimates, on the local stream clock.

A lost connection does not end the run. The receiver retries with backoff; meanwhile live
audio is not analysed and counts as dropped (``gap_frames``), and a file upload waits. The new
connection starts at the next frame whose 16 kHz sample is a multiple of the hop, so its
windows fall on the run's window grid: server window k is local window ``j0 + k``. Every
window due before that and never estimated counts as skipped.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed

from streamser.audio.ring import RingBuffer, RingReader
from streamser.constants import SAMPLE_RATE_HZ
from streamser.contracts import Estimate
from streamser.engine.analyzer import StreamAnalyzer
from streamser.engine.stats import RunStats
from streamser.engine.worker import POLL_S, InferenceWorker
from streamser.server.remote_link import RemoteError, RemoteLink, public_url

log = logging.getLogger("streamser")

RETRY_S = (0.5, 1.0, 2.0, 4.0)
"""Waits between reconnection attempts; the last repeats."""
STOP_WAIT_S = 8.0
"""On a stop (Ctrl+C), how long the server may take to send the windows it still computes."""

LinkFactory = Callable[[], RemoteLink]


class RemoteWorker(InferenceWorker):
    """The worker of a run whose model is on a server (see the module doc)."""

    def __init__(
        self,
        analyzers: StreamAnalyzer | Sequence[StreamAnalyzer],
        ring: RingBuffer,
        reader: RingReader,
        publish: Callable[[Estimate], None],
        stats: RunStats,
        *,
        link: RemoteLink,
        reconnect: LinkFactory,
        **kwargs: Any,
    ) -> None:
        super().__init__(analyzers, ring, reader, publish, stats, **kwargs)
        for a in self.analyzers:
            a.vad = None  # the speech gate runs on the server; here the stages only measure
        self.link: RemoteLink | None = link
        self.url = public_url(link.url)
        self._reconnect = reconnect
        self.out_reader = ring.reader("remote")
        """The audio that goes to the server, read beside the analyzers' reader."""
        self.rate_hz = self.analyzer.in_rate_hz
        self.hop16 = round(self.analyzer.cfg.hop_s * SAMPLE_RATE_HZ)
        self._lock = threading.Lock()
        self._sent_to = 0
        """Local frame up to which audio went to the current connection (or was given up)."""
        self._origin = 0
        """Local frame of the current connection's frame 0 (a multiple of the hop)."""
        self.lost_frames = 0
        """Capture frames never sent to a live connection: analysed nowhere (counted dropped)."""
        self.reconnects = 0
        self._base_skipped: dict[str, int] = {}
        self._skipped: dict[str, int] = {}
        self._received: dict[str, int] = {}
        self._server_end = threading.Event()
        self._link_lost = threading.Event()
        self._outage: str | None = None
        self._stopping = threading.Event()
        self._receiver = threading.Thread(
            target=self._receive, name="streamser-remote", daemon=True
        )

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if not self._started:
            self._receiver.start()
        super().start()

    def stop(self, timeout_s: float = STOP_WAIT_S + 2.0) -> None:
        self._stopping.set()
        super().stop(timeout_s)
        self._receiver.join(2.0)

    def rebind(self, ring: RingBuffer, reader: RingReader, frame_offset: int) -> None:
        """A reconnected input device: its ring's frames are read from here on too."""
        self.out_reader = ring.reader("remote")
        super().rebind(ring, reader, frame_offset)

    def silence_warning(self) -> str | None:
        """The input's silence warning, or while the server is unreachable, that: the one
        warning line the status shows."""
        return self._outage or super().silence_warning()

    # -- the loop (the base class's, with these steps) ------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.reader.wait(POLL_S)
                self._drain()
                self._compute()
                self._sync()
                if self.ring.closed and self._all_read():
                    if self.awaits_reconnect():
                        self._rebound.wait(POLL_S)
                        self._rebound.clear()
                        continue
                    break
            self._finish()
            self._sync()
        except Exception as e:  # reported by the pipeline; the thread must not die silently
            self.error = e
            log.error("remote analysis stopped: %s: %s", type(e).__name__, e)
        finally:
            self._stopping.set()
            link = self.link
            if link is not None:
                link.close()
            self.finished.set()

    def _all_read(self) -> bool:
        return self.reader.available() == 0 and self.out_reader.available() == 0

    def _compute(self) -> None:
        """Send the new audio; the local windows are only counted (the server computes)."""
        for a in self.analyzers:
            a.due_all()
        if self.lossless and self.link is None:
            return  # a file upload waits for the server to come back
        first, block = self.out_reader.read_new()
        if not len(block):
            return
        first += self.frame_offset
        if self.is_muted():
            block = block * 0.0
        with self._lock:
            link, start = self.link, max(self._sent_to, self._origin)
            if link is None:
                self.lost_frames += len(block)
                self._sent_to = first + len(block)
                return
            if first > self._sent_to:  # the ring lost frames: send silence, as analysed here
                block = np.concatenate(
                    [np.zeros((first - self._sent_to, block.shape[1]), np.float32), block]
                )
                first = self._sent_to
            skip = min(len(block), max(0, start - first))
            self.lost_frames += skip
            block = block[skip:]
            self._sent_to = first + skip + len(block)
        if len(block):
            try:
                link.send(block)
            except (ConnectionClosed, OSError):
                self._link_lost.set()  # the receiver reconnects

    def _finish(self) -> None:
        """The stream ended (or the run stops): count the last windows here, tell the server,
        and publish what it still sends."""
        for a in self.analyzers:
            a.finish()
        link = self.link
        if link is not None and not self._link_lost.is_set():
            try:
                link.end()
            except (ConnectionClosed, OSError):
                return
            deadline = time.monotonic() + STOP_WAIT_S
            while not self._server_end.wait(POLL_S) and not self._link_lost.is_set():
                if self._stop.is_set() and time.monotonic() > deadline:
                    log.warning("the server did not send its last estimates in time")
                    break
        with self._lock:  # every window due and never estimated was skipped (or lost)
            for a in self.analyzers:
                due = a.windower.windows_emitted + a.skipped_windows
                self._skipped[a.stream.name] = due - self._received.get(a.stream.name, 0)

    # -- the receiver -----------------------------------------------------------------------

    def _receive(self) -> None:
        while not self._stopping.is_set():
            link = self.link
            if link is None:
                if not self._connect_again():
                    return
                continue
            try:
                for message in link.messages():
                    if self._handle(message):
                        return  # the server sent "end"
            except (ConnectionClosed, OSError):
                pass
            if self._stopping.is_set() or self._server_end.is_set():
                return
            self._lost(link)

    def _handle(self, message: dict[str, Any]) -> bool:
        kind = message.get("type")
        if kind == "estimate":
            self._publish(message)
        elif kind == "end":
            self._server_end.set()
            return True
        elif kind == "busy":
            log.warning("the server: %s", message.get("message"))
        elif kind in ("error", "closing"):
            log.warning("the server ends the stream: %s", message.get("message") or "shutdown")
        return False

    def _publish(self, message: dict[str, Any]) -> None:
        est = Estimate.from_json_dict(message)
        name = est.stream
        with self._lock:
            offset16 = self._origin * SAMPLE_RATE_HZ // self.rate_hz
            skipped = self._base_skipped.get(name, 0) + est.skipped_windows
            self._skipped[name] = skipped
            self._received[name] = self._received.get(name, 0) + 1
            lost16 = self.lost_frames * SAMPLE_RATE_HZ // self.rate_hz
        t_end_s = est.t_end_s + offset16 / SAMPLE_RATE_HZ
        local = next((a for a in self.analyzers if a.stream.name == name), self.analyzer)
        est = replace(
            est,
            window=est.window + offset16 // self.hop16,
            t_start_s=est.t_start_s + offset16 / SAMPLE_RATE_HZ,
            t_end_s=t_end_s,
            latency_s=est.latency_s if self.lossless else self._latency(t_end_s),
            skipped_windows=skipped,
            dropped_samples=est.dropped_samples + local.dropped_samples + lost16,
        )
        self._emit([est])

    def _latency(self, t_end_s: float) -> float:
        """Now minus when the window's last sample was captured here."""
        written, at = self._anchor
        end_frame = t_end_s * self.rate_hz
        return max(0.0, time.monotonic() - (at - max(0.0, written - end_frame) / self.rate_hz))

    def _lost(self, link: RemoteLink) -> None:
        self._outage = f"lost the server at {self.url} ({link.close_reason}): retrying"
        log.warning("%s; audio meanwhile is not analysed and counts as dropped", self._outage)
        with self._lock:
            self.link = None
        self._link_lost.set()
        link.close()

    def _connect_again(self) -> bool:
        lost_at = time.monotonic()
        for attempt in range(1_000_000):
            if self._stopping.wait(RETRY_S[min(attempt, len(RETRY_S) - 1)]):
                return False
            try:
                link = self._reconnect().open()
            except RemoteError as e:
                log.debug("reconnect attempt failed: %s", e)
                continue
            self._resume(link)
            log.warning("the server is back after %.1f s", time.monotonic() - lost_at)
            return True
        return False

    def _resume(self, link: RemoteLink) -> None:
        """Start the new connection at the first frame on the window grid not yet read."""
        with self._lock:
            origin = self._grid_frame(max(self._sent_to, self._origin))
            self._origin = origin
            j0 = origin * SAMPLE_RATE_HZ // self.rate_hz // self.hop16
            for a in self.analyzers:
                name = a.stream.name
                self._base_skipped[name] = j0 - self._received.get(name, 0)
            self.link = link
            self.reconnects += 1
        self._link_lost.clear()
        self._outage = None

    def _grid_frame(self, frame: int) -> int:
        """The first local frame at or after ``frame`` whose 16 kHz sample is a whole multiple
        of the hop (and so a whole number of capture frames)."""
        unit = SAMPLE_RATE_HZ // math.gcd(self.rate_hz, SAMPLE_RATE_HZ)
        step16 = self.hop16 * unit // math.gcd(self.hop16, unit)
        sample = math.ceil(frame * SAMPLE_RATE_HZ / self.rate_hz / step16) * step16
        return sample * self.rate_hz // SAMPLE_RATE_HZ

    # -- counters -------------------------------------------------------------------------

    def _sync(self) -> None:
        first = self.analyzer
        with self._lock:
            skipped = dict(self._skipped)
            lost = self.lost_frames
        due = {
            a.stream.name: a.windower.windows_emitted + a.skipped_windows for a in self.analyzers
        }
        self.stats.sync_stages(
            windows_due=sum(due.values()),
            skipped_windows=sum(skipped.values()),
            ring_dropped_frames=first.dropped_frames,
            gap_frames=first.gap_frames + lost,
            nonfinite_samples=sum(a.nonfinite_samples for a in self.analyzers),
            huge_samples=sum(a.huge_samples for a in self.analyzers),
            frames_in=first.frames_in,
            stream_samples=first.windower.samples_total,
            vad_frames_evicted=0,
        )
        self.stats.sync_streams({name: (n, skipped.get(name, 0)) for name, n in due.items()})


def remote_worker_factory(link: RemoteLink, reconnect: LinkFactory) -> Callable[..., RemoteWorker]:
    """What ``Pipeline(worker_factory=...)`` takes: the run's worker, on ``link``."""

    def make(*args: Any, **kwargs: Any) -> RemoteWorker:
        return RemoteWorker(*args, link=link, reconnect=reconnect, **kwargs)

    return make
