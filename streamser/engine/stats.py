"""Every counter of a run in one place, read as one consistent snapshot.

Stages count on the inference thread; the dashboard polls from the UI thread and meta.json is
written at the end from another. So the inference thread copies the stage counters into
:class:`RunStats` at the end of each step (a drained block, a published batch), under one lock,
and readers take an immutable :class:`Counters`: everything in one snapshot was true at the same
instant, and both the status line and meta.json are built from it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from streamser.constants import SAMPLE_RATE_HZ
from streamser.contracts import Estimate


@dataclass(frozen=True)
class StreamCounters:
    """One stream's window accounting: ``estimates + skipped_windows (+ muted) ==
    windows_due`` once the stream has ended."""

    name: str
    windows_due: int = 0
    skipped_windows: int = 0
    estimates: int = 0

    def to_dict(self) -> dict[str, int | str]:
        return {
            "name": self.name,
            "windows_due": self.windows_due,
            "skipped_windows": self.skipped_windows,
            "estimates": self.estimates,
        }


@dataclass(frozen=True)
class Counters:
    """A run's counters at one instant. Frames are native-rate capture frames; samples are
    16 kHz stream samples."""

    estimates: int = 0
    windows_due: int = 0
    """Windows whose end the stream clock has passed (computed, skipped or muted)."""
    skipped_windows: int = 0
    """Due windows not computed because a newer one was due (live: newest wins)."""
    muted_windows: int = 0
    """Due windows not computed because capture was muted."""
    ring_dropped_frames: int = 0
    """Capture frames the ring overwrote before the analyzer read them."""
    gap_frames: int = 0
    """Capture frames the wall clock says were never delivered (device gaps)."""
    recorder_dropped_frames: int = 0
    """Capture frames the ring overwrote before the recorder wrote them."""
    nonfinite_samples: int = 0
    """NaN/inf input samples and implausibly large ones, replaced by zeros."""
    huge_samples: int = 0
    """Of those, the implausibly large ones (corrupt data rather than audio)."""
    frames_in: int = 0
    """Capture frames consumed, zeros for lost ones included."""
    stream_samples: int = 0
    """The stream clock: 16 kHz samples since the start."""
    vad_frames_evicted: int = 0
    compute_s_total: float = 0.0
    last_compute_s: float | None = None
    last_latency_s: float | None = None
    in_rate_hz: int = SAMPLE_RATE_HZ
    streams: tuple[StreamCounters, ...] = ()
    """Per stream, in the run's order, when the run has several (``--per-channel``)."""

    def stream(self, name: str) -> StreamCounters:
        """One stream's counters (all zero for a name the run does not know yet)."""
        return next((c for c in self.streams if c.name == name), StreamCounters(name))

    @property
    def dropped_samples(self) -> int:
        """Audio lost on the way in (ring overruns and device gaps), in 16 kHz samples."""
        frames = self.ring_dropped_frames + self.gap_frames
        return round(frames * SAMPLE_RATE_HZ / self.in_rate_hz)

    @property
    def stream_s(self) -> float:
        return self.stream_samples / SAMPLE_RATE_HZ


class RunStats:
    """The one owner of a run's counters: writers update under a lock, readers snapshot."""

    def __init__(self, in_rate_hz: int) -> None:
        self._lock = threading.Lock()
        self._counters = Counters(in_rate_hz=in_rate_hz)

    def snapshot(self) -> Counters:
        with self._lock:
            return self._counters

    def sync_stages(
        self,
        *,
        windows_due: int,
        skipped_windows: int,
        ring_dropped_frames: int,
        gap_frames: int,
        nonfinite_samples: int,
        huge_samples: int,
        frames_in: int,
        stream_samples: int,
        vad_frames_evicted: int,
    ) -> None:
        """Copy the stages' own counters (at the end of a step, on the inference thread)."""
        with self._lock:
            self._counters = replace(
                self._counters,
                windows_due=windows_due,
                skipped_windows=skipped_windows,
                ring_dropped_frames=ring_dropped_frames,
                gap_frames=gap_frames,
                nonfinite_samples=nonfinite_samples,
                huge_samples=huge_samples,
                frames_in=frames_in,
                stream_samples=stream_samples,
                vad_frames_evicted=vad_frames_evicted,
            )

    def sync_streams(self, due_and_skipped: dict[str, tuple[int, int]]) -> None:
        """Copy each stream's windows due and skipped (in the run's order)."""
        with self._lock:
            c = self._counters
            self._counters = replace(
                c,
                streams=tuple(
                    replace(c.stream(name), windows_due=due, skipped_windows=skipped)
                    for name, (due, skipped) in due_and_skipped.items()
                ),
            )

    def set_recorder_dropped(self, frames: int) -> None:
        with self._lock:
            self._counters = replace(self._counters, recorder_dropped_frames=frames)

    def add_muted(self, windows: int) -> None:
        if windows:
            with self._lock:
                c = self._counters
                self._counters = replace(c, muted_windows=c.muted_windows + windows)

    def record(self, est: Estimate) -> None:
        """Account one published estimate."""
        with self._lock:
            c = self._counters
            streams = tuple(
                replace(s, estimates=s.estimates + 1) if s.name == est.stream else s
                for s in c.streams
            )
            self._counters = replace(
                c,
                streams=streams,
                estimates=c.estimates + 1,
                compute_s_total=c.compute_s_total + est.compute_s,
                last_compute_s=est.compute_s,
                last_latency_s=est.latency_s,
            )
