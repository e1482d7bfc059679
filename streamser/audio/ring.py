"""Preallocated single-producer, multi-reader ring buffer between capture and analysis.

The producer is usually the PortAudio callback, which must never allocate, log or wait for long,
so :meth:`RingBuffer.write` only copies into storage allocated once in the constructor, bumps a
counter and notifies. Each consumer holds its own :class:`RingReader` cursor on the monotonic
frame clock (``frames_written``); when the writer laps a reader, the reader skips to the oldest
frame still held and counts what it lost, so dropped audio is never silent.

Size and drop policy:

* capacity: ``capacity_frames`` frames of ``channels`` float32 samples, fixed at construction.
* ``"overwrite"`` (live capture): the newest audio always wins; a slow reader loses the oldest
  unread frames and counts them in :attr:`RingReader.dropped_frames`.
* ``"block"`` (lossless replay as fast as possible): the writer waits until every attached
  reader has room, so nothing is dropped while a reader is attached; :meth:`RingBuffer.close`
  releases it. With no reader attached there is nobody to wait for and the ring overwrites.

Frames written after :meth:`RingBuffer.close` are discarded and counted in
:attr:`RingBuffer.frames_refused`.
"""

from __future__ import annotations

import threading
from typing import Literal

import numpy as np

DropPolicy = Literal["overwrite", "block"]
"""What a full ring does: overwrite the oldest frames, or make the writer wait for readers."""

_POLICIES: tuple[str, ...] = ("overwrite", "block")


