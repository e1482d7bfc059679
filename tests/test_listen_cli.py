"""``streamser listen`` as users run it: a real process, real files, real signals, real capture."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pulse
import pytest
import soundfile as sf

from tests.conftest import DATA_DIR, ROOT_DIR

pulse_null_sink = pulse.pulse_null_sink

SPEECH = ROOT_DIR / "assets" / "speech.wav"
TINY = str(DATA_DIR / "tiny-parametrized")


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "STREAMSER_CONFIG": str(tmp_path / "no-config.toml"),
        "STREAMSER_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def streamser(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamser", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT_DIR,
        timeout=timeout,
    )


def expected_windows(path: Path, first_s: float, hop_s: float) -> int:
    info = sf.info(str(path))
    n16 = round(info.frames * 16_000 / info.samplerate)
    first, hop = round(first_s * 16_000), round(hop_s * 16_000)
    return (n16 - first) // hop + 1


@pytest.mark.parametrize(
    ("hop", "extra", "first_s"), [(1.0, [], 1.0), (0.5, ["--full-windows-only"], 3.0)]
)
def test_fast_file_run_gives_the_window_formula(
    tmp_path: Path, hop: float, extra: list[str], first_s: float
) -> None:
    r = streamser(
        "listen",
        "--input",
        str(SPEECH),
        "--fast",
        "--headless",
        "--model",
        TINY,
        "--hop",
        str(hop),
        "--log-dir",
        str(tmp_path / "sessions"),
        *extra,
        env=env_for(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == expected_windows(SPEECH, first_s, hop)
    ends = np.array([row["t_end_s"] for row in rows])
    assert ends[0] == pytest.approx(first_s)
    np.testing.assert_allclose(np.diff(ends), hop)
    for row in rows:
        assert abs(sum(row["probs"]) - 1.0) < 1e-6
        assert row["skipped_windows"] == 0 and row["dropped_samples"] == 0
        assert 0.0 <= row["arousal"] <= 1.0 and -1.0 <= row["valence"] <= 1.0
        for key in (
            "seq",
            "t_start_s",
            "wall_time",
            "arousal_smooth",
            "valence_smooth",
            "speech",
            "compute_s",
            "latency_s",
        ):
            assert key in row
    assert any(row["is_speech"] for row in rows) and "estimates" in r.stderr
    sessions = list((tmp_path / "sessions").iterdir())
    assert len(sessions) == 1
    logged = (sessions[0] / "estimates.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in logged] == rows
    meta = json.loads((sessions[0] / "meta.json").read_text())
    assert meta["closed"] is True and meta["counters"]["estimates"] == len(rows)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--input", "/nonexistent.wav"], "not found"),
        (["--input", "."], "directory"),
        (["--fast"], "--fast needs --input"),
        (["--input", str(SPEECH), "--hop", "0"], "--hop"),
        (["--input", str(SPEECH), "--model", "/no/such/model"], "does not exist"),
        (["--input", str(SPEECH), "--backend", "onnxruntime", "--precision", "int8"], "drop"),
    ],
)
def test_user_mistakes_are_one_line_with_exit_code_2(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    r = streamser("listen", "--headless", *args, env=env_for(tmp_path))
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr


def test_config_file_sets_defaults_and_flags_override(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[listen]\nhop = 0.5\nmodel = "demo"\n')
    env = env_for(tmp_path, STREAMSER_CONFIG=str(cfg))
    shown = streamser("config", env=env)
    assert shown.returncode == 0 and str(cfg) in shown.stdout
    assert json.loads("{" + shown.stdout.split("\n{", 1)[1])["hop"] == 0.5
    base = ["listen", "--input", str(SPEECH), "--fast", "--headless", "--no-log"]
    from_file = streamser(*base, env=env)
    assert from_file.returncode == 0, from_file.stderr
    assert len(from_file.stdout.splitlines()) == expected_windows(SPEECH, 1.0, 0.5)
    assert "demo model" in from_file.stderr
    overridden = streamser(*base, "--hop", "2", env=env)
    assert len(overridden.stdout.splitlines()) == expected_windows(SPEECH, 1.0, 2.0)
    cfg.write_text("[listen]\nhopp = 1\n")
    bad = streamser(*base, env=env)
    assert bad.returncode == 2 and "hopp" in bad.stderr and "Traceback" not in bad.stderr


class LineWatcher:
    """Collects a process's stdout lines on a thread; tests wait on events, never sleep."""

    def __init__(self, proc: subprocess.Popen[str], want: int) -> None:
        self.lines: list[str] = []
        self.enough = threading.Event()
        self.want = want
        self.thread = threading.Thread(target=self._run, args=(proc,), daemon=True)
        self.thread.start()

    def _run(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)
            if len(self.lines) >= self.want:
                self.enough.set()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_end_a_realtime_run_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    log_dir = tmp_path / "sessions"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamser",
            "listen",
            "--input",
            str(SPEECH),
            "--headless",
            "--model",
            "demo",
            "--hop",
            "0.5",
            "--log-dir",
            str(log_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_for(tmp_path),
        cwd=ROOT_DIR,
    )
    watcher = LineWatcher(proc, want=3)
    assert watcher.enough.wait(60), proc.stderr.read() if proc.poll() is not None else "no output"
    proc.send_signal(sig)
    rc = proc.wait(timeout=10)
    watcher.thread.join(5)
    if sig != signal.SIGHUP:
        assert rc == 0
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in stderr
    session = next(log_dir.iterdir())
    meta = json.loads((session / "meta.json").read_text())
    assert meta["closed"] is True
    logged = (session / "estimates.jsonl").read_text().splitlines()
    assert len(logged) == len(watcher.lines) == meta["counters"]["estimates"]
    assert len(logged) < expected_windows(SPEECH, 1.0, 0.5)  # stopped before the end


