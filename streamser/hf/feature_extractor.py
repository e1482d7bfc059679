"""ExHuBERT's input preprocessing as a transformers feature extractor.

The model card prepares audio with ``Wav2Vec2FeatureExtractor`` (16 kHz, ``do_normalize``, no
attention mask, padding value 0) called with ``padding="max_length", max_length=48000`` and
truncation; streamser's ``model/preprocess.py`` does the same. transformers' audio-classification
pipeline, though, calls its feature extractor with no padding arguments, which would normalise and
run each clip at its own length. :class:`ExHubertFeatureExtractor` makes the card's arguments the
defaults, so the pipeline's numbers are streamser's:

* input: mono float audio at 16 kHz (the pipeline itself decodes files with ffmpeg, and resamples
  ``{"raw": ..., "sampling_rate": ...}`` input with torchaudio);
* every clip is right-padded with zeros, or cut to its first 48,000 samples (3 s, the length
  ExHuBERT was fine-tuned on; a warning says so once when audio is cut);
* then normalised over the whole padded vector, ``(x - mean) / sqrt(var + 1e-7)``, so a short
  clip's zeros take part in the mean and variance, exactly as the reference does.

The network itself accepts any length from 400 samples on; passing ``padding=False`` runs a clip
at its own length, which is not how ExHuBERT was trained or evaluated. For audio longer than 3 s,
classify it window by window (``streamser analyze`` does, with a hop).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from transformers import BatchFeature, Wav2Vec2FeatureExtractor

from streamser.constants import SAMPLE_RATE_HZ, WINDOW_SAMPLES

log = logging.getLogger("streamser")


class ExHubertFeatureExtractor(Wav2Vec2FeatureExtractor):
    """``Wav2Vec2FeatureExtractor`` with the model card's settings and padding by default."""

    model_input_names = ["input_values"]  # noqa: RUF012 (transformers' class attribute)

    def __init__(self, window_samples: int = WINDOW_SAMPLES, **kwargs: Any) -> None:
        kwargs.setdefault("feature_size", 1)
        kwargs.setdefault("sampling_rate", SAMPLE_RATE_HZ)
        kwargs.setdefault("padding_value", 0.0)
        kwargs.setdefault("return_attention_mask", False)
        kwargs.setdefault("do_normalize", True)
        super().__init__(**kwargs)
        self.window_samples = window_samples
        self._warned_cut = False

    def __call__(  # type: ignore[override]
        self,
        raw_speech: Any,
        padding: bool | str = "max_length",
        max_length: int | None = None,
        truncation: bool = True,
        **kwargs: Any,
    ) -> BatchFeature:
        """Pad or cut to ``window_samples`` (48,000) and normalise, unless told otherwise."""
        length = self.window_samples if max_length is None else max_length
        if truncation and not self._warned_cut:
            longest = _longest(raw_speech)
            if longest > length:
                self._warned_cut = True
                log.warning(
                    "audio of %.2f s cut to its first %.2f s, the window ExHuBERT was trained on "
                    "(said once): classify longer audio window by window",
                    longest / self.sampling_rate,
                    length / self.sampling_rate,
                )
        return super().__call__(
            raw_speech, padding=padding, max_length=length, truncation=truncation, **kwargs
        )

    def to_dict(self) -> dict[str, Any]:
        """The settings ``save_pretrained`` writes, without the warn-once state."""
        out = super().to_dict()
        out.pop("_warned_cut", None)
        return out


def _longest(raw_speech: Any) -> int:
    """Samples in the longest clip of one clip or a batch (a list, or a 2-D array)."""
    if isinstance(raw_speech, np.ndarray):
        return int(raw_speech.shape[-1]) if raw_speech.ndim else 0
    if isinstance(raw_speech, (list, tuple)) and raw_speech:
        if isinstance(raw_speech[0], (np.ndarray, list, tuple)):
            return max(len(x) for x in raw_speech)
        return len(raw_speech)
    return 0
