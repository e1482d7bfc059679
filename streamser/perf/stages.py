"""The CPU-side stages of a bench: the first estimate, the optimised path against the eager
baseline, int8, onnxruntime, and the deviation on the bundled fixture."""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamser.contracts import ModelInfo
from streamser.model.demo import random_network
from streamser.model.exhubert import ExHubert, ExHubertConfig
from streamser.model.loading import load_network
from streamser.model.runtime import EmotionModel, quantize_int8
from streamser.perf.meters import peak_memory_bytes, reset_peak_memory
from streamser.perf.options import BenchOptions
from streamser.perf.precisions import PrecisionRow, PrecisionSet
from streamser.perf.timing import (
    SEED,
    Forward,
    Rig,
    Timing,
    make_inputs,
    max_abs,
    plain_forward,
    prob_diff,
    relabel,
    time_paths,
)

FIXTURE_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "tiny-parametrized"
"""The tiny reference checkpoint, present in a source checkout (not in an installed wheel)."""
FIXTURE_CASE = "full_3s"


def build_network(opts: BenchOptions, cfg: ExHubertConfig) -> tuple[ExHubert, ModelInfo]:
    if opts.model is not None:
        return load_network(opts.model)
    t0 = time.perf_counter()
    network = random_network(cfg, seed=SEED)
    n_params = sum(p.numel() for p in network.state_dict().values())
    info = ModelInfo.random_weights(
        "random weights (bench)", "random weights", n_params, time.perf_counter() - t0
    )
    return network, info


def fixture_deviation(compute: str, quantize: str | None) -> dict[str, Any] | None:
    """On the bundled tiny checkpoint: the chosen path against fp32 on the CPU and against the
    reference logits; ``None`` where the fixture is not available (an installed wheel)."""
    expected_path = FIXTURE_DIR / "expected.npz"
    if not expected_path.is_file():
        return None
    from streamser.model.runtime import load_model

    with np.load(expected_path) as e:
        wave, ref = e[f"{FIXTURE_CASE}_waveform"], e[f"{FIXTURE_CASE}_logits"]
    fp32 = load_model(str(FIXTURE_DIR), compute="cpu").predict(wave)
    other_model = load_model(str(FIXTURE_DIR), compute=compute, quantize=quantize)
    other = other_model.predict(wave)
    return {
        "fixture": f"{FIXTURE_DIR.name}/{FIXTURE_CASE}",
        "path": other_model.describe() + (f"/{quantize}" if quantize else ""),
        "max_abs_prob_diff_vs_fp32": max_abs(other.probs, fp32.probs),
        "max_abs_logit_diff_vs_fp32": max_abs(other.logits, fp32.logits),
        "max_abs_logit_diff_fp32_vs_reference": max_abs(fp32.logits, ref),
        "half_fallbacks": other_model.half_fallbacks,
    }


def first_estimate(
    opts: BenchOptions, cfg: ExHubertConfig, device: torch.device
) -> tuple[EmotionModel, dict[str, Any]]:
    """From nothing to the first window's logits, as a user's start goes."""
    reset_peak_memory(device)
    t0 = time.perf_counter()
    network, info = build_network(opts, cfg)
    em = EmotionModel(network, info, device)
    # Fixed threads, so every path runs alike; the runtime's adaptive count only matters
    # under contention (benchmarks/bench_model.py --contention measures that).
    em.threads = None
    t1 = time.perf_counter()
    em.logits(make_inputs(1))
    t2 = time.perf_counter()
    return em, {
        "build_s": t1 - t0,
        "first_forward_s": t2 - t1,
        "to_first_estimate_s": t2 - t0,
        "peak_memory_bytes": peak_memory_bytes(device),
        "n_params": info.n_params,
    }


@dataclass
class MainStage:
    """What the optimised path, the precision rows and the baseline measured together."""

    timings: list[Timing] = field(default_factory=list)
    optimised: dict[int, np.ndarray] = field(default_factory=dict)
    """The optimised path's logits per batch size."""
    fp32: dict[int, np.ndarray] = field(default_factory=dict)
    """The fp32 row's logits per batch size: what every precision is compared with."""
    comparison: list[dict[str, Any]] = field(default_factory=list)
    precision_rows: list[PrecisionRow] = field(default_factory=list)


