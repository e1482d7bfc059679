"""A private PulseAudio server with a 16 kHz float32 null sink, for real-capture tests.

Audio played into the sink ``vsink16`` comes back, bit for bit, from its monitor, which is the
server's default source; through ALSA's pulse plugin PortAudio sees it as the ``default`` and
``pulse`` input devices. So a test can capture "from a microphone" on a machine without one.

Use the fixture in a test module by binding it at module level (an assignment, so linters do
not take the test's argument of the same name for a redefined import)::

    import pulse

    pulse_null_sink = pulse.pulse_null_sink

or call :func:`null_sink_server` directly. The server is per test, lives in its own runtime
directory, and is terminated at teardown.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tools
from scipy.signal import correlate

SINK_NAME = "vsink16"
SINK_RATE_HZ = 16_000
READY_TIMEOUT_S = 15.0
"""How long the server may take before ``pactl info`` answers."""
TOOL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class PulseServer:
    """A running private server: the environment that reaches it, and helpers that use it."""

    env: dict[str, str]
    """Environment for child processes (``pactl``, ``paplay``, a ``streamser`` under test)."""
    runtime_dir: Path
    socket_path: Path
    pid: int
    sink: str = SINK_NAME
    sample_rate_hz: int = SINK_RATE_HZ
    channels: int = 1

    @property
    def server_address(self) -> str:
        """The value for ``PULSE_SERVER``."""
        return f"unix:{self.socket_path}"

    def pactl(self, *args: str) -> str:
        """Run ``pactl`` against this server and return its output."""
        done = subprocess.run(
            ["pactl", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT_S,
            check=True,
        )
        return done.stdout

    def play(self, path: str | Path, timeout_s: float = 60.0) -> None:
        """Play an audio file into the null sink; returns when playback has drained."""
        subprocess.run(
            ["paplay", f"--device={self.sink}", str(path)],
            env=self.env,
            capture_output=True,
            timeout=timeout_s,
            check=True,
        )


@contextmanager
def null_sink_server(runtime_dir: Path, channels: int = 1) -> Iterator[PulseServer]:
    """Start ``pulseaudio`` with one null sink of ``channels`` channels (front-left,
    front-right, ... in that order) in ``runtime_dir``; terminate it on exit."""
    require_tools("pulseaudio", "pactl", "paplay")
    runtime_dir.mkdir(parents=True, exist_ok=True)
    runtime_dir.chmod(0o700)
    socket_path = runtime_dir / "pulse" / "native"
    env = {
        **os.environ,
        "XDG_RUNTIME_DIR": str(runtime_dir),
        "HOME": str(runtime_dir),  # the server keeps its cookie and state here, not in ~
        "PULSE_SERVER": f"unix:{socket_path}",
    }
    log_path = runtime_dir / "pulseaudio.log"
    command = [
        str(shutil.which("pulseaudio")),
        "-n",
        "--daemonize=no",
        "--exit-idle-time=-1",
        "--disallow-exit",
        "--use-pid-file=no",
        "--load=module-native-protocol-unix",
        f"--load=module-null-sink sink_name={SINK_NAME} rate={SINK_RATE_HZ} channels={channels} "
        "format=float32le",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        server = PulseServer(
            env=env,
            runtime_dir=runtime_dir,
            socket_path=socket_path,
            pid=process.pid,
            channels=channels,
        )
        _wait_until_ready(server, process, log_path)
        server.pactl("set-default-sink", SINK_NAME)
        server.pactl("set-default-source", f"{SINK_NAME}.monitor")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=TOOL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=TOOL_TIMEOUT_S)


def _wait_until_ready(server: PulseServer, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``pactl info`` until it answers; fail early if the server died."""
    deadline_s = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline_s:
        try:
            process.wait(timeout=0.05)  # a bounded pause that ends at once if the server exits
        except subprocess.TimeoutExpired:
            pass
        else:
            pytest.fail(f"pulseaudio exited with {process.returncode}:\n{log.read_text()}")
        info = subprocess.run(
            ["pactl", "info"], env=server.env, capture_output=True, timeout=TOOL_TIMEOUT_S
        )
        if info.returncode == 0:
            return
    pytest.fail(f"pulseaudio did not answer within {READY_TIMEOUT_S} s:\n{log.read_text()}")


def _reinitialise_portaudio() -> None:
    """Make an already imported ``sounddevice`` see the current sound server.

    PortAudio enumerates devices once, when it initialises, and ALSA's pulse plugin reads the
    server address from the environment then. Without an import yet, nothing needs doing.
    """
    sounddevice = sys.modules.get("sounddevice")
    if sounddevice is not None and hasattr(sounddevice, "_terminate"):
        sounddevice._terminate()
        sounddevice._initialize()


@contextmanager
def _server_for_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, channels: int
) -> Iterator[PulseServer]:
    with null_sink_server(tmp_path / "xdg", channels) as server, monkeypatch.context() as patch:
        patch.setenv("XDG_RUNTIME_DIR", server.env["XDG_RUNTIME_DIR"])
        patch.setenv("PULSE_SERVER", server.server_address)
        _reinitialise_portaudio()
        try:
            yield server
        finally:
            patch.undo()
            _reinitialise_portaudio()


@pytest.fixture
def pulse_null_sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PulseServer]:
    """A private PulseAudio server that this process's PortAudio records from.

    The environment of the test process points at the server while the test runs, so
    :class:`~streamser.audio.mic.MicSource` on ``default`` or ``pulse`` captures the sink's
    monitor; it is restored, and PortAudio re-initialised, at teardown.
    """
    with _server_for_this_process(tmp_path, monkeypatch, channels=1) as server:
        yield server


@pytest.fixture
def pulse_two_channel_sink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PulseServer]:
    """As :func:`pulse_null_sink`, with a two-channel sink: a two-microphone interface."""
    with _server_for_this_process(tmp_path, monkeypatch, channels=2) as server:
        yield server


def best_normalised_correlation(recording: np.ndarray, template: np.ndarray) -> tuple[float, int]:
    """Max over lags of the normalised cross-correlation of ``template`` inside ``recording``,
    and that lag: 1.0 where the recording holds the template unchanged."""
    recording = recording.astype(np.float64)
    template = template.astype(np.float64)
    products = correlate(recording, template, mode="valid", method="fft")
    energy = np.concatenate([[0.0], np.cumsum(recording**2)])
    window_energy = energy[len(template) :] - energy[: -len(template)]
    denominator = np.sqrt(np.maximum(window_energy, 1e-20)) * np.linalg.norm(template)
    ncc = products / denominator
    lag = int(np.argmax(ncc))
    return float(ncc[lag]), lag
