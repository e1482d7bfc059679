"""RingBuffer: exact stream indices, counted overwrites, blocking writes and wake-ups."""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamser.audio.ring import RingBuffer

WAIT_S = 5.0


def ramp(start: int, n: int, channels: int = 1) -> np.ndarray:
    """Frames whose values are their own stream indices (channel c adds c * 0.25)."""
    idx = np.arange(start, start + n, dtype=np.float32)[:, None]
    return idx + np.arange(channels, dtype=np.float32)[None, :] * 0.25


def test_read_returns_stream_index_and_contents_across_wraparound() -> None:
    ring = RingBuffer(capacity_frames=10, channels=1)
    reader = ring.reader("r")
    received = []
    written = 0
    for n in [3, 3, 3, 3, 7, 1, 9, 2]:
        ring.write(ramp(written, n)[:, 0])
        written += n
        start, frames = reader.read_new()
        assert start == written - n
        assert frames.shape == (n, 1)
        assert frames.dtype == np.float32
        received.append(frames)
    assert ring.frames_written == written
    np.testing.assert_array_equal(np.concatenate(received), ramp(0, written))
    assert reader.dropped_frames == 0


def test_multichannel_frames_keep_their_channels() -> None:
    ring = RingBuffer(capacity_frames=8, channels=2)
    reader = ring.reader("r")
    ring.write(ramp(0, 5, channels=2))
    ring.write(ramp(5, 6, channels=2))
    start, frames = reader.read_new()
    assert start == 3  # 11 frames into 8 slots: the first 3 were overwritten
    np.testing.assert_array_equal(frames, ramp(3, 8, channels=2))
    assert reader.dropped_frames == 3


def test_overwritten_frames_are_skipped_and_counted_per_reader() -> None:
    ring = RingBuffer(capacity_frames=10, channels=1)
    fast, slow = ring.reader("fast"), ring.reader("slow")
    for i in range(5):
        ring.write(ramp(5 * i, 5))
        fast.read_new()
    assert slow.available() == 10
    start, frames = slow.read_new()
    assert start == 15
    np.testing.assert_array_equal(frames, ramp(15, 10))
    assert slow.dropped_frames == 15
    assert fast.dropped_frames == 0
    assert slow.available() == 0


def test_block_larger_than_capacity_keeps_only_the_newest_frames() -> None:
    ring = RingBuffer(capacity_frames=10, channels=1)
    reader = ring.reader("r")
    ring.write(ramp(0, 27))
    assert ring.frames_written == 27
    start, frames = reader.read_new()
    assert start == 17
    np.testing.assert_array_equal(frames, ramp(17, 10))
    assert reader.dropped_frames == 17


def test_max_frames_limits_each_read_and_the_rest_stays_available() -> None:
    ring = RingBuffer(capacity_frames=16, channels=1)
    reader = ring.reader("r")
    ring.write(ramp(0, 10))
    start, frames = reader.read_new(max_frames=4)
    assert (start, frames.shape[0]) == (0, 4)
    assert reader.available() == 6
    start, frames = reader.read_new(max_frames=100)
    assert start == 4
    np.testing.assert_array_equal(frames, ramp(4, 6))
    start, frames = reader.read_new()
    assert (start, frames.shape) == (10, (0, 1))


def test_new_reader_starts_at_the_current_end_of_the_stream() -> None:
    ring = RingBuffer(capacity_frames=16, channels=1)
    ring.write(ramp(0, 7))
    reader = ring.reader("late")
    assert reader.available() == 0
    ring.write(ramp(7, 3))
    start, frames = reader.read_new()
    assert start == 7
    np.testing.assert_array_equal(frames, ramp(7, 3))


def test_read_returns_a_copy_not_a_view_of_the_storage() -> None:
    ring = RingBuffer(capacity_frames=4, channels=1)
    reader = ring.reader("r")
    ring.write(ramp(0, 4))
    _, frames = reader.read_new()
    ring.write(ramp(4, 4))
    np.testing.assert_array_equal(frames, ramp(0, 4))