@pytest.mark.system
def test_live_capture_from_a_sound_server_gives_estimates(
    pulse_null_sink: pulse.PulseServer, tmp_path: Path
) -> None:
    log_dir = tmp_path / "sessions"
    env = {**env_for(tmp_path), **pulse_null_sink.env}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamser",
            "listen",
            "--headless",
            "--model",
            "demo",
            "--device",
            "default",
            "--samplerate",
            "16000",
            "--channels",
            "1",
            "--log-dir",
            str(log_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT_DIR,
    )
    try:
        watcher = LineWatcher(proc, want=2)
        assert watcher.enough.wait(60), "no estimates from live capture"
        pulse_null_sink.play(SPEECH)
        watcher.want = len(watcher.lines) + 8
        watcher.enough.clear()
        assert watcher.enough.wait(60)
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=15)
    rows = [json.loads(x) for x in watcher.lines]
    assert rc == 0
    assert any(r["is_speech"] for r in rows), "speech played into the sink was not detected"
    assert all(abs(sum(r["probs"]) - 1) < 1e-6 for r in rows if r["probs"] is not None)
    meta = json.loads((next(log_dir.iterdir()) / "meta.json").read_text())
    assert meta["closed"] and meta["audio"]["kind"] == "MicSource"


def test_demo_runs_on_the_bundled_clip_without_weights(tmp_path: Path) -> None:
    env = env_for(tmp_path, HF_HUB_CACHE=str(tmp_path / "empty-hub"), HF_HUB_OFFLINE="1")
    r = streamser("demo", "--headless", "--no-log", env=env)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == expected_windows(SPEECH, 1.0, 1.0)
    assert "demo model: random weights" in r.stderr


def test_version_and_help() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "streamser", "--version"], capture_output=True, text=True, timeout=60
    )
    from streamser.version import __version__

    assert r.returncode == 0 and r.stdout.strip() == f"streamser {__version__}"
