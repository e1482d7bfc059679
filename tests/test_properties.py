"""Property tests: the affect mapping, the model's preprocessing, and the stream clock.

Windower and resampler invariants on their own are in test_windows.py and test_resample.py;
here the resampler's sample count is checked against the input's clock, and the whole audio
front end (mono mix -> resampler -> windower, with lost frames) against the window formula.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from streamser.audio.resample import StreamingResampler
from streamser.config import WindowConfig
from streamser.constants import SAMPLE_RATE_HZ, WINDOW_SAMPLES
from streamser.engine.analyzer import StreamAnalyzer
from streamser.model.affect import AffectSmoother, arousal_of, softmax, valence_of
from streamser.model.preprocess import preprocess
from tests.model_standins import NoModel

# Class i: arousal i // 3 (low, high); valence i % 3 (negative, neutral, positive), as documented.
CLASS_AROUSAL = np.array([0, 0, 0, 1, 1, 1], dtype=np.float64)
CLASS_VALENCE = np.array([-1, 0, 1, -1, 0, 1], dtype=np.float64)

finite_logits = hnp.arrays(
    np.float64,
    st.one_of(st.just(6), st.tuples(st.integers(1, 8), st.just(6))),
    elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)


def probability_vectors() -> st.SearchStrategy[np.ndarray]:
    """Six non-negative numbers summing to 1, including one-hot and near-degenerate ones."""
    weights = hnp.arrays(np.float64, 6, elements=st.floats(0.0, 1e6, allow_nan=False))
    return weights.filter(lambda w: w.sum() > 0).map(lambda w: w / w.sum())


# ------------------------------------------------------------------------------ affect


@settings(max_examples=300, deadline=None)
@given(logits=finite_logits)
def test_softmax_gives_probabilities_that_sum_to_one(logits: np.ndarray) -> None:
    p = softmax(logits)
    assert p.shape == logits.shape
    assert np.all(np.isfinite(p))
    assert np.all((p >= 0.0) & (p <= 1.0))
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    # the most likely class stays the most likely
    top = np.take_along_axis(p, np.argmax(logits, axis=-1)[..., None], axis=-1)
    np.testing.assert_array_equal(top[..., 0], p.max(axis=-1))


@settings(max_examples=200, deadline=None)
@given(logits=finite_logits, shift=st.floats(-1e3, 1e3))
def test_softmax_ignores_a_common_shift_of_the_logits(logits: np.ndarray, shift: float) -> None:
    np.testing.assert_allclose(softmax(logits + shift), softmax(logits), rtol=0, atol=1e-9)


@settings(max_examples=300, deadline=None)
@given(p=st.one_of(probability_vectors(), finite_logits.filter(lambda z: z.ndim == 1).map(softmax)))
def test_arousal_and_valence_stay_in_range_and_match_their_definition(p: np.ndarray) -> None:
    a, v = arousal_of(p), valence_of(p)
    assert 0.0 <= a <= 1.0
    assert -1.0 <= v <= 1.0
    assert a == pytest.approx(float(p @ CLASS_AROUSAL), abs=1e-12)  # P(high arousal)
    assert v == pytest.approx(float(p @ CLASS_VALENCE), abs=1e-12)  # expected valence


@pytest.mark.parametrize("cls", range(6))
def test_a_certain_class_maps_to_its_corner(cls: int) -> None:
    p = np.eye(6)[cls]
    assert (arousal_of(p), valence_of(p)) == (CLASS_AROUSAL[cls], CLASS_VALENCE[cls])


@settings(max_examples=200, deadline=None)
@given(p=probability_vectors(), low=st.integers(0, 2), share=st.floats(0.0, 1.0))
def test_moving_mass_to_high_arousal_never_lowers_arousal(
    p: np.ndarray, low: int, share: float
) -> None:
    moved = p.copy()
    amount = moved[low] * share
    moved[low] -= amount
    moved[low + 3] += amount  # same valence, high arousal
    assert arousal_of(moved) >= arousal_of(p) - 1e-12
    assert valence_of(moved) == pytest.approx(valence_of(p), abs=1e-12)


pushes = st.lists(
    st.tuples(
        st.floats(-1e4, 1e4, allow_nan=False),  # stream time, in any order
        st.floats(0.0, 1.0),
        st.floats(-1.0, 1.0),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(tau=st.floats(0.0, 1e3), seq=pushes)
def test_smoothed_values_stay_between_the_extremes_of_the_inputs(
    tau: float, seq: list[tuple[float, float, float]]
) -> None:
    s = AffectSmoother(tau)
    for i, (t, a, v) in enumerate(seq, start=1):
        sa, sv = s.push(t, a, v)
        seen_a = [x[1] for x in seq[:i]]
        seen_v = [x[2] for x in seq[:i]]
        assert min(seen_a) - 1e-12 <= sa <= max(seen_a) + 1e-12
        assert min(seen_v) - 1e-12 <= sv <= max(seen_v) + 1e-12
        assert (s.arousal, s.valence) == (sa, sv)


@settings(max_examples=200, deadline=None)
@given(seq=pushes)
def test_time_constant_zero_is_no_smoothing(seq: list[tuple[float, float, float]]) -> None:
    s = AffectSmoother(0.0)
    for t, a, v in seq:
        assert s.push(t, a, v) == pytest.approx((a, v), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    tau=st.floats(0.1, 100.0),
    start=st.tuples(st.floats(0, 1), st.floats(-1, 1)),
    target=st.tuples(st.floats(0, 1), st.floats(-1, 1)),
    dt=st.floats(0.01, 50.0),
    steps=st.integers(2, 20),
)
def test_smoothing_does_not_depend_on_the_hop(
    tau: float,
    start: tuple[float, float],
    target: tuple[float, float],
    dt: float,
    steps: int,
) -> None:
    """Following a constant target for dt seconds ends at the same value in one or many steps."""
    one, many = AffectSmoother(tau), AffectSmoother(tau)
    one.push(0.0, *start)
    many.push(0.0, *start)
    expected = one.push(dt, *target)
    for k in range(1, steps + 1):
        got = many.push(dt * k / steps, *target)
    assert got == pytest.approx(expected, abs=1e-9)


def test_negative_time_constant_is_rejected() -> None:
    with pytest.raises(ValueError):
        AffectSmoother(-0.5)


# ------------------------------------------------------------------------------ preprocess


@st.composite
def waveforms(draw: st.DrawFn) -> np.ndarray:
    """Noise, tones and steps of any length (shorter and longer than a window), any level."""
    n = draw(st.one_of(st.integers(1, 2_000), st.integers(2_000, 120_000)))
    kind = draw(st.sampled_from(["noise", "tone", "step", "sparse"]))
    scale = draw(st.floats(1e-2, 1e3))
    offset = draw(st.floats(-10.0, 10.0))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "noise":
        x = rng.standard_normal(n)
    elif kind == "tone":
        x = np.sin(2 * np.pi * draw(st.floats(20.0, 7_900.0)) * np.arange(n) / SAMPLE_RATE_HZ)
    elif kind == "step":
        x = (np.arange(n) >= draw(st.integers(0, n))).astype(np.float64)
    else:
        x = np.zeros(n)
        x[rng.integers(0, n, size=max(1, n // 1000))] = 1.0
    return (x * scale + offset).astype(np.float32)


@settings(max_examples=150, deadline=None)
@given(x=waveforms())
def test_preprocess_gives_a_finite_normalised_window(x: np.ndarray) -> None:
    out = preprocess(x)
    assert out.shape == (WINDOW_SAMPLES,) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    padded = np.zeros(WINDOW_SAMPLES, np.float64)
    padded[: min(len(x), WINDOW_SAMPLES)] = x[:WINDOW_SAMPLES]
    var = padded.var()
    assume(var > 1e-3)  # far above the variance floor, so the result is unit variance
    assert abs(float(out.astype(np.float64).mean())) < 1e-4
    assert float(out.astype(np.float64).var()) == pytest.approx(1.0, rel=2e-3)


@settings(max_examples=100, deadline=None)
@given(x=waveforms(), gain=st.floats(0.05, 20.0))
def test_preprocess_ignores_the_level(x: np.ndarray, gain: float) -> None:
    padded = np.zeros(WINDOW_SAMPLES, np.float64)
    padded[: min(len(x), WINDOW_SAMPLES)] = x[:WINDOW_SAMPLES]
    assume(padded.var() > 1.0)  # the variance floor stays negligible at both gains
    np.testing.assert_allclose(
        preprocess(x * np.float32(gain)), preprocess(x), rtol=1e-4, atol=2e-3
    )


@settings(max_examples=100, deadline=None)
@given(x=waveforms())
def test_preprocess_pads_with_zeros_and_cuts_at_one_window(x: np.ndarray) -> None:
    out = preprocess(x)
    if len(x) >= WINDOW_SAMPLES:
        extra = np.concatenate([x, np.full(777, 123.0, np.float32)])
        np.testing.assert_array_equal(preprocess(extra), out)  # nothing after 3 s counts
    else:
        assert np.all(out[len(x) :] == out[-1])  # the zero padding, normalised with the rest


@settings(max_examples=60, deadline=None)
@given(
    x=waveforms(),
    bad=st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=1, max_size=20),
    seed=st.integers(0, 2**16),
)
def test_preprocess_turns_nonfinite_samples_into_silence(
    x: np.ndarray, bad: list[float], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    where = rng.integers(0, len(x), size=len(bad))
    broken, zeroed = x.copy(), x.copy()
    broken[where] = bad
    zeroed[where] = 0.0
    out = preprocess(broken)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out, preprocess(zeroed))


@settings(max_examples=40, deadline=None)
@given(x=waveforms(), channels=st.integers(2, 6))
def test_preprocess_mixes_channels_to_their_mean(x: np.ndarray, channels: int) -> None:
    gains = np.linspace(0.2, 1.0, channels, dtype=np.float32)
    multi = x[:, None] * gains[None, :]
    mono = multi.mean(axis=1)
    np.testing.assert_allclose(preprocess(multi), preprocess(mono), atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(x=waveforms(), rate_hz=st.sampled_from([8_000, 22_050, 44_100, 48_000]))
def test_preprocess_at_any_rate_gives_one_window(x: np.ndarray, rate_hz: int) -> None:
    out = preprocess(x, sample_rate_hz=rate_hz)
    assert out.shape == (WINDOW_SAMPLES,) and np.all(np.isfinite(out))


# ------------------------------------------------------------------------------ stream clock


@settings(max_examples=60, deadline=None)
@given(
    rate_hz=st.one_of(st.sampled_from([8_000, 11_025, 22_050, 44_100, 48_000, 96_000]),
                      st.integers(4_000, 192_000)),
    sizes=st.lists(st.integers(0, 20_000), min_size=1, max_size=30),
)  # fmt: skip
def test_resampled_stream_keeps_the_input_clock(rate_hz: int, sizes: list[int]) -> None:
    """However it is pushed, the 16 kHz stream is within half a sample of the input's length."""
    res = StreamingResampler(rate_hz)
    total_out = sum(len(res.push(np.zeros(n, np.float32))) for n in sizes)
    total_out += len(res.flush())
    ideal = sum(sizes) * SAMPLE_RATE_HZ / rate_hz
    assert abs(total_out - ideal) <= 0.5


