"""Input preprocessing identical to the reference usage of the model.

The model card runs ``Wav2Vec2FeatureExtractor`` (do_normalize, no attention mask, padding value 0)
with ``padding='max_length', max_length=48000`` and truncation. That means: mono 16 kHz, right-pad
with zeros or cut to exactly 48,000 samples, then normalise over the *whole padded vector*
(so a short clip's zeros take part in the mean and variance), and run with no attention mask.
"""

from __future__ import annotations

import logging

import numpy as np

from streamser.constants import MAX_SAMPLE_ABS, SAMPLE_RATE_HZ, WINDOW_SAMPLES
from streamser.resampling import resample_whole

NORM_EPS = 1e-7
"""Variance floor of the reference feature extractor."""


def to_mono(waveform: np.ndarray) -> np.ndarray:
    """Average channels of a (frames, channels) array; 1-D input passes through."""
    x = np.asarray(waveform)
    if x.ndim == 1:
        return x
    if x.ndim == 2:
        return x.mean(axis=1)
    raise ValueError(f"expected a 1-D or (frames, channels) waveform, got shape {x.shape}")


def pad_or_cut(x: np.ndarray, length: int = WINDOW_SAMPLES) -> np.ndarray:
    """Right-pad with zeros, or cut, to exactly ``length`` samples."""
    if x.shape[0] >= length:
        return x[:length]
    out = np.zeros(length, dtype=x.dtype)
    out[: x.shape[0]] = x
    return out


def normalise(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance over the whole vector, as the reference feature extractor does."""
    return (x - x.mean()) / np.sqrt(x.var() + NORM_EPS)


def preprocess(waveform: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """One waveform -> the model's 48,000-sample float32 input vector.

    Unusable samples (NaN/inf from a broken device or file, and magnitudes beyond
    ``MAX_SAMPLE_ABS``, which only corrupt data holds) become 0 first, before resampling spreads
    them, so one bad sample cannot poison the whole window's normalisation (a huge one would
    overflow it and turn the window into the all-zero input). Audio without such samples gives
    exactly the input it always did.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is caught just below
        x = to_mono(waveform).astype(np.float32, copy=False)
    bad = ~(np.abs(x) <= MAX_SAMPLE_ABS)  # NaN compares False: caught too
    if bad.any():
        logging.getLogger("streamser").warning(
            "the waveform holds %d unusable samples (NaN, infinite, or beyond +/-%g): each is "
            "replaced by 0",
            int(bad.sum()),
            MAX_SAMPLE_ABS,
        )
        x = np.where(bad, np.float32(0.0), x)
    if sample_rate_hz != SAMPLE_RATE_HZ:
        x = resample_whole(x, int(sample_rate_hz), SAMPLE_RATE_HZ).astype(np.float32, copy=False)
    return normalise(pad_or_cut(x)).astype(np.float32, copy=False)
