"""The model as streamser uses it: device and precision policy, batching, the half guard.

Device: ``compute="auto"`` picks CUDA, then Apple MPS, then CPU. Precision (``precision.py``):
``fp32``, ``half`` (the mixed path: matmul-heavy blocks in fp16 on GPUs and bf16 on CPUs, the
residual stream and the gates in fp32), ``int8`` (CPU) or ``auto``. Without a choice the device
decides, as before the choice existed: half on CUDA, fp32 elsewhere.

Half guard: nothing normalises the hidden state between the 48 gated layers, so even the mixed
path can overflow on some input. Every half batch is checked; its non-finite rows alone are
recomputed in fp32 on the fp32 master weights (the parameters, never rounded), counted in
``half_fallbacks`` and warned about once; the next batch runs half again. An MPS failure falls
back to the CPU in fp32 with a warning, and so does a failure of the first CUDA forward pass when
the device came from ``compute="auto"`` (``devices.falls_back_to_cpu``). On CUDA, fp16 GEMMs
accumulate in fp32 (``devices.exact_reductions``). The CPU's thread count adapts to load from other
processes (:class:`ThreadPolicy`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from streamser.constants import (
    BACKENDS,
    COMPUTE_CHOICES,
    DEFAULT_MODEL_ID,
    NUM_CLASSES,
    SAMPLE_RATE_HZ,
    WINDOW_SAMPLES,
)
from streamser.contracts import ComputeInfo, ModelInfo
from streamser.labels import DEMO_WARNING
from streamser.model.affect import Prediction
from streamser.model.devices import exact_reductions, falls_back_to_cpu, resolve_compute
from streamser.model.errors import ModelError
from streamser.model.exhubert import ExHubert
from streamser.model.loading import load_network
from streamser.model.onnx_backend import OnnxForward
from streamser.model.precision import (
    check_precision,
    choose_precision,
    cpu_caps,
    model_identity,
    precision_label,
    read_verdict,
    resolve_precision,
)
from streamser.model.preprocess import preprocess
from streamser.model.quantize import int8_layer_names, is_int8, quantize_int8
from streamser.model.threads import ThreadPolicy

__all__ = [
    "COMPUTE_CHOICES",
    "EmotionModel",
    "Prediction",
    "ThreadPolicy",
    "int8_layer_names",
    "load_model",
    "quantize_int8",
    "resolve_compute",
]

log = logging.getLogger("streamser")


class EmotionModel:
    """ExHuBERT ready to predict: preprocessing, device placement, precision, batching, guards.

    ``precision`` is "fp32", "half", "half-fp16", "half-bf16", "int8" or "auto" (see
    ``precision.py``); ``None`` lets the device decide (half on CUDA, else fp32; int8 where
    ``network`` is already quantised). The network's fp32 parameters are kept as they are: the
    half path adds half copies of the weights of the blocks it runs in half (their size:
    benchmarks/README.md, "Precision per CPU"), derived here with inference mode off, so no
    parameter or cached weight is ever an inference tensor.

    Thread-safe: one lock serialises forward passes, so the inference worker and a caller on
    another thread can share it.
    """

    def __init__(
        self,
        network: ExHubert,
        info: ModelInfo,
        device: torch.device,
        precision: str | None = None,
        *,
        cpu_fallback: bool = False,
    ) -> None:
        """``cpu_fallback``: ``device`` came from ``compute="auto"``, so a failure of the first
        CUDA forward pass moves the model to the CPU instead of raising."""
        self.info = info
        self.cpu_fallback = cpu_fallback
        self.forwards = 0
        """Forward passes that succeeded on the current device."""
        self.device = device
        self.dtype = torch.float32
        """The dtype of the network's inputs and master weights (fp32 on every path)."""
        self.half_fallbacks = 0
        """Windows whose half output was not finite and that were recomputed in fp32."""
        self._lock = threading.Lock()
        kind, self.half_dtype = resolve_precision(precision, device, is_int8(network))
        self.precision_kind = kind
        """One of "fp32", "half" or "int8"; :attr:`precision` adds the half dtype."""
        if kind == "int8" and not is_int8(network):
            network = quantize_int8(network, inplace=True)
        self.network = network.to(device=device, dtype=self.dtype)
        self.threads: ThreadPolicy | None = None
        """CPU only: adapts torch's thread count to contention; ``None`` keeps it fixed."""
        if device.type == "cpu" and torch.get_num_threads() > 1:
            self.threads = ThreadPolicy(torch.get_num_threads())
        self.onnx: OnnxForward | None = None
        """Set by :meth:`use_onnxruntime`: forward passes then run in onnxruntime."""
        self.network.set_half(self.half_dtype)
        self.optimise()

    @property
    def precision(self) -> str:
        """The path running now: "fp32", "half-bf16", "half-fp16" or "int8"."""
        return precision_label(self.precision_kind, self.half_dtype)

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

        if self.device.type != "cpu":
            raise ModelError("--backend onnxruntime runs on the CPU: add --compute cpu")
        if self.precision_kind == "int8":
            raise ModelError("--backend onnxruntime runs fp32 only: use --precision fp32")
        if self.precision_kind != "fp32":
            raise ModelError("--backend onnxruntime runs fp32 only: use --precision fp32")
        with self._lock:
            self.onnx = open_onnx(self.network, self.info.weights_path, torch.get_num_threads())
            self.network = build_on_meta(self.network.config)
            self.threads = None

    @property
    def demo(self) -> bool:
        return self.info.demo

    @property
    def dtype_name(self) -> str:
        """The compute dtype of the matmul-heavy blocks: "float32", "bfloat16", "float16" or
        "int8" (the residual stream and gates are fp32 on every path)."""
        if self.precision_kind == "int8":
            return "int8"
        return str(self.half_dtype or torch.float32).removeprefix("torch.")

    def compute_info(self) -> ComputeInfo:
        return ComputeInfo(
            device=self.device.type,
            dtype=self.dtype_name,
            backend=self.backend,
            fallbacks=self.half_fallbacks,
            precision=self.precision,
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
        with self._lock:
            policy = self.threads if self.device.type == "cpu" else None
            if policy is not None and torch.get_num_threads() != policy.threads:
                torch.set_num_threads(policy.threads)
            t0 = time.perf_counter()
            try:
                with torch.inference_mode():
                    out = self._forward(x)
            except RuntimeError as e:
                device = self.device.type
                if not falls_back_to_cpu(device, self.cpu_fallback, self.forwards):
                    raise
                log.warning("%s failed (%s); falling back to the CPU in fp32", device.upper(), e)
                self._fall_back_to_cpu()  # outside inference_mode: it moves parameters
                with torch.inference_mode():
                    out = self._forward(x)
            self.forwards += 1
            if policy is not None:
                policy.record(time.perf_counter() - t0, len(inputs))
        return out.float().cpu().numpy().reshape(-1, NUM_CLASSES)

    def apply_precision(self) -> None:
        """Set the network's half flags to this model's precision (flags only, no copy): two
        models may share one network, as the bench's precision rows do."""
        if self.precision_kind != "int8" and self.network.half_dtype != self.half_dtype:
            self.network.set_half(self.half_dtype)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        self.apply_precision()
        if self.half_dtype is None:
            return self.network(x)
        out = self._half_pass(x)
        bad = ~torch.isfinite(out).all(dim=-1)
        if not bool(bad.any()):
            return out
        rows = bad.nonzero().flatten()
        if self.half_fallbacks == 0:
            log.warning(
                "%s gave NaN/inf for %d of %d window(s) on %s: recomputed them in fp32 from the "
                "fp32 weights (said once; counted in half_fallbacks)",
                self.precision,
                len(rows),
                len(x),
                self.device.type,
            )
        self.half_fallbacks += len(rows)
        out[rows] = self._fp32_pass(x[rows]).to(out.dtype)
        return out

    def _half_pass(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def _fp32_pass(self, x: torch.Tensor) -> torch.Tensor:
        with self.network.fp32():
            return self.network(x)

    def _fall_back_to_cpu(self) -> None:
        self.network.set_half(None, release=True)
        self.network = self.network.to(torch.device("cpu"))
        self.device, self.precision_kind, self.half_dtype = torch.device("cpu"), "fp32", None
        self.forwards = 0
        if torch.get_num_threads() > 1:
            self.threads = ThreadPolicy(torch.get_num_threads())
        self.optimise()

    def optimise(self) -> None:
        """Apply the speed settings for the current device and precision; run after a move.

        The fast paths (SDPA, time-major feature encoder, cached derived weights) are on. On a
        GPU q/k/v become one projection per layer (one kernel instead of three); on a CPU that
        measured no faster in fp32 (benchmarks/README.md) and would copy 600 MB of weights at
        start, so the CPU keeps three. int8-quantised layers are never fused. On the half path
        the half weight copies are derived now. Inference mode is switched off for this (a
        caller may hold it): tensors made under it could not be used outside it.
        """
        if self.device.type == "cuda":
            exact_reductions()
        with torch.inference_mode(False), torch.no_grad():
            self.network.set_fast_paths(True)
            self.network.fuse_qkv(self.device.type != "cpu")
            self.network.prepare_half()

    def warm_up(self, batch_sizes: Sequence[int] = (1,)) -> float:
        """Run the fixed input shape once per batch size so the first real window is not slow."""
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        for b in batch_sizes:
            self.logits(rng.standard_normal((b, WINDOW_SAMPLES)).astype(np.float32))
        return time.perf_counter() - t0


def load_model(
    model: str = DEFAULT_MODEL_ID,
    compute: str = "auto",
    *,
    revision: str | None = None,
    verify: bool = True,
    expected_sha256: str | None = None,
    quantize: str | None = None,
    backend: str = "torch",
    precision: str | None = None,
) -> EmotionModel:
    """Load ExHuBERT (hub id, local directory or ``"demo"``) onto the chosen compute device.

    ``precision``: "fp32", "half" (also "half-fp16", "half-bf16"), "int8" (CPU only) or
    "auto" (``precision.choose_precision``, or this machine's stored verdict for this model);
    ``None``, the default, keeps what streamser did before the choice existed: half on CUDA,
    fp32 elsewhere. ``quantize="int8"`` is the older spelling of ``precision="int8"``.
    ``backend="onnxruntime"`` runs the network in onnxruntime (CPU, fp32; exported once).
    With int8 or onnxruntime, ``compute="auto"`` means the CPU.
    """
    if quantize not in (None, "int8"):
        raise ModelError(f"--quantize {quantize!r}: the only choice is int8")
    if quantize == "int8":
        if precision not in (None, "auto", "int8"):
            raise ModelError(f"--quantize int8 contradicts --precision {precision}: drop one")
        precision = "int8"
    if precision is not None:
        check_precision(precision)
    if backend not in BACKENDS:
        raise ModelError(f"unknown --backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    auto_cpu = compute == "auto" and (backend == "onnxruntime" or precision == "int8")
    device = torch.device("cpu") if auto_cpu else resolve_compute(compute)
    if precision == "int8" and device.type != "cpu":
        raise ModelError("--precision int8 runs on the CPU: add --compute cpu")
    if backend == "onnxruntime":
        if device.type != "cpu":
            raise ModelError("--backend onnxruntime runs on the CPU: add --compute cpu")
        if quantize is not None:
            raise ModelError("--backend onnxruntime runs fp32 only: use --precision fp32")
        if precision not in (None, "auto", "fp32"):
            raise ModelError("--backend onnxruntime runs fp32 only: use --precision fp32")
        precision = "fp32"
        from streamser.model.onnx_backend import import_onnxruntime

        import_onnxruntime()  # before loading 2.7 GB of weights
    network, info = load_network(model, revision, verify=verify, expected_sha256=expected_sha256)
    t0 = time.perf_counter()
    if precision == "auto":
        verdict = read_verdict(model_identity(info)) if device.type == "cpu" else None
        precision = choose_precision(
            device, cpu_caps(), verdict.precision if verdict is not None else None
        )
    if precision == "int8":
        network = quantize_int8(network, inplace=True)
        info = replace(info, name=f"{info.name} (int8)")
    em = EmotionModel(network, info, device, precision, cpu_fallback=compute == "auto")
    if backend == "onnxruntime":
        em.use_onnxruntime()
    em.info = replace(info, load_s=(info.load_s or 0.0) + time.perf_counter() - t0)
    if info.demo:
        log.warning("%s", DEMO_WARNING)
    return em
