"""ExHuBERT as a transformers audio-classification model, on streamser's own network and loader.

:class:`ExHubertForAudioClassification` holds the modules of ``streamser.model.exhubert.ExHubert``
(``hubert``, ``projector``, ``classifier``) under their published names, so its state dict is the
published layout, key for key, and ``save_pretrained`` writes a checkpoint that streamser's loader
and this class read back. It computes nothing of its own: the backbone is the network's and the
head is ``exhubert.classify``.

``from_pretrained`` does not use transformers' weight loading: it calls streamser's
(``model.loading.load_network``), which fetches only ``config.json`` and the weights from the hub
(never the published remote code), verifies the sha256 of the published file, accepts both
weight-norm namings and refuses any checkpoint whose keys or shapes differ from the architecture
in its ``config.json`` (missing, unexpected or misshapen keys, named in one line), instead of
initialising what is missing at random. It reads the published directory (``model_type: hubert``)
and what ``save_pretrained`` wrote (``model_type: exhubert``) alike.

Inputs: ``input_values`` of shape (batch, samples) at 16 kHz, normalised as the feature extractor
does (``streamser.hf.feature_extractor``); the network accepts any length from
``ExHubert.min_input_samples()`` (400 samples) on, and ExHuBERT was trained on 3 s (48,000).
No attention mask: the reference runs without one and the mean is over every frame.
"""

from __future__ import annotations

import logging
import os
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from streamser.contracts import ModelInfo
from streamser.hf.config import ExHubertConfig
from streamser.labels import DEMO_WARNING
from streamser.model.errors import ModelError
from streamser.model.exhubert import (
    AttentionImpl,
    ExHubert,
    HubertBackbone,
    WeightNormConv1d,
    classify,
)
from streamser.model.loading import cached_source, load_network

log = logging.getLogger("streamser")

INITIALISED_FLAG = "_is_hf_initialized"
"""transformers' mark on a module whose weights ``post_init`` must leave alone."""

IGNORED_OPTIONS = frozenset({"_from_auto", "trust_remote_code", "adapter_kwargs", "code_revision"})
"""What the Auto classes pass along that has no meaning here (no remote code is ever run)."""

DEFAULT_ONLY_OPTIONS: dict[str, tuple[Any, ...]] = {
    "cache_dir": (None,),
    "force_download": (False,),
    "token": (None,),
    "proxies": (None,),
    "subfolder": ("",),
    "use_safetensors": (None, True, False),
    "weights_only": (True,),
    "ignore_mismatched_sizes": (False,),
    "fusion_config": (None,),
    "disable_mmap": (None, False),
    "device_map": (None,),
    "dtype": (None, "auto", "float32", torch.float32),
    "torch_dtype": (None, "auto", "float32", torch.float32),
    "attn_implementation": (None, "sdpa", "eager"),
}
"""transformers loading options streamser's loader has no use for: accepted at the values that
change nothing, refused at any other rather than silently ignored."""


