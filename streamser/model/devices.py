"""Which device runs the model, when a failing device hands over to the CPU, and the CUDA
math flags that decide what "fp32" and "fp16" mean there.

* :func:`resolve_compute` maps ``--compute`` onto an available device.
* :func:`falls_back_to_cpu` decides whether a forward pass that raised on a device is retried
  on the CPU: on MPS always (its kernels are incomplete); on CUDA only under
  ``compute="auto"`` (the user asked for no device in particular) and only while no forward
  pass has succeeded there yet (a driver, architecture or memory problem shows on the first
  one; a failure after that is a real error, not a device that does not work).
* :func:`exact_reductions` makes cuBLAS accumulate fp16 (and bf16) GEMMs in fp32 throughout:
  by default it may reduce partial sums in half precision, which the half guard cannot see.
* :func:`strict_fp32` switches TF32 off for matmuls and cuDNN (convolutions) inside a block,
  so an fp32 reference on an Ampere-or-later GPU really is fp32, and restores the flags after.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch

from streamser.constants import COMPUTE_CHOICES
from streamser.model.errors import ModelError

Compute = Literal["auto", "cpu", "cuda", "mps"]


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


def falls_back_to_cpu(device_type: str, auto: bool, forwards_done: int) -> bool:
    """Whether a forward pass that raised a ``RuntimeError`` on ``device_type`` is retried on
    the CPU in fp32 (see the module docstring); ``auto``: the device came from
    ``compute="auto"``; ``forwards_done``: forward passes that succeeded on it so far."""
    if device_type == "mps":
        return True
    return device_type == "cuda" and auto and forwards_done == 0


def exact_reductions() -> dict[str, bool]:
    """Forbid reduced-precision reductions in fp16 (and, where torch has the flag, bf16)
    GEMMs for the whole process; returns the flags as set. Harmless without CUDA."""
    matmul = torch.backends.cuda.matmul
    matmul.allow_fp16_reduced_precision_reduction = False
    if hasattr(matmul, "allow_bf16_reduced_precision_reduction"):
        matmul.allow_bf16_reduced_precision_reduction = False
    return {k: v for k, v in math_flags().items() if "reduced" in k}


def math_flags() -> dict[str, Any]:
    """The process's CUDA math flags as they are now (readable without a GPU too).

    ``tf32_matmul`` and ``tf32_cudnn_conv`` say whether fp32 matmuls and convolutions may run
    in TF32; where torch has the per-backend ``fp32_precision`` settings (2.9 and later) their
    raw values are added, else the legacy ``allow_tf32`` flags.
    """
    backends: Any = torch.backends  # the per-backend settings are missing from torch's stubs
    matmul = backends.cuda.matmul
    flags: dict[str, Any] = {}
    if _per_backend_api():
        generic, cudnn, conv = backends.fp32_precision, backends.cudnn, backends.cudnn.conv
        flags["fp32_precision"] = {
            "generic": generic,
            "cuda.matmul": matmul.fp32_precision,
            "cudnn": cudnn.fp32_precision,
            "cudnn.conv": conv.fp32_precision,
        }
        flags["tf32_matmul"] = _tf32(matmul.fp32_precision, generic)
        flags["tf32_cudnn_conv"] = _tf32(
            conv.fp32_precision, _resolve(cudnn.fp32_precision, generic)
        )
    else:
        flags["tf32_matmul"] = bool(matmul.allow_tf32)
        flags["tf32_cudnn_conv"] = bool(backends.cudnn.allow_tf32)
    flags["allow_fp16_reduced_precision_reduction"] = bool(
        matmul.allow_fp16_reduced_precision_reduction
    )
    if hasattr(matmul, "allow_bf16_reduced_precision_reduction"):
        flags["allow_bf16_reduced_precision_reduction"] = bool(
            matmul.allow_bf16_reduced_precision_reduction
        )
    return flags


def _per_backend_api() -> bool:
    """torch 2.9 and later: ``fp32_precision`` per backend. Mixing it with the legacy
    ``allow_tf32`` flags makes torch refuse to read either, so only one is ever used."""
    return hasattr(torch.backends, "fp32_precision") and hasattr(torch.backends.cudnn, "conv")


def _resolve(value: str, parent: str) -> str:
    return parent if value == "none" else value


def _tf32(value: str, parent: str) -> bool:
    return _resolve(value, parent) == "tf32"


@contextmanager
def strict_fp32() -> Iterator[None]:
    """TF32 off for matmuls and cuDNN convolutions inside the block; the previous settings
    after it."""
    backends: Any = torch.backends
    if _per_backend_api():
        matmul, conv = backends.cuda.matmul, backends.cudnn.conv
        saved = (matmul.fp32_precision, conv.fp32_precision)
        matmul.fp32_precision = conv.fp32_precision = "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision, conv.fp32_precision = saved
        return
    legacy = (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32)
    backends.cuda.matmul.allow_tf32 = backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32 = legacy
