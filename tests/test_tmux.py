"""The dashboard in a real terminal: tmux runs ``streamser listen``, we read the screen and quit."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import ROOT_DIR, require_tools

SPEECH = ROOT_DIR / "assets" / "speech.wav"
QUIT_BOUND_S = 5.0


def wait_until(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.2) -> bool:
    """Check a condition until it holds or the deadline passes (a screen has no event)."""
    deadline = time.monotonic() + timeout_s
    tick = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return True
        tick.wait(poll_s)
    return predicate()


class Tmux:
    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"streamser-test-{uuid.uuid4().hex[:8]}"
        self.tmp_path = tmp_path

    def run(self, *args: str, check: bool = True) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=10,
        ).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "main", check=False)

    def kill(self) -> None:
        self.run("kill-server", check=False)


@pytest.fixture
def tmux(tmp_path: Path):
    require_tools("tmux")
    t = Tmux(tmp_path)
    yield t
    t.kill()


def start_listen(
    tmux: Tmux, tmp_path: Path, args: str, size: tuple[int, int] = (100, 30)
) -> tuple[Path, Path]:
    """``streamser listen ARGS`` in a detached tmux session of ``size`` columns and rows;
    returns the sessions directory and the file the shell writes the exit code to."""
    log_dir, done = tmp_path / "sessions", tmp_path / "exit-code"
    cmd = (
        f"{shlex.quote(sys.executable)} -m streamser listen {args} "
        f"--log-dir {shlex.quote(str(log_dir))}; echo $? > {shlex.quote(str(done))}"
    )
    env = {
        "STREAMSER_CONFIG": str(tmp_path / "none.toml"),
        "STREAMSER_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": str(ROOT_DIR),
        "TERM": "xterm-256color",
    }
    env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    columns, rows = size
    tmux.run("new-session", "-d", "-s", "main", "-x", str(columns), "-y", str(rows),
             "-c", str(ROOT_DIR), *env_args, "sh", "-c", cmd)  # fmt: skip
    return log_dir, done


def quit_and_read_session(tmux: Tmux, done: Path, log_dir: Path, key: str = "q") -> dict:
    """Press ``key``, check the run ends promptly with 0, and return the session's meta.json."""
    t0 = time.monotonic()
    tmux.run("send-keys", "-t", "main", key)
    assert wait_until(done.exists, QUIT_BOUND_S + 5)
    assert wait_until(lambda: done.read_text().strip() != "", 2)
    quit_s = time.monotonic() - t0
    assert quit_s < QUIT_BOUND_S, f"quit took {quit_s:.1f} s"
    assert done.read_text().strip() == "0"
    (session,) = log_dir.iterdir()
    meta = json.loads((session / "meta.json").read_text())
    assert meta["closed"] is True and meta["counters"]["estimates"] >= 1
    logged = (session / "estimates.jsonl").read_text().splitlines()
    assert len(logged) == meta["counters"]["estimates"]
    assert os.stat(session).st_mode & 0o777 == 0o700
    return meta


@pytest.mark.system
@pytest.mark.parametrize("key", ["q", "C-c"])
def test_dashboard_in_tmux_shows_panels_and_quits_cleanly(
    tmux: Tmux, tmp_path: Path, key: str
) -> None:
    log_dir, done = start_listen(tmux, tmp_path, f"--input {shlex.quote(str(SPEECH))} --model demo")

    def estimates_on_screen() -> bool:
        s = tmux.screen()
        return "estimates" in s and "estimates 0" not in s and "class probabilities" in s

    assert wait_until(estimates_on_screen, 90), tmux.screen()
    screen = tmux.screen()
    for needle in (
        "arousal (0..1, derived)", "valence (-1..1, derived)", "high / negative",
        "demo model: random weights", "22050 Hz", "hop 1.00 s", "RTF", "skipped", "dropped",
        "session:", "q quit",
    ):  # fmt: skip
        assert needle in screen, f"{needle!r} missing from the screen:\n{screen}"
    assert "LABEL_" not in screen
    quit_and_read_session(tmux, done, log_dir, key)


@pytest.mark.system
def test_two_streams_in_tmux_at_80x24(tmux: Tmux, tmp_path: Path) -> None:
    speech, rate_hz = sf.read(SPEECH, dtype="float32")
    noise = np.random.default_rng(3).normal(0.0, 0.003, len(speech)).astype(np.float32)
    two = tmp_path / "two.wav"
    sf.write(two, np.stack([speech, noise], axis=1), rate_hz, subtype="FLOAT")
    log_dir, done = start_listen(
        tmux,
        tmp_path,
        f"--input {shlex.quote(str(two))} --model demo --per-channel --stream-names alice,bob",
        size=(80, 24),
    )

    def both_streams_on_screen() -> bool:
        s = tmux.screen()
        return "▶ alice" in s and "bob" in s and "estimates 0" not in s

    assert wait_until(both_streams_on_screen, 90), tmux.screen()
    tmux.run("send-keys", "-t", "main", "n")  # the next stream is selected
    assert wait_until(lambda: "▶ bob" in tmux.screen(), 10), tmux.screen()
    assert "▶ alice" not in tmux.screen()
    meta = quit_and_read_session(tmux, done, log_dir)
    assert meta["streams"] == [{"name": "alice", "channel": 1}, {"name": "bob", "channel": 2}]
