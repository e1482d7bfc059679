"""Audio sources: file and array replay (paced and lossless), errors, and the mic's logic.

The microphone is driven through a fake ``sounddevice`` (see test_devices.py); real capture is in
test_real_capture.py.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from test_devices import FakeSoundDevice, hide_portaudio, install_fake_sounddevice

from streamser.audio.mic import MicSource
from streamser.audio.replay import ArraySource, FileSource
from streamser.audio.ring import RingBuffer, RingReader
from streamser.audio.sources import AudioSource, SourceError, mix_to_mono

RATE_HZ = 8_000
EVENT_TIMEOUT_S = 10.0


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch) -> FakeSoundDevice:
    return install_fake_sounddevice(monkeypatch)


@pytest.fixture
def no_portaudio(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_portaudio(monkeypatch)


def _ramp(n_frames: int, channels: int) -> np.ndarray:
    """Distinct, exactly representable samples, so a lost or repeated frame shows."""
    values = np.arange(n_frames * channels, dtype=np.float32).reshape(n_frames, channels)
    return values / np.float32(2**20)


def _write_wav(path: Path, samples: np.ndarray, rate_hz: int = RATE_HZ) -> Path:
    soundfile.write(path, samples, rate_hz, subtype="FLOAT")
    return path


def _drain(reader: RingReader, ring: RingBuffer) -> np.ndarray:
    """Everything the reader gets until the source closes the ring (bounded by a deadline)."""
    parts: list[np.ndarray] = []
    deadline_s = time.monotonic() + EVENT_TIMEOUT_S
    while time.monotonic() < deadline_s:
        reader.wait(0.5)
        closed = ring.closed
        _, block = reader.read_new()
        parts.append(block)
        if closed and reader.available() == 0:
            break
    else:
        pytest.fail("the source never closed the ring")
    return np.concatenate(parts)


def _one_line_error(excinfo: pytest.ExceptionInfo[SourceError], *fragments: str) -> None:
    message = str(excinfo.value)
    assert message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def _start(source: AudioSource, capacity_frames: int = 1_024) -> tuple[RingBuffer, RingReader]:
    ring = RingBuffer(capacity_frames, source.channels, source.ring_policy())
    reader = ring.reader("test")
    source.start(ring)
    return ring, reader


# ------------------------------------------------------------------------------ replay


def test_fast_file_replay_is_lossless_through_a_small_blocking_ring(tmp_path: Path) -> None:
    samples = _ramp(3 * RATE_HZ, channels=2)
    source = FileSource(_write_wav(tmp_path / "x.wav", samples), realtime=False)
    assert (source.sample_rate_hz, source.channels, source.total_frames) == (RATE_HZ, 2, 24_000)
    assert source.ring_policy() == "block"
    assert not source.realtime
    with source:
        ring, reader = _start(source, capacity_frames=500)  # far smaller than the file
        received = _drain(reader, ring)
    assert source.finished.is_set()
    assert source.error is None
    assert reader.dropped_frames == 0
    assert source.frames_delivered == len(samples)
    np.testing.assert_array_equal(received, samples)


def test_fast_replay_of_a_converted_file_matches_soundfile(tmp_path: Path) -> None:
    """Integer PCM at the speech asset's rate arrives as float32, as soundfile decodes it."""
    samples = np.sin(np.linspace(0, 200, 22_050 // 2)).astype(np.float32) * 0.5
    path = tmp_path / "pcm16.wav"
    soundfile.write(path, samples, 22_050, subtype="PCM_16")
    with FileSource(path, realtime=False, block_s=0.013) as source:
        ring, reader = _start(source)
        received = _drain(reader, ring)
    expected, _ = soundfile.read(path, dtype="float32", always_2d=True)
    np.testing.assert_array_equal(received, expected)


def test_real_time_replay_is_paced_by_the_wall_clock() -> None:
    samples = _ramp(RATE_HZ, channels=1)  # 1 s
    source = ArraySource(samples, RATE_HZ, realtime=True, block_s=0.05)
    assert source.ring_policy() == "overwrite"
    with source:
        started_s = time.monotonic()
        ring, reader = _start(source, capacity_frames=2 * RATE_HZ)
        got_first_block = reader.wait(EVENT_TIMEOUT_S)
        first_block_s = time.monotonic() - started_s
        assert source.finished.wait(EVENT_TIMEOUT_S)
        elapsed_s = time.monotonic() - started_s
    assert got_first_block
    assert first_block_s >= 0.04  # a block is due when a microphone would have delivered it
    assert 0.9 <= elapsed_s < 5.0
    assert reader.dropped_frames == 0
    np.testing.assert_array_equal(_drain(reader, ring), samples)


def test_stop_is_prompt_idempotent_and_closes_the_ring() -> None:
    source = ArraySource(np.zeros(60 * RATE_HZ, dtype=np.float32), RATE_HZ, realtime=True)
    source.stop()  # before start: nothing to do
    ring, reader = _start(source, capacity_frames=RATE_HZ)
    assert reader.wait(EVENT_TIMEOUT_S)
    stopping_s = time.monotonic()
    source.stop()
    assert time.monotonic() - stopping_s < 1.0
    source.stop()
    assert ring.closed
    assert not source.finished.is_set()  # stopped, not finished: 60 s were not delivered
    assert source.error is None
    assert not any(t.name == "streamser-replay" and t.is_alive() for t in threading.enumerate())


def test_stop_releases_a_lossless_writer_waiting_for_a_reader_that_never_reads() -> None:
    source = ArraySource(_ramp(RATE_HZ, 1), RATE_HZ, realtime=False)
    _, reader = _start(source, capacity_frames=100)
    deadline_s = time.monotonic() + EVENT_TIMEOUT_S
    while reader.available() < 100 and time.monotonic() < deadline_s:
        reader.wait(0.1)
    assert reader.available() == 100  # full; the writer now waits
    stopping_s = time.monotonic()
    source.stop()
    assert time.monotonic() - stopping_s < 1.0
    assert not source.finished.is_set()


def test_start_is_idempotent_and_a_restart_replays_from_the_beginning() -> None:
    samples = _ramp(1_000, 1)
    source = ArraySource(samples, RATE_HZ, realtime=False, block_s=0.01)
    ring = RingBuffer(2_000, 1, "block")
    reader = ring.reader("test")
    source.start(ring)
    source.start(ring)
    first = _drain(reader, ring)
    source.stop()
    ring2, reader2 = _start(source, capacity_frames=2_000)
    second = _drain(reader2, ring2)
    source.stop()
    np.testing.assert_array_equal(first, samples)
    np.testing.assert_array_equal(second, samples)


def test_array_source_accepts_mono_vectors_and_rejects_bad_shapes() -> None:
    source = ArraySource(np.zeros(10), 16_000)
    assert source.channels == 1
    assert source.description.startswith("<array")
    with pytest.raises(ValueError, match="shape"):
        ArraySource(np.zeros((2, 3, 4)), 16_000)
    with pytest.raises(ValueError, match="sample_rate_hz"):
        ArraySource(np.zeros(10), 0)


def test_a_read_error_mid_file_is_reported_and_ends_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "damaged.flac"
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, (80_000, 1)).astype(np.float32)
    soundfile.write(path, noise, 16_000)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 20_000] = b"\xff" * 20_000
    path.write_bytes(bytes(data))
    with FileSource(path, realtime=False) as source:
        ring, reader = _start(source)
        received = _drain(reader, ring)
    assert source.finished.is_set()
    assert isinstance(source.error, SourceError)
    assert "\n" not in str(source.error)
    assert str(path) in str(source.error)
    assert source.error.__cause__ is not None
    assert 0 < len(received) < len(noise)


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "bad header", "text"])
def test_unusable_paths_fail_at_construction_with_one_line(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "input.wav"
    expected = {
        "missing": "not found",
        "directory": "is a directory",
        "empty": "empty (0 bytes)",
        "bad header": "cannot decode",
        "text": "cannot decode",
    }[kind]
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.touch()
    elif kind == "bad header":
        header = _write_wav(tmp_path / "good.wav", _ramp(100, 1)).read_bytes()
        path.write_bytes(header[:4] + b"\x00" * 8 + header[12:])  # "WAVE" id overwritten
    elif kind == "text":
        path.write_text("this is not audio\n" * 50)
    with pytest.raises(SourceError) as excinfo:
        FileSource(path)
    _one_line_error(excinfo, expected, str(path))


def test_mix_to_mono_averages_channels() -> None:
    block = np.array([[1.0, 0.0], [0.5, -0.5], [0.25, 0.75]], dtype=np.float32)
    mono = mix_to_mono(block)
    assert mono.dtype == np.float32
    np.testing.assert_array_equal(mono, [0.5, 0.0, 0.5])
    np.testing.assert_array_equal(mix_to_mono(block[:, :1]), [1.0, 0.5, 0.25])
    np.testing.assert_array_equal(mix_to_mono(np.array([0.5, 1.0])), [0.5, 1.0])


# ------------------------------------------------------------------------------ microphone


def test_importing_the_audio_modules_does_not_load_portaudio() -> None:
    """The model and file replay must work where PortAudio is not installed."""
    code = (
        "import sys, streamser.audio.sources, streamser.audio.mic, streamser.audio.replay, "
        "streamser.audio.devices, streamser.audio.silence; "
        "sys.exit('sounddevice' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_mic_opens_the_default_device_at_its_native_rate(fake_sd: FakeSoundDevice) -> None:
    mic = MicSource()
    assert mic.description == "default"
    assert mic.sample_rate_hz == 44_100
    assert mic.channels == 2  # the virtual device offers 32; no microphone needs more than 2
    assert mic.realtime
    assert mic.ring_policy() == "overwrite"
    mono_usb = MicSource("usb")
    assert (mono_usb.device.index, mono_usb.sample_rate_hz, mono_usb.channels) == (2, 48_000, 1)
    assert MicSource(3, sample_rate_hz=16_000, channels=1).sample_rate_hz == 16_000


@pytest.mark.parametrize(
    ("rate_hz", "channels"), [(12_345, None), (None, 3), (None, -1), (11_025, 1)]
)
def test_unsupported_settings_list_what_is_valid(
    fake_sd: FakeSoundDevice, rate_hz: int | None, channels: int | None
) -> None:
    with pytest.raises(SourceError) as excinfo:
        MicSource("ALC257", sample_rate_hz=rate_hz, channels=channels)
    _one_line_error(
        excinfo, "'HDA Intel PCH: ALC257 Analog (hw:0,0)'", "44100 Hz", "at most 2 input"
    )
    assert isinstance(excinfo.value.__cause__, FakeSoundDevice.PortAudioError)


def test_mic_without_portaudio_says_what_to_install(no_portaudio: None) -> None:
    with pytest.raises(SourceError, match="libportaudio2"):
        MicSource()


def test_mic_callback_copies_blocks_into_the_ring_and_counts(fake_sd: FakeSoundDevice) -> None:
    with MicSource("usb", block_s=0.01) as mic:
        ring, reader = _start(mic)
        (stream,) = fake_sd.streams
        assert stream.started
        assert stream.kwargs["blocksize"] == 480
        assert stream.kwargs["dtype"] == "float32"
        assert (stream.kwargs["device"], stream.kwargs["samplerate"]) == (2, 48_000)
        assert not mic.first_callback.is_set()
        block = _ramp(480, 1)
        stream.deliver(block)
        block[:] = -1.0  # PortAudio reuses its buffer: the ring must hold a copy
        stream.deliver(_ramp(480, 1), status=1)
        mic.start(ring)  # idempotent: no second stream
        assert len(fake_sd.streams) == 1
        assert mic.first_callback.is_set()
        assert mic.frames_captured == 960
        assert mic.status_flags == 1
        assert mic.last_callback_wall_s > 0
        first, got = reader.read_new()
        assert first == 0
        np.testing.assert_array_equal(got, np.concatenate([_ramp(480, 1), _ramp(480, 1)]))
    assert stream.closed
    assert ring.closed
    assert mic.error is None  # the stream ended because we stopped it
    assert not mic.finished.is_set()
    mic.stop()


def test_mic_stream_ending_by_itself_is_a_lost_device(fake_sd: FakeSoundDevice) -> None:
    with MicSource() as mic:
        ring, _ = _start(mic)
        fake_sd.streams[0].finished_callback()
        assert mic.finished.is_set()
        assert isinstance(mic.error, SourceError)
        assert "'default' stopped" in str(mic.error)
        assert ring.closed


def test_mic_that_stops_calling_back_is_a_lost_device(
    fake_sd: FakeSoundDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MicSource, "STALL_TIMEOUT_S", 0.2)
    monkeypatch.setattr(MicSource, "WATCH_INTERVAL_S", 0.01)
    with MicSource() as mic:
        ring, _ = _start(mic)
        fake_sd.streams[0].deliver(np.zeros((100, 2), dtype=np.float32))
        assert mic.finished.wait(EVENT_TIMEOUT_S)
        assert "delivered no audio" in str(mic.error)
        assert ring.closed


def test_mic_that_never_starts_is_reported(
    fake_sd: FakeSoundDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MicSource, "FIRST_CALLBACK_TIMEOUT_S", 0.2)
    monkeypatch.setattr(MicSource, "WATCH_INTERVAL_S", 0.01)
    with MicSource() as mic:
        _start(mic)
        assert mic.finished.wait(EVENT_TIMEOUT_S)
        assert "delivered no audio" in str(mic.error)


def test_mic_open_failure_is_a_one_line_source_error(fake_sd: FakeSoundDevice) -> None:
    fake_sd.open_error = FakeSoundDevice.PortAudioError(
        "Error opening InputStream: Device unavailable [PaErrorCode -9985]\nmore detail"
    )
    mic = MicSource()
    with pytest.raises(SourceError) as excinfo:
        _start(mic)
    _one_line_error(excinfo, "cannot open input device 'default'", "Device unavailable")
    mic.stop()
