"""When a live output says an estimate (or a marker) happened, as an age: seconds before now.

Each output turns the age into its own clock at the moment it sends (LSL: ``local_clock() -
age``; OSC: the wall clock), so one rule serves both and no two clocks are ever compared.

* A live run dates an estimate to the capture time of its window's last sample: it was captured
  ``latency_s`` before the estimate was produced, and the outputs send it as it is published, so
  its age at that moment is its latency. A stream time (a mark's ``t_s``) is dated through the
  newest estimate: stream time runs at the capture clock's pace in a live run.
* A replay has no capture: it dates each estimate to when the replay reaches its window's end.
  At ``speed`` > 0 that is the replay's start plus the window end's stream time (from the first
  estimate on) divided by the speed, so the recorded spacing is kept, scaled, without the pacing
  thread's jitter; as fast as possible (speed 0) it is the moment the estimate is sent.

Ages are never negative: nothing is dated after the moment it is sent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

from streamser.contracts import Estimate

Now = Callable[[], float]


class OutputClock(Protocol):
    def estimate_age_s(self, est: Estimate) -> float:
        """How long before now ``est`` happened; called as it is sent, in publishing order."""
        ...

    def stream_time_age_s(self, t_s: float) -> float:
        """How long before now the run's stream time ``t_s`` was (0 before any estimate)."""
        ...


class LiveClock:
    """Capture-dated ages for a live run (see the module docstring)."""

    def __init__(self, now: Now = time.monotonic) -> None:
        self._now = now
        self._anchor: tuple[float, float] | None = None
        """(an estimate's window end in stream time, its capture time on ``now``'s clock)."""

    def estimate_age_s(self, est: Estimate) -> float:
        age = max(0.0, est.latency_s)
        self._anchor = (est.t_end_s, self._now() - age)
        return age

    def stream_time_age_s(self, t_s: float) -> float:
        anchor = self._anchor
        if anchor is None:
            return 0.0
        t_end_s, captured = anchor
        return max(0.0, self._now() - (captured + (t_s - t_end_s)))


class ReplayClock:
    """Ages for a replay at ``speed`` x the recorded pace (see the module docstring)."""

    def __init__(self, speed: float, now: Now = time.monotonic) -> None:
        self.paced = speed > 0 and math.isfinite(speed)
        self.speed = speed
        self._now = now
        self._anchor: tuple[float, float] | None = None
        """(the first estimate's window end in stream time, when it was sent)."""

    def estimate_age_s(self, est: Estimate) -> float:
        if self._anchor is None:
            self._anchor = (est.t_end_s, self._now())
        return self.stream_time_age_s(est.t_end_s)

    def stream_time_age_s(self, t_s: float) -> float:
        anchor = self._anchor
        if anchor is None or not self.paced:
            return 0.0
        first_s, started = anchor
        return max(0.0, self._now() - (started + (t_s - first_s) / self.speed))