class ExHubertForAudioClassification(PreTrainedModel):
    """ExHuBERT with its 6-class head: ``forward(input_values)`` -> logits (batch, 6).

    The labels (``config.id2label``) are streamser's class names, ``"low / negative"`` ..
    ``"high / positive"`` (arousal x valence). ``streamser_info`` holds what streamser's loader
    found (source, revision, sha256 verdict) when the model came from :meth:`from_pretrained`.
    """

    config_class = ExHubertConfig
    base_model_prefix = "hubert"
    main_input_name = "input_values"

    def __init__(self, config: ExHubertConfig, network: ExHubert | None = None) -> None:
        """``network``: an already loaded one, whose modules are used as they are (never
        re-initialised); without it, a new network with random weights."""
        super().__init__(config)
        loaded = network is not None
        if network is None:
            network = ExHubert(config.network_config())
        elif network.config != config.network_config():
            raise ModelError("the network's architecture differs from the configuration's")
        self.hubert = network.hubert
        self.projector = network.projector
        self.classifier = network.classifier
        self.streamser_info: ModelInfo | None = None
        if loaded:
            for module in self.modules():
                setattr(module, INITIALISED_FLAG, True)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Random weights for a new network: torch's defaults, set when each layer was built,
        and the two parameters that start empty (the SpecAugment vector, the weight norm)."""
        if isinstance(module, HubertBackbone):
            nn.init.uniform_(module.masked_spec_embed)
        elif isinstance(module, WeightNormConv1d):
            module.reset_parameters()

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput | tuple[torch.Tensor, ...]:
        """Logits for (batch, samples) inputs; cross-entropy ``loss`` too where ``labels`` are
        given. An attention mask that hides samples is refused: the network has no masked
        pooling, and the reference pads with zeros and passes no mask. Other keyword arguments
        (what trainers pass along) are ignored: no hidden states or attentions are returned."""
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            raise ValueError(
                "ExHuBERT runs without an attention mask (the reference pads with zeros and "
                "passes none): pad every input to the same length and leave attention_mask out"
            )
        logits = classify(self.hubert(input_values), self.projector, self.classifier)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        if not (return_dict if return_dict is not None else self.config.return_dict):
            return (logits,) if loss is None else (loss, logits)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike[str] | None,
        *model_args: Any,
        config: PretrainedConfig | str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        verify: bool = True,
        expected_sha256: str | None = None,
        **kwargs: Any,
    ) -> ExHubertForAudioClassification:
        """Load ExHuBERT from a hub id (``amiriparian/ExHuBERT`` is read at its model card's
        revision unless ``revision`` says otherwise), a local directory, or ``"demo"`` (a small
        random-weight network), through streamser's loader (see the module docstring).

        ``verify=False`` loads a weights file whose sha256 does not match the published one;
        ``expected_sha256`` names the hash to check against. ``config`` (or keyword arguments
        naming configuration attributes, such as ``id2label``) may change the labels, never the
        architecture: the weights decide that.
        """
        if model_args:
            raise TypeError("ExHubertForAudioClassification.from_pretrained takes no extra args")
        if pretrained_model_name_or_path is None:
            raise ModelError("name a hub id or a directory to load ExHuBERT from")
        attention = _check_options(kwargs)
        spec = os.fspath(pretrained_model_name_or_path)
        if local_files_only and cached_source(spec, revision) is None:
            raise ModelError(
                f"{spec} is not in the Hugging Face cache and local_files_only=True: fetch it once "
                "online (streamser model fetch) or pass a directory"
            )
        network, info = load_network(spec, revision, verify=verify, expected_sha256=expected_sha256)
        if attention is not None:
            network.set_attention(attention)
        chosen = _config_for(network, config, spec, kwargs)
        model = cls(chosen, network=network)
        model.streamser_info = info
        if info.demo:
            log.warning("%s", DEMO_WARNING)
        # streamser's loader freezes the weights; a transformers model comes back trainable.
        return model.eval().requires_grad_(True)


def _check_options(kwargs: dict[str, Any]) -> AttentionImpl | None:
    """Drop the options that change nothing (see ``DEFAULT_ONLY_OPTIONS``), refuse the others;
    returns the attention implementation asked for, if any. What is left in ``kwargs`` are
    configuration overrides."""
    for key in IGNORED_OPTIONS & kwargs.keys():
        del kwargs[key]
    attention = cast("AttentionImpl | None", kwargs.get("attn_implementation"))
    for key, allowed in DEFAULT_ONLY_OPTIONS.items():
        if key not in kwargs:
            continue
        value = kwargs.pop(key)
        if not any(value is a or (type(value) is type(a) and value == a) for a in allowed):
            if key in ("dtype", "torch_dtype"):
                raise ModelError(
                    f"{key}={value}: streamser.hf runs ExHuBERT in fp32 (its residual stream "
                    "outgrows fp16); streamser.load_model(..., precision='half') has a guarded "
                    "mixed path"
                )
            raise ModelError(
                f"{key}={value!r} is not supported: streamser.hf loads ExHuBERT with streamser's "
                "own loader (the Hugging Face cache, config.json and the weights): drop it"
            )
    return attention


def _config_for(
    network: ExHubert,
    config: PretrainedConfig | str | os.PathLike[str] | None,
    name: str,
    overrides: dict[str, Any],
) -> ExHubertConfig:
    """The configuration the model gets: the checkpoint's, or the caller's where it describes
    the same architecture, with ``overrides`` applied."""
    if config is None:
        chosen = ExHubertConfig.from_network_config(network.config, name_or_path=name)
    elif isinstance(config, ExHubertConfig):
        chosen = config
    else:
        raise ModelError(
            f"config must be an ExHubertConfig, not {type(config).__name__}: the architecture "
            "comes from the checkpoint's config.json"
        )
    for key, value in overrides.items():
        if not hasattr(chosen, key):
            raise ModelError(f"unknown option {key}={value!r} for ExHuBERT's from_pretrained")
        setattr(chosen, key, value)
    if chosen.network_config() != network.config:
        raise ModelError(
            f"the configuration given does not describe the checkpoint in {name}: "
            "only labels may differ from its config.json"
        )
    return chosen
