"""The model as streamser uses it: device and dtype policy, batching, the fp16 NaN guard.

Policy: ``compute="auto"`` picks CUDA, then Apple MPS, then CPU. CUDA and MPS run fp16; nothing
normalises the hidden state after the 48 gate layers, so fp16 can overflow: every fp16 output is
checked, and on NaN/inf the network is converted to fp32 for good and the window recomputed (a
warning says so once). An MPS failure falls back to the CPU with a warning. The CPU runs fp32
(bf16 is far slower on CPUs without bf16 units), with a thread count that adapts to load from
other processes (:class:`ThreadPolicy`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from streamser.constants import BACKENDS, NUM_CLASSES, SAMPLE_RATE_HZ, WINDOW_SAMPLES
from streamser.contracts import ComputeInfo, ModelInfo
from streamser.labels import DEMO_WARNING
from streamser.model.affect import CLASS_NAMES, arousal_of, softmax, valence_of
from streamser.model.errors import ModelError
from streamser.model.exhubert import ExHubert
from streamser.model.loading import load_network
from streamser.model.onnx_backend import OnnxForward
from streamser.model.preprocess import preprocess

log = logging.getLogger("streamser")

Compute = Literal["auto", "cpu", "cuda", "mps"]
COMPUTE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class Prediction:
    """One window's output: raw logits, softmax probabilities and the derived trajectories."""

    logits: np.ndarray
    probs: np.ndarray
    arousal: float
    valence: float

    @classmethod
    def from_logits(cls, logits: np.ndarray) -> Prediction:
        logits = np.asarray(logits, dtype=np.float32)
        probs = softmax(logits)
        return cls(logits, probs, arousal_of(probs), valence_of(probs))

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES

    @property
    def top_class(self) -> str:
        return CLASS_NAMES[int(np.argmax(self.probs))]


def resolve_compute(compute: str) -> torch.device:
    """Map the ``--compute`` choice onto an available device, or say why it is unavailable."""
    if compute not in COMPUTE_CHOICES:
        raise ModelError(
            f"unknown --compute {compute!r}: choose one of {', '.join(COMPUTE_CHOICES)}"
        )
    if compute == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if compute == "cuda" and not torch.cuda.is_available():
        raise ModelError("--compute cuda: no CUDA GPU is available to torch; use --compute cpu")
    if compute == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ModelError("--compute mps: Apple MPS is not available; use --compute cpu")
    return torch.device(compute)


class ThreadPolicy:
    """How many CPU threads the next forward pass gets, from how fast the last ones ran.

    On a 2-core CPU two threads run a window 1.7x faster than one while the machine is
    otherwise idle, but 2-3x slower than one while another process keeps a core busy: a window
    runs about a thousand parallel regions, and each waits at its barrier for the thread the OS
    has descheduled (measured in benchmarks/README.md). So: start with every core; after
    ``patience`` windows in a row that ran ``slow_factor`` times slower per window than the
    best seen at that thread count, give one core away; every ``probe_every`` windows with a
    core given away, try one more thread again. Under lasting contention a probe costs one slow
    window; on an idle machine the policy never leaves the full count. Forward passes shorter
    than ``min_forward_s`` (the tiny demo model) are too short to judge and change nothing.
    """

    def __init__(
        self,
        max_threads: int,
        *,
        slow_factor: float = 1.5,
        patience: int = 2,
        probe_every: int = 16,
        min_forward_s: float = 0.05,
    ) -> None:
        self.max_threads = max(1, max_threads)
        self.threads = self.max_threads
        self.slow_factor = slow_factor
        self.patience = patience
        self.probe_every = probe_every
        self.min_forward_s = min_forward_s
        self.best_s_per_window: dict[int, float] = {}
        self.changes = 0
        self._slow = 0
        self._since_change = 0

    def record(self, forward_s: float, windows: int) -> int:
        """Account one forward pass run with ``self.threads``; returns the count for the next."""
        if forward_s < self.min_forward_s or windows < 1:
            return self.threads
        n, t = self.threads, forward_s / windows
        best = self.best_s_per_window.get(n)
        self.best_s_per_window[n] = t if best is None else min(t, best)
        self._since_change += 1
        self._slow = self._slow + 1 if best is not None and t > self.slow_factor * best else 0
        if n > 1 and (self._slow >= self.patience or (self._slow and self._since_change == 1)):
            self._change(n - 1)  # a probe that ran slow goes back at once
        elif n < self.max_threads and self._since_change >= self.probe_every:
            self._change(n + 1)
        return self.threads

    def _change(self, threads: int) -> None:
        self.threads = threads
        self.changes += 1
        self._slow = 0
        self._since_change = 0


