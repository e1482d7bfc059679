"""A short soak: minutes of speech through the whole pipeline, nothing lost, memory flat.

Three minutes of the speech asset, looped, replayed with ``--fast`` by a real ``streamser
listen`` process with the demo model, logging and recording on. Every window of the formula
must come out once, on stdout and in the session log, with nothing skipped or dropped; the
recording must equal the input sample for sample; and the process's resident memory, sampled
from /proc while it runs, must level off: its first third is warm-up (allocator pools, batch
shapes, thread arenas: 20-50 MiB here), after which the last third must not sit higher than
the middle one. That catches gross leaks only (about 0.4 MiB per estimate); the hour-long
``benchmarks/soak.py`` measures the slope.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamser.audio.replay import ArraySource
from streamser.config import ListenConfig, LogConfig, WindowConfig
from streamser.contracts import Estimate
from streamser.engine.pipeline import Pipeline
from streamser.model import load_model
from streamser.model.runtime import EmotionModel
from streamser.session.recorder import read_recording
from tests.conftest import ROOT_DIR
from tests.model_standins import DelegatingModel
from tests.test_listen_cli import SPEECH, env_for

SOAK_MINUTES = 3.0
RSS_PERIOD_S = 0.2
"""How often the child's memory is read: a bounded rate, not a synchronisation."""
RSS_GROWTH_LIMIT_MIB = 24.0
"""Allowed rise of the median RSS from the middle third of the run to the last. Single samples
swing by up to 20 MiB as large buffers are freed and reused, hence medians and this margin."""
RSS_WARMUP_LIMIT_MIB = 64.0
"""Allowed rise from the first third (warm-up included) to the last: the generous bound."""
RSS_PEAK_LIMIT_MIB = 1024.0
"""The demo model's process peaks near 360 MiB over an hour; anything near this is a leak."""
RUN_TIMEOUT_S = 300.0


