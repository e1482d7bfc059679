"""ExHuBERT for transformers users, without remote code.

Importing this package imports transformers (``import streamser`` alone never does) and registers
the ``exhubert`` model type with ``AutoConfig``, ``AutoModelForAudioClassification`` and
``AutoFeatureExtractor``, so checkpoints written by ``save_pretrained`` load through the Auto
classes and ``transformers.pipeline``. The published checkpoint (``model_type: hubert``) loads
with :class:`ExHubertForAudioClassification` or :func:`pipeline`.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification

from streamser.constants import HF_MODEL_TYPE
from streamser.hf.config import ExHubertConfig
from streamser.hf.feature_extractor import ExHubertFeatureExtractor
from streamser.hf.modeling import ExHubertForAudioClassification
from streamser.hf.pipelines import pipeline

__all__ = [
    "ExHubertConfig",
    "ExHubertFeatureExtractor",
    "ExHubertForAudioClassification",
    "pipeline",
]

AutoConfig.register(HF_MODEL_TYPE, ExHubertConfig, exist_ok=True)
AutoModelForAudioClassification.register(
    ExHubertConfig, ExHubertForAudioClassification, exist_ok=True
)
AutoFeatureExtractor.register(ExHubertConfig, ExHubertFeatureExtractor, exist_ok=True)
