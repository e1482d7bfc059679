"""The machine a bench runs on: what it is, and its device's practical GEMM peak."""

from __future__ import annotations

import os
import platform
import re
import time
from typing import Any

import torch

from streamser.model.devices import strict_fp32
from streamser.perf.timing import SEED

PEAK_CPU_N = 2048
PEAK_GPU_N = 8192
PEAK_WARMUPS = 3
PEAK_TRIALS = 10
PEAK_GPU_BACK_TO_BACK = 20
PEAK_GPU_ROUNDS = 3

GPU_DATASHEET_FP16_TFLOPS: dict[str, float] = {
    "H100 HBM3": 989.4,  # H100 SXM5, which torch names "NVIDIA H100 80GB HBM3"
    "H100 SXM5": 989.4,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H200": 989.4,
    "H200 NVL": 835.0,
    "GH200": 989.4,
    "A100 SXM4": 312.0,
    "A100 PCIe": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "T4": 65.0,
}
"""Dense fp16 tensor-core peaks from NVIDIA's datasheets, by the device name as
:func:`gpu_model_key` normalises it."""
VENDOR_TOKENS = frozenset({"nvidia", "tesla", "geforce"})


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


def gpu_model_key(gpu_name: str) -> str:
    """The device name less vendor and memory size, tokens split on spaces and hyphens,
    matched case-blind: "NVIDIA H100 80GB HBM3" -> "h100 hbm3", "NVIDIA A100-SXM4-40GB" ->
    "a100 sxm4", "NVIDIA H200 NVL" -> "h200 nvl"."""
    tokens = re.split(r"[\s\-_]+", gpu_name.casefold().strip())
    return " ".join(t for t in tokens if t and t not in VENDOR_TOKENS and not _memory(t))


def _memory(token: str) -> bool:
    return re.fullmatch(r"\d+(gb|gib)", token) is not None


def datasheet_fp16_tflops(gpu_name: str) -> tuple[str | None, float | None]:
    """(the datasheet entry, its dense fp16 TFLOP/s) for a device name, or (None, None).

    The normalised name must equal an entry exactly: "H200 NVL" is not "H200", and a name
    with more or other words than every entry is unknown rather than its nearest neighbour's
    figure. Entries are tried longest first, so no shorter one can shadow a longer one.
    """
    key = gpu_model_key(gpu_name)
    for entry in sorted(GPU_DATASHEET_FP16_TFLOPS, key=len, reverse=True):
        if gpu_model_key(entry) == key:
            return entry, GPU_DATASHEET_FP16_TFLOPS[entry]
    return None, None


def measure_peak_gflops(device: torch.device) -> dict[str, Any]:
    """The device's practical peak.

    CPU: a 2048^3 fp32 matmul, best of 10 after 3 warm-ups. GPU: 8192^3 matmuls, fp16 and
    strict fp32 (TF32 off), each timed with CUDA events around :data:`PEAK_GPU_BACK_TO_BACK`
    matmuls queued back to back after 3 warm-ups, best of :data:`PEAK_GPU_ROUNDS` rounds:
    no host synchronisation or launch gap inside the timed span. ``gflop_per_s`` is the fp16
    figure on a GPU (what the half path runs on), ``fp32_gflop_per_s`` the fp32 one (what
    the fp32 rows' fraction of peak divides by; on a CPU both are the same).
    """
    if device.type != "cuda":
        gflops = _cpu_peak(PEAK_CPU_N)
        return {
            "gflop_per_s": gflops,
            "fp32_gflop_per_s": gflops,
            "method": f"{PEAK_CPU_N}^3 float32 matmul, best of {PEAK_TRIALS} after "
            f"{PEAK_WARMUPS} warm-ups, {torch.get_num_threads()} threads",
        }
    name = torch.cuda.get_device_name(device)
    entry, sheet = datasheet_fp16_tflops(name)
    with strict_fp32():
        fp32 = cuda_peak_gflops(device, PEAK_GPU_N, torch.float32)
    return {
        "gflop_per_s": cuda_peak_gflops(device, PEAK_GPU_N, torch.float16),
        "fp32_gflop_per_s": fp32,
        "method": f"{PEAK_GPU_N}^3 matmuls (fp16; fp32 with TF32 off), CUDA events around "
        f"{PEAK_GPU_BACK_TO_BACK} back to back after {PEAK_WARMUPS} warm-ups, best of "
        f"{PEAK_GPU_ROUNDS} rounds",
        "gpu_name": name,
        "datasheet_entry": entry if entry is not None else "unknown",
        "datasheet_fp16_tflops": sheet,
    }


def _operands(n: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(SEED)
    a = torch.randn(n, n, generator=gen).to(device, dtype)
    b = torch.randn(n, n, generator=gen).to(device, dtype)
    return a, b


def _cpu_peak(n: int) -> float:
    return cpu_gemm_gflops(n, n, n, torch.float32)


def cpu_gemm_gflops(
    m: int,
    k: int,
    n: int,
    dtype: torch.dtype,
    *,
    warmups: int = PEAK_WARMUPS,
    trials: int = PEAK_TRIALS,
) -> float:
    """The best rate of an (m x k) @ (k x n) matmul on the CPU over ``trials`` after
    ``warmups``, on seeded operands: the one way every CPU GEMM rate here is measured."""
    gen = torch.Generator().manual_seed(SEED)
    a = torch.randn(m, k, generator=gen).to(dtype)
    b = torch.randn(k, n, generator=gen).to(dtype)
    for _ in range(warmups):
        torch.mm(a, b)
    best = float("inf")
    for _ in range(trials):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * m * k * n / best / 1e9


def cuda_peak_gflops(device: torch.device, n: int, dtype: torch.dtype) -> float:
    """GFLOP/s of ``n``^3 matmuls in ``dtype``, timed on the GPU (see measure_peak_gflops).

    The caller decides TF32 for fp32 (:func:`streamser.model.devices.strict_fp32`)."""
    a, b = _operands(n, device, dtype)
    out = torch.empty_like(a)
    for _ in range(PEAK_WARMUPS):
        torch.mm(a, b, out=out)
    torch.cuda.synchronize(device)
    best = float("inf")
    for _ in range(PEAK_GPU_ROUNDS):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(PEAK_GPU_BACK_TO_BACK):
            torch.mm(a, b, out=out)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3 / PEAK_GPU_BACK_TO_BACK)
    return 2 * n**3 / best / 1e9
