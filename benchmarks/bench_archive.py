"""Archive analysis speed: hours of audio per hour of wall time, path by path.

Run: ``.venv/bin/python benchmarks/bench_archive.py [--files N] [--seconds S] [--full-size]``.

It writes a synthetic archive (N files of S seconds cut from the bundled speech clip, at
mixed rates, every other file stereo) into a temporary directory and analyses it, start to
end (model load, worker or Ray start included), along four paths:

* ``in-process``: ``--workers 0``, decoding and the model in one process, file after file;
* ``pool``: decoding, resampling and speech detection in worker processes ahead of the model;
* ``ray, 1 actor`` and ``ray, 2 actors``: a Ray started on this machine (loopback only).

The model is the demo model (``--model demo``: about 47 ms per window here), or with
``--full-size`` the full-size network with random weights (about 1.5 s per window on a 2-core
CPU: keep the archive short, e.g. ``--files 2 --seconds 20``). Figures are printed (and with
``--json`` written); nothing is asserted. Name the CPU and its load beside any figure you quote.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamser.config import AnalyzeConfig, ModelConfig  # noqa: E402
from streamser.contracts import AnalysisModel  # noqa: E402

RATES_HZ = (16_000, 22_050, 44_100, 48_000)


def make_archive(root: Path, files: int, seconds: float) -> float:
    """``files`` files of ``seconds`` each under ``root``; their total duration in seconds."""
    x, rate = sf.read(ROOT / "assets" / "speech.wav", dtype="float32")
    rng = np.random.default_rng(0)
    total = 0.0
    for k in range(files):
        n = round(seconds * rate)
        clip = np.resize(np.roll(x, int(rng.integers(0, len(x)))), n)
        out_rate = RATES_HZ[k % len(RATES_HZ)]
        y = soxr.resample(clip, rate, out_rate).astype(np.float32)
        if k % 2:
            y = np.stack([y, 0.5 * y], axis=1)
        sf.write(root / f"f{k:04d}.flac", y, out_rate)
        total += len(y) / out_rate
    return total


def load_demo(cfg: ModelConfig) -> AnalysisModel:
    from streamser.commands.listen import load_for

    return load_for(ModelConfig(model="demo", compute="cpu"))


def load_full_size(cfg: ModelConfig) -> AnalysisModel:
    """The full-size network with seeded random weights: the real model's cost, no download."""
    import torch

    from streamser.contracts import ModelInfo
    from streamser.model.demo import random_network
    from streamser.model.exhubert import ExHubertConfig
    from streamser.model.runtime import EmotionModel

    network = random_network(ExHubertConfig(), seed=0)
    n = sum(p.numel() for p in network.state_dict().values())
    info = ModelInfo.random_weights("random weights (bench_archive)", "random weights", n)
    return EmotionModel(network, info, torch.device("cpu"))


def run_path(name: str, archive: Path, out_dir: Path, load: Any, args: dict[str, Any]) -> float:
    """Wall seconds for one full analysis of ``archive`` along one path."""
    from streamser.session.analysis import analyze_files
    from streamser.session.ray_analyze import analyze_on_ray

    out = out_dir / (name.replace(" ", "-").replace(",", "") + ".parquet")
    cfg = AnalyzeConfig(output=str(out), **args)
    quiet: Any = lambda message: None  # noqa: E731
    t0 = time.perf_counter()
    if cfg.ray is not None:
        analyze_on_ray([str(archive)], cfg, load, quiet)
    else:
        analyze_files([str(archive)], cfg, load, quiet)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--full-size", action="store_true", help="the full-size network")
    parser.add_argument("--no-ray", action="store_true", help="the local paths only")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    opts = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    load = load_full_size if opts.full_size else load_demo
    work = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    try:
        archive = work / "archive"
        archive.mkdir()
        audio_s = make_archive(archive, opts.files, opts.seconds)
        paths: list[tuple[str, dict[str, Any]]] = [
            ("in-process", {"workers": 0}),
            ("pool", {}),
        ]
        if not opts.no_ray:
            paths += [
                ("ray, 1 actor", {"ray": "local"}),
                ("ray, 2 actors", {"ray": "local", "actors": 2}),
            ]
        load_before = os.getloadavg()
        results = []
        print(f"{opts.files} files, {audio_s / 3600:.3f} h of audio; model: "
              f"{'full size, random weights' if opts.full_size else 'demo'}; "
              f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"load before {load_before[0]:.2f}")  # fmt: skip
        for name, args in paths:
            wall_s = run_path(name, archive, work, load, args)
            rate = audio_s / wall_s
            results.append({"path": name, "wall_s": wall_s, "hours_per_hour": rate})
            print(f"{name:>15}: {wall_s:7.1f} s wall, {rate:7.1f} h of audio per hour", flush=True)
        if opts.json:
            opts.json.write_text(
                json.dumps(
                    {
                        "files": opts.files,
                        "audio_s": audio_s,
                        "full_size": opts.full_size,
                        "load_before": load_before,
                        "load_after": os.getloadavg(),
                        "results": results,
                    },
                    indent=2,
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
