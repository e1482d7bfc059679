"""Input preprocessing identical to the reference usage of the model.

The model card runs ``Wav2Vec2FeatureExtractor`` (do_normalize, no attention mask, padding value 0)
with ``padding='max_length', max_length=48000`` and truncation. That means: mono 16 kHz, right-pad
with zeros or cut to exactly 48,000 samples, then normalise over the *whole padded vector*
(so a short clip's zeros take part in the mean and variance), and run with no attention mask.
"""

from __future__ import annotations

import numpy as np

from streamser.constants import SAMPLE_RATE_HZ, WINDOW_SAMPLES
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

    Non-finite samples (NaN/inf from a broken device or file) become 0 first, so one bad sample
    cannot poison the whole window's normalisation.
    """
    x = to_mono(waveform).astype(np.float32, copy=False)
    if sample_rate_hz != SAMPLE_RATE_HZ:
        x = resample_whole(x, int(sample_rate_hz), SAMPLE_RATE_HZ).astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    return normalise(pad_or_cut(x)).astype(np.float32, copy=False)
