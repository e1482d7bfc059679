"""Stand-ins for the model that implement the engine's model protocol (``AnalysisModel``)."""

from __future__ import annotations

import threading

import numpy as np

from streamser.constants import NUM_CLASSES, WINDOW_SAMPLES
from streamser.contracts import AnalysisModel, ComputeInfo, ModelInfo


class DelegatingModel:
    """A real model behind a seam: subclasses change what :meth:`logits` does."""

    def __init__(self, inner: AnalysisModel) -> None:
        self.inner = inner
        self.info: ModelInfo = inner.info

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        return self.inner.logits(inputs)

    def compute_info(self) -> ComputeInfo:
        return self.inner.compute_info()


class NoModel:
    """Windows are cut without running a model; computing one is a test error."""

    info = ModelInfo.random_weights("no model", "not applicable", 0)

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        raise AssertionError("no model call expected")

    def compute_info(self) -> ComputeInfo:
        return ComputeInfo(device="cpu", dtype="float32", backend="none", fallbacks=0)


class EchoModel:
    """Logits that say which window was run, in which call, at which row.

    Row ``i`` of call ``c`` returns ``[inputs[i, 0], c, i, len(inputs), 0, 0]``: put an id in a
    window's first sample and each result can be traced back to its window and batch. With
    ``gate`` set, every call first signals ``entered`` and then waits for ``gate``, so a test
    holds the model busy while other threads submit (instrumented events, no sleeps). A call
    containing a window whose id is in ``fail_ids`` raises ``ValueError``.
    """

    info = ModelInfo.random_weights("echo stand-in", "not applicable", 0)

    def __init__(
        self,
        gate: threading.Event | None = None,
        fail_ids: frozenset[int] = frozenset(),
        device: str = "cpu",
    ) -> None:
        self.gate = gate
        self.fail_ids = fail_ids
        self.device = device
        self.entered = threading.Event()
        self.batch_sizes: list[int] = []
        self.lock = threading.Lock()

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        assert inputs.dtype == np.float32 and inputs.shape[1:] == (WINDOW_SAMPLES,)
        with self.lock:
            call = len(self.batch_sizes)
            self.batch_sizes.append(len(inputs))
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10.0), "test gate never opened"
        ids = inputs[:, 0]
        if any(int(i) in self.fail_ids for i in ids):
            raise ValueError(f"echo stand-in: refusing a window in call {call}")
        out = np.zeros((len(inputs), NUM_CLASSES), dtype=np.float32)
        out[:, 0], out[:, 1], out[:, 2], out[:, 3] = ids, call, np.arange(len(inputs)), len(inputs)
        return out

    def compute_info(self) -> ComputeInfo:
        return ComputeInfo(device=self.device, dtype="float32", backend="none", fallbacks=0)


def window_with_id(window_id: int) -> np.ndarray:
    """A preprocessed-shaped window whose first sample carries ``window_id`` (see EchoModel)."""
    w = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    w[0] = window_id
    return w
