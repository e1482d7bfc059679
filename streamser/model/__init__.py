"""ExHuBERT inside streamser: importing this never imports textual, sounddevice or UI code."""

from __future__ import annotations

from streamser.model.errors import ModelError
from streamser.model.exhubert import ExHubert, ExHubertConfig
from streamser.model.loading import ModelInfo
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
