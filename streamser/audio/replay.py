"""Audio replayed as a source: a file, or an array in memory.

See :mod:`streamser.audio.sources` for what every source does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np
import soundfile

from streamser.audio.devices import SourceError, one_line
from streamser.audio.rates import check_input_rate
from streamser.audio.sources import JOIN_TIMEOUT_S

if TYPE_CHECKING:
    from streamser.audio.ring import RingBuffer

_Replay = TypeVar("_Replay", bound="_ReplaySource")


class _ReplaySource:
    """Shared engine of :class:`FileSource` and :class:`ArraySource`: a thread writes blocks.

    In real time each block is written when a microphone would have delivered it: block ``k`` is
    due ``(k + 1) * block_s`` after the start, scheduled from the start time so waiting errors do
    not accumulate. Otherwise blocks go as fast as the ``"block"`` ring lets them, losslessly.
    """

    def __init__(
        self,
        sample_rate_hz: int,
        channels: int,
        description: str,
        realtime: bool,
        block_s: float,
    ) -> None:
        if block_s <= 0:
            raise ValueError(f"block_s must be positive, got {block_s}")
        self.sample_rate_hz: int = sample_rate_hz
        self.channels: int = channels
        self.description: str = description
        self.realtime: bool = realtime
        self.block_frames: int = max(1, round(block_s * sample_rate_hz))
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self.frames_delivered: int = 0
        self._ring: RingBuffer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lifecycle = threading.Lock()

    def _blocks(self) -> Generator[np.ndarray, None, None]:
        """Yield ``(n, channels)`` float32 blocks of at most ``block_frames`` frames, in order."""
        raise NotImplementedError

    def ring_policy(self) -> Literal["overwrite", "block"]:
        return "overwrite" if self.realtime else "block"

    def __enter__(self: _Replay) -> _Replay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, ring: RingBuffer) -> None:
        """Start replaying from the beginning into ``ring``. A call while running is a no-op."""
        with self._lifecycle:
            if self._thread is not None and self._thread.is_alive():
                return
            self._ring = ring
            self._stop.clear()
            self.finished.clear()
            self.error = None
            self.frames_delivered = 0
            self._thread = threading.Thread(
                target=self._run, args=(ring,), name="streamser-replay", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the replay, close the ring (releasing a waiting writer), join. Idempotent."""
        with self._lifecycle:
            self._stop.set()
            if self._ring is not None:
                self._ring.close()
            if self._thread is not None:
                self._thread.join(JOIN_TIMEOUT_S)
                self._thread = None

    def _run(self, ring: RingBuffer) -> None:
        """The replay thread. Ends at end of data, on stop, or when someone closes the ring."""
        start_s = time.monotonic()
        blocks = self._blocks()
        completed = False
        try:
            for block in blocks:
                if self.realtime:
                    due_s = start_s + (self.frames_delivered + len(block)) / self.sample_rate_hz
                    if self._stop.wait(max(0.0, due_s - time.monotonic())):
                        return
                if self._stop.is_set() or ring.closed:
                    return
                ring.write(block)
                self.frames_delivered += len(block)
            completed = True
        except Exception as e:
            error = SourceError(f"cannot read {self.description}: {one_line(e)}")
            error.__cause__ = e
            self.error = error
        finally:
            blocks.close()
            if completed or self.error is not None:
                self.finished.set()
            ring.close()


class FileSource(_ReplaySource):
    """A WAV/FLAC/OGG file replayed block by block, never loaded whole.

    The file is opened and its header checked in the constructor, so a missing, empty or corrupt
    file fails with a one-line :class:`SourceError` before anything starts.
    """

    def __init__(self, path: str | Path, realtime: bool = True, block_s: float = 0.02) -> None:
        self.path = Path(path)
        sample_rate_hz, channels, total_frames = _probe_file(self.path)
        super().__init__(sample_rate_hz, channels, str(self.path), realtime, block_s)
        self.total_frames: int = total_frames

    def _blocks(self) -> Generator[np.ndarray, None, None]:
        buffer = np.empty((self.block_frames, self.channels), dtype=np.float32)
        with soundfile.SoundFile(self.path) as f:
            while True:
                block = f.read(self.block_frames, dtype="float32", always_2d=True, out=buffer)
                if len(block) == 0:
                    return
                yield block  # a view into the reused buffer: the ring copies it


def _probe_file(path: Path) -> tuple[int, int, int]:
    """Check that ``path`` is an audio file soundfile can decode: (rate Hz, channels, frames)."""
    if not path.exists():
        raise SourceError(f"audio file not found: {path}")
    if path.is_dir():
        raise SourceError(f"{path} is a directory: give the path of an audio file")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise SourceError(f"cannot read {path}: {one_line(e)}") from e
    if size == 0:
        raise SourceError(f"audio file is empty (0 bytes): {path}")
    try:
        info = soundfile.info(str(path))
    except Exception as e:
        raise SourceError(
            f"cannot decode {path} as audio ({one_line(e)}): use a WAV, FLAC or OGG file"
        ) from e
    if info.frames <= 0 or info.samplerate <= 0 or info.channels <= 0:
        raise SourceError(f"audio file holds no samples: {path}")
    check_input_rate(
        int(info.samplerate),
        f"{path} is sampled",
        "resample it first, e.g. with sox: sox INPUT -r 16000 OUTPUT.wav (if the header names "
        "the wrong rate, give the true one: sox -r TRUE_RATE INPUT OUTPUT.wav)",
    )
    return int(info.samplerate), int(info.channels), int(info.frames)


class ArraySource(_ReplaySource):
    """An in-memory ``(n, channels)`` (or ``(n,)``) array replayed like :class:`FileSource`.

    For tests and synthetic signals: it exercises the same pacing and ring behaviour as a file.
    """

    def __init__(
        self,
        samples: np.ndarray,
        sample_rate_hz: int,
        realtime: bool = True,
        block_s: float = 0.02,
    ) -> None:
        array = np.asarray(samples, dtype=np.float32)
        if array.ndim == 1:
            array = array[:, np.newaxis]
        if array.ndim != 2 or array.shape[1] == 0:
            raise ValueError(f"samples must have shape (n,) or (n, channels), got {array.shape}")
        if sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
        check_input_rate(sample_rate_hz, "samples", "resample them first (e.g. with soxr.resample)")
        super().__init__(
            sample_rate_hz, array.shape[1], f"<array {array.shape}>", realtime, block_s
        )
        self._samples = np.ascontiguousarray(array)
        self.total_frames: int = array.shape[0]

    def _blocks(self) -> Generator[np.ndarray, None, None]:
        for first in range(0, self.total_frames, self.block_frames):
            yield self._samples[first : first + self.block_frames]
