"""How large the residual stream grows, layer by layer: the fp16 headroom of a network.

Nothing normalises the hidden state between ExHuBERT's 48 gated layers, so its magnitude can
outgrow fp16 (largest finite value 65,504) even where every block's own inputs are normalised.
:func:`residual_stream_numerics` runs a few windows in fp32 and reports, per layer, the largest
magnitude the stream reaches and how far that is from fp16's limit: a network whose stream
stays far below it could run plain fp16; one that crosses it needs the mixed path that keeps
the stream in fp32 (``ExHubert.set_half``). It backs ``streamser model info --numerics``.

:func:`synthetic_windows` makes the speech-like and noise windows used here, in the precision
tests and in ``benchmarks/bench_precision.py`` when no real audio is at hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from streamser.constants import SAMPLE_RATE_HZ, WINDOW_SAMPLES
from streamser.model.exhubert import EncoderLayer, ExHubert
from streamser.model.preprocess import preprocess

FP16_MAX = float(torch.finfo(torch.float16).max)
"""65,504: the largest finite fp16 value."""


@dataclass(frozen=True)
class LayerNumerics:
    """One encoder layer: the largest |value| of the residual stream at any point of it.

    Measured at the three places the stream is written: after the attention's residual add,
    after the feed-forward's residual add, and at the layer's output (for the second layer of
    a pair, after the skip connection around it, i.e. the stream the next pair reads).
    """

    index: int
    max_abs: float

    @property
    def headroom(self) -> float:
        """``FP16_MAX / max_abs``: above 1 the stream fits fp16, below 1 it overflows."""
        return math.inf if self.max_abs == 0 else FP16_MAX / self.max_abs

    @property
    def headroom_bits(self) -> float:
        """log2 of :attr:`headroom`: binary orders of magnitude left (negative: overflow)."""
        return math.log2(self.headroom) if self.max_abs > 0 else math.inf


@dataclass(frozen=True)
class NumericsReport:
    """Per-layer residual-stream magnitudes of some windows, run in fp32."""

    layers: tuple[LayerNumerics, ...]
    input_max_abs: float
    """After the feature projection and positional convolution: the stream entering layer 0."""
    windows: int

    @property
    def max_abs(self) -> float:
        return max([self.input_max_abs, *(layer.max_abs for layer in self.layers)])

    @property
    def first_overflow_layer(self) -> int | None:
        """The first layer whose stream exceeds fp16's range, or None where all fit."""
        return next((layer.index for layer in self.layers if layer.max_abs > FP16_MAX), None)

    @property
    def fits_fp16(self) -> bool:
        return self.first_overflow_layer is None and self.input_max_abs <= FP16_MAX

    def to_dict(self) -> dict[str, object]:
        return {
            "windows": self.windows,
            "fp16_max": FP16_MAX,
            "input_max_abs": self.input_max_abs,
            "max_abs": self.max_abs,
            "first_overflow_layer": self.first_overflow_layer,
            "layers": [
                {"index": x.index, "max_abs": x.max_abs, "headroom": x.headroom}
                for x in self.layers
            ],
        }


def residual_stream_numerics(
    network: ExHubert, inputs: np.ndarray | None = None, *, windows: int = 4
) -> NumericsReport:
    """Run ``inputs`` (preprocessed, (batch, 48000)) through ``network`` in fp32, one window at
    a time, and measure the residual stream per layer; by default ``windows`` windows of
    :func:`synthetic_windows`.

    The network's precision setting is left as it was; the walk mirrors ``Encoder.forward``.
    """
    if inputs is None:
        inputs = synthetic_windows(windows)
    if inputs.ndim != 2:
        raise ValueError(f"expected (batch, samples) inputs, got shape {inputs.shape}")
    n_layers = len(network.hubert.encoder.layers)
    peaks = np.zeros(n_layers)
    input_peak = 0.0
    device = next(network.parameters()).device
    with network.fp32(), torch.inference_mode():
        for row in inputs:
            x = torch.from_numpy(np.ascontiguousarray(row, dtype=np.float32))[None].to(device)
            layer_peaks, stream_in = _walk(network, x)
            peaks = np.maximum(peaks, layer_peaks)
            input_peak = max(input_peak, stream_in)
    return NumericsReport(
        layers=tuple(LayerNumerics(i, float(p)) for i, p in enumerate(peaks)),
        input_max_abs=input_peak,
        windows=len(inputs),
    )


def _walk(network: ExHubert, x: torch.Tensor) -> tuple[np.ndarray, float]:
    hub = network.hubert
    enc = hub.encoder
    h = hub.feature_projection(hub.feature_extractor(x))
    h = h + enc.pos_conv_embed(h)
    stream_in = float(h.abs().max())
    peaks = np.zeros(len(enc.layers))

    def amax(t: torch.Tensor) -> float:
        return float(t.abs().max())

    def layer(i: int, h: torch.Tensor) -> torch.Tensor:
        m = cast(EncoderLayer, enc.layers[i])
        h = h + m.attention(m.layer_norm(h))
        peak = amax(h)
        h = h + m.feed_forward(m.final_layer_norm(h))
        peaks[i] = max(peak, amax(h))
        return m.gate_bb_linear(h)

    for i in range(0, len(enc.layers), 2):
        a = layer(i, h)
        peaks[i] = max(peaks[i], amax(a))
        h = a + layer(i + 1, a)
        peaks[i + 1] = max(peaks[i + 1], amax(h))
    return peaks, stream_in


def synthetic_windows(n: int, seed: int = 0) -> np.ndarray:
    """``n`` preprocessed 3 s windows, alternately speech-like and noise.

    Speech-like: a harmonic series on a gliding 90-260 Hz fundamental, with formant-like
    spectral tilt, a 4-5 Hz syllable envelope, pauses and a little noise. Noise: white noise
    at a random level. Neither is speech, but they drive the network with the two kinds of
    input a live stream mostly gives it.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW_SAMPLES) / SAMPLE_RATE_HZ
    out = np.empty((n, WINDOW_SAMPLES), dtype=np.float32)
    for i in range(n):
        if i % 2:
            wave = rng.standard_normal(WINDOW_SAMPLES) * 10 ** rng.uniform(-3, -0.5)
        else:
            f0 = rng.uniform(90, 260) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.3, 1) * t))
            phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE_HZ
            formant = rng.uniform(400, 900)
            harmonics = [
                np.sin(k * phase) / k * np.exp(-(((k * f0 - formant) / 600) ** 2))
                for k in range(1, 30)
            ]
            wave = np.sum(harmonics, axis=0)
            syllables = np.clip(np.sin(2 * np.pi * rng.uniform(4, 5) * t), 0, None) ** 0.5
            wave = wave * syllables + 0.01 * rng.standard_normal(WINDOW_SAMPLES)
        out[i] = preprocess(np.asarray(wave, dtype=np.float32), SAMPLE_RATE_HZ)
    return out
