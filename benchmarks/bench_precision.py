"""fp32 against half (bf16 on a CPU) and int8: GEMM rates and the full-size network, per CPU.

Run: ``.venv/bin/python benchmarks/bench_precision.py [--rounds 3] [--windows 2] [--no-int8]
[--fp16-gemm] [--json OUT]``. Prints the CPU's model name and relevant flags, what
``choose_precision`` picks for it, the GEMM rates at the two shapes that matter (149 x 1024 x
4096: one window through a feed-forward layer; 2048^3: the bench's peak) and, on the full-size
architecture with seeded random weights, seconds per window and the largest probability
difference against fp32 for each precision. Paths alternate round by round and the best round
counts, so a burst of load from other processes slows all alike; the load average and the
cores other processes kept busy are printed beside the figures, and the process's CPU time
per window beside the wall time (with ``--threads 1`` it is what another process cannot
inflate). On 2 cores it takes 2-4
minutes with the defaults. Figures on record: benchmarks/README.md, "Precision per CPU".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np
import torch

from streamser.model.demo import random_network
from streamser.model.exhubert import ExHubertConfig
from streamser.model.numerics import synthetic_windows
from streamser.model.precision import choose_precision, cpu_caps
from streamser.perf.machine import cpu_gemm_gflops
from streamser.perf.meters import LoadMeter

GEMM_SHAPES = ((149, 1024, 4096), (2048, 2048, 2048))


def gemms(rounds: int, fp16: bool) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(rounds):
        for shape in GEMM_SHAPES:
            for dtype in (torch.float32, torch.bfloat16):
                key = f"{'x'.join(map(str, shape))} {str(dtype).removeprefix('torch.')}"
                best[key] = max(best.get(key, 0.0), cpu_gemm_gflops(*shape, dtype))
    if fp16:  # no fp16 GEMM units on x86 CPUs: one small shape, few repeats, or it takes minutes
        best["149x1024x4096 float16"] = cpu_gemm_gflops(*GEMM_SHAPES[0], torch.float16, trials=2)
    return best


def network_paths(rounds: int, windows: int, int8: bool) -> dict[str, Any]:
    from streamser.model.runtime import quantize_int8

    net = random_network(ExHubertConfig(), seed=0)
    x = torch.from_numpy(synthetic_windows(windows, seed=1))
    paths: dict[str, Any] = {"fp32": None, "half-bf16": torch.bfloat16}
    q = quantize_int8(net) if int8 else None
    if q is not None:
        paths["int8"] = "int8"
    net.set_half(torch.bfloat16)
    t0 = time.perf_counter()
    copy_bytes = net.prepare_half()
    prepare_s = time.perf_counter() - t0
    best: dict[str, float] = {}
    best_cpu: dict[str, float] = {}
    probs: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for name, how in paths.items():
            model = q if how == "int8" else net
            net.set_half(how if isinstance(how, torch.dtype) else None)
            with torch.inference_mode():
                for i in range(windows):  # batch 1, as a live stream runs
                    t1, c1 = time.perf_counter(), time.process_time()
                    logits = model(x[i : i + 1])
                    s, c = time.perf_counter() - t1, time.process_time() - c1
                    best[name] = min(best.get(name, float("inf")), s)
                    best_cpu[name] = min(best_cpu.get(name, float("inf")), c)
                    probs.setdefault(name, np.zeros((windows, logits.shape[-1])))[i] = (
                        torch.softmax(logits.double(), -1).numpy()[0]
                    )
    return {
        "s_per_window_best": best,
        "cpu_s_per_window_best": best_cpu,
        "max_abs_prob_diff_vs_fp32": {
            k: float(np.abs(v - probs["fp32"]).max()) for k, v in probs.items() if k != "fp32"
        },
        "half_copy_bytes": copy_bytes,
        "half_prepare_s": prepare_s,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-int8", action="store_true")
    ap.add_argument("--no-network", action="store_true")
    ap.add_argument("--no-gemm", action="store_true")
    ap.add_argument("--fp16-gemm", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    caps = cpu_caps()
    out: dict[str, Any] = {
        "cpu": caps.model_name,
        "capability": caps.capability,
        "flags": caps.relevant_flags(),
        "amx": caps.amx,
        "avx512_bf16": caps.avx512_bf16,
        "torch": torch.__version__,
        "threads": args.threads,
        "auto_picks": choose_precision(torch.device("cpu"), caps),
        "loadavg_before": os.getloadavg(),
    }
    print(json.dumps(out), flush=True)
    if not args.no_gemm:
        meter = LoadMeter()
        out["gemm_gflops"] = gemms(args.rounds, args.fp16_gemm)
        out["gemm_others_cores"] = meter.others_cores()
        print(json.dumps({k: out[k] for k in ("gemm_gflops", "gemm_others_cores")}), flush=True)
    if not args.no_network:
        meter = LoadMeter()
        out["network"] = network_paths(args.rounds, args.windows, not args.no_int8)
        out["network_others_cores"] = meter.others_cores()
        print(json.dumps({k: out[k] for k in ("network", "network_others_cores")}), flush=True)
    out["loadavg_after"] = os.getloadavg()
    print(json.dumps({"loadavg_after": out["loadavg_after"]}))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
