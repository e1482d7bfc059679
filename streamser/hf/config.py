"""ExHuBERT's transformers configuration: the published HuBERT ``config.json``, under its own type.

The published checkpoint's ``config.json`` says ``model_type: hubert``, so transformers alone takes
it for a stock HuBERT (whose layers lack the 48 gates) or, with remote code, for code that no longer
runs. :class:`ExHubertConfig` reads that same file but carries ``model_type: exhubert``: what
``save_pretrained`` writes with it is found by ``AutoConfig`` and
``AutoModelForAudioClassification`` once ``streamser.hf`` is imported.

The fields are those the network reads (``streamser.model.exhubert.ExHubertConfig``, whose
defaults, the published architecture, are used here too); every other key of a ``config.json``
(dropouts, masking, vocabulary) is kept as a plain attribute, so a round trip loses nothing. The
labels default to streamser's class names (``streamser.labels``) where the file has the
published generic ``LABEL_0`` .. ``LABEL_5``.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from streamser.constants import HF_MODEL_TYPE, NUM_CLASSES
from streamser.labels import CLASS_NAMES
from streamser.model.errors import ModelError
from streamser.model.exhubert import ExHubertConfig as NetworkConfig

_PUBLISHED = NetworkConfig()
"""The published architecture: the defaults of every field below."""


class ExHubertConfig(PretrainedConfig):
    """Configuration of :class:`streamser.hf.ExHubertForAudioClassification`."""

    model_type = HF_MODEL_TYPE

    hidden_size: int = _PUBLISHED.hidden_size
    num_hidden_layers: int = _PUBLISHED.num_hidden_layers
    num_attention_heads: int = _PUBLISHED.num_attention_heads
    intermediate_size: int = _PUBLISHED.intermediate_size
    conv_dim: list[int] | tuple[int, ...] = _PUBLISHED.conv_dim
    conv_kernel: list[int] | tuple[int, ...] = _PUBLISHED.conv_kernel
    conv_stride: list[int] | tuple[int, ...] = _PUBLISHED.conv_stride
    conv_bias: bool = _PUBLISHED.conv_bias
    num_conv_pos_embeddings: int = _PUBLISHED.num_conv_pos_embeddings
    num_conv_pos_embedding_groups: int = _PUBLISHED.num_conv_pos_embedding_groups
    classifier_proj_size: int = _PUBLISHED.classifier_proj_size
    layer_norm_eps: float = _PUBLISHED.layer_norm_eps
    feat_proj_layer_norm: bool = _PUBLISHED.feat_proj_layer_norm
    # Fixed by the architecture; kept so the file says so and the network's checks can read them.
    do_stable_layer_norm: bool = True
    feat_extract_norm: str = "layer"
    feat_extract_activation: str = "gelu"
    hidden_act: str = "gelu"
    use_weighted_layer_sum: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        kwargs.pop("model_type", None)  # the published file's "hubert" must not hide the class's
        num_labels = kwargs.get("num_labels")
        generic = self.id2label is None or all(
            str(v) == f"LABEL_{k}" for k, v in self.id2label.items()
        )
        n = len(self.id2label) if self.id2label is not None else num_labels or NUM_CLASSES
        if generic and n == NUM_CLASSES:
            self.id2label = dict(enumerate(CLASS_NAMES))
            self.label2id = {name: i for i, name in enumerate(CLASS_NAMES)}
        super().__post_init__(**kwargs)

    def network_config(self) -> NetworkConfig:
        """The network's own configuration; a variant it does not implement is a ModelError."""
        try:
            return NetworkConfig.from_dict(self.to_dict())
        except ValueError as e:
            raise ModelError(f"cannot build ExHuBERT from this configuration: {e}") from e

    @classmethod
    def from_network_config(cls, cfg: NetworkConfig, **kwargs: Any) -> ExHubertConfig:
        """The configuration describing a network built from ``cfg``."""
        body = cfg.to_dict()
        for key in ("model_type", "architectures", "id2label", "label2id"):
            body.pop(key)
        id2label = dict(cfg.id2label) or {i: f"LABEL_{i}" for i in range(cfg.num_labels)}
        label2id = {name: i for i, name in id2label.items()}
        return cls(**body, id2label=id2label, label2id=label2id, **kwargs)
