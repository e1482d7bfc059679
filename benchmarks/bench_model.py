"""The full model benchmark, by hand: ``streamser bench`` at full size, written as JSON.

Run: ``.venv/bin/python benchmarks/bench_model.py OUT.json [bench options]``, for example
``benchmarks/bench_model.py /tmp/bench.json --quantize int8``. Any option of ``streamser bench``
can follow the path (``--batch-sizes``, ``--repeats``, ``--compute``, ``--threads`` ...). On a
2-core CPU the default run (batches 1, 4, 16, five repeats each, the eager baseline at 1 and 4)
takes about six minutes.

``--backend onnxruntime`` (a bench option) adds the optional onnxruntime backend on the same
weights: export time and memory, its timings alternated run by run with torch, its logit
difference; the figures go under the ``onnxruntime`` key of the JSON.

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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from streamser.commands.bench_cmd import main as bench_main
from streamser.model.demo import random_network
from streamser.model.exhubert import ExHubertConfig
from streamser.perf.machine import physical_cores
from streamser.perf.timing import make_inputs

SPIN = "import time\nend = time.monotonic() + {limit_s}\nwhile time.monotonic() < end:\n    pass\n"


def contention_comparison(windows: int) -> dict[str, Any]:
    """Fixed thread counts against the adaptive policy, with and without a spinning process."""
    import subprocess

    from streamser.contracts import ModelInfo
    from streamser.model.runtime import EmotionModel, ThreadPolicy

    cores = physical_cores()
    torch.set_num_threads(cores)
    info = ModelInfo.random_weights("random", "-", 0)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
