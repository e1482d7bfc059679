"""``precision="int8"``: dynamic int8 quantisation of the attention and feed-forward layers."""

from __future__ import annotations

import torch
from torch import nn

from streamser.model.exhubert import Attention, ExHubert, FeedForward


def is_int8(network: nn.Module) -> bool:
    """Whether ``network`` holds quantised (``torch.ao``) layers."""
    return any(type(m).__module__.startswith("torch.ao") for m in network.modules())


def int8_layer_names(network: ExHubert) -> list[str]:
    """The Linear layers ``--quantize int8`` converts: the attention projections and the
    feed-forward layers of every encoder layer (92 % of the network's linear FLOPs).

    Kept in fp32, measured on the full-size architecture (benchmarks/README.md): the 48 gate
    layers, because each maps the whole residual stream (nothing normalises it first), so
    per-batch activation rounding there lands in the hidden state unscaled (quantising only
    the gates moved probabilities by 0.013, more than all 288 other layers together); and the
    feature projection and classification head, which cost 0.1 % of the FLOPs.
    """
    names = []
    for name, module in network.named_modules():
        if isinstance(module, (Attention, FeedForward)):
            names += [
                f"{name}.{child_name}"
                for child_name, child in module.named_children()
                if type(child) is nn.Linear
            ]
    return names


def quantize_int8(network: ExHubert, inplace: bool = False) -> ExHubert:
    """Dynamic int8 quantisation (weights int8 per output channel, activations per batch) of
    the layers :func:`int8_layer_names` picks.

    Per-channel weight scales and fp32 gates bring the largest probability change on the
    full-size random model from 0.026-0.039 (every layer, one scale per tensor) to 0.002-0.003,
    for ~6 % more time per window (0.94 s against 0.89 s on 2 cores).

    ``inplace=True`` converts ``network`` itself instead of a deep copy of it, which spares a
    transient second fp32 copy (2.7 GB for the published model) when the original is not
    needed afterwards.
    """
    import warnings

    with warnings.catch_warnings():
        # torch announces a move of these APIs; the behaviour is what we rely on.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        spec = dict.fromkeys(int8_layer_names(network), per_channel_dynamic_qconfig)
        return quantize_dynamic(network, spec, dtype=torch.qint8, inplace=inplace)
