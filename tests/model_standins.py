"""Stand-ins for the model that implement the engine's model protocol (``AnalysisModel``)."""

from __future__ import annotations

import numpy as np

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
