"""Timing forward paths: the same inputs for every path, alternated run by run."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from streamser.constants import WINDOW_SAMPLES
from streamser.model.affect import softmax
from streamser.model.devices import strict_fp32
from streamser.model.exhubert import ExHubert
from streamser.perf.meters import LoadMeter, peak_memory_bytes, reset_peak_memory

SEED = 0
"""Seeds every random input (and the random weights) the bench makes."""
MIN_LOAD_WINDOW_S = 0.5
"""Shorter stages get no load figure: /proc/stat counts in 10 ms ticks."""


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
    """The device's peak for the paths it runs fastest (fp16 on a GPU; fp32 on a CPU)."""
    fp32_peak_gflops: float | None = None
    """The fp32 peak (TF32 off on a GPU), for paths timed as fp32; None: ``peak_gflops``."""


def time_paths(
    paths: dict[str, Forward], batch: int, rig: Rig, fp32: Collection[str] = ()
) -> dict[str, tuple[Timing, np.ndarray]]:
    """Time several paths on the same inputs, alternating them run by run.

    Alternating means a burst of load from another process slows every path alike, so their
    ratio stays fair. Each path's peak memory comes from its warm-up run, on its own. The
    paths named in ``fp32`` are measured against the fp32 peak. Returns, per path, the timing
    (labelled with its key: a caller that learns what really ran only afterwards relabels it
    with :func:`relabel`) and the logits of its last run.
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
        peak = rig.fp32_peak_gflops if name in fp32 and rig.fp32_peak_gflops else rig.peak_gflops
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
            fraction_of_peak=achieved / peak,
            peak_memory_bytes=peaks[name],
            other_load_cores=None
            if busy is None or sum(ts) < MIN_LOAD_WINDOW_S
            else busy / sum(ts),
            forward_s=tuple(ts),
        )
        result[name] = (timing, outs[name])
    return result


def relabel(timing: Timing, path: str) -> Timing:
    """The same timing under the label of what actually ran."""
    return replace(timing, path=path)


def plain_forward(network: ExHubert) -> Forward:
    """The baseline: the network run with the plain reference math in fp32.

    It may be the optimised path's own network (to share its weights): the plain math and
    fp32 throughout are switched on for the call only, which copies nothing. On a GPU, TF32 is
    off meanwhile (:func:`strict_fp32`), so the baseline is fp32 to the last bit.
    """

    def forward(x: np.ndarray) -> np.ndarray:
        network.set_fast_paths(False)
        try:
            with strict_fp32(), network.fp32(), torch.inference_mode():
                device = next(network.parameters()).device  # where the model is now
                out = network(torch.from_numpy(x).to(device))
        finally:
            network.set_fast_paths(True)
        return out.float().cpu().numpy()

    return forward


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def prob_diff(a: np.ndarray, b: np.ndarray) -> float:
    return max_abs(softmax(a), softmax(b))
