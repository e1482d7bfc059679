"""What the pipeline asks of whatever keeps a record of a run (the session on disk).

The engine defines this seam and a higher layer implements it (``streamser.session.sink``), so
the engine never imports the session layer: the pipeline calls the sink at its lifecycle points
and forwards the dashboard's mute, record and mark requests to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from streamser.audio.ring import RingBuffer, RingReader
from streamser.contracts import Estimate
from streamser.engine.bus import ResultBus


@dataclass(frozen=True)
class RunContext:
    """What a sink is given when the run starts."""

    bus: ResultBus[Estimate]
    """Subscribe here (losslessly) to receive every estimate."""
    ring: RingBuffer
    """The capture ring, at the device's native rate and channels, for an audio tap."""
    description: dict[str, Any]
    """The run described for meta.json: version, model, compute, audio, config."""
    is_muted: Callable[[], bool]
    awaits_reconnect: Callable[[], bool]
    """True while a lost device is being looked for: a tap keeps waiting for its new ring."""


@dataclass(frozen=True)
class SinkStatus:
    """What the status line shows about the record being kept."""

    logging: bool = False
    """Estimates are being written."""
    recording: bool = False
    """Audio is being written."""
    log_error: str | None = None
    """Why writing stopped, when it did."""
    session_path: str | None = None
    recorder_dropped_frames: int = 0
    """Capture frames the recorder lost (the ring overwrote them before it read them)."""


class RunSink(Protocol):
    """A record of one run, opened when the run starts and closed with its final counters."""

    def open(self, run: RunContext) -> None:
        """Start keeping the record: subscribe to the results, tap the capture ring."""
        ...

    def close(self, counters: dict[str, Any]) -> None:
        """The run has ended and every estimate was delivered: write the final counters."""
        ...

    def status(self) -> SinkStatus: ...

    def on_mute(self, muted: bool, t_s: float) -> None:
        """Capture was muted or unmuted at stream time ``t_s``."""
        ...

    def set_recording(self, on: bool, frame: int) -> None:
        """Start (at capture frame ``frame``) or stop writing audio."""
        ...

    def add_mark(self, t_s: float, note: str) -> None: ...

    def wants_tap(self) -> bool:
        """Whether :meth:`rebind` needs a reader of a replacement ring."""
        ...

    def rebind(self, ring: RingBuffer, reader: RingReader, frame_offset: int) -> None:
        """Continue from a reconnected device's capture ring (read through ``reader``, made
        before the device started), whose frame 0 is stream frame ``frame_offset``."""
        ...
