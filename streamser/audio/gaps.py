"""Detects dropped capture audio from sample counters and the wall clock.

PortAudio's overflow flags are unreliable across host APIs (PulseAudio through ALSA rarely sets
them), so we count for ourselves: since the first update, the wall clock says
``elapsed_s * sample_rate_hz`` frames should have arrived; the shortfall is the *deficit*.
Buffering and scheduling jitter make the deficit wobble by a fraction of a second, while a hole
in the audio makes it jump by the hole's length and stay there.

Approach: the detector tracks a *baseline*, the deficit level considered normal.

* A deficit more than ``tolerance_s`` worth of frames above the baseline starts a gap: the whole
  rise above the baseline is counted as missing frames and the baseline moves up to it. While
  the gap lasts (when polled during a hole, the deficit keeps rising between updates) every
  further rise is added to the same gap. The gap ends at the first update whose deficit no
  longer rises faster than the drift allowance.
* A deficit below the baseline pulls it down at once: the baseline sits at the least-delayed
  delivery seen, and a device clock running fast cannot hide a later hole.
* A deficit between the baseline and the threshold lets the baseline creep up by at most
  ``max_drift_ppm`` of the elapsed time. A sound card clock slower than the system clock by up
  to that rate is absorbed completely and never produces a gap; a faster drift of ``d`` ppm
  produces its first false gap only after ``tolerance_s / ((d - max_drift_ppm) * 1e-6)``
  seconds (about four minutes for 1,000 ppm beyond the allowance at the default
  tolerance). A hole
  raises the deficit a thousand times faster than the allowance, so the creep hides at most
  0.1 % of it.

Counts are exact to within the delivery jitter (below ``tolerance_s``). Call :meth:`update`
first when the first block has arrived, not when the stream was opened: some devices deliver
their first block a second or more after start, which is not lost audio.
"""

from __future__ import annotations


class GapDetector:
    """Turns (frames received so far, wall time) observations into counted missing frames."""

    def __init__(
        self, sample_rate_hz: float, tolerance_s: float = 0.25, max_drift_ppm: float = 1000.0
    ) -> None:
        if sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
        if tolerance_s <= 0:
            raise ValueError(f"tolerance_s must be positive, got {tolerance_s}")
        if max_drift_ppm < 0:
            raise ValueError(f"max_drift_ppm must be >= 0, got {max_drift_ppm}")
        self.sample_rate_hz: float = sample_rate_hz
        self.tolerance_s: float = tolerance_s
        self.max_drift_ppm: float = max_drift_ppm
        self.missing_frames: int = 0
        """Frames judged lost since the first update."""
        self.gaps: int = 0
        """Separate holes detected since the first update."""
        self._tolerance_frames = tolerance_s * sample_rate_hz
        self.reset()

    def reset(self) -> None:
        """Forget everything; the next update becomes the new origin."""
        self.missing_frames = 0
        self.gaps = 0
        self._origin: tuple[int, float] | None = None
        self._last: tuple[int, float] = (0, 0.0)
        self._baseline_frames = 0.0
        self._last_deficit = 0.0
        self._counted_frames = 0.0
        self._in_gap = False

    @property
    def deficit_frames(self) -> float:
        """Current deficit above the baseline, in frames (0 before the second update)."""
        return self._last_deficit - self._baseline_frames if self._origin else 0.0

    def update(self, frames_total: int, now_s: float) -> int:
        """Record that ``frames_total`` frames have arrived by wall time ``now_s``.

        Returns the frames newly judged missing by this observation (usually 0).
        """
        if self._origin is None:
            self._origin = (frames_total, now_s)
            self._last = (frames_total, now_s)
            return 0
        last_frames, last_s = self._last
        if frames_total < last_frames or now_s < last_s:
            raise ValueError(
                f"frames_total and now_s must not decrease: got ({frames_total}, {now_s}) "
                f"after ({last_frames}, {last_s})"
            )
        origin_frames, origin_s = self._origin
        deficit = (now_s - origin_s) * self.sample_rate_hz - (frames_total - origin_frames)
        creep = self.max_drift_ppm * 1e-6 * self.sample_rate_hz * (now_s - last_s)
        self._last = (frames_total, now_s)
        self._last_deficit = deficit

        counted = 0.0
        if self._in_gap:
            if deficit > self._baseline_frames + creep:
                counted = deficit - self._baseline_frames
                self._baseline_frames = deficit
            else:
                self._in_gap = False
        if not self._in_gap:
            if deficit > self._baseline_frames + self._tolerance_frames:
                counted = deficit - self._baseline_frames
                self._baseline_frames = deficit
                self._in_gap = True
                self.gaps += 1
            elif deficit < self._baseline_frames:
                self._baseline_frames = deficit
            else:
                self._baseline_frames = min(deficit, self._baseline_frames + creep)

        if counted <= 0.0:
            return 0
        before = self.missing_frames
        self._counted_frames += counted
        self.missing_frames = round(self._counted_frames)
        return self.missing_frames - before
