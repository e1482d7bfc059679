"""The model's floating-point work per forward pass, counted from its configuration.

Why count it: latency alone does not say whether a device is used well. FLOPs per window divided
by seconds per window is the achieved rate, which the benchmark compares with the device's
measured GEMM peak.

What is counted: every multiply-add of the convolutions, linear layers and the two attention
matrix products (Q K^T and A V), as 2 FLOPs each. That is the same set of operations that
``torch.utils.flop_counter.FlopCounterMode`` counts (convolution, mm/addmm/bmm, attention), so
the two agree exactly. Not counted: bias additions, LayerNorm, GELU, softmax, the attention
scale, residual additions, the mean over time and the weight-norm reparametrisation. Those cost
O(frames x width) each against O(frames x width^2) for the products, together well under 1 % for
the published model.

Frame counts follow the network exactly: each feature-encoder convolution has no padding, so
``frames_out = (frames_in - kernel) // stride + 1`` (48,000 samples give 149 frames); the
positional convolution pads by ``kernel // 2`` on both sides and computes ``frames + 1``
outputs for an even kernel, of which the last is dropped afterwards; it is counted as computed.

Usage: ``python -m streamser.perf.flops [--config config.json] [--batch N] [--samples N]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from streamser.constants import WINDOW_SAMPLES
from streamser.model.exhubert import ExHubertConfig

FLOPS_PER_MAC = 2
"""One multiply-add is counted as two floating-point operations."""


@dataclass(frozen=True)
class FlopTerm:
    """One kind of product in the network, summed over all its occurrences."""

    group: str
    """Where in the network: feature encoder, encoder layers, head, ..."""
    name: str
    flops: int
    occurrences: int
    """How many such products one forward pass runs (e.g. 48 for one per layer)."""


@dataclass(frozen=True)
class FlopCount:
    """The FLOPs of one forward pass over ``batch`` inputs of ``samples`` samples each."""

    batch: int
    samples: int
    frames: int
    """Frames after the feature encoder (the transformer's sequence length)."""
    terms: tuple[FlopTerm, ...]

    @property
    def total(self) -> int:
        return sum(t.flops for t in self.terms)

    @property
    def per_window(self) -> float:
        return self.total / self.batch

    def by_group(self) -> dict[str, int]:
        groups: dict[str, int] = {}
        for t in self.terms:
            groups[t.group] = groups.get(t.group, 0) + t.flops
        return groups


def conv_frames(samples: int, kernels: Sequence[int], strides: Sequence[int]) -> list[int]:
    """Output length of each feature-encoder convolution (no padding), from ``samples`` in."""
    frames, n = [], samples
    for k, s in zip(kernels, strides):
        n = (n - k) // s + 1
        if n < 1:
            raise ValueError(f"{samples} samples are too short for the feature encoder")
        frames.append(n)
    return frames


def _linear(rows: int, n_in: int, n_out: int) -> int:
    return FLOPS_PER_MAC * rows * n_in * n_out


def count_flops(cfg: ExHubertConfig, batch: int = 1, samples: int = WINDOW_SAMPLES) -> FlopCount:
    """Count the products of one forward pass (see the module docstring for what is counted)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    frames_per_layer = conv_frames(samples, cfg.conv_kernel, cfg.conv_stride)
    t = frames_per_layer[-1]
    h, n_layers = cfg.hidden_size, cfg.num_hidden_layers
    terms: list[FlopTerm] = []

    in_ch = 1
    for i, (out_ch, k, frames) in enumerate(zip(cfg.conv_dim, cfg.conv_kernel, frames_per_layer)):
        flops = FLOPS_PER_MAC * batch * frames * out_ch * in_ch * k
        terms.append(FlopTerm("feature encoder", f"conv {i} ({in_ch}->{out_ch}, k={k})", flops, 1))
        in_ch = out_ch

    rows = batch * t
    terms.append(FlopTerm("feature projection", "linear", _linear(rows, cfg.conv_dim[-1], h), 1))

    k_pos, groups = cfg.num_conv_pos_embeddings, cfg.num_conv_pos_embedding_groups
    pos_frames = t + 2 * (k_pos // 2) - k_pos + 1
    pos = FLOPS_PER_MAC * batch * pos_frames * h * (h // groups) * k_pos
    terms.append(FlopTerm("positional conv", f"grouped conv (groups={groups}, k={k_pos})", pos, 1))

    heads = cfg.num_attention_heads
    head_dim = h // heads
    scores = FLOPS_PER_MAC * batch * heads * t * t * head_dim
    per_layer = [
        ("attention", "q/k/v projections", 3 * _linear(rows, h, h), 3),
        ("attention", "scores Q K^T", scores, 1),
        ("attention", "weighted values A V", scores, 1),
        ("attention", "output projection", _linear(rows, h, h), 1),
        ("feed-forward", "intermediate", _linear(rows, h, cfg.intermediate_size), 1),
        ("feed-forward", "output", _linear(rows, cfg.intermediate_size, h), 1),
        ("gates", "gate_bb_linear", _linear(rows, h, h), 1),
    ]
    for group, name, flops, occ in per_layer:
        terms.append(FlopTerm(group, name, n_layers * flops, n_layers * occ))

    proj = cfg.classifier_proj_size
    terms.append(FlopTerm("head", "projector (every frame)", _linear(rows, h, proj), 1))
    terms.append(FlopTerm("head", "classifier", _linear(batch, proj, cfg.num_labels), 1))
    return FlopCount(batch=batch, samples=samples, frames=t, terms=tuple(terms))


def format_flops(count: FlopCount) -> str:
    """A table of every term, the per-group subtotals and the total, in GFLOP."""
    total = count.total
    lines = [
        f"FLOPs per forward pass: batch {count.batch} x {count.samples:,} samples "
        f"({count.frames} frames); a multiply-add counts 2",
        f"{'group':<20} {'product':<38} {'count':>6} {'GFLOP':>10} {'share':>7}",
    ]
    for term in count.terms:
        lines.append(
            f"{term.group:<20} {term.name:<38} {term.occurrences:>6} "
            f"{term.flops / 1e9:>10.3f} {term.flops / total:>7.2%}"
        )
    lines.append("")
    for group, flops in count.by_group().items():
        lines.append(
            f"{group:<20} {'(subtotal)':<38} {'':>6} {flops / 1e9:>10.3f} {flops / total:>7.2%}"
        )
    lines.append(f"{'total':<20} {'':<38} {'':>6} {total / 1e9:>10.3f} {1:>7.0%}")
    lines.append(f"per window: {count.per_window / 1e9:.3f} GFLOP")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m streamser.perf.flops",
        description="Count ExHuBERT's FLOPs per forward pass.",
    )
    p.add_argument("--config", help="a HuBERT config.json (default: the published architecture)")
    p.add_argument("--batch", type=int, default=1, help="windows per forward pass (default 1)")
    p.add_argument("--samples", type=int, default=WINDOW_SAMPLES, help="samples per window")
    args = p.parse_args(argv)
    cfg = ExHubertConfig.from_json_file(args.config) if args.config else ExHubertConfig()
    print(format_flops(count_flops(cfg, args.batch, args.samples)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
