"""The pipeline's parts, each alone: the counters, the session sink and the device supervisor."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from streamser.audio.ring import RingBuffer
from streamser.audio.sources import AudioSource
from streamser.contracts import Estimate
from streamser.engine.bus import ResultBus
from streamser.engine.sinks import RunContext
from streamser.engine.stats import RunStats
from streamser.engine.supervisor import Commit, DeviceSupervisor
from streamser.session.reader import read_session
from streamser.session.sink import SessionSink
from tests.tui_fakes import scripted_estimates


def test_stats_snapshot_counts_and_converts_drops_to_16k_samples() -> None:
    stats = RunStats(in_rate_hz=48_000)
    stats.sync_stages(
        windows_due=5,
        skipped_windows=2,
        ring_dropped_frames=4_800,
        gap_frames=2_400,
        nonfinite_samples=0,
        huge_samples=0,
        frames_in=96_000,
        stream_samples=32_000,
        vad_frames_evicted=0,
    )
    for est in scripted_estimates(3):
        stats.record(est)
    stats.add_muted(0)
    stats.add_muted(1)
    c = stats.snapshot()
    assert c.dropped_samples == 2_400  # 7,200 frames at 48 kHz = 2,400 samples at 16 kHz
    assert (c.estimates, c.muted_windows, c.skipped_windows) == (3, 1, 2)
    assert c.stream_s == pytest.approx(2.0)
    assert c.last_latency_s == scripted_estimates(3)[-1].latency_s


def test_stats_snapshots_are_immutable_and_taken_whole() -> None:
    stats = RunStats(in_rate_hz=16_000)
    before = stats.snapshot()
    stats.add_muted(4)
    assert before.muted_windows == 0 and stats.snapshot().muted_windows == 4


def _context(bus: ResultBus[Estimate], ring: RingBuffer, muted: threading.Event) -> RunContext:
    description = {
        "schema_version": 2,
        "model": {"name": "stand-in", "demo": True},
        "audio": {"sample_rate_hz": 16_000, "channels": 1},
    }
    return RunContext(bus, ring, description, muted.is_set, lambda: False)


def test_session_sink_keeps_estimates_mutes_marks_audio_and_counters(tmp_path: Path) -> None:
    bus: ResultBus[Estimate] = ResultBus()
    ring = RingBuffer(16_000, 1, policy="block")
    muted = threading.Event()
    sink = SessionSink(tmp_path, record=True)
    sink.open(_context(bus, ring, muted))
    assert sink.status().logging and sink.status().recording
    tone = (0.1 * np.sin(np.arange(8_000) / 5)).astype(np.float32)[:, None]
    ring.write(tone)
    for est in scripted_estimates(4):
        bus.publish(est)
    sink.on_mute(True, 1.5)
    sink.add_mark(1.75, "door")
    sink.on_mute(False, 2.0)
    sink.on_mute(True, 3.0)  # still muted at the end: closed at the stream's end
    ring.close()
    bus.close()
    sink.close({"estimates": 4, "stream_s": 4.0})
    assert sink.path is not None
    session = read_session(sink.path)
    assert session.clean and len(session.estimates) == 4
    assert session.meta["mutes"] == [
        {"t_start_s": 1.5, "t_end_s": 2.0},
        {"t_start_s": 3.0, "t_end_s": 4.0},
    ]
    assert [m["note"] for m in session.marks] == ["door"]
    assert session.meta["counters"]["estimates"] == 4
    assert sum(s["frames"] for s in session.meta["audio_segments"]) == len(tone)
    assert sink.status().recorder_dropped_frames == 0


def test_session_sink_that_cannot_open_says_why_and_keeps_quiet(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    sink = SessionSink(blocker / "sessions")
    bus: ResultBus[Estimate] = ResultBus()
    sink.open(_context(bus, RingBuffer(160, 1, policy="block"), threading.Event()))
    status = sink.status()
    assert not status.logging and status.log_error is not None
    sink.add_mark(0.0, "ignored")  # warns, never raises
    sink.close({"stream_s": 0.0})


class LostOnce:
    """A source that fails as soon as it starts; its replacement runs."""

    sample_rate_hz, channels, description, realtime = 16_000, 1, "fake mic", True

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self.started_on: RingBuffer | None = None

    def start(self, ring: RingBuffer) -> None:
        self.started_on = ring
        if self.fail:
            self.error = OSError("device unplugged")
            self.finished.set()

    def stop(self) -> None:
        pass

    def ring_policy(self) -> Literal["overwrite", "block"]:
        return "overwrite"


def test_supervisor_replaces_a_lost_source_and_reports_the_gap() -> None:
    lost = LostOnce(fail=True)
    lost.start(RingBuffer(160, 1, policy="overwrite"))
    current: list[LostOnce] = [lost]
    switched = threading.Event()
    gaps: list[int] = []
    readers_before_start: list[bool] = []

    def attach(ring: RingBuffer) -> Commit:
        ring.reader("analyzer")
        replacement_running = [s for s in made if s.started_on is ring]
        readers_before_start.append(not replacement_running)

        def commit(new: AudioSource, gap_frames: int) -> None:
            assert isinstance(new, LostOnce)
            current[0] = new
            gaps.append(gap_frames)
            switched.set()

        return commit

    made: list[LostOnce] = []

    def factory() -> LostOnce:
        made.append(LostOnce(fail=False))
        return made[-1]

    sup = DeviceSupervisor(factory, lambda: current[0], 160, attach, retry_s=0.05)
    sup.start()
    try:
        assert switched.wait(10)
    finally:
        sup.stop()
    assert current[0] is made[0] and sup.reconnects == 1 and sup.error_text is None
    assert readers_before_start == [True] and gaps[0] >= 0
