"""Which precision runs a model fastest on this machine: measured, then stored as its verdict.

``precision="auto"`` follows a rule from the CPU's features (``model/precision.py``). The rule
was measured on a few CPU types only; :func:`tune` measures the real thing for one model on
this machine (fp32, half, int8 and, where installed, onnxruntime), in bounded time, and writes
the fastest torch path whose output stays close to fp32 as the machine's verdict, which
``auto`` then follows. A future ``streamser tune`` command calls it.

Paths run one after another, not side by side, so memory never holds more than the fp32
weights plus one other copy (the half copies, an onnxruntime session, or the int8 layers, which
replace the fp32 ones last). Every path's row records the CPU time other processes took while
it ran: on a small machine a busy neighbour can slow a path several times over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from streamser.model.errors import ModelError
from streamser.model.loading import load_network
from streamser.model.numerics import synthetic_windows
from streamser.model.precision import model_identity, write_verdict
from streamser.model.runtime import EmotionModel
from streamser.perf.meters import LoadMeter

MAX_PROB_DIFF = 0.01
"""A path whose probabilities move further than this from fp32 on the tuning windows is not
chosen, however fast (int8 and bf16 move them by 0.002 or less on the measured models)."""


@dataclass(frozen=True)
class TuneRow:
    """One path's result; ``s_per_window`` None where it was skipped (see ``note``)."""

    path: str
    s_per_window: float | None
    max_abs_prob_diff_vs_fp32: float | None
    windows_timed: int
    others_cores: float | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tune(
    model_source: str = "amiriparian/ExHuBERT",
    *,
    windows: int = 2,
    rounds: int = 2,
    budget_s: float = 600.0,
    onnx: bool = True,
    store: bool = True,
    say: Callable[[str], None] = lambda _: None,
) -> list[TuneRow]:
    """Measure each path on ``windows`` synthetic windows at batch 1, ``rounds`` times (best
    window time counts), within about ``budget_s`` seconds (a path not started by then is
    skipped); with ``store``, write the verdict. Returns one row per path.
    """
    device = torch.device("cpu")
    network, info = load_network(model_source)
    x = synthetic_windows(windows, seed=7)
    t_end = time.perf_counter() + budget_s
    rows: list[TuneRow] = []
    ref: np.ndarray | None = None

    def measure(path: str, run: Callable[[np.ndarray], np.ndarray], note: str = "") -> None:
        nonlocal ref
        if time.perf_counter() > t_end:
            rows.append(TuneRow(path, None, None, 0, None, "skipped: over the time budget"))
            return
        say(f"tune: {path}")
        run(x[:1])  # warm-up: caches, kernels, thread pools
        meter, best, timed = LoadMeter(), float("inf"), 0
        out = np.zeros((windows, 6))
        for _ in range(rounds):
            for i in range(windows):
                t0 = time.perf_counter()
                out[i] = run(x[i : i + 1])[0]
                best, timed = min(best, time.perf_counter() - t0), timed + 1
            if time.perf_counter() > t_end:
                note = (note + "; " if note else "") + "fewer rounds: over the time budget"
                break
        p = _probs(out)
        if ref is None:
            ref = p
        diff = float(np.abs(p - ref).max()) if np.isfinite(p).all() else float("inf")
        rows.append(TuneRow(path, best, diff, timed, meter.others_cores(), note))

    fp32 = EmotionModel(network, info, device, "fp32")
    fp32.threads = None  # a fixed thread count: every path alike
    measure("fp32", fp32.logits)
    half = EmotionModel(network, info, device, "half")
    half.threads = None
    measure(half.precision, half.logits)
    network.set_half(None, release=True)
    if onnx:
        _measure_onnx(network, info.weights_path, measure, rows)
    if time.perf_counter() <= t_end:
        int8 = EmotionModel(network, info, device, "int8")  # quantises in place: last
        int8.threads = None
        measure("int8", int8.logits)
    else:
        rows.append(TuneRow("int8", None, None, 0, None, "skipped: over the time budget"))
    if store:
        best = pick(rows)
        rows_out = [r.to_dict() for r in rows]
        write_verdict(model_identity(info), best, rows_out)
        say(f"tune: verdict {best}")
    return rows


def pick(rows: list[TuneRow]) -> str:
    """The fastest torch path (fp32, half-*, int8) within :data:`MAX_PROB_DIFF` of fp32."""
    ok = [
        r
        for r in rows
        if r.s_per_window is not None
        and r.max_abs_prob_diff_vs_fp32 is not None
        and r.max_abs_prob_diff_vs_fp32 <= MAX_PROB_DIFF
        and r.path != "onnxruntime"
    ]
    if not ok:
        raise ModelError("tuning measured no usable path: run it again on an idler machine")
    fastest = min(ok, key=lambda r: r.s_per_window or float("inf"))
    return "half" if fastest.path.startswith("half") else fastest.path


def _measure_onnx(
    network: Any, weights_path: str | None, measure: Callable[..., None], rows: list[TuneRow]
) -> None:
    try:
        from streamser.model.onnx_backend import import_onnxruntime, open_onnx

        import_onnxruntime()
    except ModelError:
        rows.append(TuneRow("onnxruntime", None, None, 0, None, "skipped: not installed"))
        return
    session = open_onnx(network, weights_path, torch.get_num_threads())
    measure("onnxruntime", session, "fp32; export cached per weights file")
    del session


def _probs(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)
