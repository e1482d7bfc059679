"""Shared test helpers: system-tool gating and paths to bundled test data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).parent / "data"
ROOT_DIR = Path(__file__).parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

LSL_CONFIG = Path(__file__).parent / "lsl_api.cfg"
# Lab Streaming Layer discovers peers by multicast on every network by default. This config keeps
# discovery on this machine (queries to and answers from 127.0.0.1 only); liblsl reads it once, on
# the first import of pylsl, so it is set here, before any test can import pylsl, and every
# streamser process a test starts inherits it.
os.environ["LSLAPICFG"] = str(LSL_CONFIG)


def require_tools(*tools: str) -> None:
    """Skip when a system tool is missing on a developer machine; fail in CI, where it must run."""
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    reason = f"needs system tools not found on PATH: {', '.join(missing)}"
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: .ci/run must install them)")
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``requires_cuda`` tests run wherever torch sees a CUDA GPU and skip, saying so, elsewhere.

    torch is imported only for such a test, so other tests do not pay its import time.
    """
    if item.get_closest_marker("requires_cuda") is None:
        return
    import torch

    if not torch.cuda.is_available():
        pytest.skip("requires_cuda: torch sees no CUDA GPU on this machine")


@pytest.fixture
def tiny_model_dir() -> Path:
    """The tiny random-weight ExHuBERT checkpoint (parametrized weight-norm naming)."""
    return DATA_DIR / "tiny-parametrized"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """The event loop the ``anyio``-marked tests run on: asyncio, the one Textual runs on.

    anyio's plugin otherwise runs each such test on every backend installed, and trio comes
    with other test tools (selenium's WebSocket client): the dashboard tests then fail on trio.
    """
    return "asyncio"