class RingBuffer:
    """Fixed-size float32 frame ring with one writer and any number of independent readers."""

    def __init__(
        self, capacity_frames: int, channels: int, policy: DropPolicy = "overwrite"
    ) -> None:
        if capacity_frames <= 0:
            raise ValueError(f"capacity_frames must be positive, got {capacity_frames}")
        if channels <= 0:
            raise ValueError(f"channels must be positive, got {channels}")
        if policy not in _POLICIES:
            raise ValueError(f"policy must be one of {_POLICIES}, got {policy!r}")
        self.capacity_frames: int = capacity_frames
        self.channels: int = channels
        self.policy: DropPolicy = policy
        self.frames_written: int = 0
        """Monotonic count of frames ever written: the stream index of the next frame."""
        self.frames_refused: int = 0
        """Frames handed to :meth:`write` after :meth:`close`, discarded."""
        self.closed: bool = False
        self._storage = np.zeros((capacity_frames, channels), dtype=np.float32)
        self._cond = threading.Condition(threading.Lock())
        self._readers: list[RingReader] = []

    # ----------------------------------------------------------------------------- writer side

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` of shape ``(n, channels)`` (or ``(n,)`` for mono) to the ring.

        Any float dtype is accepted; the cast to float32 happens inside the copy into the ring,
        so no temporary array is made. Under ``"overwrite"`` this never waits for readers and is
        safe to call from an audio callback. Under ``"block"`` it waits for room and returns
        early, discarding the rest, once the ring is closed.
        """
        frames = self._as_frames(block)
        n = frames.shape[0]
        if n == 0:
            return
        if self.policy == "overwrite":
            with self._cond:
                if self.closed:
                    self.frames_refused += n
                    return
                self._store(frames)
                self._cond.notify_all()
            return
        self._write_blocking(frames)

    def _write_blocking(self, frames: np.ndarray) -> None:
        """Write in pieces as large as the slowest attached reader leaves room for."""
        done = 0
        n = frames.shape[0]
        with self._cond:
            while done < n:
                self._cond.wait_for(lambda: self.closed or self._room() > 0)
                if self.closed:
                    self.frames_refused += n - done
                    return
                take = min(self._room(), n - done)
                self._store(frames[done : done + take])
                done += take
                self._cond.notify_all()

    def _room(self) -> int:
        """Frames that can be written without overwriting any attached reader's unread frames."""
        if not self._readers:
            return self.capacity_frames
        oldest_cursor = min(r._cursor for r in self._readers)
        return self.capacity_frames - (self.frames_written - oldest_cursor)

    def _as_frames(self, block: np.ndarray) -> np.ndarray:
        """A ``(n, channels)`` view of ``block``, validated; no data is copied."""
        if not isinstance(block, np.ndarray):
            raise TypeError(f"block must be a numpy array, got {type(block).__name__}")
        if block.dtype.kind != "f":
            raise TypeError(f"block must hold floating-point samples, got dtype {block.dtype}")
        if block.ndim == 1 and self.channels == 1:
            return block[:, np.newaxis]
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(
                f"block must have shape (n, {self.channels})"
                + (" or (n,)" if self.channels == 1 else "")
                + f", got {block.shape}"
            )
        return block

    def _store(self, frames: np.ndarray) -> None:
        """Copy frames into storage at the write position; the caller holds the lock."""
        n = frames.shape[0]
        cap = self.capacity_frames
        kept = frames[-cap:] if n > cap else frames
        first_index = self.frames_written + n - kept.shape[0]
        start = first_index % cap
        head = min(kept.shape[0], cap - start)
        np.copyto(self._storage[start : start + head], kept[:head], casting="same_kind")
        if head < kept.shape[0]:
            np.copyto(self._storage[: kept.shape[0] - head], kept[head:], casting="same_kind")
        self.frames_written += n

    # ----------------------------------------------------------------------------- readers

    def reader(self, name: str) -> RingReader:
        """Attach a reader whose cursor starts at the current end of the stream."""
        with self._cond:
            r = RingReader(self, name, self.frames_written)
            self._readers.append(r)
            return r

    def close(self) -> None:
        """Mark the stream ended and wake every waiting reader and a blocked writer. Idempotent."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def _detach(self, reader: RingReader) -> None:
        with self._cond:
            if reader in self._readers:
                self._readers.remove(reader)
                self._cond.notify_all()

    def _oldest_held(self) -> int:
        """Stream index of the oldest frame still in storage; the caller holds the lock."""
        return max(0, self.frames_written - self.capacity_frames)

    def _copy_out(self, first_index: int, n: int) -> np.ndarray:
        """A fresh ``(n, channels)`` copy starting at ``first_index``; the caller holds the lock."""
        out = np.empty((n, self.channels), dtype=np.float32)
        cap = self.capacity_frames
        start = first_index % cap
        head = min(n, cap - start)
        out[:head] = self._storage[start : start + head]
        if head < n:
            out[head:] = self._storage[: n - head]
        return out


class RingReader:
    """One consumer's cursor on a :class:`RingBuffer`, with its own loss counter.

    Created by :meth:`RingBuffer.reader`. Cursors are stream indices, so a reader always knows
    exactly which frames it got and which it lost.
    """

    def __init__(self, ring: RingBuffer, name: str, cursor: int) -> None:
        self.name: str = name
        self.dropped_frames: int = 0
        """Frames this reader never saw because the writer overwrote them first."""
        self._ring = ring
        self._cursor = cursor

    def read_new(self, max_frames: int | None = None) -> tuple[int, np.ndarray]:
        """Return ``(stream index of the first frame, copy of the unread frames)``.

        At most ``max_frames`` frames are returned (all unread ones when ``None``); the result may
        be empty. If the writer overwrote unread frames, the cursor first skips to the oldest
        frame still held and the skipped frames are added to :attr:`dropped_frames`.
        """
        if max_frames is not None and max_frames < 0:
            raise ValueError(f"max_frames must be >= 0, got {max_frames}")
        ring = self._ring
        with ring._cond:
            self._skip_overwritten()
            n = ring.frames_written - self._cursor
            if max_frames is not None:
                n = min(n, max_frames)
            first = self._cursor
            out = ring._copy_out(first, n)
            self._cursor += n
            if n and ring.policy == "block":
                ring._cond.notify_all()
            return first, out

    def available(self) -> int:
        """Unread frames still held by the ring (overwritten ones are not counted)."""
        ring = self._ring
        with ring._cond:
            return ring.frames_written - max(self._cursor, ring._oldest_held())

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for unread frames; True if there are some or the ring closed."""
        ring = self._ring
        with ring._cond:
            return ring._cond.wait_for(
                lambda: ring.closed or ring.frames_written > self._cursor, timeout=timeout_s
            )

    def detach(self) -> None:
        """Stop holding the writer back: a ``"block"`` ring no longer waits for this reader."""
        self._ring._detach(self)

    def _skip_overwritten(self) -> None:
        oldest = self._ring._oldest_held()
        if self._cursor < oldest:
            self.dropped_frames += oldest - self._cursor
            self._cursor = oldest
