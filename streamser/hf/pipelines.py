"""``streamser.hf.pipeline``: transformers' own audio-classification pipeline around ExHuBERT.

What it returns is a plain ``transformers.AudioClassificationPipeline``: its model is
:class:`ExHubertForAudioClassification` (loaded by streamser's loader, with the strict key
check), its feature extractor :class:`ExHubertFeatureExtractor` (the model card's preprocessing:
16 kHz, padded or cut to 48,000 samples, normalised over the padded vector), its labels
streamser's class names. Everything else, inputs, batching, ``top_k``, devices, is transformers'.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import AudioClassificationPipeline
from transformers import pipeline as transformers_pipeline

from streamser.constants import DEFAULT_MODEL_ID
from streamser.hf.feature_extractor import ExHubertFeatureExtractor
from streamser.hf.modeling import ExHubertForAudioClassification


def pipeline(
    model: str | os.PathLike[str] | ExHubertForAudioClassification = DEFAULT_MODEL_ID,
    *,
    revision: str | None = None,
    verify: bool = True,
    **kwargs: Any,
) -> AudioClassificationPipeline:
    """An audio-classification pipeline of ExHuBERT from a hub id (the published model at its
    card's revision by default), a local directory (the published layout or what
    ``save_pretrained`` wrote), ``"demo"``, or a model already loaded.

    Input: a 16 kHz mono float array (or a list of them), a file name or bytes (decoded by
    transformers with ffmpeg, resampled to 16 kHz), or ``{"raw": array, "sampling_rate": hz}``
    (transformers resamples other rates with torchaudio). Each clip is padded or cut to 3 s (see
    ``feature_extractor``). ``top_k=None`` returns all six classes; ``function_to_apply="none"``
    the logits. Other keyword arguments (``device``, ``batch_size``, ``top_k``) go to
    ``transformers.pipeline``.
    """
    if isinstance(model, ExHubertForAudioClassification):
        network = model
    else:
        network = ExHubertForAudioClassification.from_pretrained(
            model, revision=revision, verify=verify
        )
    built = transformers_pipeline(
        "audio-classification",
        model=network,
        feature_extractor=ExHubertFeatureExtractor(),
        **kwargs,
    )
    assert isinstance(built, AudioClassificationPipeline)
    return built
