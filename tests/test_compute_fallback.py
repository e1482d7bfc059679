"""When a failing device hands the model over to the CPU, and the CUDA math flags.

No GPU is needed: the decision is a plain function, and the runtime's use of it is driven by a
model whose device claims to be CUDA while its forward pass is replaced by one that fails.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from streamser.contracts import ModelInfo
from streamser.model.demo import DEMO_CONFIG, random_network
from streamser.model.devices import (
    exact_reductions,
    falls_back_to_cpu,
    math_flags,
    strict_fp32,
)
from streamser.model.runtime import EmotionModel


@pytest.mark.parametrize(
    ("device", "auto", "done", "expected"),
    [
        ("mps", False, 0, True),
        ("mps", True, 5, True),
        ("cuda", True, 0, True),
        ("cuda", True, 1, False),  # it worked before: a real error, not a broken device
        ("cuda", False, 0, False),  # --compute cuda was asked for: say so, do not hide it
        ("cpu", True, 0, False),
    ],
)
def test_fallback_decision(device: str, auto: bool, done: int, expected: bool) -> None:
    assert falls_back_to_cpu(device, auto, done) is expected


def _model_failing_once(cpu_fallback: bool, forwards: int = 0) -> tuple[EmotionModel, list[int]]:
    info = ModelInfo.random_weights("fallback test", "random weights", 1, 0.0)
    em = EmotionModel(random_network(DEMO_CONFIG, seed=1), info, torch.device("cpu"), "fp32")
    em.threads = None
    calls: list[int] = []
    real = em._forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("CUDA error: no kernel image is available for execution")
        return real(x)

    vars(em)["_forward"] = forward  # this instance only: the class keeps its method
    em.device = torch.device("cuda")  # what the failing device claims to be
    em.forwards = forwards
    em.cpu_fallback = cpu_fallback
    return em, calls


def test_first_cuda_failure_under_auto_moves_to_the_cpu(caplog: pytest.LogCaptureFixture) -> None:
    em, calls = _model_failing_once(cpu_fallback=True)
    x = np.zeros((2, 48_000), np.float32)
    with caplog.at_level(logging.WARNING, logger="streamser"):
        out = em.logits(x)
    assert out.shape == (2, 6) and np.isfinite(out).all()
    assert calls == [0, 1]
    assert em.device.type == "cpu" and em.precision == "fp32"
    assert em.forwards == 1
    assert "CUDA failed" in caplog.text and "falling back to the CPU" in caplog.text


@pytest.mark.parametrize(("auto", "forwards"), [(False, 0), (True, 3)])
def test_cuda_failure_is_raised_when_not_auto_or_not_first(auto: bool, forwards: int) -> None:
    em, _ = _model_failing_once(cpu_fallback=auto, forwards=forwards)
    with pytest.raises(RuntimeError, match="no kernel image"):
        em.logits(np.zeros((1, 48_000), np.float32))
    assert em.device.type == "cuda"


NEW_API = hasattr(torch.backends, "fp32_precision") and hasattr(torch.backends.cudnn, "conv")
"""torch 2.9 and later set TF32 per backend; mixing that with the legacy flags is refused."""


@pytest.fixture
def tf32_allowed() -> Iterator[None]:
    """TF32 on for matmuls and convolutions during the test, the previous state after it."""
    matmul = torch.backends.cuda.matmul
    if NEW_API:
        conv = torch.backends.cudnn.conv
        saved = (matmul.fp32_precision, conv.fp32_precision)
        matmul.fp32_precision = conv.fp32_precision = "tf32"
        yield
        matmul.fp32_precision, conv.fp32_precision = saved
    else:
        legacy = (matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        yield
        matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = legacy


@pytest.mark.usefixtures("tf32_allowed")
def test_strict_fp32_switches_tf32_off_and_restores() -> None:
    assert math_flags()["tf32_matmul"] is True
    with strict_fp32():
        inside = math_flags()
    after = math_flags()
    assert inside["tf32_matmul"] is False and inside["tf32_cudnn_conv"] is False
    assert after["tf32_matmul"] is True and after["tf32_cudnn_conv"] is True


def test_exact_reductions_forbid_half_precision_reductions() -> None:
    flags = exact_reductions()
    assert flags["allow_fp16_reduced_precision_reduction"] is False
    assert torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction is False
    if "allow_bf16_reduced_precision_reduction" in flags:
        assert flags["allow_bf16_reduced_precision_reduction"] is False
