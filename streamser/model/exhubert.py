"""The ExHuBERT network in plain PyTorch.

The published model ships as remote code written for transformers 4.31, which no longer runs on
current transformers; streamser therefore carries the architecture itself (see the project's model
specification) and loads the published weights into it with a strict key check. Module and
parameter names mirror the published state dict exactly, so loading is a plain
``load_state_dict`` with no renaming beyond the weight-norm alias handled in ``loading``.

Shape of the network (HuBERT Large, stable layer norm, extended to 48 layers):

* feature encoder: 7 Conv1d + LayerNorm + GELU, 48,000 samples -> 149 frames;
* feature projection: LayerNorm + Linear to the hidden size;
* positional convolution (weight-normed, grouped) added to the hidden states;
* 48 pre-LayerNorm transformer layers, each ending in ``gate_bb_linear`` (a plain affine map),
  run in pairs ``a = layer[2k](x); x = a + layer[2k+1](a)``;
* final LayerNorm, ``projector`` per frame, mean over time, ``classifier`` to 6 logits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

AttentionImpl = Literal["sdpa", "eager"]


@dataclass(frozen=True)
class ExHubertConfig:
    """The architecture hyper-parameters that the network reads from ``config.json``.

    Only fields that change the computation are kept; training-only fields (dropouts, masking)
    are ignored because streamser runs inference only.
    """

    hidden_size: int = 1024
    num_hidden_layers: int = 48
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    conv_dim: tuple[int, ...] = (512,) * 7
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = True
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    classifier_proj_size: int = 256
    num_labels: int = 6
    layer_norm_eps: float = 1e-5
    feat_proj_layer_norm: bool = True
    id2label: dict[int, str] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExHubertConfig:
        """Build from a HuBERT ``config.json`` dict; refuses variants not implemented here."""
        problems = []
        if d.get("model_type", "hubert") != "hubert":
            problems.append(f"model_type is {d.get('model_type')!r}, expected 'hubert'")
        if not d.get("do_stable_layer_norm", False):
            problems.append("do_stable_layer_norm must be true")
        if d.get("feat_extract_norm", "layer") != "layer":
            problems.append("feat_extract_norm must be 'layer'")
        if d.get("use_weighted_layer_sum", False):
            problems.append("use_weighted_layer_sum must be false")
        if (
            d.get("hidden_act", "gelu") != "gelu"
            or d.get("feat_extract_activation", "gelu") != "gelu"
        ):
            problems.append("activations must be 'gelu'")
        n_layers = int(d.get("num_hidden_layers", 48))
        if n_layers % 2:
            problems.append(f"num_hidden_layers must be even (layers run in pairs), got {n_layers}")
        if problems:
            raise ValueError("unsupported model config: " + "; ".join(problems))
        id2label = {int(k): str(v) for k, v in (d.get("id2label") or {}).items()}
        num_labels = len(id2label) if id2label else int(d.get("num_labels", 6))
        return cls(
            hidden_size=int(d.get("hidden_size", 1024)),
            num_hidden_layers=n_layers,
            num_attention_heads=int(d.get("num_attention_heads", 16)),
            intermediate_size=int(d.get("intermediate_size", 4096)),
            conv_dim=tuple(int(x) for x in d.get("conv_dim", cls.conv_dim)),
            conv_kernel=tuple(int(x) for x in d.get("conv_kernel", cls.conv_kernel)),
            conv_stride=tuple(int(x) for x in d.get("conv_stride", cls.conv_stride)),
            conv_bias=bool(d.get("conv_bias", True)),
            num_conv_pos_embeddings=int(d.get("num_conv_pos_embeddings", 128)),
            num_conv_pos_embedding_groups=int(d.get("num_conv_pos_embedding_groups", 16)),
            classifier_proj_size=int(d.get("classifier_proj_size", 256)),
            num_labels=num_labels,
            layer_norm_eps=float(d.get("layer_norm_eps", 1e-5)),
            feat_proj_layer_norm=bool(d.get("feat_proj_layer_norm", True)),
            id2label=id2label,
        )

    @classmethod
    def from_json_file(cls, path: str | Path) -> ExHubertConfig:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> dict[str, Any]:
        """A stock HuBERT ``config.json`` body describing this architecture."""
        return {
            "model_type": "hubert",
            "architectures": ["ExHuBERT"],
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "conv_dim": list(self.conv_dim),
            "conv_kernel": list(self.conv_kernel),
            "conv_stride": list(self.conv_stride),
            "conv_bias": self.conv_bias,
            "num_conv_pos_embeddings": self.num_conv_pos_embeddings,
            "num_conv_pos_embedding_groups": self.num_conv_pos_embedding_groups,
            "classifier_proj_size": self.classifier_proj_size,
            "layer_norm_eps": self.layer_norm_eps,
            "do_stable_layer_norm": True,
            "feat_extract_norm": "layer",
            "feat_extract_activation": "gelu",
            "hidden_act": "gelu",
            "feat_proj_layer_norm": self.feat_proj_layer_norm,
            "use_weighted_layer_sum": False,
            "id2label": {str(i): f"LABEL_{i}" for i in range(self.num_labels)},
            "label2id": {f"LABEL_{i}": i for i in range(self.num_labels)},
        }


class ConvLayer(nn.Module):
    """One feature-encoder layer: Conv1d, LayerNorm over channels, exact GELU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, bias: bool) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel_size=kernel, stride=stride, bias=bias)
        self.layer_norm = nn.LayerNorm(out_ch, elementwise_affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.layer_norm(x.transpose(-2, -1)).transpose(-2, -1)
        return F.gelu(x)


class FeatureExtractor(nn.Module):
    def __init__(self, cfg: ExHubertConfig) -> None:
        super().__init__()
        in_dims = (1, *cfg.conv_dim[:-1])
        self.conv_layers = nn.ModuleList(
            ConvLayer(i, o, k, s, cfg.conv_bias)
            for i, o, k, s in zip(in_dims, cfg.conv_dim, cfg.conv_kernel, cfg.conv_stride)
        )

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        x = input_values[:, None, :]
        for layer in self.conv_layers:
            x = layer(x)
        return x  # (batch, channels, frames)


class FeatureProjection(nn.Module):
    def __init__(self, cfg: ExHubertConfig) -> None:
        super().__init__()
        self.use_layer_norm = cfg.feat_proj_layer_norm
        if self.use_layer_norm:
            self.layer_norm = nn.LayerNorm(cfg.conv_dim[-1], eps=cfg.layer_norm_eps)
        self.projection = nn.Linear(cfg.conv_dim[-1], cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_layer_norm:
            x = self.layer_norm(x)
        return self.projection(x)


class _Params(nn.Module):
    """A bare holder of parameters, so state-dict names follow torch's weight-norm layout."""


class WeightNormConv1d(nn.Module):
    """Grouped Conv1d whose weight is ``g * v / ||v||`` with the norm over all but dim 2.

    Parameters are named ``parametrizations.weight.original0`` (g) and ``original1`` (v), as
    torch's weight-norm parametrization names them in the published state dict. It is written
    out rather than built with ``torch.nn.utils.parametrizations.weight_norm`` because that
    helper computes the norm at construction, which on the meta device costs 1.5 s of imports
    at every start. The weight is formed in fp32 even when the model runs in fp16: the sum of
    squares over 64 x 1024 values can overflow fp16.
    """

    def __init__(self, channels: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.padding = kernel // 2
        self.groups = groups
        self.parametrizations = _Params()
        self.parametrizations.weight = _Params()
        w = self.parametrizations.weight
        w.original0 = nn.Parameter(torch.empty(1, 1, kernel))
        w.original1 = nn.Parameter(torch.empty(channels, channels // groups, kernel))
        self.bias = nn.Parameter(torch.empty(channels))

    def reset_parameters(self) -> None:
        """Random init for models built without weights (the demo model); g = ||v||."""
        v = self.parametrizations.weight.original1
        nn.init.normal_(v, std=(v.shape[1] * v.shape[2]) ** -0.5)
        with torch.no_grad():
            self.parametrizations.weight.original0.copy_(
                torch.linalg.vector_norm(v, dim=(0, 1), keepdim=True)
            )
        nn.init.zeros_(self.bias)

    def weight(self) -> torch.Tensor:
        g = self.parametrizations.weight.original0.float()
        v = self.parametrizations.weight.original1.float()
        return v * (g / torch.linalg.vector_norm(v, dim=(0, 1), keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight().to(x.dtype)
        return F.conv1d(x, w, self.bias, padding=self.padding, groups=self.groups)


class PositionalConvEmbedding(nn.Module):
    """Weight-normed grouped Conv1d over time, last frame dropped (even kernel), GELU."""

    def __init__(self, cfg: ExHubertConfig) -> None:
        super().__init__()
        self.conv = WeightNormConv1d(
            cfg.hidden_size, cfg.num_conv_pos_embeddings, cfg.num_conv_pos_embedding_groups
        )
        self.drop_last = cfg.num_conv_pos_embeddings % 2 == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2))
        if self.drop_last:
            y = y[:, :, :-1]
        return F.gelu(y).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention without mask; SDPA by default, eager math as the reference."""

    def __init__(self, cfg: ExHubertConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.scale = self.head_dim**-0.5
        h = cfg.hidden_size
        self.k_proj = nn.Linear(h, h)
        self.v_proj = nn.Linear(h, h)
        self.q_proj = nn.Linear(h, h)
        self.out_proj = nn.Linear(h, h)
        self.impl: AttentionImpl = "sdpa"

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        q = self._split(self.q_proj(x))
        k = self._split(self.k_proj(x))
        v = self._split(self.v_proj(x))
        if self.impl == "sdpa":
            o = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            w = torch.matmul(q * self.scale, k.transpose(-2, -1))
            o = torch.matmul(torch.softmax(w, dim=-1), v)
        return self.out_proj(o.transpose(1, 2).reshape(b, t, h))


class FeedForward(nn.Module):
    def __init__(self, cfg: ExHubertConfig) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.output_dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_dense(F.gelu(self.intermediate_dense(x)))


class EncoderLayer(nn.Module):
    """Pre-LayerNorm transformer layer followed by the block-extension gate (a plain affine map)."""

    def __init__(self, cfg: ExHubertConfig) -> None:
        super().__init__()
        self.attention = Attention(cfg)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.feed_forward = FeedForward(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.gate_bb_linear = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attention(self.layer_norm(h))
        h = h + self.feed_forward(self.final_layer_norm(h))
        return self.gate_bb_linear(h)


class Encoder(nn.Module):
    def __init__(self, cfg: ExHubertConfig) -> None:
        super().__init__()
        self.pos_conv_embed = PositionalConvEmbedding(cfg)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.pos_conv_embed(h)
        layers = self.layers
        for i in range(0, len(layers), 2):
            a = layers[i](h)
            h = a + layers[i + 1](a)
        return self.layer_norm(h)


class HubertBackbone(nn.Module):
    def __init__(self, cfg: ExHubertConfig) -> None:
        super().__init__()
        # Used only for SpecAugment during training; kept so the published weights load strictly.
        self.masked_spec_embed = nn.Parameter(torch.empty(cfg.hidden_size))
        self.feature_extractor = FeatureExtractor(cfg)
        self.feature_projection = FeatureProjection(cfg)
        self.encoder = Encoder(cfg)

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        feats = self.feature_extractor(input_values).transpose(1, 2)
        return self.encoder(self.feature_projection(feats))


class ExHubert(nn.Module):
    """ExHuBERT for 6-class emotion classification; ``forward`` maps (batch, 48000) to logits."""

    def __init__(self, cfg: ExHubertConfig) -> None:
        super().__init__()
        self.config = cfg
        self.hubert = HubertBackbone(cfg)
        self.projector = nn.Linear(cfg.hidden_size, cfg.classifier_proj_size)
        self.classifier = nn.Linear(cfg.classifier_proj_size, cfg.num_labels)

    def set_attention(self, impl: AttentionImpl) -> None:
        """Choose SDPA (fused, default) or the eager reference math for every layer."""
        for layer in self.hubert.encoder.layers:
            layer.attention.impl = impl

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        hidden = self.hubert(input_values)
        pooled = self.projector(hidden).mean(dim=1)
        return self.classifier(pooled)


LEGACY_WEIGHT_NORM = {
    "hubert.encoder.pos_conv_embed.conv.weight_g": (
        "hubert.encoder.pos_conv_embed.conv.parametrizations.weight.original0"
    ),
    "hubert.encoder.pos_conv_embed.conv.weight_v": (
        "hubert.encoder.pos_conv_embed.conv.parametrizations.weight.original1"
    ),
}
"""Legacy weight-norm names -> parametrization names (g = original0, v = original1)."""


def canonical_key(key: str) -> str:
    """Map either weight-norm naming onto the one the network uses."""
    return LEGACY_WEIGHT_NORM.get(key, key)


def build_on_meta(cfg: ExHubertConfig) -> ExHubert:
    """Build the network without allocating weights, for strict checks and zero-copy loading."""
    with torch.device("meta"):
        return ExHubert(cfg).eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.state_dict().values())
