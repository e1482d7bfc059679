"""A finite recording read at its native rate and channels, block by block on its own clock.

Offline analysis consumes the same native-rate frames a live capture would have delivered, so
the analyzer's resampler, speech gate and windows see the same signal. Files come from here; a
session's recording (segments on the stream clock, gaps as zeros, the recorded spans named)
comes from the session layer in the same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

READ_BLOCK_S = 1.0
"""Frames read per block from a file: large enough to be cheap, small enough for progress."""

Blocks = Iterator[tuple[int, np.ndarray]]
"""(first frame on the recording's clock, (frames, channels) float32 block), in order."""


@dataclass(frozen=True)
class NativeAudio:
    """A recording to analyse: its rate, its length, and a way to read it (once per call)."""

    sample_rate_hz: int
    frames: int
    open_blocks: Callable[[], Blocks]
    recorded: tuple[tuple[int, int], ...] | None = None
    """The frames that hold recorded audio, as sorted, disjoint ``[start, end)`` spans on the
    recording's clock (native frames); frames outside them (before a session's recording
    started, during a mute) are not delivered and read as zeros. None: every frame (a file)."""
    channels: int = 1
    """Channels of each block (``--per-channel`` makes each its own stream)."""

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        """:attr:`recorded`, or the whole recording as one span."""
        return self.recorded if self.recorded is not None else ((0, self.frames),)


def read_audio_file(path: Path) -> NativeAudio:
    """An audio file as :class:`NativeAudio`; an unreadable file raises a one-line SourceError."""
    from streamser.audio.replay import FileSource

    source = FileSource(path, realtime=False)  # validates: one-line SourceError when unreadable
    block_frames = max(1, round(READ_BLOCK_S * source.sample_rate_hz))

    def blocks() -> Blocks:
        import soundfile as sf

        from streamser.audio.devices import SourceError, one_line

        first = 0
        with sf.SoundFile(path) as f:
            while True:
                try:
                    block = f.read(block_frames, dtype="float32", always_2d=True)
                except Exception as e:  # a corrupt frame: the file fails, in one line
                    raise SourceError(
                        f"cannot decode {path} after {first / source.sample_rate_hz:.1f} s "
                        f"({one_line(e)}): the file is damaged"
                    ) from e
                if len(block) == 0:
                    return
                yield first, block
                first += len(block)

    return NativeAudio(source.sample_rate_hz, source.total_frames, blocks, channels=source.channels)
