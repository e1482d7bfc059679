"""The sections of the GPU check (:mod:`streamser.perf.gpu_check`), one function each.

Each takes the shared :class:`CheckContext` and returns a JSON-ready dict; ``passed`` in it is
True or False for a check, None for a figure without a verdict. A section that cannot run on
this device raises :class:`Skip` with the reason. Models built by one section are kept in the
context for the next (the fixture in fp32 and half, the random network in half).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import patch

import numpy as np
import torch

from streamser.contracts import ModelInfo
from streamser.model.cuda_graphs import GraphedForward
from streamser.model.demo import DEMO_CONFIG, random_network
from streamser.model.devices import exact_reductions, math_flags, strict_fp32
from streamser.model.exhubert import ExHubertConfig
from streamser.model.numerics import residual_stream_numerics, synthetic_windows
from streamser.model.runtime import EmotionModel, load_model
from streamser.perf.machine import datasheet_fp16_tflops, describe_machine
from streamser.perf.stages import FIXTURE_DIR
from streamser.perf.timing import max_abs, prob_diff

PARITY_TOL = 1e-4
"""fp32 (TF32 off) against the fixture's reference logits."""
GUARD_TOL = 1e-5
"""A row the guard recomputed, against the fp32 model's logits for the same window."""
MAX_PROB_DIFF = 0.01
"""Half against fp32: the target deviation."""
LATENCY_TARGET_S = 0.003
THROUGHPUT_TARGET = 2500.0
GRAPH_REL_TOL = 1e-2
"""CUDA-graph replay against eager, relative to the logits' scale (the same kernels run)."""


class Skip(Exception):
    """The section does not apply here; the message says why."""


@dataclass
class CheckContext:
    device: torch.device
    tiny: bool
    batches: tuple[int, ...]
    windows: int
    latency_runs: int
    models: dict[str, EmotionModel] = field(default_factory=dict)
    fixture_fp32: dict[str, np.ndarray] = field(default_factory=dict)
    graphed: GraphedForward | None = None

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def targets_apply(self) -> bool:
        """The targets are for the full-size network on a GPU."""
        return self.cuda and not self.tiny

    def require_cuda(self) -> None:
        if not self.cuda:
            raise Skip("skipped: no CUDA")


