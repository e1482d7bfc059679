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

Mixed precision (:meth:`ExHubert.set_half`): nothing normalises the residual stream between the
gated layers, so it outgrows fp16 (the project's model specification, "Numerics"). The half path
therefore casts at block boundaries: the feature encoder, the positional convolution, attention
and feed-forward run in a half dtype on half copies of their weights; the residual stream, every
LayerNorm that reads it, the 48 gates and the head stay fp32 on the fp32 parameters, which remain
the master copy. With no half dtype set, every block runs exactly the fp32 code it always ran.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from streamser.constants import HF_MODEL_TYPE

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
        """Build from a HuBERT ``config.json`` dict (the published ``hubert`` one, or the
        ``exhubert`` one ``streamser.hf`` saves); refuses variants not implemented here."""
        problems = []
        if d.get("model_type", "hubert") not in ("hubert", HF_MODEL_TYPE):
            problems.append(
                f"model_type is {d.get('model_type')!r}, expected 'hubert' or {HF_MODEL_TYPE!r}"
            )
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


class DerivedTensor:
    """A tensor computed from parameters (a re-laid or normalised weight), kept between calls.

    Recomputing such a weight on every window costs real time on a CPU (the positional
    convolution's weight norm alone reads and writes 2 x 34 MB). The cached value is reused only
    while autograd is off and every source is the same tensor, at the same address, unmodified
    (``_version`` counts in-place writes): a ``load_state_dict``, ``.to(...)`` or in-place edit
    of a source makes the next call recompute it, so the cache can never serve a stale weight.
    """

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._refs: tuple[weakref.ref[torch.Tensor], ...] = ()
        self._value: torch.Tensor | None = None

    def get(
        self, sources: tuple[torch.Tensor, ...], make: Callable[[], torch.Tensor], tag: Any = None
    ) -> torch.Tensor:
        if torch.is_grad_enabled() or any(t.is_inference() for t in sources):
            return make()
        key = (tag, *((t.data_ptr(), t._version, t.dtype, t.device) for t in sources))
        same = len(self._refs) == len(sources) and all(
            r() is t for r, t in zip(self._refs, sources)
        )
        if self._value is None or not same or key != self._key:
            self._value = make()
            self._key, self._refs = key, tuple(weakref.ref(t) for t in sources)
        return self._value

    @property
    def value(self) -> torch.Tensor | None:
        """The cached tensor, if any (for memory accounting)."""
        return self._value

    def clear(self) -> None:
        self._key, self._refs, self._value = None, (), None


class HalfCopies:
    """Half-precision copies of a module's fp32 weights, one :class:`DerivedTensor` per name.

    The fp32 parameters stay the only weights the module owns (and the only ones in its state
    dict); the copies are derived from them and cached, so an fp32 recompute never sees a
    rounded weight, and a changed master makes the next call derive a fresh copy.
    """

    def __init__(self) -> None:
        self._slots: dict[str, DerivedTensor] = {}

    def get(
        self,
        name: str,
        sources: torch.Tensor | tuple[torch.Tensor, ...],
        dtype: torch.dtype,
        make: Callable[[], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The copy called ``name`` in ``dtype``: ``make()``, or ``sources.to(dtype)`` if None."""
        if isinstance(sources, torch.Tensor):
            t = sources
            sources = (t,)
            make = make or (lambda: t.detach().to(dtype))
        assert make is not None
        slot = self._slots.get(name)
        if slot is None:
            slot = self._slots[name] = DerivedTensor()
        return slot.get(sources, make, tag=dtype)

    def maybe(self, name: str, t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        """``t`` itself where it already is ``dtype`` (or None), else its cached copy."""
        if t is None or t.dtype == dtype:
            return t
        return self.get(name, t, dtype)

    def nbytes(self) -> int:
        return sum(
            v.numel() * v.element_size()
            for v in (s.value for s in self._slots.values())
            if v is not None
        )

    def clear(self) -> None:
        for slot in self._slots.values():
            slot.clear()


def conv1d_time_major(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int
) -> torch.Tensor:
    """Conv1d of a time-major (batch, time, in) tensor as GEMMs; returns (batch, time', out).

    ``weight`` is tap-major: (out, kernel * in), taps outermost. In a time-major tensor the
    ``stride`` consecutive frames starting at output frame t's first tap lie next to each other
    in memory, so each group of up to ``stride`` taps is one strided view, read by BLAS in place
    (no im2col copy), and the convolution is ``ceil(kernel / stride)`` GEMMs. A kernel of
    ``kernel * in <= 64`` values (the first layer, on the waveform) is one overlapping view
    instead; the matmul copies it, which is cheap at that width.
    """
    b, t_in, c_in = x.shape
    k = weight.shape[1] // c_in
    t_out = (t_in - k) // stride + 1
    x = x.contiguous()
    row = (t_in * c_in, stride * c_in, 1)

    def taps(j: int, n: int) -> torch.Tensor:
        return x.as_strided((b, t_out, n * c_in), row, x.storage_offset() + j * c_in)

    if k * c_in <= 64:
        return F.linear(taps(0, k), weight, bias)
    n0 = min(stride, k)
    y = F.linear(taps(0, n0), weight[:, : n0 * c_in], bias)
    for j in range(stride, k, stride):
        n = min(stride, k - j)
        y.add_(F.linear(taps(j, n), weight[:, j * c_in : (j + n) * c_in]))
    return y


class ConvLayer(nn.Module):
    """One feature-encoder layer: Conv1d, LayerNorm over channels, exact GELU.

    Works time-major (batch, time, channels): the LayerNorm then runs over the contiguous last
    dimension and no transposes are needed. ``fast=False`` runs the plain channels-first
    ``conv1d`` with transposes around the LayerNorm, kept as the reference for benchmarks.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, bias: bool) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel_size=kernel, stride=stride, bias=bias)
        self.layer_norm = nn.LayerNorm(out_ch, elementwise_affine=True)
        self.fast = True
        self._tap_major = DerivedTensor()
        self._half = HalfCopies()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight
        if x.dtype != w.dtype:
            return self._forward_half(x)
        if self.fast:
            tap_major = self._tap_major.get(
                (w,), lambda: w.permute(0, 2, 1).reshape(w.shape[0], -1).contiguous()
            )
            y = conv1d_time_major(x, tap_major, self.conv.bias, self.conv.stride[0])
            return F.gelu(self.layer_norm(y))
        y = self.conv(x.transpose(1, 2))
        y = self.layer_norm(y.transpose(-2, -1))
        return F.gelu(y)

    def _forward_half(self, x: torch.Tensor) -> torch.Tensor:
        """The same math in ``x.dtype`` on half copies of the weights (LayerNorm included: it
        normalises each frame, so its output stays small whatever the convolution gives)."""
        dt, c, w, ln = x.dtype, self._half, self.conv.weight, self.layer_norm
        bias = c.maybe("bias", self.conv.bias, dt)
        if self.fast:
            tap_major = c.get(
                "tap_major", w, dt, lambda: w.permute(0, 2, 1).reshape(w.shape[0], -1).to(dt)
            )
            y = conv1d_time_major(x, tap_major, bias, self.conv.stride[0])
        else:
            y = F.conv1d(x.transpose(1, 2), c.get("weight", w, dt), bias, self.conv.stride)
            y = y.transpose(1, 2)
        ln_w, ln_b = c.maybe("ln_weight", ln.weight, dt), c.maybe("ln_bias", ln.bias, dt)
        return F.gelu(F.layer_norm(y, ln.normalized_shape, ln_w, ln_b, ln.eps))


class FeatureExtractor(nn.Module):
    def __init__(self, cfg: ExHubertConfig) -> None:
        super().__init__()
        in_dims = (1, *cfg.conv_dim[:-1])
        self.conv_layers = nn.ModuleList(
            ConvLayer(i, o, k, s, cfg.conv_bias)
            for i, o, k, s in zip(in_dims, cfg.conv_dim, cfg.conv_kernel, cfg.conv_stride)
        )
        self.half_dtype: torch.dtype | None = None
        """Set by :meth:`ExHubert.set_half`: the convolutions run in it; None runs fp32."""

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        x = input_values[:, :, None]
        if self.half_dtype is not None:
            x = x.to(self.half_dtype)
        for layer in self.conv_layers:
            x = layer(x)
        return x.to(input_values.dtype)  # (batch, frames, channels)


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


class _WeightNormParams(nn.Module):
    """A bare holder of g and v, so state-dict names follow torch's weight-norm layout."""

    original0: nn.Parameter
    original1: nn.Parameter


class _Params(nn.Module):
    """The ``parametrizations`` level of torch's weight-norm layout."""

    weight: _WeightNormParams


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
        self.parametrizations.weight = _WeightNormParams()
        w = self.parametrizations.weight
        w.original0 = nn.Parameter(torch.empty(1, 1, kernel))
        w.original1 = nn.Parameter(torch.empty(channels, channels // groups, kernel))
        self.bias = nn.Parameter(torch.empty(channels))
        self.cache = True
        self._weight = DerivedTensor()
        self._half = HalfCopies()

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
        p = self.parametrizations.weight
        if x.dtype != self.bias.dtype:
            # Half: the weight is still normed in fp32, then rounded once, and cached apart
            # from the fp32 one, so a recompute in fp32 does not evict it.
            dt, sources = x.dtype, (p.original0, p.original1)
            make = lambda: self.weight().to(dt)  # noqa: E731
            w = self._half.get("weight", sources, dt, make) if self.cache else make()
            bias = self._half.get("bias", self.bias, dt)
            return F.conv1d(x, w, bias, padding=self.padding, groups=self.groups)
        if self.cache:
            sources = (p.original0, p.original1)
            w = self._weight.get(sources, lambda: self.weight().to(x.dtype), tag=x.dtype)
        else:
            w = self.weight().to(x.dtype)
        return F.conv1d(x, w, self.bias, padding=self.padding, groups=self.groups)


class PositionalConvEmbedding(nn.Module):
    """Weight-normed grouped Conv1d over time, last frame dropped (even kernel), GELU.

    Takes and returns time-major (batch, frames, hidden) tensors.
    """

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
    """Multi-head self-attention without mask; SDPA by default, eager math as the reference.

    After :meth:`fuse_qkv` the q, k and v projections are one GEMM of three times the width:
    their weights become views into one (3 * hidden, hidden) tensor, so the state dict keeps
    its names and no memory is added. Should anything later replace those weights (a ``.to``
    that converts, a ``load_state_dict(assign=True)``), the views no longer match and the layer
    goes back to three projections by itself; it never computes with stale weights.
    """

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
        self.use_fused = True
        self._qkv: tuple[torch.Tensor, torch.Tensor] | None = None
        self._half = HalfCopies()

    def fuse_qkv(self, enabled: bool = True) -> bool:
        """Make q, k, v one projection (or three again); False where they are not plain Linear
        layers (after int8 quantisation, for instance)."""
        parts = (self.q_proj, self.k_proj, self.v_proj)
        if enabled and self._qkv is not None and self._views_of(*self._qkv):
            return True  # fused already: a second fusion would copy the weights again
        self._qkv = None
        if not enabled or not all(type(m) is nn.Linear and m.bias is not None for m in parts):
            return False
        # Not inference tensors even if the caller holds inference mode: the parameters
        # become views of these.
        with torch.inference_mode(False), torch.no_grad():
            w = torch.cat([m.weight for m in parts])
            b = torch.cat([m.bias for m in parts])
            n = w.shape[0] // 3
            for i, m in enumerate(parts):
                m.weight.data = w[i * n : (i + 1) * n]
                m.bias.data = b[i * n : (i + 1) * n]
        self._qkv = (w, b)
        return True

    def _fused(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self._qkv is None or not self.use_fused or torch.is_grad_enabled():
            return None
        w, b = self._qkv
        if not self._views_of(w, b):
            self._qkv = None  # replaced weights: drop the stale copy, run unfused
            return None
        return w, b

    def _views_of(self, w: torch.Tensor, b: torch.Tensor) -> bool:
        """Whether q, k and v still hold views of the fused ``w`` and ``b``."""
        n = w.shape[0] // 3
        for i, m in enumerate((self.q_proj, self.k_proj, self.v_proj)):
            mw, mb = getattr(m, "weight", None), getattr(m, "bias", None)
            if not (
                isinstance(mw, torch.Tensor)
                and isinstance(mb, torch.Tensor)
                and mw.data_ptr() == w[i * n].data_ptr()
                and mb.data_ptr() == b[i * n :].data_ptr()
                and (mw.dtype, mw.device) == (w.dtype, w.device)
            ):
                return False
        return True

    def _linear(self, name: str, m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``m(x)``, or, where ``x`` is half and ``m`` a plain fp32 Linear, the same map on
        half copies of its weights."""
        if type(m) is not nn.Linear or x.dtype == m.weight.dtype:
            return m(x)
        c, dt = self._half, x.dtype
        return F.linear(x, c.get(f"{name}.w", m.weight, dt), c.maybe(f"{name}.b", m.bias, dt))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        heads = (b, t, self.num_heads, self.head_dim)
        fused = self._fused()
        if fused is not None:
            w, bias = fused
            if x.dtype != w.dtype:
                w, bias = (
                    self._half.get("qkv.w", w, x.dtype),
                    self._half.get("qkv.b", bias, x.dtype),
                )
            qkv = F.linear(x, w, bias).view(b, t, 3, self.num_heads, self.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        else:
            parts = (("q", self.q_proj), ("k", self.k_proj), ("v", self.v_proj))
            q, k, v = (self._linear(n, p, x).view(heads).transpose(1, 2) for n, p in parts)
        if self.impl == "sdpa":
            o = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            w = torch.matmul(q * self.scale, k.transpose(-2, -1))
            o = torch.matmul(torch.softmax(w, dim=-1), v)
        return self._linear("out", self.out_proj, o.transpose(1, 2).reshape(b, t, h))


CPU_GEMM_BLOCK = 1024
"""Output columns per GEMM when a CPU multiplies few rows by a wide weight (see below)."""
CPU_GEMM_BLOCK_MAX_ROWS = 1024
"""From about this many rows (7 windows) on, one wide GEMM is as fast: no blocking."""


def linear_blocked(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``F.linear`` that, on a CPU and for few rows, computes the output in column blocks.

    MKL multiplies 149 rows (one window) by the 1024 x 4096 feed-forward weight about 12 %
    slower than by four 1024 x 1024 slices of it, and 6 % slower at 596 rows; from ~2,000 rows
    the two are equal (benchmarks/README.md). The slices are views of the weight and each
    block is written straight into its columns of the output: nothing is copied.
    """
    n_out = weight.shape[0]
    rows = x.numel() // x.shape[-1]
    if x.device.type != "cpu" or n_out <= CPU_GEMM_BLOCK or rows >= CPU_GEMM_BLOCK_MAX_ROWS:
        return F.linear(x, weight, bias)
    x2 = x.reshape(rows, x.shape[-1])
    out = torch.empty((rows, n_out), dtype=x.dtype, device=x.device)
    for j in range(0, n_out, CPU_GEMM_BLOCK):
        cols = slice(j, j + CPU_GEMM_BLOCK)
        torch.addmm(bias[cols], x2, weight[cols].t(), out=out[:, cols])
    return out.view(*x.shape[:-1], n_out)


class FeedForward(nn.Module):
    def __init__(self, cfg: ExHubertConfig) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.output_dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.fast = True
        self._half = HalfCopies()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dense, out = self.intermediate_dense, self.output_dense
        if type(dense) is type(out) is nn.Linear and x.dtype != dense.weight.dtype:
            c, dt = self._half, x.dtype
            h = F.linear(x, c.get("in.w", dense.weight, dt), c.maybe("in.b", dense.bias, dt))
            return F.linear(
                F.gelu(h), c.get("out.w", out.weight, dt), c.maybe("out.b", out.bias, dt)
            )
        if self.fast and type(dense) is nn.Linear and not torch.is_grad_enabled():
            h = linear_blocked(x, dense.weight, dense.bias)
        else:
            h = dense(x)
        return self.output_dense(F.gelu(h))


class EncoderLayer(nn.Module):
    """Pre-LayerNorm transformer layer followed by the block-extension gate (a plain affine map)."""

    def __init__(self, cfg: ExHubertConfig) -> None:
        super().__init__()
        self.attention = Attention(cfg)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.feed_forward = FeedForward(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.gate_bb_linear = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.half_dtype: torch.dtype | None = None
        """Set by :meth:`ExHubert.set_half`: attention and feed-forward run in it."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        dt = self.half_dtype
        if dt is None:
            h = h + self.attention(self.layer_norm(h))
            h = h + self.feed_forward(self.final_layer_norm(h))
            return self.gate_bb_linear(h)
        # The stream h and both LayerNorms stay fp32; only their normalised outputs go half.
        h = h + self.attention(self.layer_norm(h).to(dt)).to(h.dtype)
        h = h + self.feed_forward(self.final_layer_norm(h).to(dt)).to(h.dtype)
        return self.gate_bb_linear(h)


class Encoder(nn.Module):
    def __init__(self, cfg: ExHubertConfig) -> None:
        super().__init__()
        self.pos_conv_embed = PositionalConvEmbedding(cfg)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.half_dtype: torch.dtype | None = None
        """Set by :meth:`ExHubert.set_half`: the positional convolution runs in it."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.half_dtype is None:
            h = h + self.pos_conv_embed(h)
        else:
            h = h + self.pos_conv_embed(h.to(self.half_dtype)).to(h.dtype)
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
        feats = self.feature_extractor(input_values)
        return self.encoder(self.feature_projection(feats))


class ExHubert(nn.Module):
    """ExHuBERT for 6-class emotion classification; ``forward`` maps (batch, 48000) to logits."""

    def __init__(self, cfg: ExHubertConfig) -> None:
        super().__init__()
        self.config = cfg
        self.hubert = HubertBackbone(cfg)
        self.projector = nn.Linear(cfg.hidden_size, cfg.classifier_proj_size)
        self.classifier = nn.Linear(cfg.classifier_proj_size, cfg.num_labels)

    def encoder_layers(self) -> list[EncoderLayer]:
        """The 48 layers, typed (a ``ModuleList`` yields plain modules)."""
        return [cast(EncoderLayer, layer) for layer in self.hubert.encoder.layers]

    def set_attention(self, impl: AttentionImpl) -> None:
        """Choose SDPA (fused, default) or the eager reference math for every layer."""
        for layer in self.encoder_layers():
            layer.attention.impl = impl

    def fuse_qkv(self, enabled: bool = True) -> bool:
        """One q/k/v projection per layer (see :class:`Attention`); call after the last ``.to``.

        Returns whether every layer could fuse.
        """
        return all([layer.attention.fuse_qkv(enabled) for layer in self.encoder_layers()])

    def set_fast_paths(self, enabled: bool) -> None:
        """``False`` runs the plain reference math throughout, for benchmarks and checks:
        eager attention, separate q/k/v, channels-first ``conv1d`` feature encoder and the
        weight norm recomputed on every call, one GEMM per linear layer. ``True`` restores the
        defaults (SDPA, time-major feature encoder, cached weights, column-blocked feed-forward
        GEMM on a CPU, and the fused q/k/v projection where :meth:`fuse_qkv` made one).
        Switching costs nothing: no weight is copied.
        """
        self.set_attention("sdpa" if enabled else "eager")
        for layer in self.encoder_layers():
            layer.attention.use_fused = enabled
            layer.feed_forward.fast = enabled
        for conv in self.hubert.feature_extractor.conv_layers:
            cast(ConvLayer, conv).fast = enabled
        self.hubert.encoder.pos_conv_embed.conv.cache = enabled

    # -- mixed precision -------------------------------------------------------------------

    @property
    def half_dtype(self) -> torch.dtype | None:
        """The dtype of the half parts (see the module docstring), or None: all fp32."""
        return self.hubert.encoder.half_dtype

    def set_half(self, dtype: torch.dtype | None, *, release: bool = False) -> None:
        """Run the feature encoder, positional convolution, attention and feed-forward in
        ``dtype`` (float16 or bfloat16), or everything in fp32 with ``None``.

        Only flags change: the half copies of the weights are derived on first use and kept
        while ``None`` is set, so switching to fp32 for a recompute and back costs nothing.
        ``release=True`` also frees them. Call :meth:`prepare_half` after this to derive them
        up front.
        """
        if dtype not in (None, torch.float16, torch.bfloat16):
            raise ValueError(f"half dtype must be float16 or bfloat16, not {dtype}")
        hub = self.hubert
        hub.feature_extractor.half_dtype = dtype
        hub.encoder.half_dtype = dtype
        for layer in self.encoder_layers():
            layer.half_dtype = dtype
        if release:
            for copies in self._half_copies():
                copies.clear()

    @contextmanager
    def fp32(self) -> Iterator[None]:
        """Run everything in fp32 on the master weights inside the block, then restore."""
        dtype = self.half_dtype
        self.set_half(None)
        try:
            yield
        finally:
            self.set_half(dtype)

    def prepare_half(self) -> int:
        """Derive every half copy now; returns their size in bytes.

        One forward pass of the shortest input (one frame) touches exactly the copies a real
        window uses. Inference mode is switched off for it, should the caller hold it: copies
        made there would be inference tensors, unusable for anything but inference.
        """
        dtype = self.half_dtype
        if dtype is None:
            return 0
        p = next(self.parameters())
        with torch.inference_mode(False), torch.no_grad():
            self(torch.zeros(1, self.min_input_samples(), device=p.device))
        return self.half_copy_bytes()

    def half_copy_bytes(self) -> int:
        return sum(copies.nbytes() for copies in self._half_copies())

    def min_input_samples(self) -> int:
        """The shortest input that gives one frame (the encoder's receptive field)."""
        n = 1
        for k, s in reversed(list(zip(self.config.conv_kernel, self.config.conv_stride))):
            n = (n - 1) * s + k
        return n

    def _half_copies(self) -> list[HalfCopies]:
        return [c for m in self.modules() for c in vars(m).values() if isinstance(c, HalfCopies)]

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return classify(self.hubert(input_values), self.projector, self.classifier)


def classify(hidden: torch.Tensor, projector: nn.Module, classifier: nn.Module) -> torch.Tensor:
    """The head: ``projector`` on every frame, mean over all frames (the reference passes no
    attention mask), ``classifier``. A function rather than a method so that the transformers
    wrapper (``streamser.hf``), which holds the same three modules under the same names, runs
    exactly this code."""
    return classifier(projector(hidden).mean(dim=1))


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
