"""Soak runs of the whole pipeline with the demo model: memory over hours, latency over minutes.

Two runs, each printing its figures (and writing them as JSON with ``--json FILE``):

``fast``
    ``streamser listen --input LOOP --fast --headless --model demo --record`` over a long file
    made by looping ``assets/speech.wav`` (default 60 minutes), in a child process. The child's
    resident memory is sampled from ``/proc/PID/status`` once a second. Reported: RSS at the
    first estimate, at the end and at its peak (VmHWM), RSS by tenth of the run, the estimate
    count against the window formula, skipped and dropped counts, lines in the session log,
    and whether the recording equals the input sample for sample.

``realtime``
    The same file replayed in real time (default 10 minutes) through an in-process
    :class:`~streamser.engine.pipeline.Pipeline`, logging and recording on, with a model slower
    than the hop: the demo model wrapped so that every forward pass takes a fixed time
    (default 1.5 s against a 1 s hop). Reported: latency p50/p95/max in the first and the last
    minute and overall, and estimates + skipped windows against the windows due.

``live``
    What a user runs: ``streamser listen --input LOOP --headless --record`` in real time, in a
    child process, with any model: ``demo``, ``full-size`` (the published architecture with
    random weights, written once into the work folder and loaded through the user's loader)
    or a path; more listen options (``--backend onnxruntime``, ``--hop 3``) follow ``--``.
    Reported: latency and compute time p50/p95/max (first minute, last minute, overall),
    estimates + skipped against the windows due, the child's memory.

Usage::

    python benchmarks/soak.py fast [--minutes 60] [--json out.json]
    python benchmarks/soak.py realtime [--minutes 10] [--compute-s 1.5] [--hop 1.0]
    python benchmarks/soak.py live [--minutes 10] [--model demo|full-size|PATH] [-- OPTIONS]

Figures are never asserted here; ``tests/test_soak.py`` asserts a short version.
``benchmarks/soak.md`` records a run on the development machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from streamser.contracts import ComputeInfo

ROOT_DIR = Path(__file__).resolve().parent.parent
SPEECH = ROOT_DIR / "assets" / "speech.wav"
SAMPLE_PERIOD_S = 1.0
"""How often the child's memory is read."""


# ------------------------------------------------------------------------------ utilities


def make_loop(path: Path, minutes: float, source: Path = SPEECH) -> Path:
    """Write ``source`` repeated to exactly ``minutes`` of audio, block by block."""
    clip, rate = sf.read(source, dtype="int16", always_2d=True)
    total = round(minutes * 60 * rate)
    info = sf.info(str(source))
    with sf.SoundFile(
        path, "w", samplerate=rate, channels=clip.shape[1], subtype=info.subtype
    ) as f:
        written = 0
        while written < total:
            part = clip[: total - written]
            f.write(part)
            written += len(part)
    return path


