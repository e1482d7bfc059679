"""The machine a bench runs on: what it is, and its device's practical GEMM peak."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import torch

from streamser.perf.timing import SEED

PEAK_CPU_N = 2048
PEAK_GPU_N = 8192
PEAK_WARMUPS = 3
PEAK_TRIALS = 10

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