def environment(ctx: CheckContext) -> dict[str, Any]:
    out: dict[str, Any] = {
        "machine": describe_machine(ctx.device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "math_flags_at_start": math_flags(),
    }
    exact_reductions()  # what the runtime sets on CUDA, before the sections below
    out["math_flags_runtime"] = math_flags()
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        entry, tflops = datasheet_fp16_tflops(props.name)
        out.update(
            device=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_bytes=props.total_memory,
            datasheet_entry=entry or "unknown",
            datasheet_fp16_tflops=tflops,
        )
    else:
        out["device"] = out["machine"]["cpu"]
    out["passed"] = None
    return out


def _fixture_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with np.load(FIXTURE_DIR / "expected.npz") as e:
        names = sorted(k.removesuffix("_waveform") for k in e.files if k.endswith("_waveform"))
        return {n: (e[f"{n}_waveform"], e[f"{n}_logits"]) for n in names}


def fixture_parity(ctx: CheckContext) -> dict[str, Any]:
    """fp32 with TF32 off against the reference logits of every fixture case."""
    em = load_model(str(FIXTURE_DIR), compute=ctx.device.type, precision="fp32")
    ctx.models["fixture_fp32"] = em
    diffs = {}
    with strict_fp32():
        for name, (wave, ref) in _fixture_cases().items():
            ctx.fixture_fp32[name] = em.predict(wave).logits
            diffs[name] = max_abs(ctx.fixture_fp32[name], ref)
    worst = max(diffs.values())
    return {
        "max_abs_logit_diff": diffs,
        "worst": worst,
        "tol": PARITY_TOL,
        "passed": worst <= PARITY_TOL,
    }


def half_fixture(ctx: CheckContext) -> dict[str, Any]:
    """The half path (fp16 on a GPU, bf16 on a CPU) against fp32 on every fixture case."""
    em = load_model(str(FIXTURE_DIR), compute=ctx.device.type, precision="half")
    ctx.models["fixture_half"] = em
    cases = _fixture_cases()
    preds = em.predict_batch([wave for wave, _ in cases.values()])
    diffs = {n: prob_diff(p.logits, ctx.fixture_fp32[n]) for n, p in zip(cases, preds)}
    worst = max(diffs.values())
    return {
        "precision": em.precision,
        "max_abs_prob_diff": diffs,
        "worst": worst,
        "half_fallbacks": em.half_fallbacks,
        "tol": MAX_PROB_DIFF,
        "passed": worst <= MAX_PROB_DIFF,
    }


def half_network(ctx: CheckContext) -> dict[str, Any]:
    """Half against fp32 (TF32 off) on the random network, full size unless ``--tiny``."""
    cfg = DEMO_CONFIG if ctx.tiny else ExHubertConfig()
    t0 = time.perf_counter()
    network = random_network(cfg, seed=0)
    n = sum(p.numel() for p in network.parameters())
    info = ModelInfo.random_weights("random weights (gpu check)", "random weights", n)
    em = EmotionModel(network, info, ctx.device, "half")
    fp32 = EmotionModel(network, info, ctx.device, "fp32")  # shares the weights
    em.threads = fp32.threads = None
    build_s = time.perf_counter() - t0
    x = synthetic_windows(ctx.windows, seed=1)
    with strict_fp32():
        ref = fp32.logits(x)
    out = em.logits(x)
    ctx.models["network_half"] = em
    diff = prob_diff(out, ref)
    return {
        "architecture": "tiny" if ctx.tiny else "full size",
        "parameters": n,
        "build_s": build_s,
        "windows": ctx.windows,
        "precision": em.precision,
        "max_abs_prob_diff": diff,
        "max_abs_logit_diff": max_abs(out, ref),
        "half_fallbacks": em.half_fallbacks,
        "tol": MAX_PROB_DIFF,
        "passed": diff <= MAX_PROB_DIFF,
    }


def guard(ctx: CheckContext) -> dict[str, Any]:
    """A half pass patched to give a non-finite first row: that row alone is recomputed in
    fp32 and must match the fp32 model; then an input scaled until half overflows."""
    em = ctx.models["fixture_half"]
    cases = _fixture_cases()
    first = next(iter(cases))
    real = em._half_pass

    def broken(x: torch.Tensor) -> torch.Tensor:
        out = real(x)
        out[0] = float("nan")
        return out

    before = em.half_fallbacks
    with patch.object(em, "_half_pass", broken), strict_fp32():
        preds = em.predict_batch([wave for wave, _ in cases.values()])
    recomputed = em.half_fallbacks - before
    diff = max_abs(preds[0].logits, ctx.fixture_fp32[first])
    finite = all(np.isfinite(p.logits).all() for p in preds)
    scaled = _overflowing_input(em)
    return {
        "recomputed_rows": recomputed,
        "recomputed_vs_fp32_max_abs_logit_diff": diff,
        "tol": GUARD_TOL,
        "all_finite": finite,
        "scaled_input": scaled,
        "passed": recomputed == 1 and finite and diff <= GUARD_TOL,
    }


def _overflowing_input(em: EmotionModel) -> dict[str, Any]:
    """A window scaled by 1e6 (beyond fp16 once convolved): does the guard catch it?"""
    x = synthetic_windows(1, seed=5) * 1e6
    before = em.half_fallbacks
    out = em.logits(x.astype(np.float32))
    return {
        "scale": 1e6,
        "tripped": em.half_fallbacks > before,
        "finite": bool(np.isfinite(out).all()),
    }


def headroom(ctx: CheckContext) -> dict[str, Any]:
    """The residual stream's per-layer magnitude against fp16's range (fixture, network)."""
    out: dict[str, Any] = {}
    for name in ("fixture_fp32", "network_half"):
        em = ctx.models.get(name)
        if em is None:
            continue
        report = residual_stream_numerics(em.network, synthetic_windows(4, seed=2))
        d = report.to_dict()
        out[name] = {
            "max_abs": d["max_abs"],
            "input_max_abs": d["input_max_abs"],
            "first_overflow_layer": d["first_overflow_layer"],
            "headroom_bits": [round(layer.headroom_bits, 2) for layer in report.layers],
        }
    out["passed"] = None  # a figure: the mixed path keeps the stream in fp32 either way
    return out


def graphs(ctx: CheckContext) -> dict[str, Any]:
    """Eager against CUDA-graph replays on two different inputs: equal, and the second
    replay's output is the second input's (no stale replay)."""
    ctx.require_cuda()
    em = ctx.models["network_half"]
    graphed = ctx.graphed = GraphedForward.for_model(em, max_batch=4)
    x1, x2 = synthetic_windows(2, 3), synthetic_windows(2, 4)
    g1, g2 = graphed(x1), graphed(x2)
    e1, e2 = em.logits(x1), em.logits(x2)
    scale = max(float(np.abs(e1).max()), float(np.abs(e2).max()), 1e-6)
    diff = max(max_abs(g1, e1), max_abs(g2, e2))
    apart = max_abs(g1, g2)
    return {
        "buckets": list(graphed.buckets),
        "pool_reserved_bytes": graphed.pool_bytes,
        "max_abs_logit_diff_vs_eager": diff,
        "max_abs_prob_diff_vs_eager": max(prob_diff(g1, e1), prob_diff(g2, e2)),
        "logit_scale": scale,
        "inputs_apart": apart,
        "replay_fallbacks": graphed.fallbacks,
        "passed": diff <= GRAPH_REL_TOL * scale and apart > 10 * diff,
    }


def _percentiles(run: Callable[[], Any], n: int) -> dict[str, float]:
    for _ in range(3):
        run()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        run()  # host numpy out: the device is synchronised
        ts.append(time.perf_counter() - t0)
    return {"p50_s": float(np.median(ts)), "p95_s": float(np.percentile(ts, 95)), "runs": n}


def latency(ctx: CheckContext) -> dict[str, Any]:
    """Batch 1, eager and (on CUDA) graphed: p50 and p95 of the whole call, host to host."""
    em = ctx.models["network_half"]
    x = synthetic_windows(1, 6)
    out: dict[str, Any] = {"eager": _percentiles(lambda: em.logits(x), ctx.latency_runs)}
    graphed = ctx.graphed
    if ctx.cuda and graphed is None:  # the graph section failed or ran out of time
        graphed = GraphedForward.for_model(em, max_batch=4)
    if graphed is not None:
        run = graphed
        out["graphed"] = _percentiles(lambda: run(x), ctx.latency_runs)
        graphed.release()
        ctx.graphed = None
    else:
        out["graphed"] = "skipped: no CUDA"
    best = min(v["p50_s"] for v in out.values() if isinstance(v, dict))
    out["best_p50_s"] = best
    out["target_s"] = LATENCY_TARGET_S
    out["passed"] = best <= LATENCY_TARGET_S if ctx.targets_apply else None
    return out


def throughput(ctx: CheckContext) -> dict[str, Any]:
    """Windows per second in half at each batch size (eager; median of 3 after a warm-up)."""
    em = ctx.models["network_half"]
    rates: dict[str, float] = {}
    for b in ctx.batches:
        x = synthetic_windows(b, 7)
        em.logits(x)
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            em.logits(x)
            ts.append(time.perf_counter() - t0)
        rates[str(b)] = b / float(np.median(ts))
    best = max(rates.values())
    return {
        "precision": em.precision,
        "windows_per_s": rates,
        "best": best,
        "half_fallbacks": em.half_fallbacks,
        "target": THROUGHPUT_TARGET,
        "passed": best >= THROUGHPUT_TARGET if ctx.targets_apply else None,
    }
