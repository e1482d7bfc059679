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

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "half", "int8")
"""Numeric precisions of the network (``model/precision.py``); here so the CLI parser loads no
torch. ``half`` is fp16 on GPUs and bf16 on CPUs, with the residual stream kept in fp32."""
