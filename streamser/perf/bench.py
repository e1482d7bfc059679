"""``streamser bench``: how fast ExHuBERT runs here, and how close to the device's peak.

What it measures, for the full-size architecture with seeded random weights (or ``--model``):

* the time from nothing to the first estimate (build or load, device placement, first forward);
* per batch size, the forward time (median and p95 over the repeats), seconds per window and
  windows per second, the achieved FLOP/s (from :mod:`streamser.perf.flops`) as a fraction of
  the device's measured GEMM peak, and the peak memory of that stage;
* the same math run plainly (eager attention, fp32, separate q/k/v, channels-first convolutions,
  weight norm recomputed: ``ExHubert.set_fast_paths(False)``) as a baseline in the same run,
  as a speed ratio and the largest logit difference from the optimised path;
* optionally int8 dynamic quantisation, its speed and its deviation from fp32;
* optionally the onnxruntime backend (CPU, fp32): export time and memory, its speed,
  alternated run by run with torch at the baseline's batch sizes, and its logit difference;
* on a GPU, fp16 with SDPA, bucketed CUDA-graph replays of the fixed input shape
  (:mod:`streamser.model.cuda_graphs`), and fp16 against fp32 on the bundled fixture.

The device's peak is measured the same way every time: on a CPU a 2048^3 fp32 matmul on all
threads, on a GPU an 8192^3 fp16 matmul, best of 10 after 3 warm-ups. Other processes on the
machine disturb timings, so each stage also records how many cores others kept busy meanwhile.
Only torch, numpy and the model are imported: it runs on a bare GPU server.
"""

from __future__ import annotations

import gc
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamser.constants import WINDOW_SAMPLES
from streamser.contracts import ModelInfo
from streamser.model.affect import softmax
from streamser.model.cuda_graphs import GraphedForward, bucket_for
from streamser.model.demo import DEMO_CONFIG, random_network
from streamser.model.errors import ModelError
from streamser.model.exhubert import ExHubert, ExHubertConfig
from streamser.model.loading import load_network
from streamser.model.runtime import EmotionModel, quantize_int8, resolve_compute
from streamser.perf.flops import count_flops

PEAK_CPU_N = 2048
PEAK_GPU_N = 8192
PEAK_WARMUPS = 3
PEAK_TRIALS = 10
SEED = 0
MIN_LOAD_WINDOW_S = 0.5
"""Shorter stages get no load figure: /proc/stat counts in 10 ms ticks."""
FIXTURE_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "tiny-parametrized"
"""The tiny reference checkpoint, present in a source checkout (not in an installed wheel)."""
FIXTURE_CASE = "full_3s"

REFERENCE_CPU = {
    "what": "published reference code (transformers remote code, fp32, eager attention)",
    "machine": "2 vCPU AMD EPYC (Zen 3, AVX2), 24 GiB: the machine type these figures come from",
    "s_per_window": {"1": 2.50, "4": 1.86},
    "peak_rss_bytes": 3.2e9,
}
"""Measured once, beside the eager baseline for comparison; not re-measured by the bench."""

GPU_DATASHEET_FP16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),
    ("H200", 989.4),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("T4", 65.0),
)
"""Dense fp16 tensor-core peaks from NVIDIA's datasheets, matched on the device name in order."""


@dataclass(frozen=True)
class BenchOptions:
    """What to run; ``None`` fields take defaults that depend on the device and ``quick``."""

    quick: bool = False
    """Tiny architecture, batches 1 and 2, 2 repeats: a smoke run in seconds."""
    batch_sizes: tuple[int, ...] | None = None
    repeats: int | None = None
    compute: str = "auto"
    quantize: str | None = None
    baseline: bool = True
    baseline_batch_sizes: tuple[int, ...] | None = None
    threads: int | None = None
    model: str | None = None
    """Weights to load (hub id or directory); ``None``: seeded random weights."""
    cuda_graphs: bool = True
    onnxruntime: bool = False
    """Also time the optional onnxruntime backend (CPU, fp32)."""

    def resolved_batch_sizes(self, device: torch.device) -> tuple[int, ...]:
        if self.batch_sizes:
            return self.batch_sizes
        if self.quick:
            return (1, 2)
        return (1, 4, 16, 64) if device.type == "cuda" else (1, 4, 16)

    def resolved_repeats(self) -> int:
        return self.repeats if self.repeats is not None else (2 if self.quick else 5)

    def resolved_baseline_batch_sizes(self, device: torch.device) -> tuple[int, ...]:
        """The eager baseline is slow on a CPU: by default only the batches the published
        reference figures exist for (1 and 4), everywhere else every batch size."""
        if not self.baseline:
            return ()
        if self.baseline_batch_sizes:
            return self.baseline_batch_sizes
        sizes = self.resolved_batch_sizes(device)
        if device.type == "cpu" and not self.quick:
            return tuple(b for b in sizes if b <= 4) or sizes[:1]
        return sizes


