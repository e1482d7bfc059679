"""StreamingResampler: block-size independence, one-shot equality and no time shift."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamser.audio.resample import StreamingResampler, resample_whole
from streamser.constants import SAMPLE_RATE_HZ

RATES_HZ = [8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000]
BLOCK_SIZES = [1, 7, 160, 441, 1024, 4800, "random"]
TOLERANCE = 1e-4


def noise(n: int, seed: int = 0) -> np.ndarray:
    """Broadband test signal: every frequency the filter passes or stops is exercised."""
    return (np.random.default_rng(seed).standard_normal(n) * 0.3).astype(np.float32)


def blocks_of(n: int, size: int | str, seed: int = 1) -> list[slice]:
    """Slices covering [0, n) in blocks of ``size`` (or random sizes 0..5000, zeros included)."""
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < n:
        step = int(rng.integers(0, 5000)) if size == "random" else int(size)
        out.append(slice(i, i + step))
        i += step
    return out


def stream(res: StreamingResampler, x: np.ndarray, slices: list[slice]) -> np.ndarray:
    parts = [res.push(x[s]) for s in slices]
    parts.append(res.flush())
    assert all(p.dtype == np.float32 and p.ndim == 1 for p in parts)
    return np.concatenate(parts)


def duration_for(rate_hz: int, size: int | str) -> float:
    """Long enough to cover the filter's start-up and many blocks; short for 1-sample pushes."""
    return 0.15 if size == 1 else 0.6


@pytest.mark.parametrize("size", BLOCK_SIZES)
@pytest.mark.parametrize("rate_hz", RATES_HZ)
def test_streamed_output_equals_one_shot(rate_hz: int, size: int | str) -> None:
    x = noise(int(duration_for(rate_hz, size) * rate_hz) + 13)
    res = StreamingResampler(rate_hz)
    y = stream(res, x, blocks_of(len(x), size))
    ref = resample_whole(x, rate_hz)
    assert len(y) == len(ref)
    assert res.delay_out_samples == 0
    np.testing.assert_allclose(y, ref, atol=TOLERANCE, rtol=0)
    assert res.in_samples_total == len(x)
    assert res.out_samples_total == len(y)
    assert abs(len(y) - len(x) * SAMPLE_RATE_HZ / rate_hz) <= 1


@pytest.mark.parametrize("rate_hz", RATES_HZ)
@pytest.mark.parametrize("onset_s", [0.2, 0.3127])
def test_impulse_lands_at_the_same_time_after_resampling(rate_hz: int, onset_s: float) -> None:
    n_in = int(0.6 * rate_hz)
    at_in = round(onset_s * rate_hz)
    x = np.zeros(n_in, dtype=np.float32)
    x[at_in] = 1.0
    y = stream(StreamingResampler(rate_hz), x, blocks_of(n_in, 441))
    expected_out = at_in * SAMPLE_RATE_HZ / rate_hz
    peak = int(np.argmax(y))
    # Refine the peak by a parabola through its neighbours: a shift would show as an offset.
    a, b, c = y[peak - 1], y[peak], y[peak + 1]
    refined = peak + 0.5 * (a - c) / (a - 2 * b + c)
    assert abs(refined - expected_out) < 0.5
    assert abs(peak - expected_out) <= 1.0


@pytest.mark.parametrize("rate_hz", [11025, 44100, 48000])
def test_tone_burst_onset_lands_at_the_same_time(rate_hz: int) -> None:
    onset_s = 0.25
    t = np.arange(int(0.5 * rate_hz)) / rate_hz
    x = np.where(t >= onset_s, 0.5 * np.sin(2 * np.pi * 440.0 * t), 0.0).astype(np.float32)
    # 0.25 s is a zero crossing of the 440 Hz sine, so the onset is a clean edge.
    y = stream(StreamingResampler(rate_hz), x, blocks_of(len(x), 1024))
    out_t = np.arange(len(y)) / SAMPLE_RATE_HZ
    ideal = np.where(out_t >= onset_s, 0.5 * np.sin(2 * np.pi * 440.0 * out_t), 0.0)
    # Away from both edges (the signal is cut at its end), the tone comes through unshifted.
    settled = (out_t > onset_s + 0.01) & (out_t < out_t[-1] - 0.01)
    np.testing.assert_allclose(y[settled], ideal[settled], atol=2e-3)
    first_loud = int(np.argmax(np.abs(y) > 0.05))
    ideal_first_loud = int(np.argmax(np.abs(ideal) > 0.05))
    assert abs(first_loud - ideal_first_loud) <= 1


