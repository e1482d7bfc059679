"""The streaming engine: analyzer stage sample-exactly, and the threaded pipeline on real files."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamser.audio.replay import ArraySource, FileSource
from streamser.config import AudioConfig, ListenConfig, LogConfig, WindowConfig
from streamser.constants import SAMPLE_RATE_HZ
from streamser.contracts import Estimate
from streamser.engine.analyzer import StreamAnalyzer
from streamser.engine.pipeline import Pipeline
from streamser.model import load_model
from streamser.model.runtime import EmotionModel
from streamser.session.sink import SessionSink
from tests.conftest import ROOT_DIR
from tests.model_standins import DelegatingModel

SPEECH = ROOT_DIR / "assets" / "speech.wav"


@pytest.fixture(scope="module")
def demo() -> EmotionModel:
    return load_model("demo", compute="cpu")


def windows_for(duration_samples: int, first_s: float, hop_s: float) -> int:
    first, hop = round(first_s * SAMPLE_RATE_HZ), round(hop_s * SAMPLE_RATE_HZ)
    return (duration_samples - first) // hop + 1 if duration_samples >= first else 1


@pytest.mark.parametrize("rate_hz", [8_000, 22_050, 48_000])
@pytest.mark.parametrize("block", [1, 333, 4_800])
def test_analyzer_yields_the_window_formula_in_any_block_size(
    demo: EmotionModel, rate_hz: int, block: int
) -> None:
    cfg = WindowConfig(hop_s=0.5, vad=False)
    an = StreamAnalyzer(demo, cfg, rate_hz)
    n = int(4.3 * rate_hz)
    x = np.random.default_rng(1).standard_normal((n, 2)).astype(np.float32) * 0.1
    windows = []
    for i in range(0, n, block):
        an.push_capture(i, x[i : i + block])
        windows += an.due_all()
    windows += an.finish()
    n16 = round(n * SAMPLE_RATE_HZ / rate_hz)
    assert len(windows) == windows_for(n16, 1.0, 0.5)
    assert [w.end_sample for w in windows] == [16_000 + 8_000 * k for k in range(len(windows))]
    est = an.estimate(windows[:3])
    assert [e.seq for e in est] == [0, 1, 2]
    assert all(abs(sum(e.probs or ()) - 1.0) < 1e-6 for e in est)


def test_lost_capture_frames_become_zeros_and_keep_the_clock(demo: EmotionModel) -> None:
    an = StreamAnalyzer(demo, WindowConfig(vad=False), SAMPLE_RATE_HZ)
    an.push_capture(0, np.ones((16_000, 1), np.float32))
    an.push_capture(24_000, np.ones((24_000, 1), np.float32))  # frames 16,000-24,000 lost
    assert an.dropped_frames == 8_000
    assert an.windower.samples_total == 48_000
    w = an.due_all()[-1]
    assert (w.start_sample, w.end_sample) == (0, 48_000)
    assert np.all(w.samples[16_000:24_000] == 0.0)
    assert np.all(w.samples[:16_000] == 1.0) and np.all(w.samples[24_000:] == 1.0)
    assert an.estimate([w])[0].dropped_samples == 8_000


def test_nonfinite_samples_are_zeroed_and_counted(demo: EmotionModel) -> None:
    an = StreamAnalyzer(demo, WindowConfig(vad=False), SAMPLE_RATE_HZ)
    x = np.full((20_000, 1), 0.1, np.float32)
    x[100:110] = np.nan
    x[200] = np.inf
    an.push_capture(0, x)
    est = an.estimate(an.due_all())
    assert an.nonfinite_samples == 11
    assert est and all(np.isfinite(e.probs).all() for e in est)


def test_skip_non_speech_leaves_probabilities_null(demo: EmotionModel) -> None:
    cfg = WindowConfig(vad=True, skip_non_speech=True)
    from streamser.audio.vad import SpeechDetector

    an = StreamAnalyzer(demo, cfg, SAMPLE_RATE_HZ, SpeechDetector())
    an.push_capture(0, np.zeros((3 * SAMPLE_RATE_HZ, 1), np.float32))
    est = an.estimate(an.due_all())
    assert est and all(e.probs is None and e.is_speech is False for e in est)
    assert all(e.arousal_smooth is None for e in est)


def _collect(pipeline: Pipeline) -> list[Estimate]:
    got: list[Estimate] = []
    pipeline.bus.subscribe_lossless("test", got.append)
    return got


def test_fast_file_replay_is_lossless_and_exact(demo: EmotionModel, tmp_path: Path) -> None:
    cfg = ListenConfig(
        audio=AudioConfig(input_path=str(SPEECH), fast=True),
        logging=LogConfig(log=False),
    )
    pipeline = Pipeline(cfg, demo, FileSource(SPEECH, realtime=False), max_batch=4)
    got = _collect(pipeline)
    with pipeline:
        assert pipeline.wait(60)
    info = sf.info(str(SPEECH))
    n16 = round(info.frames * SAMPLE_RATE_HZ / info.samplerate)
    assert len(got) == windows_for(n16, 1.0, 1.0)
    assert [e.t_end_s for e in got] == pytest.approx([1.0 + k for k in range(len(got))])
    assert all(e.skipped_windows == 0 and e.dropped_samples == 0 for e in got)
    assert pipeline.counters()["estimates"] == len(got)


def test_file_shorter_than_first_window_gives_one_estimate(
    demo: EmotionModel, tmp_path: Path
) -> None:
    path = tmp_path / "short.wav"
    sf.write(path, np.random.default_rng(0).standard_normal(8_000) * 0.1, 16_000)
    cfg = ListenConfig(
        audio=AudioConfig(input_path=str(path), fast=True), logging=LogConfig(log=False)
    )
    pipeline = Pipeline(cfg, demo, FileSource(path, realtime=False))
    got = _collect(pipeline)
    with pipeline:
        assert pipeline.wait(30)
    assert len(got) == 1 and got[0].t_end_s == pytest.approx(0.5)


class SlowModel(DelegatingModel):
    """A stand-in whose every forward pass takes a fixed time, slower than the hop."""

    def __init__(self, inner: EmotionModel, compute_s: float) -> None:
        super().__init__(inner)
        self.compute_s = compute_s

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        time.sleep(self.compute_s)  # simulated compute time, not synchronisation
        return self.inner.logits(inputs)


def test_latency_stays_bounded_when_the_model_is_slower_than_the_hop(
    demo: EmotionModel,
) -> None:
    hop_s, compute_s, duration_s = 0.25, 0.6, 60.0
    rate = 16_000
    t = np.arange(int(duration_s * rate)) / rate
    x = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    cfg = ListenConfig(windows=WindowConfig(hop_s=hop_s, vad=False), logging=LogConfig(log=False))
    pipeline = Pipeline(cfg, SlowModel(demo, compute_s), ArraySource(x, rate, realtime=True))
    got = _collect(pipeline)
    with pipeline:
        assert pipeline.wait(duration_s + 30)
    lat = np.array([e.latency_s for e in got])
    assert len(got) > 10
    assert lat.max() < compute_s + hop_s + 0.5, lat.max()
    third = len(lat) // 3
    assert lat[-third:].mean() < lat[:third].mean() + 0.2  # no growth
    c = pipeline.counters()
    assert c["skipped_windows"] > 0
    assert c["estimates"] + c["skipped_windows"] == windows_for(len(x), 1.0, hop_s)
    assert got[-1].skipped_windows == c["skipped_windows"]


def test_stop_is_idempotent_and_keeps_every_computed_estimate(
    demo: EmotionModel, tmp_path: Path
) -> None:
    rate = 16_000
    x = np.random.default_rng(2).standard_normal(rate * 600).astype(np.float32) * 0.1
    cfg = ListenConfig(
        logging=LogConfig(log=True, log_dir=str(tmp_path)), windows=WindowConfig(vad=False)
    )
    sink = SessionSink(tmp_path)
    pipeline = Pipeline(cfg, demo, ArraySource(x, rate, realtime=False), sink=sink)
    got = _collect(pipeline)
    ten = threading.Event()
    pipeline.bus.subscribe_callback("ten", lambda e: ten.set() if e.seq >= 10 else None)
    pipeline.start()
    assert ten.wait(30)
    pipeline.stop()
    pipeline.stop()
    from streamser.session.reader import read_session

    assert sink.path is not None
    session = read_session(sink.path)
    assert session.clean
    assert len(session.estimates) == len(got) == session.meta["counters"]["estimates"]
    assert len(got) < windows_for(len(x), 1.0, 1.0)  # it really stopped early


class ThreadRecorder(DelegatingModel):
    """Records which thread ran each forward pass."""

    def __init__(self, inner: EmotionModel) -> None:
        super().__init__(inner)
        self.threads: set[str] = set()

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        return self.inner.logits(inputs)


def test_only_the_executor_thread_runs_the_model(demo: EmotionModel) -> None:
    rate = 16_000
    x = np.random.default_rng(3).standard_normal(rate * 8).astype(np.float32) * 0.1
    cfg = ListenConfig(logging=LogConfig(log=False), windows=WindowConfig(vad=False))
    model = ThreadRecorder(demo)
    pipeline = Pipeline(cfg, model, ArraySource(x, rate, realtime=False), max_batch=4)
    got = _collect(pipeline)
    with pipeline:
        assert pipeline.wait(60)
    assert len(got) == windows_for(len(x), 1.0, 1.0)
    assert model.threads == {"streamser-executor"}
    stats = pipeline.executor.stats()
    assert stats.windows_run == len(got) and max(stats.batch_sizes) > 1
