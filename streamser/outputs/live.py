"""The live outputs a run was asked for (``--lsl``, ``--osc``), fed from its estimates and events.

* :func:`live_output_config` reads the flags and checks everything it can before the run starts
  (the OSC target, that the libraries load), so a mistake costs no model load.
* :class:`LiveOutputs` fans each estimate, and the events derived from it, out to the outputs
  under one lock, dated by one :mod:`clock <streamser.outputs.clocks>`; a failing output counts
  its errors and the analysis never sees them. Closing logs one line per output.
* :func:`with_live_outputs` puts the outputs beside a live run's record keeper: the pipeline
  sees one :class:`~streamser.engine.sinks.RunSink`, which subscribes the outputs to the result
  bus when the run starts (a callback: both outputs only hand a sample to a buffer or a
  non-blocking socket, so they are sent as each estimate is published, when its age is known),
  forwards mute, recording and marks, and adds the outputs' counters to meta.json's.
* :func:`replay_outputs` does the same for ``streamser replay``, with the session's marks.
"""

from __future__ import annotations

import argparse
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from streamser.config import ConfigError
from streamser.contracts import Estimate
from streamser.engine.bus import ResultBus
from streamser.engine.sinks import RunContext, RunSink, SinkStatus
from streamser.outputs.clocks import LiveClock, OutputClock, ReplayClock
from streamser.outputs.lsl import LslOutput, import_pylsl
from streamser.outputs.markers import (
    MARK,
    MUTE_OFF,
    MUTE_ON,
    RECORDING_OFF,
    RECORDING_ON,
    Marker,
    MarkerTracker,
)
from streamser.outputs.osc import OscOutput, OscTarget, import_pythonosc, parse_osc_target
from streamser.outputs.run_facts import RunFacts

log = logging.getLogger("streamser")

LSL_WAIT_S = 10.0
"""How long a run whose input is not a live device (a file, a replay) waits for an LSL consumer
before its first estimate: LSL keeps no samples for consumers that connect later, and such a run
can be over in seconds. A microphone run never waits unless ``--lsl-wait`` says so."""
MARK_POLL_S = 0.2
"""How often the session's marks file is read for new marks while a run goes on."""
SUBSCRIBER_NAME = "live-outputs"


@dataclass(frozen=True)
class LiveOutputConfig:
    """Which live outputs a run sends to."""

    lsl: bool = False
    osc: OscTarget | None = None
    lsl_wait_s: float | None = None
    """Seconds to wait for LSL consumers before the first estimate; None: :data:`LSL_WAIT_S`,
    or 0 for a live device."""

    @property
    def wanted(self) -> bool:
        return self.lsl or self.osc is not None

    def wait_s(self, live_device: bool) -> float:
        if not self.lsl:
            return 0.0
        if self.lsl_wait_s is not None:
            return self.lsl_wait_s
        return 0.0 if live_device else LSL_WAIT_S


def live_output_config(args: argparse.Namespace) -> LiveOutputConfig:
    """The outputs ``--lsl``, ``--lsl-wait`` and ``--osc`` ask for, checked: a bad target, a bad
    wait or a library that is missing or does not load is a one-line error here."""
    lsl = bool(getattr(args, "lsl", None))
    osc_text: str | None = getattr(args, "osc", None)
    wait_s: float | None = getattr(args, "lsl_wait", None)
    if wait_s is not None:
        if not lsl:
            raise ConfigError("--lsl-wait needs --lsl")
        if not (math.isfinite(wait_s) and wait_s >= 0):
            raise ConfigError(f"--lsl-wait {wait_s:g} is out of range: use 0 seconds or more")
    if lsl:
        import_pylsl()
    osc = None
    if osc_text is not None:
        osc = parse_osc_target(osc_text)
        import_pythonosc()
    return LiveOutputConfig(lsl=lsl, osc=osc, lsl_wait_s=wait_s)


class LiveOutput(Protocol):
    """What :class:`LiveOutputs` drives: :class:`LslOutput` and :class:`OscOutput`."""

    name: str

    def send(self, est: Estimate, markers: Sequence[Marker], age_s: float) -> None: ...

    def send_markers(self, markers: Sequence[Marker], age_s: float) -> None: ...

    def wait_for_consumers(self, timeout_s: float) -> bool: ...

    def counters(self) -> dict[str, Any]: ...

    def summary(self) -> str: ...

    def close(self) -> None: ...


