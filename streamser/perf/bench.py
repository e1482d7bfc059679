"""``streamser bench``: how fast ExHuBERT runs here, and how close to the device's peak.

What it measures, for the full-size architecture with seeded random weights (or ``--model``):

* the time from nothing to the first estimate (build or load, device placement, first forward);
* per batch size, the forward time (median and p95 over the repeats), seconds per window and
  windows per second, the achieved FLOP/s (from :mod:`streamser.perf.flops`) as a fraction of
  the device's measured GEMM peak, and the peak memory of that stage;
* the same math run plainly (eager attention, fp32, separate q/k/v, channels-first convolutions,
  weight norm recomputed: ``ExHubert.set_fast_paths(False)``) as a baseline in the same run,
  as a speed ratio and the largest logit difference from the optimised path;
* the precision rows (:mod:`streamser.perf.precisions`): fp32 and half (bf16 on a CPU, fp16
  on a GPU) alternated with the above on the same weights and inputs, then int8 and
  onnxruntime where asked for: seconds per window, windows per second, the largest probability
  difference from fp32 and the half guard's fp32 recomputes;
* optionally int8 dynamic quantisation, its speed and its deviation from fp32;
* optionally the onnxruntime backend (CPU, fp32): export time and memory, its speed,
  alternated run by run with torch at the baseline's batch sizes, and its logit difference;
* on a GPU, bucketed CUDA-graph replays of the fixed input shape
  (:mod:`streamser.model.cuda_graphs`) with their memory pool, and fp16 against fp32 on the
  bundled fixture.

The device's peak is measured the same way every time (``machine.measure_peak_gflops``): on a
CPU a 2048^3 fp32 matmul on all threads, best of 10 after 3 warm-ups; on a GPU 8192^3 fp16 and
fp32 (TF32 off) matmuls timed with CUDA events over 20 back to back. fp32 paths are measured
against the fp32 peak, the others against the fast one. Row labels are set after each timing,
from what ran (a device or fp32 fallback shows in the label). Other processes on the machine
disturb timings, so each stage also records how many cores others kept busy meanwhile.
Only torch, numpy and the model are imported: it runs on a bare GPU server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch

from streamser.model.demo import DEMO_CONFIG
from streamser.model.devices import resolve_compute
from streamser.model.errors import ModelError
from streamser.model.exhubert import ExHubertConfig
from streamser.perf.flops import count_flops
from streamser.perf.gpu import gpu_stages
from streamser.perf.machine import describe_machine, measure_peak_gflops, physical_cores
from streamser.perf.meters import reset_peak_memory
from streamser.perf.options import BenchOptions
from streamser.perf.precisions import PrecisionSet
from streamser.perf.stages import (
    first_estimate,
    int8_stage,
    onnxruntime_stage,
    optimised_and_baseline,
)
from streamser.perf.timing import Rig

REFERENCE_CPU = {
    "what": "published reference code (transformers remote code, fp32, eager attention)",
    "machine": "2 vCPU AMD EPYC (Zen 3, AVX2), 24 GiB: the machine type these figures come from",
    "s_per_window": {"1": 2.50, "4": 1.86},
    "peak_rss_bytes": 3.2e9,
}
"""Measured once, beside the eager baseline for comparison; not re-measured by the bench."""
BENCH_PRECISIONS = ("fp32", "half", "half-fp16", "half-bf16", "int8")
"""What ``--precision`` may list (``commands/bench_cmd.py`` offers the same)."""


def run_bench(opts: BenchOptions, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run every stage and return a JSON-ready report (see ``streamser bench --json``)."""
    device = resolve_compute(opts.compute)
    if opts.quantize not in (None, "int8"):
        raise ModelError(f"--quantize {opts.quantize!r}: the only choice is int8")
    for p in opts.resolved_precisions():
        if p not in BENCH_PRECISIONS:
            raise ModelError(f"--precision {p!r}: choose from {', '.join(BENCH_PRECISIONS)}")
    if opts.int8 and device.type != "cpu":
        raise ModelError("int8 (--quantize or --precision int8) runs on the CPU: add --compute cpu")
    if opts.onnxruntime:
        from streamser.model.onnx_backend import import_onnxruntime

        if device.type != "cpu":
            raise ModelError("--backend onnxruntime runs on the CPU: add --compute cpu")
        import_onnxruntime()
    torch.set_num_threads(opts.threads or physical_cores())
    sizes, repeats = opts.resolved_batch_sizes(device), opts.resolved_repeats()
    say(f"device {device.type}, {torch.get_num_threads()} threads; measuring the peak")
    machine = describe_machine(device)
    peak = measure_peak_gflops(device)

    say("building the model and computing the first estimate")
    em, load = first_estimate(opts, DEMO_CONFIG if opts.quick else ExHubertConfig(), device)
    info, cfg = em.info, em.network.config
    flops = count_flops(cfg)
    rig = Rig(
        repeats,
        device,
        flops.per_window,
        float(peak["gflop_per_s"]),
        float(peak["fp32_gflop_per_s"]),
    )
    precisions = PrecisionSet(
        em, opts.resolved_precisions(), explicit=opts.precisions is not None, quick=opts.quick
    )
    main = optimised_and_baseline(em, opts, sizes, rig, say, precisions)
    timings, rows = main.timings, main.precision_rows

    gpu: dict[str, Any] | None = None
    if device.type == "cuda":
        graph_rows, gpu = gpu_stages(em, sizes, rig, main.optimised, opts.cuda_graphs, say)
        timings.extend(graph_rows)
    onnx: dict[str, Any] | None = None
    if opts.onnxruntime:
        onnx_timings, onnx, onnx_rows = onnxruntime_stage(em, opts, sizes, rig, main.fp32, say)
        timings.extend(onnx_timings)
        rows.extend(onnx_rows)
    int8: dict[str, Any] | None = None
    probe = precisions.probe
    if opts.int8:
        precisions.release()  # the half copies go; the shared network is quantised next
        network = em.network
        del em, precisions  # the fp32 model is converted in place: no second copy in memory
        int8_timings, int8, int8_rows = int8_stage(network, info, sizes, rig, main.fp32, say)
        timings.extend(int8_timings)
        rows.extend(int8_rows)

    return {
        "quick": opts.quick,
        "machine": machine,
        "peak": peak,
        "model": {
            "name": info.name,
            "hidden_size": cfg.hidden_size,
            "layers": cfg.num_hidden_layers,
            "n_params": info.n_params,
            "gflop_per_window": flops.per_window / 1e9,
            "gflop_by_group": {k: v / 1e9 for k, v in flops.by_group().items()},
        },
        "load": load,
        "timings": [asdict(t) for t in timings],
        "precisions": {"rows": [asdict(r) for r in rows], "bf16_probe": probe},
        "baseline_comparison": main.comparison,
        "reference_cpu": REFERENCE_CPU,
        "int8": int8,
        "onnxruntime": onnx,
        "gpu": gpu,
        "peak_memory_resettable": reset_peak_memory(device),
    }
