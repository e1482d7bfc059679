"""Notice an input that is exactly zero: a muted microphone or one the OS will not let us read.

A real microphone never delivers exact zeros for long: even a quiet room has noise in the lowest
bits. Runs of digital silence are what a muted input, or macOS/Windows denying the terminal
microphone access, look like, and the user would otherwise stare at a flat plot wondering why.
"""

from __future__ import annotations

import numpy as np


class SilenceWatch:
    """Count consecutive all-zero frames and say so once when they last ``after_s`` seconds.

    A synchronous stage: feed it every captured block with :meth:`push`, from any block length.
    """

    def __init__(self, sample_rate_hz: int, after_s: float = 3.0) -> None:
        if sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
        if after_s <= 0:
            raise ValueError(f"after_s must be positive, got {after_s}")
        self.sample_rate_hz: int = sample_rate_hz
        self.after_s: float = after_s
        self.after_frames: int = max(1, round(after_s * sample_rate_hz))
        self.silent_frames: int = 0
        """Length of the current run of all-zero frames."""
        self._reported = False

    @property
    def silent(self) -> bool:
        """True while the current run of digital silence has lasted at least ``after_s``."""
        return self.silent_frames >= self.after_frames

    @property
    def message(self) -> str:
        """One line for the status bar naming the likely causes."""
        return (
            f"No sound: the input has been exactly zero for {self.after_s:g} s. Is the "
            "microphone muted? On macOS/Windows, check that the terminal is allowed to use the "
            "microphone (privacy settings)."
        )

    def push(self, block: np.ndarray) -> bool:
        """Account for ``block`` (``(n,)`` or ``(n, channels)``); True once per silent run.

        Returns True when a run of frames whose every sample is 0.0 reached ``after_s`` within
        this block (whichever block boundaries the stream happens to have); any non-zero sample
        (NaN included) ends a run, and a later run is reported again.
        """
        frames = block if block.ndim == 1 else np.any(block, axis=1)
        n = frames.shape[0]
        loud = np.flatnonzero(frames)
        fired = False
        if loud.size == 0:
            self.silent_frames += n
        else:
            run_before_first_loud = self.silent_frames + int(loud[0])
            fired = run_before_first_loud >= self.after_frames and not self._reported
            if loud.size > 1:
                fired |= int(np.diff(loud).max()) - 1 >= self.after_frames
            self.silent_frames = n - 1 - int(loud[-1])
            self._reported = False
        if self.silent and not self._reported:
            self._reported = True
            fired = True
        return fired

    def reset(self) -> None:
        """Forget the current run, e.g. when the source is restarted."""
        self.silent_frames = 0
        self._reported = False
