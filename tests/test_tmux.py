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

import pytest

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


@pytest.mark.system
@pytest.mark.parametrize("key", ["q", "C-c"])
def test_dashboard_in_tmux_shows_panels_and_quits_cleanly(
    tmux: Tmux, tmp_path: Path, key: str
) -> None:
    log_dir, done = tmp_path / "sessions", tmp_path / "exit-code"
    cmd = (
        f"{shlex.quote(sys.executable)} -m streamser listen --input {shlex.quote(str(SPEECH))} "
        f"--model demo --log-dir {shlex.quote(str(log_dir))}; echo $? > {shlex.quote(str(done))}"
    )
    env = {
        "STREAMSER_CONFIG": str(tmp_path / "none.toml"),
        "STREAMSER_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": str(ROOT_DIR),
        "TERM": "xterm-256color",
    }
    env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
    tmux.run("new-session", "-d", "-s", "main", "-x", "100", "-y", "30", "-c", str(ROOT_DIR),
             *env_args, "sh", "-c", cmd)  # fmt: skip

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
