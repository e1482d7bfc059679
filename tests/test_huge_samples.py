"""Sample values no recording holds (a float file with 1e30 in it) are replaced by 0, counted
with the NaN/inf ones and said once on stderr, and no numpy warning escapes: a huge sample no
longer overflows the window's normalisation into the all-zero input."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator

import numpy as np
import pytest

from streamser.config import WindowConfig
from streamser.constants import MAX_SAMPLE_ABS, SAMPLE_RATE_HZ
from streamser.engine.analyzer import StreamAnalyzer
from streamser.model import load_model
from streamser.model.preprocess import normalise, pad_or_cut, preprocess
from streamser.model.runtime import EmotionModel
from streamser.resampling import resample_whole


@pytest.fixture
def no_numpy_warnings() -> Iterator[None]:
    """Any warning (numpy's RuntimeWarning on overflow above all) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.fixture(scope="module")
def demo() -> EmotionModel:
    return load_model("demo", compute="cpu")


def test_the_sample_bound_is_far_above_full_scale_and_keeps_normalisation_finite() -> None:
    assert 2.0**31 < MAX_SAMPLE_ABS <= 1e10  # int32-scaled floats are audio
    worst = np.full(48_000, MAX_SAMPLE_ABS, np.float32)
    worst[::2] *= -1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = preprocess(worst)
    assert np.all(np.isfinite(out)) and abs(float(out.std()) - 1.0) < 1e-3


def speech_like(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(n) * np.sin(np.arange(n) / 800.0)).astype(np.float32)


HUGE_VALUES = [1e30, -1e30, 3e38, np.float32(MAX_SAMPLE_ABS) * 1.001, np.inf, np.nan]


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_huge_samples_are_zeroed_counted_and_said_once(
    demo: EmotionModel,
    channels: int,
    caplog: pytest.LogCaptureFixture,
    no_numpy_warnings: None,
) -> None:
    """Like NaN: a 1e30 sample no longer overflows the normalisation into the all-zero
    input; the windows equal those of the file with zeros in its place."""
    x = speech_like(3 * SAMPLE_RATE_HZ + 5_000)
    where = np.arange(len(HUGE_VALUES)) * 7_001 + 300
    broken, zeroed = x.copy(), x.copy()
    broken[where] = HUGE_VALUES
    zeroed[where] = 0.0
    broken[50] = zeroed[50] = 32_768.0  # int16-scaled: loud audio, kept

    def probs_of(signal: np.ndarray) -> tuple[StreamAnalyzer, np.ndarray]:
        an = StreamAnalyzer(demo, WindowConfig(vad=False), SAMPLE_RATE_HZ)
        frames = np.repeat(signal[:, None], channels, axis=1)
        for first in range(0, len(frames), 4_000):  # the warning comes once, not per block
            an.push_capture(first, frames[first : first + 4_000])
        windows = an.due_all() + an.finish()
        return an, np.array([e.probs for e in an.estimate(windows)])

    with caplog.at_level(logging.WARNING, logger="streamser"):
        an, got = probs_of(broken)
    said = [r for r in caplog.records if "unusable samples" in r.getMessage()]
    assert len(said) == 1 and "1e+10" in said[0].getMessage()
    assert an.nonfinite_samples == len(HUGE_VALUES)
    assert an.huge_samples == (4 if channels == 1 else 3)  # 3e38 in several channels mixes to inf
    assert an.level.level_dbfs is not None and an.level.level_dbfs < 100.0

    _, want = probs_of(zeroed)
    _, all_zero = probs_of(np.zeros_like(x))
    np.testing.assert_array_equal(got, want)
    assert not np.allclose(got, all_zero)


@pytest.mark.parametrize("rate_hz", [SAMPLE_RATE_HZ, 22_050])
def test_preprocess_zeroes_huge_samples_without_a_warning(
    rate_hz: int, caplog: pytest.LogCaptureFixture, no_numpy_warnings: None
) -> None:
    """The Python API's path (``predict``) guards the same samples the live path does."""
    x = speech_like(2 * rate_hz).astype(np.float64)
    broken, zeroed = x.copy(), x.copy()
    broken[[10, 2_000, 9_000]] = [1e30, -1e300, np.nan]
    zeroed[[10, 2_000, 9_000]] = 0.0
    with caplog.at_level(logging.WARNING, logger="streamser"):
        got = preprocess(broken, rate_hz)
    assert "3 unusable samples" in caplog.text
    np.testing.assert_array_equal(got, preprocess(zeroed, rate_hz))
    stereo = np.stack([broken, zeroed], axis=1)  # a channel mean that overflows float32
    stereo[5, :] = 3e38
    assert np.all(np.isfinite(preprocess(stereo, rate_hz)))


def test_preprocess_leaves_normal_audio_and_integer_pcm_exactly_as_before() -> None:
    def reference(x: np.ndarray, rate_hz: int) -> np.ndarray:  # the steps before the guard
        y = resample_whole(x.astype(np.float32), rate_hz, SAMPLE_RATE_HZ).astype(np.float32)
        return normalise(pad_or_cut(y)).astype(np.float32)

    x = speech_like(40_000)
    np.testing.assert_array_equal(preprocess(x), reference(x, SAMPLE_RATE_HZ))
    np.testing.assert_array_equal(preprocess(x, 22_050), reference(x, 22_050))
    pcm = np.round(x * 32_767 * 5).clip(-32_768, 32_767).astype(np.int16)
    np.testing.assert_array_equal(preprocess(pcm), reference(pcm, SAMPLE_RATE_HZ))
    int32_scaled = (x * 2.0**31 * 5).clip(-(2.0**31), 2.0**31).astype(np.float32)
    np.testing.assert_array_equal(preprocess(int32_scaled), reference(int32_scaled, 16_000))