def windows_due(frames: int, rate_hz: int, hop_s: float = 1.0, first_s: float = 1.0) -> int:
    """The README's formula: a file of D seconds gives floor((D - first) / hop) + 1 windows."""
    duration_s = frames / rate_hz
    if duration_s < first_s:
        return 1 if frames else 0
    return int((duration_s - first_s) // hop_s) + 1


def status_kib(pid: int | str, *keys: str) -> dict[str, int]:
    """Fields of /proc/PID/status in KiB (VmRSS, VmHWM, ...); empty once the process is gone."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in keys:
            out[name] = int(value.split()[0])
    return out


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    p50, p95 = np.percentile(values, [50, 95])
    return {"n": len(values), "p50": float(p50), "p95": float(p95), "max": float(max(values))}


def recording_equals_input(session: Path, input_path: Path) -> dict[str, Any]:
    """Compare the session's recorded segments with the input file, one segment at a time."""
    from streamser.session.recorder import iter_recording

    total = 0
    equal = True
    segments = 0
    with sf.SoundFile(input_path) as f:
        for segment, data in iter_recording(session):
            f.seek(segment.start_frame)
            original = f.read(len(data), dtype="float32", always_2d=True)
            equal = equal and np.array_equal(original, data)
            total += len(data)
            segments += 1
        input_frames = f.frames
    return {
        "segments": segments,
        "frames_recorded": total,
        "frames_input": input_frames,
        "equal": bool(equal and total == input_frames),
    }


def machine() -> dict[str, Any]:
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = status_meminfo("MemTotal")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1) if mem_kib else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def status_meminfo(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


# ------------------------------------------------------------------------------ fast


class ChildWatch:
    """Reads the child's JSON lines and samples its memory, each on its own thread."""

    def __init__(self, proc: subprocess.Popen[str], expected: int) -> None:
        self.proc = proc
        self.expected = expected
        self.lines = 0
        self.first_line_at: float | None = None
        self.skipped_max = 0
        self.dropped_max = 0
        self.rows: list[tuple[float, float, float]] = []
        """(t_end_s, latency_s, compute_s) of every estimate."""
        self.samples: list[tuple[float, int, int]] = []
        """(seconds since start, estimates so far, VmRSS KiB)."""
        self.hwm_kib = 0
        self.t0 = time.monotonic()
        self.done = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._reader.start()
        self._sampler.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            row = json.loads(line)
            self.lines += 1
            if self.first_line_at is None:
                self.first_line_at = time.monotonic() - self.t0
            self.rows.append((row["t_end_s"], row["latency_s"], row["compute_s"]))
            self.skipped_max = max(self.skipped_max, row["skipped_windows"])
            self.dropped_max = max(self.dropped_max, row["dropped_samples"])
        self.done.set()

    def _sample(self) -> None:
        while not self.done.wait(SAMPLE_PERIOD_S):
            fields = status_kib(self.proc.pid, "VmRSS", "VmHWM")
            if "VmRSS" in fields:
                self.samples.append((time.monotonic() - self.t0, self.lines, fields["VmRSS"]))
                self.hwm_kib = max(self.hwm_kib, fields.get("VmHWM", 0))

    def join(self) -> None:
        self._reader.join()
        self._sampler.join()


def run_listen(listen_args: list[str], work: Path, expected: int) -> tuple[ChildWatch, str, float]:
    """``streamser listen LISTEN_ARGS`` in a child process with a private config and cache,
    watched until it exits; returns the watch, its stderr and the wall time."""
    env = {
        **os.environ,
        "STREAMSER_CONFIG": str(work / "no-config.toml"),
        "STREAMSER_CACHE_DIR": str(work / "cache"),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "streamser", "listen", *listen_args]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT_DIR
    )
    watch = ChildWatch(proc, expected)
    assert proc.stderr is not None
    stderr = proc.stderr.read()  # stdout is the watcher's alone
    proc.wait()
    watch.join()
    return watch, stderr, time.monotonic() - t0


