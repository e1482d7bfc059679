"""Constants of the model's input, derived once so every stage agrees on them."""

from __future__ import annotations

SAMPLE_RATE_HZ = 16_000
"""ExHuBERT consumes 16 kHz mono audio; every stream is resampled to this rate."""

WINDOW_S = 3.0
"""Length of one analysis window, as the model was fine-tuned on."""

WINDOW_SAMPLES = int(WINDOW_S * SAMPLE_RATE_HZ)  # 48,000
"""Samples in one model input after padding or cutting."""

NUM_CLASSES = 6
"""Arousal (low, high) x valence (negative, neutral, positive)."""

DEFAULT_MODEL_ID = "amiriparian/ExHuBERT"
DEFAULT_MODEL_REVISION = "b158d45ed8578432468f3ab8d46cbe5974380812"
"""Revision named on the model card (a README commit; weights last changed in fec72ec)."""

PUBLISHED_WEIGHTS_SHA256 = "c4c35a61b144a2c5f23a3bab59125bd5e0eb220e389187ebb67a8aca681a07f3"
PUBLISHED_WEIGHTS_BYTES = 2_673_871_413

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")
"""Engines that run the network: torch (default; CPU, CUDA, MPS) or onnxruntime (CPU, fp32)."""

COMPUTE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
"""Where the model may run; ``auto`` picks CUDA, then Apple MPS, then the CPU."""

QUANTIZE_CHOICES: tuple[str, ...] = ("int8",)
"""Optional quantisation of the network (dynamic int8 of the linear layers, CPU)."""

MIN_HOP_S = 0.05
"""Shortest stream time between window ends that a run accepts; the dashboard's history is
sized for it."""
MAX_HOP_S = 60.0
"""Longest hop a run accepts."""

HISTORY_S = 600.0
"""Stream time of estimates a run keeps in memory for the display: the dashboard's longest range."""
HISTORY_MAX_ESTIMATES = int(HISTORY_S / MIN_HOP_S * 1.2)  # 14,400
"""The one in-memory estimate history's size: ``HISTORY_S`` at the smallest hop, plus 20 %."""