def optimised_and_baseline(
    em: EmotionModel,
    opts: BenchOptions,
    sizes: Sequence[int],
    rig: Rig,
    say: Callable[[str], None],
    precisions: PrecisionSet,
) -> MainStage:
    """The runtime's path at every batch size, alternating run by run with the other
    precisions (:mod:`streamser.perf.precisions`) and the eager fp32 baseline, all on the
    same network and inputs. Labels are set after each timing, from what ran."""
    fast, base = "optimised", "eager fp32 baseline"
    baseline_sizes = opts.resolved_baseline_batch_sizes(rig.device)
    out = MainStage()
    for b in sizes:
        paths: dict[str, Forward] = {fast: em.logits, **precisions.paths()}
        if b in baseline_sizes:
            paths[base] = plain_forward(em.network)
        say(f"{', '.join(paths)}: batch {b} x {rig.repeats}")
        precisions.start_batch()
        before = em.half_fallbacks
        measured = time_paths(paths, b, rig, fp32=precisions.fp32_keys(fast) | {base})
        rows, labels, out.fp32[b] = precisions.rows(measured, fast)
        out.precision_rows.extend(rows)
        labels[fast] = f"optimised {em.describe()}" + (
            " + fp32 fallback" if em.half_fallbacks > before else ""
        )
        out.timings.extend(relabel(t, labels.get(k, k)) for k, (t, _) in measured.items())
        out.optimised[b] = measured[fast][1]
        if base in measured:
            base_timing, logits = measured[base]
            out.comparison.append(
                {
                    "batch": b,
                    "speedup": base_timing.s_per_window / measured[fast][0].s_per_window,
                    "max_abs_logit_diff": max_abs(out.optimised[b], logits),
                    "max_abs_prob_diff": prob_diff(out.optimised[b], logits),
                }
            )
    em.apply_precision()  # the shared network's flags back to the optimised path's
    return out


def int8_stage(
    network: ExHubert,
    info: ModelInfo,
    sizes: Sequence[int],
    rig: Rig,
    fp32_logits: dict[int, np.ndarray],
    say: Callable[[str], None],
) -> tuple[list[Timing], dict[str, Any], list[PrecisionRow]]:
    """Quantises ``network`` in place (as ``load_model`` does) and times it."""
    say("int8 dynamic quantisation")
    quantized = EmotionModel(quantize_int8(network, inplace=True), info, rig.device)
    quantized.threads = None
    gc.collect()
    timings, rows, precision_rows = [], [], []
    for b in sizes:
        say(f"int8: batch {b} x {rig.repeats}")
        timing, logits = time_paths({"int8 dynamic": quantized.logits}, b, rig)["int8 dynamic"]
        timings.append(timing)
        precision_rows.append(PrecisionRow.timed("int8", timing, logits, fp32_logits[b], None))
        rows.append(
            {
                "batch": b,
                "max_abs_prob_diff_vs_fp32": prob_diff(logits, fp32_logits[b]),
                "max_abs_logit_diff_vs_fp32": max_abs(logits, fp32_logits[b]),
            }
        )
    report = {"random_model": rows, "fixture": fixture_deviation("cpu", "int8")}
    return timings, report, precision_rows


def onnxruntime_stage(
    em: EmotionModel,
    opts: BenchOptions,
    sizes: Sequence[int],
    rig: Rig,
    fp32_logits: dict[int, np.ndarray],
    say: Callable[[str], None],
) -> tuple[list[Timing], dict[str, Any], list[PrecisionRow]]:
    """The onnxruntime backend on the same weights: export (as a user's first start does,
    without a cache for random weights), session, then timings at every batch size,
    alternating run by run with the torch path where the eager baseline runs too."""
    from streamser.model.onnx_backend import OnnxForward, export_onnx, import_onnxruntime

    import_onnxruntime()
    say("onnxruntime: exporting the network to ONNX")
    reset_peak_memory(rig.device)
    with tempfile.TemporaryDirectory(prefix="streamser-bench-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_s = export_onnx(em.network, path)
        export_peak = peak_memory_bytes(rig.device)
        t0 = time.perf_counter()
        onnx = OnnxForward(path, torch.get_num_threads())
        session_s = time.perf_counter() - t0
    gc.collect()
    name, torch_name = "onnxruntime fp32", f"optimised {em.describe()}"
    alternate = set(opts.resolved_baseline_batch_sizes(rig.device) or sizes[:1])
    timings, rows, precision_rows = [], [], []
    for b in sizes:
        paths: dict[str, Forward] = {name: onnx}
        if b in alternate:
            paths[torch_name] = em.logits
        say(f"{' and '.join(paths)}: batch {b} x {rig.repeats}")
        measured = time_paths(paths, b, rig, fp32=paths)
        timing, logits = measured[name]
        timings.append(timing)
        precision_rows.append(PrecisionRow.timed(name, timing, logits, fp32_logits[b], None))
        row: dict[str, Any] = {
            "batch": b,
            "max_abs_logit_diff_vs_torch": max_abs(logits, fp32_logits[b]),
            "max_abs_prob_diff_vs_torch": prob_diff(logits, fp32_logits[b]),
        }
        if torch_name in measured:
            row["speedup_vs_torch_alternated"] = (
                measured[torch_name][0].s_per_window / timing.s_per_window
            )
        rows.append(row)
    report = {
        "onnxruntime": onnx.version,
        "threads": onnx.threads,
        "export_s": export_s,
        "export_peak_memory_bytes": export_peak,
        "session_s": session_s,
        "rows": rows,
    }
    return timings, report, precision_rows