def test_float64_input_is_converted_and_integer_or_misshapen_input_rejected() -> None:
    ring = RingBuffer(capacity_frames=8, channels=2)
    reader = ring.reader("r")
    ring.write(ramp(0, 3, channels=2).astype(np.float64))
    _, frames = reader.read_new()
    assert frames.dtype == np.float32
    np.testing.assert_array_equal(frames, ramp(0, 3, channels=2))
    with pytest.raises(TypeError):
        ring.write(np.zeros((3, 2), dtype=np.int16))
    with pytest.raises(ValueError):
        ring.write(np.zeros(3, dtype=np.float32))  # mono shape on a stereo ring
    with pytest.raises(ValueError):
        ring.write(np.zeros((3, 3), dtype=np.float32))
    assert ring.frames_written == 3


@pytest.mark.parametrize(("capacity", "channels", "policy"), [(0, 1, "overwrite"), (4, 0, "block")])
def test_invalid_construction_is_rejected(capacity: int, channels: int, policy: str) -> None:
    with pytest.raises(ValueError):
        RingBuffer(capacity, channels, policy)  # type: ignore[arg-type]


def test_unknown_policy_is_rejected() -> None:
    with pytest.raises(ValueError):
        RingBuffer(4, 1, "drop-newest")  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_overwrite_write_allocates_nothing_block_sized(dtype: type) -> None:
    """The audio callback path only copies into preallocated storage."""
    ring = RingBuffer(capacity_frames=48_000, channels=2)
    ring.reader("r")
    block = np.ones((4_800, 2), dtype=dtype)  # 100 ms at 48 kHz: 38 or 77 kB
    ring.write(block)  # warm any lazy initialisation
    tracemalloc.start()
    try:
        for _ in range(20):
            ring.write(block)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < block.nbytes // 4


def test_wait_times_out_without_data_and_wakes_on_write() -> None:
    ring = RingBuffer(capacity_frames=8, channels=1)
    reader = ring.reader("r")
    assert reader.wait(0.01) is False
    woke = threading.Event()
    result: list[bool] = []

    def waiter() -> None:
        result.append(reader.wait(WAIT_S))
        woke.set()

    t = threading.Thread(target=waiter, name="test-waiter", daemon=True)
    t.start()
    ring.write(ramp(0, 1))
    assert woke.wait(WAIT_S)
    t.join(WAIT_S)
    assert result == [True]
    assert reader.wait(0.0) is True  # still unread


def test_close_wakes_waiting_readers_and_is_idempotent() -> None:
    ring = RingBuffer(capacity_frames=8, channels=1)
    readers = [ring.reader(f"r{i}") for i in range(3)]
    results: list[bool] = []
    lock = threading.Lock()
    threads = []

    def waiter(i: int) -> None:
        ok = readers[i].wait(WAIT_S * 4)
        with lock:
            results.append(ok)

    for i in range(3):
        t = threading.Thread(target=waiter, args=(i,), name=f"test-waiter-{i}", daemon=True)
        t.start()
        threads.append(t)
    ring.close()
    ring.close()
    for t in threads:
        t.join(WAIT_S)
        assert not t.is_alive()
    assert results == [True, True, True]
    assert ring.closed


def test_overwrite_write_after_close_is_refused_and_counted() -> None:
    ring = RingBuffer(capacity_frames=8, channels=1)
    reader = ring.reader("r")
    ring.write(ramp(0, 3))
    ring.close()
    ring.write(ramp(3, 4))
    assert ring.frames_written == 3
    assert ring.frames_refused == 4
    start, frames = reader.read_new()  # what was written before close is still readable
    assert start == 0
    np.testing.assert_array_equal(frames, ramp(0, 3))


class _BlockedWriter:
    """Runs one blocking ``write`` on its own thread and reports when it returns."""

    def __init__(self, ring: RingBuffer, block: np.ndarray) -> None:
        self.done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ring, block), name="test-writer", daemon=True
        )
        self._thread.start()

    def _run(self, ring: RingBuffer, block: np.ndarray) -> None:
        ring.write(block)
        self.done.set()

    def join(self) -> None:
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive()


