"""A recorded session played back through the dashboard, as if it were live.

:class:`ReplayController` implements the dashboard's controller protocol over a session read from
disk: a thread re-emits the logged estimates at their recorded pace (times ``speed``), so the same
dashboard code serves live runs and replays. Marks made during a replay are added to the session
at the replayed stream time; muting and recording do not apply to a replay. A session of several
streams (``--per-channel``) replays them interleaved as they were logged, and the status lists
each stream, from meta.json or, for a session that does not list them, from its estimates.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

from streamser.console import stop_on_signals
from streamser.contracts import Estimate, StatusSnapshot, StreamStatus, estimates_after
from streamser.session.marks import append_mark
from streamser.session.reader import SessionData
from streamser.session.streams import session_streams

JOIN_TIMEOUT_S = 2.0


class ReplayController:
    """Replays ``session`` at ``speed`` x its recorded pace (0 or inf: all at once)."""

    is_replay = True

    def __init__(self, session: SessionData, speed: float = 1.0) -> None:
        self.session = session
        self.speed = speed
        self._subscribers: list[Callable[[Estimate], None]] = []
        self._emitted: list[Estimate] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.finished = threading.Event()
        self._thread: threading.Thread | None = None
        self.note: str | None = None
        self.streams = tuple(spec.name for spec in session_streams(session))
        """The session's streams, in the run's order."""
        self._latest: dict[str, Estimate] = {}
        self._counts = dict.fromkeys(self.streams, 0)

    # -- protocol -----------------------------------------------------------------------

    def subscribe(self, fn: Callable[[Estimate], None]) -> None:
        with self._lock:
            self._subscribers.append(fn)

    def history_since(self, seq: int) -> list[Estimate]:
        with self._lock:
            return estimates_after(seq, self._emitted)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="streamser-replay-session", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(JOIN_TIMEOUT_S)

    def set_muted(self, muted: bool) -> None:
        self.note = "muting does not apply to a replay"

    def set_recording(self, on: bool) -> None:
        self.note = "recording does not apply to a replay"

    def add_mark(self, note: str) -> None:
        with self._lock:
            t_s = self._emitted[-1].t_end_s if self._emitted else 0.0
        append_mark(self.session.path, note, t_s)

    def status(self) -> StatusSnapshot:
        meta = self.session.meta
        audio: dict[str, Any] = meta.get("audio") or {}
        model: dict[str, Any] = meta.get("model") or {}
        compute: dict[str, Any] = meta.get("compute") or {}
        with self._lock:
            last = self._emitted[-1] if self._emitted else None
            latest = dict(self._latest)
            streams = tuple(
                StreamStatus(
                    name=name,
                    level_dbfs=None,
                    clipping=False,
                    silence_warning=None,
                    estimates=self._counts[name],
                    skipped_windows=latest[name].skipped_windows if name in latest else 0,
                )
                for name in self.streams
            )
        hop = ((meta.get("config") or {}).get("windows") or {}).get("hop_s", 1.0)
        return StatusSnapshot(
            device=f"replay of {self.session.session_id} ({audio.get('source', '?')})",
            sample_rate_hz=int(audio.get("sample_rate_hz") or 0),
            model_name=str(model.get("name", "?")),
            demo_model=bool(model.get("demo", False)),
            compute_device=str(compute.get("device", "?")),
            dtype=str(compute.get("dtype", "?")),
            hop_s=float(hop),
            rtf=(last.compute_s / float(hop)) if last is not None and hop else None,
            latency_s=last.latency_s if last is not None else None,
            # Each estimate carries its own stream's totals: windows are skipped per stream, but
            # a capture gap drops the same samples from every channel's stream.
            skipped_windows=sum(e.skipped_windows for e in latest.values()),
            dropped_samples=max((e.dropped_samples for e in latest.values()), default=0),
            recording=False,
            muted=False,
            logging=False,
            log_error=None,
            session_path=str(self.session.path),
            level_dbfs=None,
            clipping=False,
            silence_warning=None,
            source_error=None if self.session.clean else f"session {self.session.state.text}",
            finished=self.finished.is_set(),
            streams=streams,
        )

    # -- the replay thread --------------------------------------------------------------

    def _run(self) -> None:
        previous: float | None = None
        paced = self.speed > 0 and math.isfinite(self.speed)
        try:
            for est in self.session.estimates:
                if paced and previous is not None:
                    if self._stop.wait(max(0.0, (est.t_end_s - previous) / self.speed)):
                        return
                elif self._stop.is_set():
                    return
                previous = est.t_end_s
                with self._lock:
                    self._emitted.append(est)
                    self._latest[est.stream] = est
                    self._counts[est.stream] = self._counts.get(est.stream, 0) + 1
                    subscribers = list(self._subscribers)
                for fn in subscribers:
                    fn(est)
        finally:
            self.finished.set()


def replay_paced(session: SessionData, speed: float, emit: Callable[[Estimate], None]) -> None:
    """Hand the session's estimates to ``emit`` at ``speed`` x their recorded pace (0 or inf: as
    fast as possible), until the last one or a signal (SIGINT, SIGTERM, SIGHUP)."""
    stop = threading.Event()
    paced = speed > 0 and math.isfinite(speed)
    with stop_on_signals(stop):
        previous: float | None = None
        for est in session.estimates:
            if paced and previous is not None:
                if stop.wait(max(0.0, (est.t_end_s - previous) / speed)):
                    return
            elif stop.is_set():
                return
            previous = est.t_end_s
            emit(est)
