"""The command line in pipes and scripts: readers that leave early (``| head -1``), no terminal
for the dashboard, headless replay at full speed, and hints that name a command that works."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tui_fakes import scripted_estimates

from streamser.console import program
from streamser.session.logger import SessionLogger
from tests.conftest import DATA_DIR, ROOT_DIR
from tests.test_listen_cli import SPEECH, env_for, expected_windows
from tests.test_settings import error_of, run

TINY = str(DATA_DIR / "tiny-parametrized")
STREAMSER = f"{shlex.quote(sys.executable)} -m streamser"


def make_session(root: Path, n: int, hop_s: float = 0.5) -> Path:
    """A closed session of ``n`` estimates, ``hop_s`` apart, written by the real logger."""
    logger = SessionLogger(root, {"model": {"name": "demo", "demo": True}})
    for est in scripted_estimates(n, hop_s=hop_s):
        logger.write_estimate(est)
    logger.close({"estimates": n})
    return logger.path


def piped_to_head(command: str, tmp_path: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """``COMMAND | head -1`` in a shell: streamser's exit code, what head printed, stderr."""
    err, rc = tmp_path / "stderr.txt", tmp_path / "rc.txt"
    shell = f"{command} 2>{err} | head -1; echo ${{PIPESTATUS[0]}} >{rc}"
    r = subprocess.run(
        ["bash", "-c", shell], capture_output=True, text=True, cwd=ROOT_DIR, env=env, timeout=120
    )
    return int(rc.read_text()), r.stdout, err.read_text()


def with_reader_gone(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run streamser with stdout a pipe whose reader has already closed it: exit code, stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamser", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT_DIR,
        env=env,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the interpreter has even started: every write fails
    err = proc.stderr.read()
    return proc.wait(timeout=120), err


# ----------------------------------------------------------------------------- readers leaving


@pytest.mark.parametrize("command", ["config", "replay", "sessions"])
def test_a_reader_that_leaves_ends_the_command_quietly(tmp_path: Path, command: str) -> None:
    root = tmp_path / "sessions"
    make_session(root, 2_000)  # ~0.7 MB of JSON lines: far more than a pipe holds
    argv = {
        "config": ["config"],
        "replay": ["replay", "latest", "--headless", "--log-dir", str(root)],
        "sessions": ["sessions", "--log-dir", str(root)],
    }[command]
    rc, err = with_reader_gone(argv, env_for(tmp_path))
    assert (rc, err) == (0, "")
    if command == "replay":
        rc, first, err = piped_to_head(
            f"{STREAMSER} {shlex.join(argv)}", tmp_path, env_for(tmp_path)
        )
        assert (rc, err) == (0, "") and json.loads(first)["seq"] == 0


def test_listen_stops_computing_when_its_reader_leaves(tmp_path: Path) -> None:
    """Real time, so the clip would take 13.7 s: the run ends at the next estimate instead,
    and the session is closed as after Ctrl+C."""
    log_dir = tmp_path / "sessions"
    argv = [
        "listen",
        "--input",
        str(SPEECH),
        "--headless",
        "--model",
        TINY,
        "--log-dir",
        str(log_dir),
    ]
    started = time.monotonic()
    rc, first, err = piped_to_head(f"{STREAMSER} {shlex.join(argv)}", tmp_path, env_for(tmp_path))
    elapsed = time.monotonic() - started
    assert rc == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
    assert json.loads(first)["seq"] == 0
    meta = json.loads((next(log_dir.iterdir()) / "meta.json").read_text())
    assert meta["closed"] is True
    assert meta["counters"]["estimates"] < expected_windows(SPEECH, 1.0, 1.0) // 2
    assert meta["counters"]["stream_s"] < 8.0, meta["counters"]
    assert elapsed < 60


# ----------------------------------------------------------------------------- replay speed


def test_headless_replay_runs_as_fast_as_possible_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMSER_CONFIG", str(tmp_path / "none.toml"))
    session = make_session(tmp_path / "sessions", 20, hop_s=10.0)  # 190 s of session time
    started = time.monotonic()
    rc, out, err = run("replay", str(session), "--headless")
    assert rc == 0, err
    assert len(out.splitlines()) == 20 and time.monotonic() - started < 5


def test_replay_speed_defaults_and_limits() -> None:
    from streamser.cli import build_parser
    from streamser.commands.session_cmd import replay_speed

    def speed(*argv: str) -> float:
        return replay_speed(build_parser().parse_args(["replay", "x", *argv]))

    assert speed() == 1.0 and speed("--headless") == 0.0
    assert speed("--headless", "--speed", "2") == 2.0 and speed("--speed", "inf") == float("inf")
    for bad in ("nan", "-1"):
        with pytest.raises(Exception, match="--speed"):
            speed("--speed", bad)


# ----------------------------------------------------------------------------- no terminal


@pytest.mark.parametrize(
    "argv",
    [
        ["listen", "--input", str(SPEECH), "--model", "demo"],
        ["demo", "--model", "demo"],
        ["replay", "latest"],
    ],
)
def test_the_dashboard_without_a_terminal_says_to_use_headless(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    monkeypatch.setenv("STREAMSER_CONFIG", str(tmp_path / "none.toml"))
    make_session(tmp_path / "sessions", 3)
    line = error_of(*argv, "--log-dir", str(tmp_path / "sessions"))
    assert "needs a terminal" in line and f"{argv[0]} --headless" in line, line


# ----------------------------------------------------------------------------- hints


def test_program_is_the_name_on_path_or_the_path_that_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    exe = bin_dir / "streamser"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(exe)])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert program() == str(exe)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/nonexistent")
    assert program() == "streamser"
    monkeypatch.setattr(sys, "argv", [str(ROOT_DIR / "streamser" / "__main__.py")])
    assert program().endswith(" -m streamser")
    monkeypatch.setattr(sys, "argv", ["/somewhere/pytest"])
    assert program() == "streamser"


def test_hints_name_the_path_that_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "venv" / "bin" / "streamser"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    monkeypatch.setattr(sys, "argv", [str(exe)])
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("STREAMSER_CONFIG", str(tmp_path / "none.toml"))
    assert f"{exe} sessions delete ID" in error_of("sessions", "delete")
    assert f"{exe} listen --headless" in error_of("listen", "--input", str(SPEECH))
    assert f"{exe} listen --help" in error_of("listen", "--hop", "x")