def make_loop(path: Path, minutes: float) -> Path:
    clip, rate = sf.read(SPEECH, dtype="int16")
    total = round(minutes * 60 * rate)
    reps = -(-total // len(clip))
    sf.write(path, np.tile(clip, reps)[:total], rate, subtype="PCM_16")
    return path


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Watch:
    """Reads the child's output and, once it has produced its first estimate, samples its RSS."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.stderr = ""
        self.rss: list[int] = []
        self.first = threading.Event()
        self.eof = threading.Event()
        self._threads = [
            threading.Thread(target=fn, daemon=True)
            for fn in (self._read, self._read_stderr, self._sample)
        ]
        for t in self._threads:
            t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self.first.set()
        self.eof.set()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def _sample(self) -> None:
        if not self.first.wait(RUN_TIMEOUT_S):
            return
        while not self.eof.wait(RSS_PERIOD_S):
            kib = rss_kib(self.proc.pid)
            if kib is not None:
                self.rss.append(kib)

    def join(self, timeout_s: float) -> None:
        for t in self._threads:
            t.join(timeout_s)


def test_minutes_of_fast_replay_lose_nothing_and_keep_memory_flat(tmp_path: Path) -> None:
    loop = make_loop(tmp_path / "loop.wav", SOAK_MINUTES)
    info = sf.info(str(loop))
    duration_s = info.frames / info.samplerate
    expected = int(duration_s - 1.0) + 1  # README: floor((D - 1) / hop) + 1, hop 1 s
    log_dir = tmp_path / "sessions"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamser", "listen", "--input", str(loop), "--fast",
         "--headless", "--model", "demo", "--record", "--log-dir", str(log_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_for(tmp_path),
        cwd=ROOT_DIR,
    )  # fmt: skip
    watch = Watch(proc)
    try:
        rc = proc.wait(RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    watch.join(10)
    assert rc == 0 and "Traceback" not in watch.stderr, watch.stderr

    rows = [json.loads(line) for line in watch.lines]
    assert len(rows) == expected
    assert [r["seq"] for r in rows] == list(range(expected))
    assert [r["t_end_s"] for r in rows] == pytest.approx([1.0 + k for k in range(expected)])
    for r in rows:
        assert abs(sum(r["probs"]) - 1.0) < 1e-6
        assert 0.0 <= r["arousal"] <= 1.0 and -1.0 <= r["valence"] <= 1.0
        assert r["skipped_windows"] == 0 and r["dropped_samples"] == 0

    (session,) = log_dir.iterdir()
    logged = [json.loads(x) for x in (session / "estimates.jsonl").read_text().splitlines()]
    assert logged == rows
    meta = json.loads((session / "meta.json").read_text())
    c = meta["counters"]
    assert meta["closed"] is True
    assert c["estimates"] == c["windows_due"] == expected
    assert c["skipped_windows"] == c["dropped_samples"] == c["ring_dropped_frames"] == 0
    assert c["frames_in"] == info.frames and c["consumer_failures"] == []
    for name, sub in c["bus"].items():
        assert sub.get("dropped", 0) == 0 and sub["detached"] == 0, (name, sub)

    recorded, rate = read_recording(session)
    original, _ = sf.read(loop, dtype="float32", always_2d=True)
    assert rate == info.samplerate
    assert recorded.shape == original.shape and np.array_equal(recorded, original)

    assert len(watch.rss) >= 9, f"only {len(watch.rss)} memory samples"
    mib = np.array(watch.rss) / 1024
    first, middle, last = (float(np.median(part)) for part in np.array_split(mib, 3))
    assert last - middle <= RSS_GROWTH_LIMIT_MIB, (first, middle, last)
    assert last - first <= RSS_WARMUP_LIMIT_MIB, (first, middle, last)
    assert mib.max() < RSS_PEAK_LIMIT_MIB, mib.max()


class ComputesPastTheEnd(DelegatingModel):
    """The demo model, whose every pass waits until the source has delivered its last frame
    and then computes for ``compute_s`` more: the worker reads the end of the stream late, as
    it does after every real-time replay with a model slower than the hop."""

    def __init__(self, inner: EmotionModel, source: ArraySource, compute_s: float) -> None:
        super().__init__(inner)
        self.source, self.compute_s = source, compute_s

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        assert self.source.finished.wait(RUN_TIMEOUT_S), "the source never finished"
        time.sleep(self.compute_s)  # simulated compute time, not synchronisation
        return self.inner.logits(inputs)


def test_a_realtime_replay_read_late_at_its_end_reports_no_dropped_audio() -> None:
    """Every frame of a file reaches the analyser, so none may be reported dropped, even when
    the last ones are read well after the file ended (the wall clock then runs on while no
    audio comes, which is the end of the stream, not a hole in it)."""
    rate = 16_000
    x = (0.1 * np.sin(2 * np.pi * 220 * np.arange(3 * rate) / rate)).astype(np.float32)
    source = ArraySource(x, rate, realtime=True)
    cfg = ListenConfig(windows=WindowConfig(vad=False), logging=LogConfig(log=False))
    model = ComputesPastTheEnd(load_model("demo", compute="cpu"), source, compute_s=0.5)
    pipeline = Pipeline(cfg, model, source)
    got: list[Estimate] = []
    pipeline.bus.subscribe_lossless("test", got.append)
    with pipeline:
        assert pipeline.wait(RUN_TIMEOUT_S)
    c = pipeline.counters()
    assert c["frames_in"] == len(x) and c["ring_dropped_frames"] == 0
    assert c["estimates"] + c["skipped_windows"] == c["windows_due"] == 3
    assert c["dropped_samples"] == 0, c
    assert [e.dropped_samples for e in got] == [0] * len(got)


def test_soak_live_reports_a_real_time_listen_run(tmp_path: Path) -> None:
    """``benchmarks/soak.py live``: a short real-time listen run, figures from its own output."""
    out = tmp_path / "live.json"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT_DIR / "benchmarks" / "soak.py"),
            "live",
            "--minutes",
            "0.1",
            "--json",
            str(out),
            "--work-dir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT_DIR,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["exit_code"] == 0 and report["session_closed"] is True
    assert report["windows_due_formula"] == report["windows_due_counter"] == 6
    assert report["estimates"] + report["skipped_windows"] == 6
    lat = report["latency_s"]["overall"]
    assert lat["n"] == report["estimates"] and 0 < lat["p50"] <= lat["p95"] <= lat["max"] < 5
    assert report["wall_s"] >= 6.0  # real time: 6 s of audio cannot take less
    assert report["compute_info"]["backend"] == "torch"