class LiveOutputs:
    """One run's live outputs, fed one estimate or event at a time (thread-safe)."""

    def __init__(self, outputs: Sequence[LiveOutput], clock: OutputClock) -> None:
        self.outputs = list(outputs)
        self.clock = clock
        self._markers = MarkerTracker()
        self._lock = threading.Lock()
        self._closed = False
        self._final: dict[str, dict[str, Any]] | None = None

    @classmethod
    def open(
        cls, cfg: LiveOutputConfig, facts: RunFacts, clock: OutputClock, wait_s: float
    ) -> LiveOutputs:
        """Make the outputs ``cfg`` asks for, then wait up to ``wait_s`` for LSL consumers."""
        made: list[LiveOutput] = []
        try:
            if cfg.lsl:
                made.append(LslOutput(facts))
            if cfg.osc is not None:
                made.append(OscOutput(cfg.osc))
        except Exception:
            for out in made:
                out.close()
            raise
        outputs = cls(made, clock)
        outputs.wait_for_consumers(wait_s)
        return outputs

    def wait_for_consumers(self, wait_s: float) -> None:
        """Give consumers up to ``wait_s`` to connect (each output says what it waits for)."""
        if wait_s > 0:
            for out in self.outputs:
                out.wait_for_consumers(wait_s)

    def publish(self, est: Estimate) -> None:
        """Send ``est`` and the stream events it shows to every output; never raises."""
        with self._lock:
            if self._closed:
                return
            markers = self._markers.update(est)
            age_s = self.clock.estimate_age_s(est)
            for out in self.outputs:
                self._guard(out, out.send, est, markers, age_s)

    def event(self, marker: Marker, age_s: float = 0.0) -> None:
        """Send an event of the run (mute, recording, a mark) dated ``age_s`` before now."""
        with self._lock:
            if self._closed:
                return
            for out in self.outputs:
                self._guard(out, out.send_markers, [marker], age_s)

    def mark(self, t_s: float, note: str) -> None:
        """Send a mark made at the run's stream time ``t_s``."""
        self.event(Marker(MARK, None, note), self.clock.stream_time_age_s(t_s))

    @staticmethod
    def _guard(out: LiveOutput, send: Callable[..., None], *args: Any) -> None:
        try:
            send(*args)
        except Exception:  # an output's own bug must not reach the analysis either
            log.exception("%s: sending failed", out.name)

    def counters(self) -> dict[str, dict[str, Any]]:
        """Per output: what it sent and how many sends failed (for meta.json)."""
        if self._final is not None:
            return self._final
        return {out.name: out.counters() for out in self.outputs}

    def close(self) -> dict[str, dict[str, Any]]:
        """Close every output, log one line each; idempotent. Returns the final counters."""
        with self._lock:
            if self._closed:
                return self.counters()
            self._closed = True
            self._final = {out.name: out.counters() for out in self.outputs}
            for out in self.outputs:
                log.info("%s", out.summary())
                out.close()
        return self._final


# -- a live run -----------------------------------------------------------------------------

MarkSource = Callable[[Path], Any]
"""Given a session directory, something whose ``poll()`` returns the ``(t_s, note)`` of the
marks appended since the last call (``streamser.session.marks.MarkFollower``)."""


class LiveOutputsSink:
    """A run's record keeper (or none, with ``--no-log``) with the live outputs beside it.

    The pipeline sees one :class:`RunSink`. Marks reach the outputs through the session's marks
    file, which the dashboard and ``streamser mark`` both append to; without a session, the
    dashboard's marks go to the outputs directly.
    """

    def __init__(
        self, cfg: LiveOutputConfig, inner: RunSink | None, follow_marks: MarkSource | None
    ) -> None:
        self.cfg, self.inner, self._follow_marks = cfg, inner, follow_marks
        self.outputs: LiveOutputs | None = None
        self._watcher: _MarkWatcher | None = None

    def open(self, run: RunContext) -> None:
        """Outputs first, so one that cannot start stops the run before a session exists."""
        audio = run.description.get("audio") or {}
        live_device = audio.get("kind") == "MicSource"
        self.outputs = LiveOutputs.open(
            self.cfg,
            RunFacts.from_description(run.description),
            LiveClock(),
            self.cfg.wait_s(live_device),
        )
        attach(self.outputs, run.bus)
        if self.inner is not None:
            self.inner.open(run)
        session = self.status().session_path
        if session is not None and self._follow_marks is not None:
            self._watcher = _MarkWatcher(self._follow_marks(Path(session)), self.outputs.mark)
            self._watcher.start()

    def close(self, counters: dict[str, Any]) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        final = self.outputs.close() if self.outputs is not None else {}
        if self.inner is not None:
            self.inner.close({**counters, "live_outputs": final})

    def status(self) -> SinkStatus:
        return self.inner.status() if self.inner is not None else SinkStatus()

    def on_mute(self, muted: bool, t_s: float) -> None:
        if self.inner is not None:
            self.inner.on_mute(muted, t_s)
        if self.outputs is not None:
            self.outputs.event(Marker(MUTE_ON if muted else MUTE_OFF))

    def set_recording(self, on: bool, frame: int) -> None:
        if self.inner is None:
            log.warning("recording needs a session: run without --no-log")
            return
        before = self.inner.status().recording
        self.inner.set_recording(on, frame)
        after = self.inner.status().recording
        if after != before and self.outputs is not None:
            self.outputs.event(Marker(RECORDING_ON if after else RECORDING_OFF))

    def add_mark(self, t_s: float, note: str) -> None:
        if self.inner is not None:
            self.inner.add_mark(t_s, note)
        if self._watcher is None and self.outputs is not None:  # no marks file to follow
            self.outputs.mark(t_s, note)

    def wants_tap(self) -> bool:
        return self.inner.wants_tap() if self.inner is not None else False

    def rebind(self, ring: Any, reader: Any, frame_offset: int) -> None:
        if self.inner is not None:
            self.inner.rebind(ring, reader, frame_offset)


