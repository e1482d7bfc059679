"""What a bench stage measures besides time: peak memory, and the load other processes add."""

from __future__ import annotations

import os
import resource
import sys
import time

import torch


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
