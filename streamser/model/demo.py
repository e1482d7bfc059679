"""The demo model: the ExHuBERT architecture, shrunk, with seeded random weights.

It lets a newcomer run the whole pipeline (and the test suite run it end to end) without the
2.67 GB download. Its output is meaningless, and every place that shows or logs it says so.
"""

from __future__ import annotations

import time
from typing import Any, cast

import torch

from streamser.contracts import ModelInfo
from streamser.labels import DEMO_WARNING
from streamser.model.exhubert import ExHubert, ExHubertConfig, count_parameters

DEMO_SEED = 20240610
DEMO_CONFIG = ExHubertConfig(
    hidden_size=32,
    num_hidden_layers=48,
    num_attention_heads=4,
    intermediate_size=64,
    conv_dim=(32,) * 7,
    num_conv_pos_embedding_groups=16,
    classifier_proj_size=8,
)
"""Same layer structure as ExHuBERT (48 gated layers in pairs), tiny widths: ~1 ms per window."""


def random_network(cfg: ExHubertConfig, seed: int = 0) -> ExHubert:
    """A network of any size with seeded random weights, allocated once (no default init pass).

    Used for the full-size architecture in tests and benchmarks, where PyTorch's default
    initialisation of 668 M parameters would cost many seconds. Weights ~ N(0, 1/fan_in), so
    activations keep their scale through the 48 gate layers (smaller weights shrink them into
    denormal floats, which CPUs compute 100x slower); biases 0, LayerNorm scales 1,
    weight-norm g = ||v||.
    """
    from streamser.model.exhubert import build_on_meta

    model = build_on_meta(cfg).to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("original0"):
                continue
            if name.endswith("bias"):
                p.zero_()
            elif "layer_norm" in name:
                p.fill_(1.0)
            elif p.dim() >= 2:
                fan_in = p[0].numel()
                p.normal_(0.0, fan_in**-0.5, generator=gen)
            else:
                p.normal_(0.0, 0.02, generator=gen)
        conv = model.hubert.encoder.pos_conv_embed.conv
        weight_norm = cast(Any, conv).parametrizations.weight
        v = weight_norm.original1
        weight_norm.original0.copy_(torch.linalg.vector_norm(v, dim=(0, 1), keepdim=True))
    return model.eval().requires_grad_(False)


def build_demo_network() -> tuple[ExHubert, ModelInfo]:
    """Build the demo network deterministically, without touching the global RNG state."""
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(DEMO_SEED)
        model = ExHubert(DEMO_CONFIG)
        torch.nn.init.uniform_(model.hubert.masked_spec_embed)
        model.hubert.encoder.pos_conv_embed.conv.reset_parameters()
        # Default init makes nearly uniform probabilities; a wider head shows movement.
        torch.nn.init.normal_(model.classifier.weight, std=1.0)
    model = model.eval().requires_grad_(False)
    info = ModelInfo.random_weights(
        "demo", DEMO_WARNING, count_parameters(model), time.perf_counter() - t0
    )
    return model, info