def _formula(n16: int, first: int, hop: int) -> int:
    """The README's window count: (N - first) // hop + 1, or one for a stream shorter than
    the first window."""
    if n16 == 0:
        return 0
    return 1 if n16 < first else (n16 - first) // hop + 1


@settings(max_examples=60, deadline=None)
@given(
    rate_hz=st.sampled_from([8_000, 16_000, 22_050, 44_100, 48_000]),
    hop_s=st.sampled_from([0.25, 0.5, 1.0, 1.5]),
    first_s=st.sampled_from([1.0, 3.0]),
    channels=st.integers(1, 3),
    blocks=st.lists(
        st.tuples(st.integers(1, 30_000), st.integers(0, 5_000), st.booleans()), max_size=12
    ),
)
def test_front_end_cuts_the_window_formula_with_lost_frames_kept_on_the_clock(
    rate_hz: int,
    hop_s: float,
    first_s: float,
    channels: int,
    blocks: list[tuple[int, int, bool]],
) -> None:
    """Blocks of any size, some after a gap of lost frames: the gaps count as time."""
    cfg = WindowConfig(hop_s=hop_s, first_s=first_s, vad=False)
    an = StreamAnalyzer(NoModel(), cfg, rate_hz, watch_silence=False)
    frame = lost = 0
    windows = []
    for size, gap, has_gap in blocks:
        if has_gap:
            frame += gap
            lost += gap
        an.push_capture(frame, np.full((size, channels), 0.1, np.float32))
        frame += size
        windows += an.due_all()
    windows += an.finish()
    n16 = math.floor(Fraction(frame * SAMPLE_RATE_HZ, rate_hz) + Fraction(1, 2))
    first, hop = round(first_s * SAMPLE_RATE_HZ), round(hop_s * SAMPLE_RATE_HZ)
    assert an.dropped_frames == lost
    assert an.frames_in == frame
    assert len(windows) == _formula(n16, first, hop)
    assert [w.index for w in windows] == list(range(len(windows)))
    if n16 >= first:
        assert [w.end_sample for w in windows] == [first + k * hop for k in range(len(windows))]
