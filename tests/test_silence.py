"""SilenceWatch: reports a run of digital silence once, from blocks of any length."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamser.audio.silence import SilenceWatch

RATE_HZ = 1_000


def test_reports_once_after_the_run_reaches_after_s() -> None:
    watch = SilenceWatch(RATE_HZ, after_s=0.5)
    block = np.zeros((100, 2), dtype=np.float32)
    results = [watch.push(block) for _ in range(10)]
    assert results == [False, False, False, False, True, False, False, False, False, False]
    assert watch.silent
    assert watch.silent_frames == 1_000


def test_any_non_zero_sample_resets_the_run_and_a_later_run_reports_again() -> None:
    watch = SilenceWatch(RATE_HZ, after_s=0.3)
    zeros = np.zeros((200, 2), dtype=np.float32)
    assert not watch.push(zeros)
    blip = zeros.copy()
    blip[50, 1] = 1e-9  # one channel, one sample, at a 250-frame run: the room's noise floor
    assert not watch.push(blip)
    assert watch.silent_frames == 149
    assert watch.push(zeros)  # 349 frames: reported
    assert not watch.push(zeros)
    assert not watch.push(np.ones((1, 2), dtype=np.float32))
    assert not watch.silent
    assert watch.push(np.zeros((300, 2), dtype=np.float32))


def test_nan_is_not_silence() -> None:
    watch = SilenceWatch(RATE_HZ, after_s=0.1)
    block = np.zeros(100, dtype=np.float32)
    block[-1] = np.nan
    assert not watch.push(block)
    assert watch.silent_frames == 0


def test_one_long_block_with_a_silent_tail_reports() -> None:
    watch = SilenceWatch(RATE_HZ, after_s=0.1)
    block = np.zeros(500, dtype=np.float32)
    block[10] = 0.5
    assert watch.push(block)
    assert watch.silent_frames == 489


def test_reset_forgets_the_run_and_the_report() -> None:
    watch = SilenceWatch(RATE_HZ, after_s=0.1)
    assert watch.push(np.zeros(100, dtype=np.float32))
    watch.reset()
    assert watch.silent_frames == 0
    assert not watch.silent
    assert watch.push(np.zeros(100, dtype=np.float32))


def test_empty_block_changes_nothing() -> None:
    watch = SilenceWatch(RATE_HZ, after_s=0.1)
    assert not watch.push(np.zeros((0, 2), dtype=np.float32))
    assert watch.silent_frames == 0


def test_message_is_one_line_naming_the_causes() -> None:
    message = SilenceWatch(RATE_HZ, after_s=3.0).message
    assert "\n" not in message
    assert "3 s" in message
    assert "muted" in message
    assert "macOS/Windows" in message


@pytest.mark.parametrize(("rate_hz", "after_s"), [(0, 1.0), (16_000, 0.0), (16_000, -1.0)])
def test_rejects_nonsense_settings(rate_hz: int, after_s: float) -> None:
    with pytest.raises(ValueError):
        SilenceWatch(rate_hz, after_s=after_s)


def test_a_run_that_ends_inside_one_block_is_still_reported() -> None:
    watch = SilenceWatch(RATE_HZ, after_s=0.1)
    block = np.zeros(500, dtype=np.float32)
    block[[0, 300, 499]] = 0.5  # a 299-frame run in the middle; no silent tail
    assert watch.push(block)
    assert watch.silent_frames == 0


@settings(max_examples=80, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=2_000), max_size=12),
    loud_at=st.lists(st.integers(min_value=0, max_value=1_999), max_size=6),
)
def test_block_boundaries_do_not_matter(cuts: list[int], loud_at: list[int]) -> None:
    """Any split of a signal reports in exactly the blocks where a frame-by-frame scan does."""
    signal = np.zeros(2_000, dtype=np.float32)
    signal[loud_at] = 0.25
    after_frames = 200
    reference: list[int] = []  # frame indices at which a run reaches after_frames
    run = 0
    for i, x in enumerate(signal):
        run = run + 1 if x == 0.0 else 0
        if run == after_frames:
            reference.append(i)

    watch = SilenceWatch(RATE_HZ, after_s=after_frames / RATE_HZ)
    edges = sorted({0, *cuts, len(signal)})
    for start, end in itertools.pairwise(edges):
        expected = any(start <= i < end for i in reference)
        assert watch.push(signal[start:end]) == expected, (start, end)
