"""``streamser bench``: run :mod:`streamser.perf.bench`, print its report
(:mod:`streamser.perf.report`), optionally write it as JSON.

Also runnable as ``python -m streamser.commands.bench_cmd`` with the same options. Heavy
imports (torch, the model) happen inside the handler, so building the command line stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from streamser.config import ConfigError
from streamser.console import write_out
from streamser.constants import BACKENDS, COMPUTE_CHOICES, QUANTIZE_CHOICES
from streamser.errors import StreamserError


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.replace(" ", "").split(",") if s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,4,16, got {text!r}") from e
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive, got {text!r}")
    return sizes


BENCH_PRECISIONS = ("fp32", "half", "half-fp16", "half-bf16", "int8")


def _precisions(text: str) -> tuple[str, ...]:
    chosen = tuple(s for s in text.replace(" ", "").split(",") if s)
    unknown = [s for s in chosen if s not in BENCH_PRECISIONS]
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(
            f"expected precisions from {', '.join(BENCH_PRECISIONS)}, got {text!r}"
        )
    return chosen


def add_bench_args(p: argparse.ArgumentParser) -> None:
    """The options of ``streamser bench`` (shared by the CLI and ``python -m``)."""
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny architecture, batches 1 and 2, 2 repeats: a smoke run in seconds",
    )
    p.add_argument("--json", metavar="PATH", help="also write every figure as JSON to PATH")
    p.add_argument(
        "--batch-sizes",
        type=_sizes,
        metavar="N,N,...",
        help="windows per forward pass (default 1,4,16; 1,4,16,64 on a GPU)",
    )
    p.add_argument("--repeats", type=int, metavar="N", help="timed runs per batch size (default 5)")
    p.add_argument(
        "--compute",
        default="auto",
        choices=COMPUTE_CHOICES,
        help="device (default: auto = cuda, then mps, then cpu)",
    )
    p.add_argument(
        "--quantize", choices=QUANTIZE_CHOICES, help="also time int8 dynamic quantisation (CPU)"
    )
    p.add_argument(
        "--precision",
        type=_precisions,
        metavar="P,P,...",
        help="precisions timed side by side on the same inputs, each against fp32 (always "
        f"run): {', '.join(BENCH_PRECISIONS)} (default fp32,half; int8 as --quantize int8)",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="onnxruntime: also time the optional onnxruntime backend (CPU, fp32)",
    )
    p.add_argument(
        "--threads", type=int, metavar="N", help="torch CPU threads (default: physical cores)"
    )
    p.add_argument(
        "--model",
        help="hub id or directory of real weights (default: random weights, published shape)",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the eager fp32 baseline")
    p.add_argument(
        "--baseline-batch-sizes",
        type=_sizes,
        metavar="N,N,...",
        help="batches for the baseline (default on a CPU: those up to 4; elsewhere all)",
    )
    p.add_argument("--no-cuda-graphs", action="store_true", help="GPU: skip the CUDA-graph runs")


def bench(args: argparse.Namespace) -> int:
    """Handler of ``streamser bench``."""
    from streamser.perf.bench import run_bench
    from streamser.perf.options import BenchOptions
    from streamser.perf.report import format_report

    for flag, value in (("--repeats", args.repeats), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} {value} is out of range: use 1 or more")
    opts = BenchOptions(
        quick=args.quick,
        batch_sizes=args.batch_sizes,
        repeats=args.repeats,
        compute=args.compute or "auto",
        quantize=args.quantize,
        baseline=not args.no_baseline,
        baseline_batch_sizes=args.baseline_batch_sizes,
        threads=args.threads,
        model=args.model,
        cuda_graphs=not args.no_cuda_graphs,
        onnxruntime=args.backend == "onnxruntime",
        precisions=args.precision,
    )
    report = run_bench(opts, say=lambda m: print(f"streamser bench: {m}", file=sys.stderr))
    write_out(format_report(report))
    if args.json:
        path = Path(args.json).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        write_out(f"\nJSON written to {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="streamser bench", description="Latency, throughput and FLOP/s of ExHuBERT here."
    )
    add_bench_args(p)
    args = p.parse_args(argv)
    try:
        return bench(args)
    except StreamserError as e:
        print(f"streamser: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
