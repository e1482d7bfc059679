"""Windows per second through one model for 1, 2, 4 and 8 streams, batched or run apart.

For each N, an N-channel clip (the speech asset, each channel starting elsewhere in it) goes
through the whole pipeline as fast as it can (``--fast``: every window computed, the speech
gate on):

* **batched**: one run with ``--per-channel``: N analyzers, one executor, each round's windows
  of all streams in one forward pass;
* **apart**: N single-stream runs at once (each channel as its own mono source, each run with
  its own executor thread on the same loaded network), as N separate ``streamser listen``
  processes would compute, minus the N model loads.

It prints windows per second in all and per stream, the gain of batching, and the model's
batch sizes. Live use needs N windows per hop: at hop 1 s, a rate of N windows/s or more keeps
N streams real-time. Usage::

    python benchmarks/bench_streams.py [--model demo|full-size|PATH] [--seconds 8]
        [--streams 1,2,4,8] [--repeats 1]

``full-size`` builds the published architecture with random weights (no download).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from streamser.audio.replay import ArraySource
from streamser.config import ListenConfig, LogConfig, StreamConfig, WindowConfig
from streamser.contracts import AnalysisModel, Estimate
from streamser.engine.pipeline import Pipeline
from streamser.model.runtime import EmotionModel, load_model

ROOT_DIR = Path(__file__).resolve().parents[1]
SPEECH = ROOT_DIR / "assets" / "speech.wav"
MAX_BATCH = 8
"""The pipeline's lossless batch (``listen --fast``'s default)."""


def load(model: str) -> AnalysisModel:
    if model != "full-size":
        return load_model(model, compute="cpu")
    from streamser.contracts import ModelInfo
    from streamser.model.demo import random_network
    from streamser.model.exhubert import ExHubertConfig

    network = random_network(ExHubertConfig(), seed=1)
    n_params = sum(p.numel() for p in network.state_dict().values())
    info = ModelInfo.random_weights("full-size (random weights)", "random weights", n_params)
    import torch

    return EmotionModel(network, info, torch.device("cpu"))


def clip(n_streams: int, seconds: float) -> tuple[np.ndarray, int]:
    """``(frames, n_streams)``: the speech asset, each channel starting elsewhere in it."""
    speech, rate_hz = sf.read(SPEECH, dtype="float32")
    frames = int(seconds * rate_hz)
    loop = np.tile(speech, int(np.ceil((frames + len(speech)) / len(speech))))
    step = len(speech) // max(1, n_streams)
    return np.stack([loop[i * step : i * step + frames] for i in range(n_streams)], 1), rate_hz


def run_batched(model: AnalysisModel, x: np.ndarray, rate_hz: int) -> dict[str, Any]:
    cfg = ListenConfig(logging=LogConfig(log=False), streams=StreamConfig(per_channel=True))
    pipeline = Pipeline(cfg, model, ArraySource(x, rate_hz, realtime=False), max_batch=MAX_BATCH)
    got: list[Estimate] = []
    pipeline.bus.subscribe_lossless("count", got.append)
    t0 = time.perf_counter()
    with pipeline:
        pipeline.wait()
    wall_s = time.perf_counter() - t0
    stats = pipeline.executor.stats()
    return {
        "windows": len(got),
        "wall_s": wall_s,
        "model_calls": pipeline.worker.model_calls,
        "mean_batch": stats.mean_batch_size or 0.0,
    }


def run_apart(model: AnalysisModel, x: np.ndarray, rate_hz: int) -> dict[str, Any]:
    cfg = ListenConfig(logging=LogConfig(log=False), windows=WindowConfig())
    pipelines = [
        Pipeline(cfg, model, ArraySource(x[:, c], rate_hz, realtime=False), max_batch=MAX_BATCH)
        for c in range(x.shape[1])
    ]
    counts = [0] * len(pipelines)
    lock = threading.Lock()

    def counter(i: int) -> Any:
        def count(_: Estimate) -> None:
            with lock:
                counts[i] += 1

        return count

    for i, p in enumerate(pipelines):
        p.bus.subscribe_lossless("count", counter(i))
    t0 = time.perf_counter()
    for p in pipelines:
        p.start()
    for p in pipelines:
        p.wait()
        p.stop()
    return {"windows": sum(counts), "wall_s": time.perf_counter() - t0}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--seconds", type=float, default=8.0, help="clip length per stream")
    ap.add_argument("--streams", default="1,2,4,8")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    model = load(args.model)
    load_model("demo", compute="cpu").logits(np.zeros((1, 48_000), np.float32))  # warm torch
    print(f"# {cpu_name()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(f"# model {args.model}, {args.seconds:g} s per stream, --fast, speech gate on")
    print("streams  batched w/s  per stream  mean batch   apart w/s  per stream  gain")
    rows = []
    for n in (int(v) for v in args.streams.split(",")):
        x, rate_hz = clip(n, args.seconds)
        batched = [run_batched(model, x, rate_hz) for _ in range(args.repeats)]
        apart = [run_apart(model, x, rate_hz) for _ in range(args.repeats)]
        b_rate = statistics.median(r["windows"] / r["wall_s"] for r in batched)
        a_rate = statistics.median(r["windows"] / r["wall_s"] for r in apart)
        mean_batch = statistics.median(r["mean_batch"] for r in batched)
        print(
            f"{n:7d}  {b_rate:11.2f}  {b_rate / n:10.2f}  {mean_batch:10.1f}"
            f"  {a_rate:10.2f}  {a_rate / n:10.2f}  {b_rate / a_rate:4.2f}x"
        )
        rows.append(
            {"streams": n, "batched": batched, "apart": apart, "batched_windows_per_s": b_rate,
             "apart_windows_per_s": a_rate}
        )  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "model": args.model, "rows": rows}))


if __name__ == "__main__":
    main()