@dataclass(frozen=True)
class Timing:
    """One path at one batch size."""

    path: str
    batch: int
    repeats: int
    forward_median_s: float
    forward_p95_s: float
    """With few repeats this is close to the slowest run (linear interpolation)."""
    s_per_window: float
    windows_per_s: float
    achieved_gflop_per_s: float
    fraction_of_peak: float
    peak_memory_bytes: int | None
    other_load_cores: float | None
    forward_s: tuple[float, ...] = field(default=())


# ----------------------------------------------------------------------------- machine


def physical_cores() -> int:
    """Distinct (package, core) pairs among the CPUs this process may use; logical count else."""
    try:
        allowed = os.sched_getaffinity(0)
        cores, cpu, phys = set(), None, "0"
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "processor":
                    cpu = int(value)
                elif key == "physical id":
                    phys = value
                elif key == "core id" and cpu in allowed:
                    cores.add((phys, value))
        return len(cores) or len(allowed)
    except (OSError, AttributeError, ValueError):
        return os.cpu_count() or 1


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def describe_machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical_cores(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "memory_bytes": _memory_bytes(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device.type,
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_bytes=props.total_memory,
            gpu_capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
        )
    return info


def datasheet_fp16_tflops(gpu_name: str) -> float | None:
    for key, tflops in GPU_DATASHEET_FP16_TFLOPS:
        if key in gpu_name:
            return tflops
    return None


def measure_peak_gflops(device: torch.device) -> dict[str, Any]:
    """The device's practical peak: best of 10 square matmuls after 3 warm-ups."""
    if device.type == "cuda":
        n, dtype = PEAK_GPU_N, torch.float16
    else:
        n, dtype = PEAK_CPU_N, torch.float32
    gen = torch.Generator().manual_seed(SEED)
    a = torch.randn(n, n, generator=gen).to(device, dtype)
    b = torch.randn(n, n, generator=gen).to(device, dtype)
    for _ in range(PEAK_WARMUPS):
        torch.mm(a, b)
    best = float("inf")
    for _ in range(PEAK_TRIALS):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    result: dict[str, Any] = {
        "gflop_per_s": 2 * n**3 / best / 1e9,
        "method": f"{n}^3 {str(dtype).removeprefix('torch.')} matmul, best of {PEAK_TRIALS} "
        f"after {PEAK_WARMUPS} warm-ups, {torch.get_num_threads()} threads"
        if device.type == "cpu"
        else f"{n}^3 fp16 matmul, best of {PEAK_TRIALS} after {PEAK_WARMUPS} warm-ups",
    }
    if device.type == "cuda":
        sheet = datasheet_fp16_tflops(torch.cuda.get_device_name(device))
        result["datasheet_fp16_tflops"] = sheet
    return result


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- meters


def reset_peak_memory(device: torch.device) -> bool:
    """Start a new peak; False where the OS cannot reset it (then peaks are cumulative)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # Linux: reset the resident-set high-water mark to the current RSS
        return True
    except OSError:
        return False


def peak_memory_bytes(device: torch.device) -> int:
    """Peak GPU memory allocated by torch, or the process's peak RSS on a CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


class LoadMeter:
    """CPU cores kept busy by other processes during a stage (Linux; ``None`` elsewhere).

    Machine-wide busy time from ``/proc/stat`` minus this process's own CPU time, per second
    of wall time. A figure near 0 means the timings were undisturbed.
    """

    def __init__(self) -> None:
        self._t0 = time.perf_counter()
        self._busy0 = self._machine_busy_s()
        self._own0 = self._own_s()

    @staticmethod
    def _machine_busy_s() -> float | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
        return busy / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_s() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def others_cores(self) -> float | None:
        busy = self._machine_busy_s()
        wall = time.perf_counter() - self._t0
        if busy is None or self._busy0 is None or wall <= 0:
            return None
        others = (busy - self._busy0) - (self._own_s() - self._own0)
        return max(0.0, others / wall)


# ----------------------------------------------------------------------------- timing

Forward = Callable[[np.ndarray], np.ndarray]


def make_inputs(batch: int) -> np.ndarray:
    """The same normalised-noise windows for every path at a given batch size."""
    rng = np.random.default_rng(SEED + batch)
    return rng.standard_normal((batch, WINDOW_SAMPLES)).astype(np.float32)


@dataclass(frozen=True)
class Rig:
    """What every timing needs besides the path: repeats, device, FLOPs and the peak."""

    repeats: int
    device: torch.device
    flops_per_window: float
    peak_gflops: float


def time_paths(
    paths: dict[str, Forward], batch: int, rig: Rig
) -> dict[str, tuple[Timing, np.ndarray]]:
    """Time several paths on the same inputs, alternating them run by run.

    Alternating means a burst of load from another process slows every path alike, so their
    ratio stays fair. Each path's peak memory comes from its warm-up run, on its own.
    Returns, per path, the timing and the logits of its last run.
    """
    x = make_inputs(batch)
    peaks: dict[str, int] = {}
    for name, forward in paths.items():
        reset_peak_memory(rig.device)
        forward(x)
        peaks[name] = peak_memory_bytes(rig.device)
    times: dict[str, list[float]] = {name: [] for name in paths}
    others: dict[str, float | None] = dict.fromkeys(paths, 0.0)
    outs: dict[str, np.ndarray] = {}
    for _ in range(rig.repeats):
        for name, forward in paths.items():
            meter = LoadMeter()
            t0 = time.perf_counter()
            outs[name] = forward(x)  # host memory: the device is synchronised
            dt = time.perf_counter() - t0
            times[name].append(dt)
            busy, total = meter.others_cores(), others[name]
            others[name] = None if busy is None or total is None else total + busy * dt
    result = {}
    for name, ts in times.items():
        median = float(np.median(ts))
        achieved = rig.flops_per_window * batch / median / 1e9
        busy = others[name]
        timing = Timing(
            path=name,
            batch=batch,
            repeats=rig.repeats,
            forward_median_s=median,
            forward_p95_s=float(np.percentile(ts, 95)),
            s_per_window=median / batch,
            windows_per_s=batch / median,
            achieved_gflop_per_s=achieved,
            fraction_of_peak=achieved / rig.peak_gflops,
            peak_memory_bytes=peaks[name],
            other_load_cores=None
            if busy is None or sum(ts) < MIN_LOAD_WINDOW_S
            else busy / sum(ts),
            forward_s=tuple(ts),
        )
        result[name] = (timing, outs[name])
    return result


def plain_forward(network: ExHubert, device: torch.device) -> Forward:
    """The baseline: the network run with the plain reference math in fp32.

    It may be the optimised path's own network (on a CPU, to share its weights): the plain
    math is switched on for the call only, which copies nothing.
    """

    def forward(x: np.ndarray) -> np.ndarray:
        network.set_fast_paths(False)
        try:
            with torch.inference_mode():
                out = network(torch.from_numpy(x).to(device))
        finally:
            network.set_fast_paths(True)
        return out.float().cpu().numpy()

    return forward


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _prob_diff(a: np.ndarray, b: np.ndarray) -> float:
    return _max_abs(softmax(a), softmax(b))


# ----------------------------------------------------------------------------- stages


def _build(opts: BenchOptions, cfg: ExHubertConfig) -> tuple[ExHubert, ModelInfo]:
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
        "max_abs_prob_diff_vs_fp32": _max_abs(other.probs, fp32.probs),
        "max_abs_logit_diff_vs_fp32": _max_abs(other.logits, fp32.logits),
        "max_abs_logit_diff_fp32_vs_reference": _max_abs(fp32.logits, ref),
        "fp16_fallbacks": other_model.fp16_fallbacks,
    }


