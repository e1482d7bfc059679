"""ExHuBERT inside streamser: importing this never imports textual, sounddevice or UI code.

The public names load lazily, so commands that only need ``ModelError`` (or nothing of the
model) do not pay torch's import time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamser.model.errors import ModelError

if TYPE_CHECKING:
    from streamser.contracts import ModelInfo
    from streamser.model.exhubert import ExHubert, ExHubertConfig
    from streamser.model.runtime import EmotionModel, Prediction, load_model

__all__ = [
    "EmotionModel",
    "ExHubert",
    "ExHubertConfig",
    "ModelError",
    "ModelInfo",
    "Prediction",
    "load_model",
]

_LAZY = {
    "EmotionModel": "streamser.model.runtime",
    "Prediction": "streamser.model.runtime",
    "load_model": "streamser.model.runtime",
    "ExHubert": "streamser.model.exhubert",
    "ExHubertConfig": "streamser.model.exhubert",
    "ModelInfo": "streamser.contracts",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'streamser.model' has no attribute {name!r}")
