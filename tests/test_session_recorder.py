"""Audio segments: exact content at native rate, gaps on the stream clock, crash safety."""

from __future__ import annotations

import inspect
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from scipy.io import wavfile

from streamser.session import recorder as recorder_module
from streamser.session.errors import SessionError
from streamser.session.logger import SessionLogger
from streamser.session.reader import read_session
from streamser.session.recorder import (
    AudioRecorder,
    iter_recording,
    list_recording_segments,
    read_recording,
)
from tests.conftest import ROOT_DIR

RATE_HZ = 1_000


def signal(start_frame: int, n: int, channels: int = 2) -> np.ndarray:
    """A test signal that is a pure function of the stream frame, exact in float32 (the killed
    child below runs this function's own source)."""
    idx = np.arange(start_frame, start_frame + n)
    cols = [(idx % 1000) / 1000, -((idx % 777) / 777.0), (idx % 13) / 13.0][:channels]
    return np.stack(cols, axis=1).astype(np.float32)


def feed(rec: AudioRecorder, start: int, stop: int, block: int = 37) -> None:
    for frame in range(start, stop, block):
        rec.write(frame, signal(frame, min(block, stop - frame)))


def test_segments_are_complete_wavs_with_exact_audio(tmp_path: Path) -> None:
    updates: list[list[dict[str, Any]]] = []
    rec = AudioRecorder(tmp_path, RATE_HZ, 2, segment_s=0.1, on_segments=updates.append)
    assert not rec.recording
    rec.start(0)
    assert rec.recording
    feed(rec, 0, 250)
    rec.stop()
    rec.stop()
    assert not rec.recording

    segments = rec.segments
    assert [(s["start_frame"], s["frames"]) for s in segments] == [(0, 100), (100, 100), (200, 50)]
    assert [s["start_s"] for s in segments] == [0.0, 0.1, 0.2]
    assert segments[1]["file"] == "audio/seg00001_f000000000100.wav"
    for s in segments:
        data, rate = sf.read(tmp_path / s["file"], dtype="float32", always_2d=True)
        assert rate == RATE_HZ
        np.testing.assert_array_equal(data, signal(s["start_frame"], s["frames"]))
        assert sf.info(str(tmp_path / s["file"])).subtype == "FLOAT"
    assert [len(u) for u in updates] == [1, 2, 3, 3]  # each segment start, then stop
    assert updates[-1] == segments
    assert stat.S_IMODE((tmp_path / "audio").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / segments[0]["file"]).stat().st_mode) == 0o600


def test_segment_list_is_persisted_in_meta_json(tmp_path: Path) -> None:
    logger = SessionLogger(tmp_path, {"audio": {"native_rate_hz": RATE_HZ, "channels": 2}})
    rec = AudioRecorder(
        logger.path,
        RATE_HZ,
        2,
        segment_s=0.1,
        on_segments=lambda segments: logger.update_meta(audio_segments=segments),
    )
    rec.start(0)
    feed(rec, 0, 130)
    in_flight = read_session(logger.path).meta["audio_segments"]  # as a crash would leave it
    assert [s["start_frame"] for s in in_flight] == [0, 100]
    rec.stop()
    logger.close({})
    assert read_session(logger.path).meta["audio_segments"] == rec.segments
    assert rec.segments[-1]["frames"] == 30


def test_pause_and_dropped_audio_leave_zero_gaps_on_the_stream_clock(tmp_path: Path) -> None:
    rec = AudioRecorder(tmp_path, RATE_HZ, 2, segment_s=0.1)
    rec.write(0, signal(0, 40))  # not recording yet: ignored
    rec.start(20)
    feed(rec, 0, 150)  # the first block starts before the run: trimmed to frame 20
    rec.stop()
    feed(rec, 150, 300)  # paused: ignored
    rec.start(300)
    feed(rec, 300, 360)
    feed(rec, 380, 420)  # 20 frames dropped upstream: a new segment starts at 380
    rec.stop()

    audio, rate = read_recording(tmp_path)
    assert rate == RATE_HZ
    assert audio.shape == (420, 2)
    expected = signal(0, 420)
    for lo, hi in [(0, 20), (150, 300), (360, 380)]:
        expected[lo:hi] = 0.0
    np.testing.assert_array_equal(audio, expected)
    assert [s["start_frame"] for s in rec.segments] == [20, 120, 300, 380]

    lazy = list(iter_recording(tmp_path))
    assert [seg.start_frame for seg, _ in lazy] == [20, 120, 300, 380]
    for seg, data in lazy:
        np.testing.assert_array_equal(data, signal(seg.start_frame, seg.frames))