def first_estimate(
    opts: BenchOptions, cfg: ExHubertConfig, device: torch.device
) -> tuple[EmotionModel, dict[str, Any]]:
    """From nothing to the first window's logits, as a user's start goes."""
    reset_peak_memory(device)
    t0 = time.perf_counter()
    network, info = _build(opts, cfg)
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


def optimised_and_baseline(
    em: EmotionModel,
    opts: BenchOptions,
    sizes: Sequence[int],
    rig: Rig,
    say: Callable[[str], None],
) -> tuple[list[Timing], dict[int, np.ndarray], list[dict[str, Any]]]:
    """The runtime's path at every batch size, alternating with the eager fp32 baseline."""
    device = rig.device
    fast_name, base_name = f"optimised {em.describe()}", "eager fp32 baseline"
    baseline_sizes = opts.resolved_baseline_batch_sizes(device)
    base_net = None
    if baseline_sizes:
        # A GPU runs fp16: the fp32 baseline needs its own copy of the same weights.
        base_net = em.network if device.type == "cpu" else _build(opts, em.network.config)[0]
        base_net = base_net.to(device)
    timings: list[Timing] = []
    optimised: dict[int, np.ndarray] = {}
    comparison: list[dict[str, Any]] = []
    for b in sizes:
        paths: dict[str, Callable[[np.ndarray], np.ndarray]] = {fast_name: em.logits}
        if base_net is not None and b in baseline_sizes:
            paths[base_name] = plain_forward(base_net, device)
        say(f"{' and '.join(paths)}: batch {b} x {rig.repeats}")
        measured = time_paths(paths, b, rig)
        timings.extend(t for t, _ in measured.values())
        fast, optimised[b] = measured[fast_name]
        if base_name in measured:
            base, logits = measured[base_name]
            comparison.append(
                {
                    "batch": b,
                    "speedup": base.s_per_window / fast.s_per_window,
                    "max_abs_logit_diff": _max_abs(optimised[b], logits),
                    "max_abs_prob_diff": _prob_diff(optimised[b], logits),
                }
            )
    return timings, optimised, comparison


