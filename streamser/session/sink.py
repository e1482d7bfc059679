"""The session on disk as the pipeline's record keeper: logger, recorder, audio tap, meta.json,
mutes and marks.

The pipeline knows only the :class:`~streamser.engine.sinks.RunSink` seam; this class implements
it. When the disk fills or the directory becomes unwritable, the failure is announced once,
analysis goes on, and what was written stays intact.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamser.audio.ring import RingBuffer, RingReader
from streamser.engine.sinks import RunContext, SinkStatus
from streamser.session.errors import SessionError
from streamser.session.files import default_sessions_root
from streamser.session.logger import SessionLogger
from streamser.session.recorder import AudioRecorder

log = logging.getLogger("streamser")

RECORDING_SEGMENT_S = 60.0
"""One WAV per minute: every block already updates its header, so a crash loses nothing
written; longer segments keep meta.json's segment list short."""
TAP_POLL_S = 0.1
"""Longest the recorder's tap sleeps waiting for audio; it wakes at once when a block arrives."""
TAP_JOIN_S = 5.0

Mute = dict[str, float | None]


class RecorderTap:
    """A second reader of the capture ring that feeds the audio recorder on its own thread.

    It always drains its reader (so a lossless ring never waits on it) and writes only while
    recording and not muted, so a mute leaves a gap in the recording, never audio. Frames the
    ring overwrote before the tap read them are counted in :attr:`dropped_frames`.
    """

    def __init__(self, run: RunContext, recorder: AudioRecorder) -> None:
        self.recorder, self.is_muted = recorder, run.is_muted
        self.awaits_reconnect = run.awaits_reconnect
        self.ring: RingBuffer = run.ring
        self.reader: RingReader = run.ring.reader("recorder")
        self.frame_offset = 0
        self._dropped_before = 0
        """Drops counted by readers of earlier rings (before a reconnect)."""
        self._rebound = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streamser-recorder", daemon=True)

    @property
    def dropped_frames(self) -> int:
        return self._dropped_before + self.reader.dropped_frames

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = TAP_JOIN_S) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def rebind(self, ring: RingBuffer, reader: RingReader, frame_offset: int) -> None:
        """Continue from a reconnected device's ring; the gap becomes a new segment."""
        self._dropped_before += self.reader.dropped_frames
        self.ring, self.reader, self.frame_offset = ring, reader, frame_offset
        self._rebound.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.reader.wait(TAP_POLL_S)
            self._drain()
            if self.ring.closed and self.reader.available() == 0:
                if not self.awaits_reconnect():
                    return
                self._rebound.wait(TAP_POLL_S)
                self._rebound.clear()

    def _drain(self) -> None:
        first, block = self.reader.read_new()
        if len(block) and not self.is_muted():
            self.recorder.write(self.frame_offset + first, block)


class SessionSink:
    """One run's session directory: estimates, marks, mutes, audio and meta.json."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        record: bool = False,
        opener: Callable[..., Any] | None = None,
    ) -> None:
        self.root = root if root is not None else default_sessions_root()
        self.record_from_start = record
        self._opener = opener
        self.logger: SessionLogger | None = None
        self.recorder: AudioRecorder | None = None
        self.tap: RecorderTap | None = None
        self.log_error: str | None = None
        self._mutes: list[Mute] = []

    @property
    def path(self) -> Path | None:
        return self.logger.path if self.logger is not None else None

    # -- the RunSink seam ---------------------------------------------------------------

    def open(self, run: RunContext) -> None:
        extra = {"opener": self._opener} if self._opener is not None else {}
        try:
            self.logger = SessionLogger(
                self.root, run.description, on_failure=self._on_failure, **extra
            )
        except SessionError as e:
            # Analysis is still worth having; the user is told, and the dashboard shows it.
            self._on_failure(str(e))
            return
        logger = self.logger
        run.bus.subscribe_lossless("session-log", logger.write_estimate)
        audio = run.description["audio"]
        self.recorder = AudioRecorder(
            logger.path,
            audio["sample_rate_hz"],
            audio["channels"],
            segment_s=RECORDING_SEGMENT_S,
            on_failure=self._on_failure,
            on_segments=lambda segs: logger.update_meta(audio_segments=segs),
        )
        self.tap = RecorderTap(run, self.recorder)
        self.tap.start()
        if self.record_from_start:
            self.recorder.start(run.ring.frames_written)

    def close(self, counters: dict[str, Any]) -> None:
        if self.tap is not None:
            self.tap.stop()
        if self.recorder is not None:
            self.recorder.stop()
        if self.logger is not None:
            self.logger.update_meta(mutes=self._closed_mutes(counters["stream_s"]))
            self.logger.close(counters)

    def status(self) -> SinkStatus:
        return SinkStatus(
            logging=self.logger is not None and self.log_error is None,
            recording=self.recorder is not None and self.recorder.recording,
            log_error=self.log_error,
            session_path=str(self.logger.path) if self.logger is not None else None,
            recorder_dropped_frames=self.tap.dropped_frames if self.tap is not None else 0,
        )

    def on_mute(self, muted: bool, t_s: float) -> None:
        if muted:
            self._mutes.append({"t_start_s": t_s, "t_end_s": None})
        elif self._mutes:
            self._mutes[-1]["t_end_s"] = t_s
        if self.logger is not None:
            self.logger.update_meta(mutes=list(self._mutes))

    def set_recording(self, on: bool, frame: int) -> None:
        if self.recorder is None:
            log.warning("recording needs a session: run without --no-log")
        elif on:
            self.recorder.start(frame)
        else:
            self.recorder.stop()

    def add_mark(self, t_s: float, note: str) -> None:
        if self.logger is None:
            log.warning("marks need a session: run without --no-log")
            return
        self.logger.add_mark(t_s, note)

    def wants_tap(self) -> bool:
        return self.tap is not None

    def rebind(self, ring: RingBuffer, reader: RingReader, frame_offset: int) -> None:
        if self.tap is not None:
            self.tap.rebind(ring, reader, frame_offset)

    # -- internals ----------------------------------------------------------------------

    def _closed_mutes(self, end_s: float) -> list[Mute]:
        return [
            {**m, "t_end_s": m["t_end_s"] if m["t_end_s"] is not None else end_s}
            for m in self._mutes
        ]

    def _on_failure(self, reason: str) -> None:
        if self.log_error is None:
            self.log_error = f"logging stopped: {reason}"
            log.error("%s (live analysis goes on; what was written is intact)", self.log_error)


def session_sink_for(
    log: bool, log_dir: str | None, record: bool, opener: Callable[..., Any] | None = None
) -> SessionSink | None:
    """The sink a run's logging settings ask for; None with ``--no-log``."""
    if not log:
        return None
    root = Path(log_dir).expanduser() if log_dir else None
    return SessionSink(root, record=record, opener=opener)
