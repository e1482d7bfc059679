"""Real capture: PortAudio records, through ALSA and PulseAudio, what is played into a null sink.

The one test of :class:`~streamser.audio.mic.MicSource` against a real audio stack: a chirp
and a piece of the speech asset are played into a 16 kHz float32 null sink, whose monitor is the
default input, and must come back through the ring unchanged.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pulse
import pytest
import soundfile
import soxr
from conftest import ROOT_DIR
from scipy.signal import chirp

from streamser.audio.devices import format_device_table, list_input_devices
from streamser.audio.mic import MicSource
from streamser.audio.ring import RingBuffer
from streamser.audio.sources import mix_to_mono

pulse_null_sink = pulse.pulse_null_sink

SPEECH_PATH = ROOT_DIR / "assets" / "speech.wav"
RATE_HZ = pulse.SINK_RATE_HZ
PAD_S = 0.1
"""Silence before the signal: the first milliseconds of a playback are not reproduced."""
FIRST_CALLBACK_TIMEOUT_S = 10.0
TAIL_S = 0.5
"""Recording kept after playback ends, so the monitor's latency cannot cut the end off."""


def _played_signal() -> np.ndarray:
    """1 s rising chirp, then 2 s of the speech asset resampled to the sink's rate."""
    t = np.arange(RATE_HZ) / RATE_HZ
    sweep = 0.5 * chirp(t, f0=200.0, t1=1.0, f1=6_000.0, method="logarithmic")
    speech, speech_rate_hz = soundfile.read(SPEECH_PATH, dtype="float32")
    speech = soxr.resample(speech, speech_rate_hz, RATE_HZ)
    start = int(0.6 * RATE_HZ)  # the asset opens with 0.6 s of silence
    return np.concatenate([sweep, speech[start : start + 2 * RATE_HZ]]).astype(np.float32)


@pytest.mark.system
def test_mic_records_what_is_played_into_the_sink(
    pulse_null_sink: pulse.PulseServer, tmp_path: Path
) -> None:
    signal = _played_signal()
    pad = np.zeros(int(PAD_S * RATE_HZ), dtype=np.float32)
    played_path = tmp_path / "played.wav"
    soundfile.write(played_path, np.concatenate([pad, signal, pad]), RATE_HZ, subtype="FLOAT")

    mic = MicSource("default", sample_rate_hz=RATE_HZ, channels=1, block_s=0.02)
    ring = RingBuffer(30 * RATE_HZ, mic.channels, mic.ring_policy())
    reader = ring.reader("test")
    parts: list[np.ndarray] = []
    with mic:
        mic.start(ring)
        assert mic.first_callback.wait(FIRST_CALLBACK_TIMEOUT_S), "no audio callback"
        pulse_null_sink.play(played_path)
        tail_end = ring.frames_written + int(TAIL_S * RATE_HZ)
        deadline_s = time.monotonic() + FIRST_CALLBACK_TIMEOUT_S
        while ring.frames_written < tail_end and time.monotonic() < deadline_s:
            reader.wait(0.1)
            parts.append(reader.read_new()[1])
        parts.append(reader.read_new()[1])
    assert mic.error is None
    assert reader.dropped_frames == 0
    recording = mix_to_mono(np.concatenate(parts))
    assert len(recording) > len(signal), f"recorded only {len(recording)} frames"
    score, lag = pulse.best_normalised_correlation(recording, signal)
    assert score > 0.99, f"best normalised cross-correlation {score:.6f} at lag {lag}"
    np.testing.assert_allclose(recording[lag : lag + len(signal)], signal, atol=1e-3)


@pytest.mark.system
def test_device_list_shows_the_sound_server(pulse_null_sink: pulse.PulseServer) -> None:
    devices = list_input_devices()
    names = [d.name for d in devices]
    assert "default" in names
    assert "pulse" in names
    (default,) = [d for d in devices if d.is_default]
    assert default.name == "default"
    assert default.hostapi == "ALSA"
    table = format_device_table(devices)
    assert any(line.startswith("*") and "default" in line for line in table.splitlines())
