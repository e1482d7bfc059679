"""One command that checks and measures the GPU path, in under five minutes, into one JSON file.

Run on a CUDA machine: ``python benchmarks/gpu_check.py [OUT.json]`` (default
``gpu_check.json``). Sections, in order (:mod:`streamser.perf.gpu_sections`):

``environment``: torch, CUDA and cuDNN versions, device, capability, the datasheet entry
matched, the TF32 and reduction flags at start and as the runtime sets them.
``fixture_parity``: fp32 with TF32 off on ``tests/data/tiny-parametrized`` against its
reference logits (<= 1e-4). ``half_fixture`` and ``half_network``: half against fp32 on the
fixture and on the random network (full size; several synthetic windows), <= 0.01 in
probability. ``guard``: a half pass patched to give a non-finite row; the recomputed row within
1e-5 of fp32; an input scaled until half overflows. ``headroom``: the residual stream's
per-layer magnitude against fp16's range. ``graphs``: eager against CUDA-graph replays on two
different inputs (equal; the second proves no stale replay) and the graphs' pool memory.
``latency``: batch 1, p50/p95, eager and graphed (target <= 3 ms). ``throughput``: windows/s
in half at batches 64, 128 and 256 (target >= 2,500 at the best batch).

Every section is timed and records its peak memory; an error is recorded and the next section
runs; a section not started before the deadline (``--deadline-s``, 270 by default) is
skipped. ``--device cpu --tiny`` runs what makes sense on a CPU with the tiny architecture in
well under a minute (the graph sections say "skipped: no CUDA"): the CI smoke test.

``checks`` gathers the verdicts: ``passed`` is true where every correctness check that ran
passed and no section failed with an error; ``targets_met`` says the same of the speed
targets, which apply to the full-size network on a GPU only (null elsewhere).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from streamser.model.devices import resolve_compute
from streamser.perf import gpu_sections as s
from streamser.perf.meters import peak_memory_bytes, reset_peak_memory

SECTIONS: tuple[tuple[str, Callable[[s.CheckContext], dict[str, Any]]], ...] = (
    ("environment", s.environment),
    ("fixture_parity", s.fixture_parity),
    ("half_fixture", s.half_fixture),
    ("half_network", s.half_network),
    ("guard", s.guard),
    ("headroom", s.headroom),
    ("graphs", s.graphs),
    ("latency", s.latency),
    ("throughput", s.throughput),
)
CORRECTNESS = ("fixture_parity", "half_fixture", "half_network", "guard", "graphs")
TARGETS = ("latency", "throughput")
DEFAULT_DEADLINE_S = 270.0


def run_section(
    name: str, fn: Callable[[s.CheckContext], dict[str, Any]], ctx: s.CheckContext
) -> dict[str, Any]:
    """One section: timed, its peak memory, any error recorded instead of raised."""
    reset_peak_memory(ctx.device)
    t0 = time.perf_counter()
    entry: dict[str, Any]
    try:
        result = fn(ctx)
        verdict = result.get("passed")
        status = "measured" if verdict is None else ("passed" if verdict else "failed")
        entry = {"status": status, "result": result}
    except s.Skip as e:
        entry = {"status": "skipped", "note": str(e)}
    except Exception as e:  # recorded, and the next section runs
        entry = {
            "status": "error",
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(limit=6),
        }
    entry["seconds"] = time.perf_counter() - t0
    entry["peak_memory_bytes"] = peak_memory_bytes(ctx.device)
    if ctx.cuda:
        try:
            torch.cuda.synchronize(ctx.device)  # nothing of this section runs into the next
        except RuntimeError as e:
            entry.setdefault("error", f"after the section: {e}")
            entry["status"] = "error"
    return entry


def run_check(
    ctx: s.CheckContext, deadline_s: float, say: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    t_start = time.perf_counter()
    sections: dict[str, Any] = {}
    for name, fn in SECTIONS:
        if time.perf_counter() - t_start > deadline_s:
            sections[name] = {"status": "skipped", "note": "skipped: over the deadline"}
            continue
        say(f"gpu check: {name}")
        sections[name] = run_section(name, fn, ctx)
        say(f"gpu check: {name}: {sections[name]['status']} ({sections[name]['seconds']:.1f} s)")
    checks = {n: _verdict(sections[n]) for n in (*CORRECTNESS, *TARGETS)}
    ran = [checks[n] for n in CORRECTNESS if checks[n] is not None]
    errors = [n for n, e in sections.items() if e["status"] == "error"]
    targets = [checks[n] for n in TARGETS]
    return {
        "device": ctx.device.type,
        "tiny": ctx.tiny,
        "batches": list(ctx.batches),
        "deadline_s": deadline_s,
        "total_s": time.perf_counter() - t_start,
        "sections": sections,
        "checks": checks,
        "errors": errors,
        "passed": bool(ran) and all(ran) and not errors,
        "targets_met": None if None in targets else all(targets),
        "targets": {
            "batch1_latency_s": s.LATENCY_TARGET_S,
            "windows_per_s": s.THROUGHPUT_TARGET,
            "max_abs_prob_diff": s.MAX_PROB_DIFF,
        },
        "peak_memory_bytes": max(
            (e.get("peak_memory_bytes") or 0 for e in sections.values()), default=0
        ),
    }


def _verdict(entry: dict[str, Any]) -> bool | None:
    if entry["status"] == "error":
        return False
    result = entry.get("result")
    return None if result is None else result.get("passed")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default="gpu_check.json", help="JSON file to write")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu", "auto"))
    p.add_argument("--tiny", action="store_true", help="the tiny architecture (smoke run)")
    p.add_argument("--deadline-s", type=float, default=DEFAULT_DEADLINE_S)
    p.add_argument("--batches", help="throughput batch sizes (default 64,128,256; CPU 2,4)")
    args = p.parse_args(argv)
    device = resolve_compute(args.device)
    cuda = device.type == "cuda"
    default = (64, 128, 256) if cuda else (2, 4)
    batches = tuple(int(b) for b in args.batches.split(",")) if args.batches else default
    ctx = s.CheckContext(
        device=device,
        tiny=args.tiny,
        batches=batches,
        windows=8 if cuda else 4,
        latency_runs=50 if cuda else 5,
    )
    report = run_check(ctx, args.deadline_s, say=lambda m: print(m, file=sys.stderr))
    out = Path(args.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    verdict = "passed" if report["passed"] else "FAILED"
    print(
        f"gpu check {verdict} in {report['total_s']:.0f} s; targets met: "
        f"{report['targets_met']}; JSON written to {out}"
    )
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
