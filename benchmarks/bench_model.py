"""The full model benchmark, by hand: ``streamser bench`` at full size, written as JSON.

Run: ``.venv/bin/python benchmarks/bench_model.py OUT.json [bench options]``, for example
``benchmarks/bench_model.py /tmp/bench.json --quantize int8``. Any option of ``streamser bench``
can follow the path (``--batch-sizes``, ``--repeats``, ``--compute``, ``--threads`` ...). On a
2-core CPU the default run (batches 1, 4, 16, five repeats each, the eager baseline at 1 and 4)
takes about six minutes.

``--onnxruntime`` adds a comparison with onnxruntime's CPU backend on the same weights (needs
``pip install onnxruntime onnx``; neither is a dependency of streamser): the network is exported
to ONNX (fp32, opset 17, weights as external data), then both engines run the same inputs,
alternating, so that load from other processes disturbs both alike. The figures go under the
``onnxruntime`` key of the JSON.

``--contention`` measures what another busy process does to a window's time: a child process
spins on one core while the model runs with every thread, with one thread less, and with the
runtime's adaptive thread count (``ThreadPolicy``), alternating; then the same without the
child. Figures go under the ``contention`` key. See benchmarks/README.md for those on record.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamser.commands.bench_cmd import main as bench_main
from streamser.model.demo import random_network
from streamser.model.exhubert import ExHubert, ExHubertConfig
from streamser.perf.bench import LoadMeter, make_inputs, peak_memory_bytes, physical_cores


def export_onnx(network: ExHubert, path: Path) -> float:
    """Export with the plain math (strided views are not exportable); returns seconds."""
    network.set_fast_paths(False)
    network.set_attention("sdpa")
    t0 = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (torch.zeros(1, 48_000),),
            str(path),
            input_names=["input_values"],
            output_names=["logits"],
            dynamic_axes={"input_values": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
            external_data=True,
        )
    return time.perf_counter() - t0


def _alternate(
    engines: dict[str, Callable[[np.ndarray], np.ndarray]], x: np.ndarray, repeats: int
) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    times: dict[str, list[float]] = {name: [] for name in engines}
    outs = {name: run(x) for name, run in engines.items()}  # warm-up
    for _ in range(repeats):
        for name, run in engines.items():
            t0 = time.perf_counter()
            outs[name] = run(x)
            times[name].append(time.perf_counter() - t0)
    return times, outs


def onnxruntime_comparison(batch_sizes: Sequence[int], repeats: int) -> dict[str, Any]:
    try:
        import onnxruntime as ort
    except ImportError:
        return {"error": "onnxruntime is not installed (pip install onnxruntime onnx)"}
    threads = physical_cores()
    torch.set_num_threads(threads)
    network = random_network(ExHubertConfig(), seed=0)
    with tempfile.TemporaryDirectory(prefix="streamser-onnx-") as tmp:
        path = Path(tmp) / "exhubert.onnx"
        export_s = export_onnx(network, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        t0 = time.perf_counter()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session_s = time.perf_counter() - t0
    network.set_fast_paths(True)  # as the runtime runs it on a CPU (q/k/v not fused)

    def torch_run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return network(torch.from_numpy(x)).numpy()

    def ort_run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {"input_values": x})[0]

    rows = []
    for b in batch_sizes:
        print(f"onnxruntime vs torch: batch {b} x {repeats}", file=sys.stderr)
        meter = LoadMeter()
        times, outs = _alternate(
            {"torch": torch_run, "onnxruntime": ort_run}, make_inputs(b), repeats
        )
        med = {k: statistics.median(v) / b for k, v in times.items()}
        rows.append(
            {
                "batch": b,
                "s_per_window": med,
                "forward_s": times,
                "onnxruntime_speedup": med["torch"] / med["onnxruntime"],
                "max_abs_logit_diff": float(np.abs(outs["torch"] - outs["onnxruntime"]).max()),
                "other_load_cores": meter.others_cores(),
            }
        )
    return {
        "onnxruntime": ort.__version__,
        "threads": threads,
        "export_s": export_s,
        "session_s": session_s,
        "peak_rss_bytes_process": peak_memory_bytes(torch.device("cpu")),
        "rows": rows,
    }


SPIN = "import time\nend = time.monotonic() + {limit_s}\nwhile time.monotonic() < end:\n    pass\n"


def contention_comparison(windows: int) -> dict[str, Any]:
    """Fixed thread counts against the adaptive policy, with and without a spinning process."""
    import subprocess

    from streamser.model.loading import ModelInfo
    from streamser.model.runtime import EmotionModel, ThreadPolicy

    cores = physical_cores()
    torch.set_num_threads(cores)
    info = ModelInfo("random", "demo", None, None, None, None, None, None, "-", 0, demo=True)
    model = EmotionModel(random_network(ExHubertConfig(), seed=0), info, torch.device("cpu"))
    x = make_inputs(1)
    model.logits(x)
    policies = {
        f"fixed {cores} threads": None,
        f"fixed {max(1, cores - 1)} threads": None,
        "adaptive": ThreadPolicy(cores),
    }
    fixed = {f"fixed {cores} threads": cores, f"fixed {max(1, cores - 1)} threads": cores - 1}
    result: dict[str, Any] = {"cores": cores, "windows_per_path": windows}
    # Idle first: the adaptive policy learns the idle speed, as it would before a user opens
    # something else beside streamser.
    for label, spinning in (("idle", False), ("one core busy", True)):
        spinner = None
        if spinning:
            code = SPIN.format(limit_s=3600)
            spinner = subprocess.Popen([sys.executable, "-c", code])
        try:
            times: dict[str, list[float]] = {name: [] for name in policies}
            for _ in range(windows):
                for name, policy in policies.items():
                    model.threads = policy
                    if policy is None:
                        torch.set_num_threads(max(1, fixed[name]))
                    t0 = time.perf_counter()
                    model.logits(x)
                    times[name].append(time.perf_counter() - t0)
        finally:
            if spinner is not None:
                spinner.terminate()
                spinner.wait(timeout=10)
        result[label] = {
            name: {"median_s": statistics.median(ts), "forward_s": ts} for name, ts in times.items()
        }
        print(
            f"{label}: "
            + ", ".join(f"{n} {statistics.median(ts):.2f} s" for n, ts in times.items()),
            file=sys.stderr,
        )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="where to write the JSON")
    p.add_argument("--onnxruntime", action="store_true", help="also compare with onnxruntime")
    p.add_argument("--ort-batch-sizes", default="1,4", help="batches for that comparison")
    p.add_argument("--ort-repeats", type=int, default=5)
    p.add_argument(
        "--contention", action="store_true", help="also time windows beside a spinning process"
    )
    p.add_argument("--contention-windows", type=int, default=12, help="windows per path and case")
    p.add_argument(
        "--extras-only", action="store_true", help="skip the bench, run only the options above"
    )
    args, rest = p.parse_known_args(argv)
    out = Path(args.out)
    report: dict[str, Any] = {}
    if not args.extras_only:
        code = bench_main(["--json", str(out), *rest])
        if code != 0:
            return code
        report = json.loads(out.read_text(encoding="utf-8"))
    if args.contention:
        report["contention"] = contention_comparison(args.contention_windows)
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if not args.onnxruntime:
        return 0
    sizes = [int(s) for s in args.ort_batch_sizes.split(",")]
    comparison = onnxruntime_comparison(sizes, args.ort_repeats)
    report["onnxruntime"] = comparison
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for row in comparison.get("rows", []):
        s = row["s_per_window"]
        print(
            f"batch {row['batch']}: torch {s['torch']:.3f} s/window, onnxruntime "
            f"{s['onnxruntime']:.3f} s/window ({row['onnxruntime_speedup']:.2f}x), "
            f"max |logit diff| {row['max_abs_logit_diff']:.1e}"
        )
    if "error" in comparison:
        print(comparison["error"], file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
