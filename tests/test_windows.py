"""Windower: sample-exact window spans and contents, latest-wins skipping, end of stream."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamser.audio.windows import Window, Windower
from streamser.constants import SAMPLE_RATE_HZ, WINDOW_SAMPLES

SR = SAMPLE_RATE_HZ


def ramp(n: int) -> np.ndarray:
    """Samples whose values are their stream indices, so a window's contents reveal its span."""
    return np.arange(n, dtype=np.float32)


def push_in_blocks(w: Windower, x: np.ndarray, size: int | str, seed: int = 0) -> list[Window]:
    """Push ``x`` in blocks, popping every due window after each push."""
    rng = np.random.default_rng(seed)
    got: list[Window] = []
    i = 0
    while i < len(x):
        step = int(rng.integers(0, 20_000)) if size == "random" else int(size)
        w.push(x[i : i + step])
        i += step
        got.extend(w.pop_due())
    return got


def expected_spans(n: int, first: int, hop: int, win: int) -> list[tuple[int, int]]:
    """Window spans enumerated straight from the definition, without the count formula."""
    spans = []
    end = first
    while end <= n:
        spans.append((max(0, end - win), end))
        end += hop
    return spans


def assert_windows_match(windows: list[Window], x: np.ndarray, spans: list[tuple[int, int]]):
    assert [(win.start_sample, win.end_sample) for win in windows] == spans
    for k, win in enumerate(windows):
        assert win.index == k
        assert win.samples.dtype == np.float32
        assert len(win.samples) == win.end_sample - win.start_sample == win.num_samples
        np.testing.assert_array_equal(win.samples, x[win.start_sample : win.end_sample])


@pytest.mark.parametrize("size", [7, 160, 1013, 16_000, 50_000, "random"])
@pytest.mark.parametrize("first_s", [1.0, 3.0])
@pytest.mark.parametrize("hop_s", [0.25, 0.5, 1.0, 2.5, 5.0])
def test_windows_are_sample_exact(hop_s: float, first_s: float, size: int | str) -> None:
    n = int(12.3 * SR)
    x = ramp(n)
    w = Windower(hop_s=hop_s, first_s=first_s)
    got = push_in_blocks(w, x, size)
    spans = expected_spans(n, round(first_s * SR), round(hop_s * SR), WINDOW_SAMPLES)
    assert_windows_match(got, x, spans)
    assert w.windows_emitted == len(spans) == w.windows_due_for(n)
    assert w.windows_skipped == 0
    assert w.samples_total == n
    assert w.finish() == []


