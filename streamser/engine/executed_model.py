"""The model as the stages see it when one executor owns it.

Stages call ``logits`` synchronously, as they would on the model itself; the windows go to the
executor, which runs them on its own thread, batched with whatever other streams (or clients)
submitted meanwhile, and each stage gets back its own rows. So the stages stay plain synchronous
objects while exactly one thread touches the network.
"""

from __future__ import annotations

import numpy as np

from streamser.constants import NUM_CLASSES
from streamser.contracts import AnalysisModel, ComputeInfo, ModelInfo
from streamser.engine.executor import Executor


class ExecutedModel:
    """An :class:`AnalysisModel` whose forward passes run on ``executor``'s thread."""

    def __init__(self, executor: Executor, model: AnalysisModel) -> None:
        self.executor = executor
        self.model = model
        self.info: ModelInfo = model.info

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        futures = self.executor.submit_many(np.ascontiguousarray(inputs, dtype=np.float32))
        return np.stack([f.result() for f in futures]) if futures else np.zeros((0, NUM_CLASSES))

    def compute_info(self) -> ComputeInfo:
        return self.model.compute_info()