def int8_stage(
    network: ExHubert,
    info: ModelInfo,
    sizes: Sequence[int],
    rig: Rig,
    fp32_logits: dict[int, np.ndarray],
    say: Callable[[str], None],
) -> tuple[list[Timing], dict[str, Any]]:
    """Quantises ``network`` in place (as ``load_model`` does) and times it."""
    say("int8 dynamic quantisation")
    quantized = EmotionModel(quantize_int8(network, inplace=True), info, rig.device)
    quantized.threads = None
    gc.collect()
    timings, rows = [], []
    for b in sizes:
        say(f"int8: batch {b} x {rig.repeats}")
        timing, logits = time_paths({"int8 dynamic": quantized.logits}, b, rig)["int8 dynamic"]
        timings.append(timing)
        rows.append(
            {
                "batch": b,
                "max_abs_prob_diff_vs_fp32": _prob_diff(logits, fp32_logits[b]),
                "max_abs_logit_diff_vs_fp32": _max_abs(logits, fp32_logits[b]),
            }
        )
    return timings, {"random_model": rows, "fixture": fixture_deviation("cpu", "int8")}


def onnxruntime_stage(
    em: EmotionModel,
    opts: BenchOptions,
    sizes: Sequence[int],
    rig: Rig,
    fp32_logits: dict[int, np.ndarray],
    say: Callable[[str], None],
) -> tuple[list[Timing], dict[str, Any]]:
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
    timings, rows = [], []
    for b in sizes:
        paths: dict[str, Forward] = {name: onnx}
        if b in alternate:
            paths[torch_name] = em.logits
        say(f"{' and '.join(paths)}: batch {b} x {rig.repeats}")
        measured = time_paths(paths, b, rig)
        timing, logits = measured[name]
        timings.append(timing)
        row: dict[str, Any] = {
            "batch": b,
            "max_abs_logit_diff_vs_torch": _max_abs(logits, fp32_logits[b]),
            "max_abs_prob_diff_vs_torch": _prob_diff(logits, fp32_logits[b]),
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
    return timings, report


def run_bench(opts: BenchOptions, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run every stage and return a JSON-ready report (see ``streamser bench --json``)."""
    device = resolve_compute(opts.compute)
    if opts.quantize not in (None, "int8"):
        raise ModelError(f"--quantize {opts.quantize!r}: the only choice is int8")
    if opts.quantize == "int8" and device.type != "cpu":
        raise ModelError("--quantize int8 runs on the CPU: add --compute cpu")
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
    rig = Rig(repeats, device, flops.per_window, float(peak["gflop_per_s"]))
    timings, optimised, comparison = optimised_and_baseline(em, opts, sizes, rig, say)

    gpu: dict[str, Any] | None = None
    if device.type == "cuda":
        graph_rows, gpu = gpu_stages(em, sizes, rig, optimised, opts.cuda_graphs, say)
        timings.extend(graph_rows)
    onnx: dict[str, Any] | None = None
    if opts.onnxruntime:
        onnx_rows, onnx = onnxruntime_stage(em, opts, sizes, rig, optimised, say)
        timings.extend(onnx_rows)
    int8: dict[str, Any] | None = None
    if opts.quantize == "int8":
        network = em.network
        del em  # the fp32 model is converted in place: no second copy in memory
        int8_rows, int8 = int8_stage(network, info, sizes, rig, optimised, say)
        timings.extend(int8_rows)

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
        "baseline_comparison": comparison,
        "reference_cpu": REFERENCE_CPU,
        "int8": int8,
        "onnxruntime": onnx,
        "gpu": gpu,
        "peak_memory_resettable": reset_peak_memory(device),
    }


# ----------------------------------------------------------------------------- GPU only
# Written for a CUDA machine (fp16, SDPA flash attention, CUDA graphs); a CPU never runs it.


def gpu_stages(
    em: EmotionModel,
    sizes: Sequence[int],
    rig: Rig,
    optimised: dict[int, np.ndarray],
    cuda_graphs: bool,
    say: Callable[[str], None],
) -> tuple[list[Timing], dict[str, Any]]:
    """Bucketed CUDA-graph replays (:mod:`streamser.model.cuda_graphs`) at every batch size,
    and fp16 against fp32 on the bundled fixture.

    One set of buckets serves every size; a size between buckets is padded up to the next,
    and its timing includes the padding, as it would in use.
    """
    rows: list[Timing] = []
    graphs: list[dict[str, Any]] = []
    capture: dict[str, Any] | None = None
    if cuda_graphs:
        graphed = GraphedForward.for_model(em, max_batch=max(sizes))
        say(f"capturing CUDA graphs for batch buckets {graphed.buckets}, largest first")
        reset_peak_memory(rig.device)
        t0 = time.perf_counter()
        graphed.capture()
        capture = {
            "buckets": list(graphed.buckets),
            "capture_s": time.perf_counter() - t0,
            "peak_memory_bytes": peak_memory_bytes(rig.device),
        }
        name = f"CUDA graph {em.describe()}"
        for b in sizes:
            say(f"fp16 + CUDA graph: batch {b} x {rig.repeats}")
            fallbacks = graphed.fallbacks
            timing, logits = time_paths({name: graphed}, b, rig)[name]
            rows.append(timing)
            graphs.append(
                {
                    "batch": b,
                    "bucket": bucket_for(min(b, graphed.buckets[-1]), graphed.buckets),
                    "max_abs_logit_diff_vs_eager": _max_abs(logits, optimised[b]),
                    "fp16_fallbacks": graphed.fallbacks - fallbacks,
                }
            )
        capture["generations"] = graphed.generation
        graphed.release()
        del graphed
    return rows, {
        "cuda_graphs": graphs,
        "cuda_graph_capture": capture,
        "fp16_fallbacks": em.fp16_fallbacks,
        "fixture_fp16_vs_fp32": fixture_deviation("cuda", None),
    }