def test_block_policy_writer_waits_for_the_reader_and_loses_nothing() -> None:
    ring = RingBuffer(capacity_frames=10, channels=1, policy="block")
    reader = ring.reader("r")
    writer = _BlockedWriter(ring, ramp(0, 25))
    assert reader.wait(WAIT_S)
    # The writer filled the ring in one locked step and now waits for room.
    assert ring.frames_written == 10
    assert not writer.done.is_set()
    received = []
    while sum(len(f) for f in received) < 25:
        assert reader.wait(WAIT_S)
        start, frames = reader.read_new(max_frames=4)
        assert start == sum(len(f) for f in received)
        received.append(frames)
    assert writer.done.wait(WAIT_S)
    writer.join()
    np.testing.assert_array_equal(np.concatenate(received), ramp(0, 25))
    assert reader.dropped_frames == 0
    assert ring.frames_refused == 0


def test_block_policy_close_releases_the_writer_and_counts_the_rest() -> None:
    ring = RingBuffer(capacity_frames=10, channels=1, policy="block")
    reader = ring.reader("r")
    writer = _BlockedWriter(ring, ramp(0, 16))
    assert reader.wait(WAIT_S)
    assert not writer.done.is_set()
    ring.close()
    assert writer.done.wait(WAIT_S)
    writer.join()
    assert ring.frames_written == 10
    assert ring.frames_refused == 6


def test_block_policy_detach_releases_the_writer() -> None:
    ring = RingBuffer(capacity_frames=10, channels=1, policy="block")
    stuck, other = ring.reader("stuck"), ring.reader("other")
    other.detach()  # a detached reader never held the writer back
    writer = _BlockedWriter(ring, ramp(0, 15))
    assert stuck.wait(WAIT_S)
    assert not writer.done.is_set()
    stuck.detach()
    assert writer.done.wait(WAIT_S)
    writer.join()
    assert ring.frames_written == 15
    start, frames = stuck.read_new()  # it can still read; it just lost the overwritten frames
    assert start == 5
    assert stuck.dropped_frames == 5
    np.testing.assert_array_equal(frames, ramp(5, 10))


def test_block_policy_without_readers_never_waits() -> None:
    ring = RingBuffer(capacity_frames=4, channels=1, policy="block")
    ring.write(ramp(0, 9))  # would deadlock if it waited for an absent reader
    assert ring.frames_written == 9


def test_block_policy_threads_deliver_every_frame_in_order() -> None:
    ring = RingBuffer(capacity_frames=64, channels=1, policy="block")
    reader = ring.reader("consumer")
    total = 20_000
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 150, size=400)

    def produce() -> None:
        written = 0
        for n in sizes:
            n = int(min(n, total - written))
            if n == 0:
                break
            ring.write(ramp(written, n))
            written += n
        if written < total:
            ring.write(ramp(written, total - written))
        ring.close()

    producer = threading.Thread(target=produce, name="test-producer", daemon=True)
    producer.start()
    got = []
    while True:
        assert reader.wait(WAIT_S)
        _, frames = reader.read_new(max_frames=int(rng.integers(1, 100)))
        if len(frames):
            got.append(frames)
        elif ring.closed and reader.available() == 0:
            break
    producer.join(WAIT_S)
    np.testing.assert_array_equal(np.concatenate(got), ramp(0, total))
    assert reader.dropped_frames == 0


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.integers(1, 20),
    ops=st.lists(
        st.tuples(st.booleans(), st.integers(0, 45), st.one_of(st.none(), st.integers(0, 30))),
        max_size=40,
    ),
)
def test_reads_account_for_every_frame_under_overwrite(
    capacity: int, ops: list[tuple[bool, int, int | None]]
) -> None:
    """Every frame written after attach is either received exactly once or counted as dropped."""
    ring = RingBuffer(capacity_frames=capacity, channels=1)
    reader = ring.reader("r")
    next_expected = 0
    received = 0
    for is_write, n, max_frames in ops:
        if is_write:
            ring.write(ramp(ring.frames_written, n))
            continue
        unread = ring.frames_written - next_expected
        assert reader.available() == min(unread, capacity)
        start, frames = reader.read_new(max_frames)
        assert start >= next_expected
        assert ring.frames_written - start <= capacity or len(frames) == 0
        np.testing.assert_array_equal(frames, ramp(start, len(frames)))
        next_expected = start + len(frames)
        received += len(frames)
        assert received + reader.dropped_frames == next_expected
