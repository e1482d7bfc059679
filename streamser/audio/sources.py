"""Where audio comes from: a microphone (:mod:`streamser.audio.mic`), a file replayed, or an
array in memory (:mod:`streamser.audio.replay`); here, what every source is.

Every source writes ``(n, channels)`` float32 blocks at its native sample rate into a
:class:`~streamser.audio.ring.RingBuffer` the caller made with ``source.channels`` channels and the
policy ``source.ring_policy()``; resampling and mixing happen downstream, on the consumer's thread.
A source closes the ring when its stream ends (end of file, failure or :meth:`stop`), so readers
drain what is left and then see ``ring.closed``. For a lossless ``"block"`` ring, attach the
reader before calling :meth:`start`: with no reader attached the ring has nobody to wait for.

Errors a user can fix (a missing file, an unknown device, an unsupported or implausible rate)
are raised as :class:`SourceError` from the constructor, so the command line fails before
anything starts.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from streamser.audio.devices import SourceError

if TYPE_CHECKING:
    from streamser.audio.ring import RingBuffer

__all__ = ["JOIN_TIMEOUT_S", "AudioSource", "SourceError", "mix_to_mono"]

JOIN_TIMEOUT_S = 2.0
"""How long :meth:`stop` waits for a source's thread before giving up on it (it is a daemon)."""


class AudioSource(Protocol):
    """What the pipeline needs from anything that produces audio."""

    sample_rate_hz: int
    """Native rate of the delivered stream; the consumer resamples."""
    channels: int
    """Channels per frame in the ring; the consumer mixes them (see :func:`mix_to_mono`)."""
    description: str
    """Device name or file path, for the status line and the session's meta.json."""
    realtime: bool
    """True for a microphone or real-time replay: the ring overwrites, the newest window wins.
    False for lossless replay as fast as the consumer goes."""
    finished: threading.Event
    """Set when a finite source has delivered everything, or when any source failed."""
    error: BaseException | None
    """Why the source failed (device lost, unreadable file), or None."""

    def start(self, ring: RingBuffer) -> None: ...

    def stop(self) -> None: ...

    def ring_policy(self) -> Literal["overwrite", "block"]: ...


def mix_to_mono(block: np.ndarray) -> np.ndarray:
    """Average the channels of an ``(n, channels)`` block into ``(n,)`` float32.

    Done by the consumer, never in the audio callback, which only copies. A 1-D block is taken as
    mono already and returned as float32.
    """
    if block.ndim == 1:
        return block.astype(np.float32, copy=False)
    if block.shape[1] == 1:
        return block[:, 0].astype(np.float32, copy=False)
    return block.mean(axis=1, dtype=np.float32)