class EmotionModel:
    """ExHuBERT ready to predict: preprocessing, device placement, batching and guards.

    Thread-safe: one lock serialises forward passes, so the inference worker and a caller on
    another thread can share it.
    """

    def __init__(self, network: ExHubert, info: ModelInfo, device: torch.device) -> None:
        self.info = info
        self.device = device
        self.dtype = torch.float16 if device.type in ("cuda", "mps") else torch.float32
        self.fp16_fallbacks = 0
        self._lock = threading.Lock()
        self.network = network.to(device=device, dtype=self.dtype)
        self.threads: ThreadPolicy | None = None
        """CPU only: adapts torch's thread count to contention; ``None`` keeps it fixed."""
        if device.type == "cpu" and torch.get_num_threads() > 1:
            self.threads = ThreadPolicy(torch.get_num_threads())
        self.onnx: OnnxForward | None = None
        """Set by :meth:`use_onnxruntime`: forward passes then run in onnxruntime."""
        self.optimise()

    @property
    def backend(self) -> str:
        return "torch" if self.onnx is None else "onnxruntime"

    def use_onnxruntime(self) -> None:
        """Run forward passes in onnxruntime from now on (CPU, fp32; see onnx_backend.py).

        The session holds its own copy of the weights, so the torch network is then replaced
        by its weightless (meta-device) structure: ``network.config`` still works, and the
        2.7 GB of torch weights (read in full by a first-start export) are released.
        """
        from streamser.model.exhubert import build_on_meta
        from streamser.model.onnx_backend import open_onnx

        if self.device.type != "cpu" or self.dtype != torch.float32:
            raise ModelError("--backend onnxruntime runs on the CPU: add --compute cpu")
        if any(type(m).__module__.startswith("torch.ao") for m in self.network.modules()):
            raise ModelError("--backend onnxruntime runs fp32 only: drop --quantize int8")
        with self._lock:
            self.onnx = open_onnx(self.network, self.info.weights_path, torch.get_num_threads())
            self.network = build_on_meta(self.network.config)
            self.threads = None

    @property
    def demo(self) -> bool:
        return self.info.demo

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def compute_info(self) -> ComputeInfo:
        return ComputeInfo(
            device=self.device.type,
            dtype=self.dtype_name,
            backend=self.backend,
            fallbacks=self.fp16_fallbacks,
        )

    def describe(self) -> str:
        suffix = "" if self.onnx is None else "/onnxruntime"
        return f"{self.device.type}/{self.dtype_name}{suffix}"

    # -- prediction ---------------------------------------------------------------------

    def predict(self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE_HZ) -> Prediction:
        """One waveform (any length, mono or (frames, channels), any rate) -> one Prediction."""
        return self.predict_batch([waveform], sample_rate=sample_rate)[0]

    def predict_batch(
        self, waveforms: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE_HZ
    ) -> list[Prediction]:
        if len(waveforms) == 0:
            return []
        inputs = np.stack([preprocess(w, sample_rate) for w in waveforms])
        return [Prediction.from_logits(lg) for lg in self.logits(inputs)]

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        """Preprocessed (batch, 48000) float32 inputs -> (batch, 6) float32 logits."""
        if inputs.ndim != 2 or inputs.shape[1] != WINDOW_SAMPLES:
            raise ValueError(f"expected (batch, {WINDOW_SAMPLES}) inputs, got {inputs.shape}")
        if self.onnx is not None:
            with self._lock:
                return self.onnx(inputs)
        x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
        with self._lock, torch.inference_mode():
            policy = self.threads if self.device.type == "cpu" else None
            if policy is not None and torch.get_num_threads() != policy.threads:
                torch.set_num_threads(policy.threads)
            t0 = time.perf_counter()
            out = self._forward(x)
            if policy is not None:
                policy.record(time.perf_counter() - t0, len(inputs))
        return out.float().cpu().numpy().reshape(-1, NUM_CLASSES)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            out = self.network(x.to(self.device, self.dtype))
        except RuntimeError as e:
            if self.device.type != "mps":
                raise
            log.warning("MPS failed (%s); falling back to the CPU in fp32", e)
            self._move(torch.device("cpu"), torch.float32)
            return self.network(x)
        if self.dtype == torch.float16 and not bool(torch.isfinite(out).all()):
            self.fp16_fallbacks += 1
            if self.fp16_fallbacks == 1:
                log.warning("fp16 produced NaN/inf on %s: switching to fp32", self.device.type)
            self._move(self.device, torch.float32)
            out = self.network(x.to(self.device, self.dtype))
        return out

    def _move(self, device: torch.device, dtype: torch.dtype) -> None:
        self.network = self.network.to(device=device, dtype=dtype)
        self.device, self.dtype = device, dtype
        self.optimise()

    def optimise(self) -> None:
        """Apply the speed settings for the current device and dtype; run after every move.

        The fast paths (SDPA, time-major feature encoder, cached derived weights) are on. On a
        GPU q/k/v become one projection per layer (one kernel instead of three); on a CPU that
        measured no faster (benchmarks/README.md) and would copy 600 MB of weights at start,
        so the CPU keeps three. int8-quantised layers are never fused.
        """
        self.network.set_fast_paths(True)
        self.network.fuse_qkv(self.device.type != "cpu")

    def warm_up(self, batch_sizes: Sequence[int] = (1,)) -> float:
        """Run the fixed input shape once per batch size so the first real window is not slow."""
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        for b in batch_sizes:
            self.logits(rng.standard_normal((b, WINDOW_SAMPLES)).astype(np.float32))
        return time.perf_counter() - t0