def test_one_sample_pushes() -> None:
    n = int(4.2 * SR)
    x = ramp(n)
    w = Windower(hop_s=0.25, first_s=1.0)
    got = []
    for i in range(n):
        w.push(x[i : i + 1])
        got.extend(w.pop_due())
        if got:
            assert got[-1].end_sample <= i + 1
    assert_windows_match(got, x, expected_spans(n, SR, SR // 4, WINDOW_SAMPLES))


def test_popping_once_at_the_end_gives_the_same_windows_as_popping_after_each_push() -> None:
    n = 10 * SR + 123
    x = ramp(n)
    eager = push_in_blocks(Windower(hop_s=0.5), x, 777)
    lazy = Windower(hop_s=0.5)
    for i in range(0, n, 777):
        lazy.push(x[i : i + 777])
    late = lazy.pop_due()
    assert [(a.start_sample, a.end_sample) for a in late] == [
        (b.start_sample, b.end_sample) for b in eager
    ]
    for a, b in zip(late, eager, strict=True):
        np.testing.assert_array_equal(a.samples, b.samples)


def test_window_times_follow_the_stream_clock() -> None:
    w = Windower(hop_s=0.5, first_s=1.0)
    w.push(ramp(5 * SR))
    windows = w.pop_due()
    assert windows[0].t_start_s == 0.0
    assert windows[0].t_end_s == 1.0
    assert windows[-1].t_end_s == 5.0
    assert windows[-1].t_start_s == 2.0
    assert np.diff([win.t_end_s for win in windows]) == pytest.approx(0.5)


def test_pop_latest_returns_the_newest_and_counts_the_skipped() -> None:
    x = ramp(10 * SR)
    w = Windower(hop_s=1.0, first_s=1.0)
    assert w.pop_latest() == (None, 0)
    w.push(x[: 5 * SR])  # windows ending at 1, 2, 3, 4, 5 s are due
    window, skipped = w.pop_latest()
    assert window is not None
    assert (window.index, skipped) == (4, 4)
    assert (window.start_sample, window.end_sample) == (2 * SR, 5 * SR)
    np.testing.assert_array_equal(window.samples, x[2 * SR : 5 * SR])
    assert w.pop_latest() == (None, 0)
    assert w.pop_due() == []
    w.push(x[5 * SR : 6 * SR + 10])
    window, skipped = w.pop_latest()
    assert window is not None
    assert (window.index, skipped) == (5, 0)
    np.testing.assert_array_equal(window.samples, x[3 * SR : 6 * SR])
    w.push(x[6 * SR + 10 : 9 * SR])
    due = w.pop_due()  # lossless popping still works after latest-wins popping
    assert [d.index for d in due] == [6, 7, 8]  # ending at 7, 8 and 9 s
    assert (w.windows_emitted, w.windows_skipped) == (5, 4)
    assert w.windows_emitted + w.windows_skipped == w.windows_due_for(w.samples_total)


def test_finish_returns_a_short_stream_whole() -> None:
    x = ramp(SR // 2)
    w = Windower(hop_s=1.0, first_s=1.0)
    w.push(x[:3000])
    assert w.pop_due() == []
    w.push(x[3000:])
    assert w.pop_latest() == (None, 0)
    (window,) = w.finish()
    assert (window.index, window.start_sample, window.end_sample) == (0, 0, SR // 2)
    np.testing.assert_array_equal(window.samples, x)
    assert w.windows_emitted == 1
    assert w.finish() == []  # idempotent


def test_finish_keeps_the_whole_short_stream_when_the_first_window_starts_later() -> None:
    """With first_s > window_s window 0 starts after 0, yet a short stream is returned whole."""
    x = ramp(4 * SR)
    w = Windower(hop_s=1.0, first_s=5.0, window_s=3.0)
    w.push(x[: 2 * SR])
    assert w.pop_due() == []
    w.push(x[2 * SR :])
    (window,) = w.finish()
    assert (window.start_sample, window.end_sample) == (0, 4 * SR)
    np.testing.assert_array_equal(window.samples, x)


@pytest.mark.parametrize("n", [0, SR, 3 * SR + 5])
def test_finish_returns_nothing_for_empty_or_long_enough_streams(n: int) -> None:
    w = Windower(hop_s=1.0, first_s=1.0)
    w.push(ramp(n))
    w.pop_due()
    assert w.finish() == []


def test_push_after_finish_needs_reset_and_reset_restarts_the_clock() -> None:
    w = Windower(hop_s=1.0, first_s=1.0)
    w.push(ramp(3 * SR))
    w.pop_latest()
    w.finish()
    with pytest.raises(RuntimeError):
        w.push(ramp(10))
    w.reset()
    assert (w.samples_total, w.windows_emitted, w.windows_skipped) == (0, 0, 0)
    assert w.buffered_samples == 0
    x = ramp(2 * SR)
    w.push(x)
    windows = w.pop_due()
    assert [(v.start_sample, v.end_sample) for v in windows] == [(0, SR), (0, 2 * SR)]
    np.testing.assert_array_equal(windows[1].samples, x)


def test_memory_stays_bounded_on_a_long_stream() -> None:
    hop, win = SR // 2, WINDOW_SAMPLES
    w = Windower(hop_s=0.5, first_s=1.0)
    block = np.ones(1000, dtype=np.float32)
    for _ in range(600):  # 37.5 s
        w.push(block)
        w.pop_latest()
        assert w.buffered_samples < win
    assert w.capacity_samples <= win + hop  # storage did not grow with the stream
    w.push(np.ones(40 * SR, dtype=np.float32))  # a long burst: stored until popped
    pending = w.windows_due_for(w.samples_total) - w.windows_emitted - w.windows_skipped
    assert w.buffered_samples < win + pending * hop
    assert w.capacity_samples >= 40 * SR
    w.pop_latest()
    assert w.buffered_samples < win
    assert w.capacity_samples <= 4 * (win + hop)  # shrank back after the burst


def test_samples_between_windows_are_not_stored_when_hop_exceeds_window() -> None:
    w = Windower(hop_s=5.0, first_s=3.0)
    x = ramp(12 * SR)
    got = push_in_blocks(w, x, 4000)
    assert_windows_match(got, x, [(0, 3 * SR), (5 * SR, 8 * SR)])
    assert w.buffered_samples <= 12 * SR - 10 * SR  # only samples of the window ending at 13 s


def test_invalid_settings_and_input_are_rejected() -> None:
    with pytest.raises(ValueError):
        Windower(hop_s=0.0)
    with pytest.raises(ValueError):
        Windower(first_s=-1.0)
    w = Windower()
    with pytest.raises(ValueError):
        w.push(np.zeros((10, 2), dtype=np.float32))
    with pytest.raises(TypeError):
        w.push(np.zeros(10, dtype=np.int16))


# Property tests run at a low sample rate so that many windows stay cheap.
PROP_SR = 100


@settings(max_examples=200, deadline=None)
@given(
    hop=st.integers(1, 400),
    first=st.integers(1, 600),
    win=st.integers(1, 500),
    n=st.integers(0, 3000),
)
def test_window_count_formula(hop: int, first: int, win: int, n: int) -> None:
    w = Windower(hop / PROP_SR, first / PROP_SR, win / PROP_SR, sample_rate_hz=PROP_SR)
    expected = len(expected_spans(n, first, hop, win))
    assert w.windows_due_for(n) == expected
    w.push(ramp(n))
    assert len(w.pop_due()) == expected


@settings(max_examples=150, deadline=None)
@given(
    hop=st.integers(1, 300),
    first=st.integers(1, 400),
    win=st.integers(1, 400),
    actions=st.lists(st.tuples(st.integers(0, 700), st.sampled_from(["due", "latest", "none"]))),
)
def test_window_invariants_under_any_pushing_and_popping(
    hop: int, first: int, win: int, actions: list[tuple[int, str]]
) -> None:
    n_total = sum(a for a, _ in actions)
    x = ramp(n_total)
    w = Windower(hop / PROP_SR, first / PROP_SR, win / PROP_SR, sample_rate_hz=PROP_SR)
    got: list[Window] = []
    pos = 0
    for size, how in actions:
        w.push(x[pos : pos + size])
        pos += size
        if how == "due":
            got.extend(w.pop_due())
        elif how == "latest":
            window, _ = w.pop_latest()
            got.extend([window] if window is not None else [])
    got.extend(w.pop_due())
    tail = w.finish()
    due_total = w.windows_due_for(n_total)
    assert w.windows_emitted + w.windows_skipped == due_total + len(tail)
    assert len(got) == w.windows_emitted - len(tail)
    indices = [v.index for v in got]
    assert indices == sorted(set(indices))
    for v in got:
        assert v.end_sample == first + v.index * hop
        assert v.start_sample == max(0, v.end_sample - win)
        assert 0 < len(v.samples) <= win
        np.testing.assert_array_equal(v.samples, x[v.start_sample : v.end_sample])
    if w.windows_skipped == 0 and got:
        assert np.all(np.diff([v.t_end_s for v in got]) == pytest.approx(hop / PROP_SR))
    if tail:
        assert 0 < n_total < first
        np.testing.assert_array_equal(tail[0].samples, x)