def with_live_outputs(
    cfg: LiveOutputConfig, inner: RunSink | None, follow_marks: MarkSource | None = None
) -> RunSink | None:
    """``inner`` with the outputs ``cfg`` asks for beside it; ``inner`` itself when none."""
    if not cfg.wanted:
        return inner
    return LiveOutputsSink(cfg, inner, follow_marks)


def attach(outputs: LiveOutputs, bus: ResultBus[Estimate]) -> None:
    """Send every estimate ``bus`` publishes to ``outputs``, as it is published."""
    bus.subscribe_callback(SUBSCRIBER_NAME, outputs.publish)


class _MarkWatcher:
    """A thread that polls a session's marks and sends each new one; stopping polls once more,
    so a mark made just before the end still goes out."""

    def __init__(self, follower: Any, send: Callable[[float, str], None]) -> None:
        self._follower, self._send = follower, send
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streamser-marks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._poll()

    def _run(self) -> None:
        while not self._stop.wait(MARK_POLL_S):
            self._poll()

    def _poll(self) -> None:
        for t_s, note in self._follower.poll():
            self._send(t_s, note)


# -- a replay -------------------------------------------------------------------------------


class RecordedSession(Protocol):
    """What a replay's outputs need of a session read from disk."""

    @property
    def session_id(self) -> str: ...

    @property
    def meta(self) -> dict[str, Any]: ...

    @property
    def marks(self) -> list[dict[str, Any]]: ...


class ReplayFeed:
    """Hands a replay's estimates to the outputs, and the session's marks as the replay passes
    their time (each before the first estimate whose window ends at or after it). A context
    manager: leaving it sends the marks after the last estimate and closes the outputs."""

    def __init__(self, outputs: LiveOutputs, marks: Sequence[dict[str, Any]]) -> None:
        self.outputs = outputs
        self._marks = sorted(
            ((float(m["t_s"]), str(m.get("note", ""))) for m in marks), key=lambda m: m[0]
        )
        self._next = 0
        self._lock = threading.Lock()

    def __call__(self, est: Estimate) -> None:
        self._send_marks_until(est.t_end_s)
        self.outputs.publish(est)

    def _send_marks_until(self, t_s: float) -> None:
        with self._lock:
            due = [m for m in self._marks[self._next :] if m[0] <= t_s]
            self._next += len(due)
        for at, note in due:
            self.outputs.mark(at, note)

    def close(self) -> None:
        self._send_marks_until(math.inf)
        self.outputs.close()

    def __enter__(self) -> ReplayFeed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def replay_outputs(cfg: LiveOutputConfig, session: RecordedSession, speed: float) -> ReplayFeed:
    """The outputs ``cfg`` asks for, describing ``session`` (none at all: a feed that sends
    nowhere and costs nothing)."""
    if not cfg.wanted:
        return ReplayFeed(LiveOutputs([], ReplayClock(speed)), [])
    facts = RunFacts.from_description(session.meta, replay_of=session.session_id)
    outputs = LiveOutputs.open(cfg, facts, ReplayClock(speed), cfg.wait_s(live_device=False))
    return ReplayFeed(outputs, session.marks)