def int8_layer_names(network: ExHubert) -> list[str]:
    """The Linear layers ``--quantize int8`` converts: the attention projections and the
    feed-forward layers of every encoder layer (92 % of the network's linear FLOPs).

    Kept in fp32, measured on the full-size architecture (benchmarks/README.md): the 48 gate
    layers, because each maps the whole residual stream (nothing normalises it first), so
    per-batch activation rounding there lands in the hidden state unscaled (quantising only
    the gates moved probabilities by 0.013, more than all 288 other layers together); and the
    feature projection and classification head, which cost 0.1 % of the FLOPs.
    """
    from torch import nn

    from streamser.model.exhubert import Attention, FeedForward

    names = []
    for name, module in network.named_modules():
        if isinstance(module, (Attention, FeedForward)):
            names += [
                f"{name}.{child_name}"
                for child_name, child in module.named_children()
                if type(child) is nn.Linear
            ]
    return names


def quantize_int8(network: ExHubert, inplace: bool = False) -> ExHubert:
    """Dynamic int8 quantisation (weights int8 per output channel, activations per batch) of
    the layers :func:`int8_layer_names` picks.

    Per-channel weight scales and fp32 gates bring the largest probability change on the
    full-size random model from 0.026-0.039 (every layer, one scale per tensor) to 0.002-0.003,
    for ~6 % more time per window (0.94 s against 0.89 s on 2 cores).

    ``inplace=True`` converts ``network`` itself instead of a deep copy of it, which spares a
    transient second fp32 copy (2.7 GB for the published model) when the original is not
    needed afterwards.
    """
    import warnings

    with warnings.catch_warnings():
        # torch announces a move of these APIs; the behaviour is what we rely on.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        spec = dict.fromkeys(int8_layer_names(network), per_channel_dynamic_qconfig)
        return quantize_dynamic(network, spec, dtype=torch.qint8, inplace=inplace)


def load_model(
    model: str = "amiriparian/ExHuBERT",
    compute: str = "auto",
    *,
    revision: str | None = None,
    verify: bool = True,
    expected_sha256: str | None = None,
    quantize: str | None = None,
    backend: str = "torch",
) -> EmotionModel:
    """Load ExHuBERT (hub id, local directory or ``"demo"``) onto the chosen compute device.

    ``quantize="int8"`` applies dynamic int8 quantisation to the linear layers (CPU only).
    ``backend="onnxruntime"`` runs the network in onnxruntime (CPU, fp32; exported once);
    with it, ``compute="auto"`` means the CPU.
    """
    auto_cpu = backend == "onnxruntime" and compute == "auto"
    device = torch.device("cpu") if auto_cpu else resolve_compute(compute)
    if quantize not in (None, "int8"):
        raise ModelError(f"--quantize {quantize!r}: the only choice is int8")
    if quantize == "int8" and device.type != "cpu":
        raise ModelError("--quantize int8 runs on the CPU: add --compute cpu")
    if backend not in BACKENDS:
        raise ModelError(f"unknown --backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        if device.type != "cpu":
            raise ModelError("--backend onnxruntime runs on the CPU: add --compute cpu")
        if quantize is not None:
            raise ModelError("--backend onnxruntime runs fp32 only: drop --quantize int8")
        from streamser.model.onnx_backend import import_onnxruntime

        import_onnxruntime()  # before loading 2.7 GB of weights
    network, info = load_network(model, revision, verify=verify, expected_sha256=expected_sha256)
    t0 = time.perf_counter()
    if quantize == "int8":
        network = quantize_int8(network, inplace=True)
        info = replace(info, name=f"{info.name} (int8)")
    em = EmotionModel(network, info, device)
    if backend == "onnxruntime":
        em.use_onnxruntime()
    em.info = replace(info, load_s=(info.load_s or 0.0) + time.perf_counter() - t0)
    if info.demo:
        log.warning("%s", DEMO_WARNING)
    return em