def test_equal_rates_pass_through_exactly_and_return_copies() -> None:
    x = noise(1000)
    res = StreamingResampler(SAMPLE_RATE_HZ, SAMPLE_RATE_HZ)
    first = res.push(x[:300])
    assert not np.shares_memory(first, x)
    rest = res.push(x[300:].astype(np.float64))
    np.testing.assert_array_equal(np.concatenate([first, rest, res.flush()]), x)
    np.testing.assert_array_equal(resample_whole(x, SAMPLE_RATE_HZ), x)
    assert res.pending_out_samples == 0


def test_pending_output_is_held_then_released_by_flush() -> None:
    x = noise(48_000)
    res = StreamingResampler(48_000)
    for s in blocks_of(len(x), 480):
        res.push(x[s])
        assert res.pending_out_samples >= 0
    assert res.pending_out_samples > 0  # the filter holds some output back
    res.flush()
    assert abs(res.pending_out_samples) < 1


def test_flush_is_idempotent_and_push_after_flush_needs_reset() -> None:
    x = noise(4410)
    res = StreamingResampler(44_100)
    first = stream(res, x, blocks_of(len(x), 441))
    assert res.flush().size == 0
    with pytest.raises(RuntimeError):
        res.push(x)
    res.reset()
    assert (res.in_samples_total, res.out_samples_total) == (0, 0)
    again = stream(res, x, blocks_of(len(x), 1000))
    np.testing.assert_array_equal(again, first)


def test_reset_mid_stream_forgets_the_old_signal() -> None:
    a, b = noise(22_050, seed=5), noise(22_050, seed=6)
    res = StreamingResampler(22_050)
    res.push(a)
    res.reset()
    np.testing.assert_array_equal(stream(res, b, [slice(0, len(b))]), resample_whole(b, 22_050))


def test_empty_stream_and_empty_blocks() -> None:
    res = StreamingResampler(48_000)
    assert res.push(np.zeros(0, dtype=np.float32)).size == 0
    assert res.flush().size == 0
    assert resample_whole(np.zeros(0, dtype=np.float32), 48_000).size == 0


def test_bad_input_is_rejected() -> None:
    res = StreamingResampler(48_000)
    with pytest.raises(ValueError):
        res.push(np.zeros((10, 2), dtype=np.float32))
    with pytest.raises(TypeError):
        res.push(np.zeros(10, dtype=np.int16))
    with pytest.raises(ValueError):
        StreamingResampler(0)
    with pytest.raises(ValueError):
        resample_whole(np.zeros(10, dtype=np.float32), 48_000, -1)


@settings(max_examples=40, deadline=None)
@given(
    rate_hz=st.one_of(st.sampled_from(RATES_HZ), st.integers(4000, 192_000)),
    sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=12),
    seed=st.integers(0, 2**16),
)
def test_any_blocking_matches_one_shot(rate_hz: int, sizes: list[int], seed: int) -> None:
    x = noise(sum(sizes), seed=seed)
    bounds = np.cumsum([0, *sizes])
    slices = [slice(int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds)]
    res = StreamingResampler(rate_hz)
    y = stream(res, x, slices)
    ref = resample_whole(x, rate_hz)
    assert len(y) == len(ref)
    np.testing.assert_allclose(y, ref, atol=TOLERANCE, rtol=0)
