"""Real two-channel capture with ``--per-channel``: one microphone per person, through
PortAudio, ALSA and PulseAudio.

Speech is played into channel 1 of a two-channel null sink and faint noise into channel 2;
``streamser listen --per-channel`` records from the sink's monitor as from a two-microphone
interface. Each channel must arrive in its own place (the session's recording holds each
played signal in its channel), each stream must judge its own channel (speech on one, none on
the other), and re-analysing the recording per channel must reproduce every live estimate.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pulse
import pytest
import soundfile as sf
import soxr
from conftest import DATA_DIR, ROOT_DIR

from streamser.session.recorder import read_recording
from tests.test_listen_cli import LineWatcher, env_for

pulse_two_channel_sink = pulse.pulse_two_channel_sink

SPEECH = ROOT_DIR / "assets" / "speech.wav"
TINY = str(DATA_DIR / "tiny-parametrized")
RATE_HZ = pulse.SINK_RATE_HZ
NOISE_RMS = 0.003
LIVE_TIMEOUT_S = 60.0


def _played(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A two-channel file at the sink's rate: the speech asset left, faint noise right."""
    speech, rate_hz = sf.read(SPEECH, dtype="float32")
    speech = soxr.resample(speech, rate_hz, RATE_HZ).astype(np.float32)
    noise = np.random.default_rng(11).normal(0.0, NOISE_RMS, len(speech)).astype(np.float32)
    both = np.stack([speech, noise], axis=1)
    path = tmp_path / "two-voices.wav"
    sf.write(path, both, RATE_HZ, subtype="FLOAT")
    return path, both


@pytest.mark.system
def test_two_microphones_become_two_streams(
    pulse_two_channel_sink: pulse.PulseServer, tmp_path: Path
) -> None:
    played_path, played = _played(tmp_path)
    log_dir = tmp_path / "sessions"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamser", "listen", "--headless", "--model", TINY,
         "--device", "default", "--samplerate", str(RATE_HZ), "--channels", "2",
         "--per-channel", "--stream-names", "talk,hum", "--record", "--log-dir", str(log_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**env_for(tmp_path), **pulse_two_channel_sink.env}, cwd=ROOT_DIR,
    )  # fmt: skip
    try:
        watcher = LineWatcher(proc, want=2)  # one estimate of each stream: capture is running
        assert watcher.enough.wait(LIVE_TIMEOUT_S), "no estimates from live capture"
        pulse_two_channel_sink.play(played_path)
        watcher.want = len(watcher.lines) + 2 * 3  # three more seconds of both streams
        watcher.enough.clear()
        assert watcher.enough.wait(LIVE_TIMEOUT_S)
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
    stderr = proc.stderr.read() if proc.stderr is not None else ""
    assert rc == 0, stderr
    watcher.thread.join(10)
    live = [json.loads(line) for line in watcher.lines]

    (session,) = log_dir.iterdir()
    recording, rate_hz = read_recording(session)
    assert rate_hz == RATE_HZ and recording.shape[1] == 2
    for channel in (0, 1):  # each played channel arrived in its own channel, unchanged
        score, lag = pulse.best_normalised_correlation(recording[:, channel], played[:, channel])
        assert score > 0.99, (channel, score, lag)
        other, _ = pulse.best_normalised_correlation(recording[:, 1 - channel], played[:, channel])
        assert other < 0.5, (channel, other)

    talk = [e for e in live if e["stream"] == "talk"]
    hum = [e for e in live if e["stream"] == "hum"]
    assert len(talk) >= 4 and abs(len(talk) - len(hum)) <= 1
    assert max(e["speech"] for e in talk) > 0.5, [e["speech"] for e in talk]
    assert max(e["speech"] for e in hum) < 0.05, [e["speech"] for e in hum]
    meta = json.loads((session / "meta.json").read_text())
    assert meta["streams"] == [{"name": "talk", "channel": 1}, {"name": "hum", "channel": 2}]

    # The recording, analysed again per channel, reproduces each stream's live estimates.
    rec_path = tmp_path / "recording.wav"
    sf.write(rec_path, recording, rate_hz, subtype="FLOAT")
    again = subprocess.run(
        [sys.executable, "-m", "streamser", "listen", "--input", str(rec_path), "--fast",
         "--headless", "--no-log", "--model", TINY, "--per-channel",
         "--stream-names", "talk,hum"],
        capture_output=True, text=True, cwd=ROOT_DIR, env=env_for(tmp_path), timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    offline = {(e["stream"], e["window"]): e for e in map(json.loads, again.stdout.splitlines())}
    keys = [(e["stream"], e["window"]) for e in live]
    matched = [(e, offline[key]) for e, key in zip(live, keys) if key in offline]
    assert len(matched) == len(live), sorted(set(keys) - set(offline))
    for a, b in matched:
        assert (a["t_start_s"], a["t_end_s"]) == (b["t_start_s"], b["t_end_s"])
        assert a["speech"] == pytest.approx(b["speech"], abs=1e-9), (a["stream"], a["window"])
        np.testing.assert_allclose(a["probs"], b["probs"], atol=1e-4)