def run_fast(minutes: float, work: Path) -> dict[str, Any]:
    loop = make_loop(work / "loop.wav", minutes)
    info = sf.info(str(loop))
    expected = windows_due(info.frames, info.samplerate)
    log_dir = work / "sessions"
    watch, stderr, wall_s = run_listen(
        ["--input", str(loop), "--fast", "--headless", "--model", "demo", "--record",
         "--log-dir", str(log_dir)],
        work,
        expected,
    )  # fmt: skip
    proc = watch.proc
    (session,) = log_dir.iterdir()
    meta = json.loads((session / "meta.json").read_text())
    counters = meta.get("counters", {})
    with open(session / "estimates.jsonl", "rb") as f:
        logged = sum(1 for _ in f)
    after_first = [s for s in watch.samples if s[1] > 0]
    rss_mib = [s[2] / 1024 for s in after_first]
    tenths = []
    for k in range(1, 11):
        want = expected * k / 10
        at = next(
            (s for s in after_first if s[1] >= want), after_first[-1] if after_first else None
        )
        if at is not None:
            tenths.append({"estimates": at[1], "t_s": round(at[0], 1), "rss_mib": at[2] / 1024})
    third = max(1, len(rss_mib) // 3)
    return {
        "run": "fast",
        "audio_minutes": info.frames / info.samplerate / 60,
        "input": f"{info.samplerate} Hz, {info.channels} ch, {info.subtype}",
        "exit_code": proc.returncode,
        "wall_s": wall_s,
        "first_estimate_s": watch.first_line_at,
        "estimates_stdout": watch.lines,
        "estimates_logged": logged,
        "windows_formula": expected,
        "counters": {
            k: counters.get(k)
            for k in ("estimates", "windows_due", "skipped_windows", "dropped_samples")
        },
        "max_skipped_seen": watch.skipped_max,
        "max_dropped_seen": watch.dropped_max,
        "session_closed": meta.get("closed"),
        "rss_mib": {
            "at_first_estimate": rss_mib[0] if rss_mib else None,
            "end": rss_mib[-1] if rss_mib else None,
            "max_sampled": max(rss_mib) if rss_mib else None,
            "peak_vmhwm": watch.hwm_kib / 1024,
            "mean_first_third": float(np.mean(rss_mib[:third])) if rss_mib else None,
            "mean_last_third": float(np.mean(rss_mib[-third:])) if rss_mib else None,
            "by_tenth": tenths,
        },
        "compute_ms_per_window": (counters.get("compute_s_total") or 0)
        / max(1, counters.get("estimates") or 1)
        * 1000,
        "recording": recording_equals_input(session, loop),
        "session_files": {
            "meta_json_bytes": (session / "meta.json").stat().st_size,
            "estimates_jsonl_bytes": (session / "estimates.jsonl").stat().st_size,
            "audio_files": len(list((session / "audio").iterdir())),
        },
        "stderr_tail": stderr.strip().splitlines()[-1:] if stderr else [],
    }


# ------------------------------------------------------------------------------ realtime


class FixedTimeModel:
    """The demo model, made slower than the hop: every forward pass takes ``compute_s``."""

    def __init__(self, inner: Any, compute_s: float) -> None:
        self.inner, self.compute_s = inner, compute_s
        self.info = inner.info
        self.calls = 0

    def compute_info(self) -> ComputeInfo:
        return self.inner.compute_info()

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.inner.logits(inputs)
        self.calls += 1
        time.sleep(max(0.0, self.compute_s - (time.perf_counter() - t0)))  # simulated compute
        return out


def run_realtime(minutes: float, compute_s: float, hop_s: float, work: Path) -> dict[str, Any]:
    from streamser.audio.replay import FileSource
    from streamser.config import AudioConfig, ListenConfig, LogConfig, WindowConfig
    from streamser.contracts import Estimate
    from streamser.engine.pipeline import Pipeline
    from streamser.model import load_model
    from streamser.session.sink import SessionSink

    loop = make_loop(work / "loop.wav", minutes)
    info = sf.info(str(loop))
    cfg = ListenConfig(
        audio=AudioConfig(input_path=str(loop)),
        windows=WindowConfig(hop_s=hop_s),
        logging=LogConfig(log=True, log_dir=str(work / "sessions"), record=True),
    )
    model = FixedTimeModel(load_model("demo", compute="cpu"), compute_s)
    model.inner.warm_up()
    sink = SessionSink(work / "sessions", record=True)
    pipeline = Pipeline(cfg, model, FileSource(loop, realtime=True), sink=sink)
    got: list[Estimate] = []
    pipeline.bus.subscribe_lossless("soak", got.append)
    rss: list[tuple[float, int]] = []
    t0 = time.monotonic()
    with pipeline:
        while not pipeline.wait(SAMPLE_PERIOD_S):
            rss.append((time.monotonic() - t0, status_kib("self", "VmRSS").get("VmRSS", 0)))
    wall_s = time.monotonic() - t0
    counters = pipeline.counters()
    due = windows_due(info.frames, info.samplerate, hop_s)
    lat = [e.latency_s for e in got]
    first = [e.latency_s for e in got if e.t_end_s <= 60.0]
    end_s = info.frames / info.samplerate
    last = [e.latency_s for e in got if e.t_end_s > end_s - 60.0]
    session = sink.path
    with open(session / "estimates.jsonl", "rb") as f:
        logged = sum(1 for _ in f)
    rss_mib = [r / 1024 for _, r in rss]
    return {
        "run": "realtime",
        "audio_minutes": end_s / 60,
        "wall_s": wall_s,
        "hop_s": hop_s,
        "model_compute_s": compute_s,
        "estimates": len(got),
        "estimates_logged": logged,
        "skipped_windows": counters["skipped_windows"],
        "dropped_samples": counters["dropped_samples"],
        "windows_due_formula": due,
        "windows_due_counter": counters["windows_due"],
        "estimates_plus_skipped": len(got) + counters["skipped_windows"],
        "latency_s": {
            "first_minute": percentiles(first),
            "last_minute": percentiles(last),
            "overall": percentiles(lat),
        },
        "rss_mib": {
            "start": rss_mib[0] if rss_mib else None,
            "end": rss_mib[-1] if rss_mib else None,
            "max": max(rss_mib) if rss_mib else None,
        },
        "recording": recording_equals_input(session, loop),
    }


# ------------------------------------------------------------------------------ live


SAVE_FULL_SIZE = """
import shutil, sys, torch
from streamser.model.demo import random_network
from streamser.model.exhubert import ExHubertConfig
net = random_network(ExHubertConfig(), seed=1)
torch.save(net.state_dict(), sys.argv[1] + "/pytorch_model.bin")
shutil.copy(sys.argv[2], sys.argv[1] + "/config.json")
"""


def run_live(minutes: float, model: str, extra: list[str], work: Path) -> dict[str, Any]:
    """``streamser listen`` as a user runs it on a file in real time, in a child process."""
    if model == "full-size":
        model_dir = work / "full-size"
        if not (model_dir / "pytorch_model.bin").is_file():
            model_dir.mkdir(parents=True, exist_ok=True)
            config = ROOT_DIR / "tests" / "data" / "published_config.json"
            subprocess.run(
                [sys.executable, "-c", SAVE_FULL_SIZE, str(model_dir), str(config)], check=True
            )
        model, extra = str(model_dir), ["--no-verify", *extra]
    loop = make_loop(work / "loop.wav", minutes)
    info = sf.info(str(loop))
    due = windows_due(info.frames, info.samplerate)
    log_dir = work / "sessions"
    listen_args = [
        "--input", str(loop), "--headless", "--model", model, "--record",
        "--log-dir", str(log_dir), *extra,
    ]  # fmt: skip
    watch, stderr, wall_s = run_listen(listen_args, work, due)
    proc = watch.proc
    sessions = sorted(log_dir.iterdir()) if log_dir.is_dir() else []
    meta = json.loads((sessions[-1] / "meta.json").read_text()) if sessions else {}
    counters = meta.get("counters", {})
    end_s = info.frames / info.samplerate
    lat = [r[1] for r in watch.rows]
    compute = [r[2] for r in watch.rows]
    rss_mib = [s[2] / 1024 for s in watch.samples if s[1] > 0]
    return {
        "run": "live",
        "command": " ".join(["streamser", "listen", *listen_args]),
        "audio_minutes": end_s / 60,
        "exit_code": proc.returncode,
        "wall_s": wall_s,
        "first_estimate_s": watch.first_line_at,
        "estimates": len(watch.rows),
        "skipped_windows": counters.get("skipped_windows"),
        "windows_due_formula": due,
        "windows_due_counter": counters.get("windows_due"),
        "dropped_samples": counters.get("dropped_samples"),
        "compute_s": percentiles(compute),
        "latency_s": {
            "first_minute": percentiles([r[1] for r in watch.rows if r[0] <= 60.0]),
            "last_minute": percentiles([r[1] for r in watch.rows if r[0] > end_s - 60.0]),
            "overall": percentiles(lat),
        },
        "rss_mib": {
            "at_first_estimate": rss_mib[0] if rss_mib else None,
            "end": rss_mib[-1] if rss_mib else None,
            "peak_vmhwm": watch.hwm_kib / 1024,
        },
        "compute_info": meta.get("compute"),
        "session_closed": meta.get("closed"),
        "stderr_tail": stderr.strip().splitlines()[-2:] if stderr else [],
    }


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="run", required=True)
    fast = sub.add_parser("fast", help="long --fast replay in a child process: memory")
    fast.add_argument("--minutes", type=float, default=60.0)
    rt = sub.add_parser("realtime", help="real-time replay, slow model: latency")
    rt.add_argument("--minutes", type=float, default=10.0)
    rt.add_argument("--compute-s", type=float, default=1.5)
    rt.add_argument("--hop", type=float, default=1.0)
    live = sub.add_parser(
        "live", help="streamser listen on a file in real time, any model: latency"
    )
    live.add_argument("--minutes", type=float, default=10.0)
    live.add_argument(
        "--model", default="demo", help="demo, full-size (random weights, written once), a path"
    )
    live.add_argument("listen_args", nargs=argparse.REMAINDER, help="more listen options")
    for p in (fast, rt, live):
        p.add_argument("--json", type=Path, help="also write the figures to this file")
        p.add_argument("--work-dir", type=Path, help="keep the files here (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="streamser-soak-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        about = machine()
        if args.run == "fast":
            result = run_fast(args.minutes, work)
        elif args.run == "live":
            extra = [a for a in args.listen_args if a != "--"]
            result = run_live(args.minutes, args.model, extra, work)
        else:
            result = run_realtime(args.minutes, args.compute_s, args.hop, work)
    result["machine"] = about
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
