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

HF_MODEL_TYPE = "exhubert"
"""``model_type`` of the checkpoints ``streamser.hf`` saves (the published one says ``hubert``):
transformers' Auto classes find streamser's ExHuBERT classes by it."""

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

MIN_INPUT_RATE_HZ = 8_000
"""Lowest input sample rate accepted: telephone speech, the least that still carries a voice
(and the lowest rate microphones and codecs offer). Anything lower is a mislabelled file."""

MAX_INPUT_RATE_HZ = 384_000
"""Highest input sample rate accepted: the top rate of studio converters. Anything higher is a
mislabelled file, not audio worth resampling sample by sample."""

MAX_SAMPLE_ABS = 1e10
"""Largest sample magnitude taken as audio; larger ones are corrupt data (a float file holding
1e30) and are treated like NaN: replaced by 0 and counted. Full scale is 1.0, but float input may
legitimately hold integer-scaled audio (int16 up to 32,768, int32 up to 2.1e9, as naive
conversions write it), which is loud, not broken: the model's normalised input ignores the
level. The bound sits above int32's full scale and far below where the window's normalisation
would overflow float32: 48,000 squares of 1e10 sum to 4.8e24, against float32's 3.4e38, where a
single sample of 1e20 overflows it and turns the whole window into the all-zero input."""

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "half", "int8")
"""Numeric precisions of the network (``model/precision.py``); here so the CLI parser loads no
torch. ``half`` is fp16 on GPUs and bf16 on CPUs, with the residual stream kept in fp32."""

# The name of the one stream of a run that mixes its input to mono; with ``--per-channel`` each
# channel is its own stream, named ``ch1``, ``ch2``, ... unless ``--stream-names`` says otherwise.
DEFAULT_STREAM_NAME = "main"

# The most streams one run analyses (``--per-channel``): enough for a 32-channel interface, and a
# bound on the per-stream state (resampler, speech detector, windows) one process holds.
MAX_STREAMS = 64

EXPORT_FORMATS: tuple[str, ...] = ("elan", "textgrid", "csv")
"""What ``streamser export`` writes: an ELAN ``.eaf``, a Praat ``.TextGrid`` or a CSV table; here
so the CLI parser imports no session code."""
# ``streamser analyze``: windows per model call when ``--batch`` is not given. On a CPU a larger
# batch buys little per window (benchmarks/README.md: 1.64 / 1.40 / 1.45 s per window at batch
# 1 / 4 / 16) and costs memory; a GPU needs many windows per call to be kept busy.
ANALYZE_BATCH_CPU = 8
ANALYZE_BATCH_GPU = 64

# ``streamser analyze``: at most this many decoding worker processes by default (one core is left
# to the model), and this many files in flight per worker (decoded, or waiting for the model):
# what bounds the memory an archive of any size takes.
ANALYZE_MAX_WORKERS = 8
ANALYZE_FILES_PER_WORKER = 2
