"""What the dashboard needs from whatever produces estimates: a live pipeline or a replay.

The dashboard depends on this protocol only, so it can be driven by the real engine, a session
replay or a scripted stand-in in tests, and the engine never imports Textual.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from streamser.engine.estimate import Estimate


@dataclass(frozen=True)
class StatusSnapshot:
    """Everything the status area shows, copied at one instant.

    Frozen so the UI can compare two snapshots with ``==`` and redraw only when one changed,
    and so a snapshot taken on one thread can be read on another without locks.
    """

    device: str
    """Input device name (or the file being replayed)."""
    sample_rate_hz: int
    """Native rate the device was opened at, before resampling to 16 kHz."""
    model_name: str
    demo_model: bool
    """True when the weights are random: the dashboard then says its output is meaningless."""
    compute_device: str
    """Where the model runs, e.g. ``"cpu"`` or ``"cuda:0"``."""
    dtype: str
    """Compute dtype, e.g. ``"float32"``."""
    hop_s: float
    """Current hop between analysed windows, in seconds (it adapts when compute falls behind)."""
    rtf: float | None
    """Real-time factor: compute time per window divided by the hop; ``None`` before the first."""
    latency_s: float | None
    """Seconds from capturing a window's last sample to its estimate; ``None`` before the first."""
    skipped_windows: int
    """Windows dropped because compute fell behind (latest-wins), running total."""
    dropped_samples: int
    """Input samples lost (ring overflow or device gaps), running total."""
    recording: bool
    """Audio is being written to the session."""
    muted: bool
    """Capture is muted: no audio reaches the model or the recording."""
    logging: bool
    """Estimates are being written to the session log."""
    log_error: str | None
    """Why logging stopped, when it did; shown as a banner because data is being lost."""
    session_path: str | None
    level_dbfs: float | None
    """Input level of the latest block in dBFS; ``None`` when unknown (e.g. a replay)."""
    clipping: bool
    """The latest block reached full scale."""
    silence_warning: str | None
    """Set when the input has been silent long enough to suspect the wrong device."""
    source_error: str | None
    """Set while the source is failing, e.g. device lost and being retried."""
    finished: bool
    """A file or replay reached its end; no more estimates will come."""


@runtime_checkable
class DashboardController(Protocol):
    """The dashboard's view of a running analysis.

    The dashboard owns the lifecycle: it calls :meth:`start` when mounted and :meth:`stop`
    when it quits, so the session is closed cleanly however the user leaves.
    """

    is_replay: bool
    """True when estimates come from a recorded session rather than live capture."""

    def subscribe(self, fn: Callable[[Estimate], None]) -> None:
        """Call ``fn`` for every new estimate; it is called from an engine thread."""
        ...

    def history(self) -> list[Estimate]:
        """Estimates produced so far, oldest first (a replay, or an app that started late)."""
        ...

    def status(self) -> StatusSnapshot:
        """A cheap, thread-safe snapshot; the dashboard polls it on its frame timer."""
        ...

    def start(self) -> None:
        """Start producing estimates."""
        ...

    def stop(self) -> None:
        """Shut down cleanly and close the session; calling it again does nothing."""
        ...

    def set_muted(self, muted: bool) -> None:
        """Mute or unmute capture."""
        ...

    def set_recording(self, on: bool) -> None:
        """Start or stop writing audio to the session."""
        ...

    def add_mark(self, note: str) -> None:
        """Record a user-marked event with a free-text note, stamped when called."""
        ...