def test_mono_blocks_may_be_one_dimensional_and_shapes_are_checked(tmp_path: Path) -> None:
    rec = AudioRecorder(tmp_path, RATE_HZ, 1)
    rec.start(0)
    rec.write(0, signal(0, 50, channels=1)[:, 0])
    with pytest.raises(ValueError, match=r"\(n, 1\)"):
        rec.write(50, signal(50, 10, channels=2))
    rec.stop()
    audio, _ = read_recording(tmp_path)
    np.testing.assert_array_equal(audio, signal(0, 50, channels=1))


def test_open_segment_header_is_current_for_strict_readers(tmp_path: Path) -> None:
    rec = AudioRecorder(tmp_path, RATE_HZ, 2, segment_s=10.0)
    rec.start(0)
    feed(rec, 0, 333)  # still open: never closed, never synced
    path = tmp_path / rec.segments[0]["file"]
    assert sf.info(str(path)).frames == 333
    rate, data = wavfile.read(path)  # scipy checks the RIFF sizes strictly
    assert rate == RATE_HZ
    np.testing.assert_array_equal(data, signal(0, 333))
    rec.stop()


def test_bytes_past_the_declared_data_are_ignored(tmp_path: Path) -> None:
    """What a kill between a block's data write and its header update leaves behind."""
    rec = AudioRecorder(tmp_path, RATE_HZ, 2, segment_s=10.0)
    rec.start(0)
    feed(rec, 0, 100)
    path = tmp_path / rec.segments[0]["file"]
    with path.open("ab") as f:
        f.write(b"LIST" + signal(100, 37).tobytes())
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    np.testing.assert_array_equal(data, signal(0, 100))
    rec.stop()


def test_write_failure_stops_recording_without_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write_all = recorder_module._write_all
    calls = {"n": 0}

    def write_all(fd: int, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] > 13:  # the data of block 250..300: half of it reaches the disk
            os.write(fd, data[: len(data) // 2])
            raise OSError(28, "No space left on device")
        real_write_all(fd, data)

    monkeypatch.setattr(recorder_module, "_write_all", write_all)
    reasons: list[str] = []
    rec = AudioRecorder(tmp_path, RATE_HZ, 2, segment_s=0.1, on_failure=reasons.append)
    rec.start(0)
    feed(rec, 0, 500, block=50)
    rec.stop()
    rec.start(600)  # no restart after a failure
    feed(rec, 600, 700, block=50)

    assert reasons == ["No space left on device"]
    assert rec.failed == "No space left on device"
    assert not rec.recording
    monkeypatch.undo()
    segments = list_recording_segments(tmp_path)
    assert [(s.start_frame, s.frames) for s in segments] == [(0, 100), (100, 100), (200, 50)]
    audio, _ = read_recording(tmp_path)
    np.testing.assert_array_equal(audio, signal(0, 250))


def test_unwritable_session_dir_is_reported_once(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    reasons: list[str] = []
    rec = AudioRecorder(blocker / "session", RATE_HZ, 2, on_failure=reasons.append)
    rec.start(0)
    feed(rec, 0, 100)
    assert len(reasons) == 1
    assert rec.failed == reasons[0]
    assert not rec.recording


def test_reading_a_session_without_audio_says_so(tmp_path: Path) -> None:
    with pytest.raises(SessionError, match="no audio was recorded"):
        read_recording(tmp_path)


CHILD_MAIN = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from streamser.session.recorder import AudioRecorder

    def announce(segments):
        print(len(segments), flush=True)
        if len(segments) >= 60:
            sys.stdin.readline()  # do not run away: wait to be killed

    rec = AudioRecorder(Path(sys.argv[1]), 8000, 2, segment_s=0.1, on_segments=announce)
    rec.start(0)
    frame = 0
    while True:
        rec.write(frame, signal(frame, 160))
        frame += 160
    """
)


def test_kill_9_leaves_every_segment_readable(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT_DIR)}
    code = "import numpy as np\n" + inspect.getsource(signal) + CHILD_MAIN
    with subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=ROOT_DIR,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            if int(line) >= 6:
                break
        child.kill()  # SIGKILL: no close, no flush, no atexit
        assert child.wait(timeout=30) == -9

    segments = list_recording_segments(tmp_path)
    assert len(segments) >= 6
    assert all(s.frames == 800 for s in segments[:-1])
    assert 0 < segments[-1].frames <= 800
    for s in segments:
        rate, data = wavfile.read(s.path)  # a strict reader, segment by segment
        assert rate == 8000
        np.testing.assert_array_equal(data, signal(s.start_frame, s.frames))
    audio, rate = read_recording(tmp_path)
    assert rate == 8000
    np.testing.assert_array_equal(audio, signal(0, segments[-1].end_frame))
