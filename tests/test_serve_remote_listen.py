"""``streamser listen --server``: capture, session and output here, the model on a
``streamser serve``; both ends are the real command line, talking over loopback.

A file analysed remotely with ``--fast`` gives what a local ``--fast`` run gives; in real time,
a server killed and restarted mid-stream costs the windows of the gap (counted as dropped
audio and skipped windows) but not the session, whose later estimates stay on its clock.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pytest
import soundfile as sf
from conftest import DATA_DIR, ROOT_DIR
from test_per_channel import window_count

SPEECH = ROOT_DIR / "assets" / "speech.wav"
TINY = str(DATA_DIR / "tiny-parametrized")


def env_for(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "STREAMSER_CONFIG": str(tmp_path / "absent.toml"),
        "STREAMSER_CACHE_DIR": str(tmp_path / "cache"),
    }


class Server:
    """``streamser serve`` as a subprocess on loopback; its URL read from its first line."""

    def __init__(
        self, tmp_path: Path, port: int = 0, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        argv = ["serve", "--model", TINY, "--port", str(port), *extra]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamser", *argv],
            stderr=subprocess.PIPE, text=True, cwd=ROOT_DIR, env=env or env_for(tmp_path),
        )  # fmt: skip
        assert self.proc.stderr is not None
        self.lines: list[str] = []
        self.drained = threading.Event()
        """Set once the server's stderr has ended (every line is in ``lines``)."""
        for line in self.proc.stderr:  # blocks until the server says where it serves
            self.lines.append(line)
            if "serving on" in line:
                break
        else:
            raise AssertionError(f"serve did not start: {''.join(self.lines)}")
        self.url = line.split("serving on ")[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True).start()

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)
        self.drained.set()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(60)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path)
    yield s
    s.stop()


def listen(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamser", "listen", "--headless", *args],
        capture_output=True, text=True, cwd=ROOT_DIR, timeout=300, env=env_for(tmp_path),
    )  # fmt: skip


def rows(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_remote_fast_listen_equals_local(server: Server, tmp_path: Path) -> None:
    speech, rate = sf.read(SPEECH, dtype="float32")
    two = tmp_path / "two.wav"
    sf.write(two, np.stack([speech, speech[::-1] * 0.5], axis=1), rate, subtype="FLOAT")
    for extra in ([], ["--per-channel", "--stream-names", "alice,bob"]):
        remote = listen(
            tmp_path, "--server", server.url, "--input", str(two), "--fast", *extra,
            "--log-dir", str(tmp_path / "sessions"),
        )  # fmt: skip
        assert remote.returncode == 0, remote.stderr
        local = listen(tmp_path, "--model", TINY, "--input", str(two), "--fast", "--no-log", *extra)
        assert local.returncode == 0, local.stderr
        got, want = rows(remote.stdout), rows(local.stdout)
        n = window_count(len(speech), rate)
        assert len(got) == len(want) == n * (2 if extra else 1)
        for g, w in zip(got, want):
            for key in ("seq", "window", "t_start_s", "t_end_s", "stream", "is_speech"):
                assert g[key] == w[key], key
            assert g["speech"] == pytest.approx(w["speech"], abs=1e-9)
            np.testing.assert_allclose(g["probs"], w["probs"], atol=1e-5)
            for key in ("arousal_smooth", "valence_smooth"):
                assert (g[key] is None) == (w[key] is None)
                if w[key] is not None:
                    assert g[key] == pytest.approx(w[key], abs=1e-5)
            assert g["skipped_windows"] == 0 and g["dropped_samples"] == 0
    sessions = sorted((tmp_path / "sessions").iterdir())
    assert len(sessions) == 2
    meta = json.loads((sessions[-1] / "meta.json").read_text())
    assert meta["closed"] is True
    assert meta["model"]["kind"] == "remote" and meta["model"]["server"] == server.url
    assert meta["model"]["name"] == TINY
    assert meta["streams"] == [{"name": "alice", "channel": 1}, {"name": "bob", "channel": 2}]
    logged = rows((sessions[-1] / "estimates.jsonl").read_text())
    assert [r["probs"] for r in logged] == [r["probs"] for r in rows(remote.stdout)]


def test_a_server_killed_mid_stream_costs_the_gap_not_the_session(tmp_path: Path) -> None:
    speech, rate = sf.read(SPEECH, dtype="float32")
    audio = np.concatenate([speech, speech])[: round(20.0 * rate)]
    clip = tmp_path / "long.wav"
    sf.write(clip, audio, rate, subtype="FLOAT")
    first = Server(tmp_path)
    client = subprocess.Popen(
        [sys.executable, "-m", "streamser", "listen", "--headless", "--server", first.url,
         "--input", str(clip), "--log-dir", str(tmp_path / "sessions")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT_DIR,
        env=env_for(tmp_path),
    )  # fmt: skip
    assert client.stdout is not None
    got: list[dict] = []
    for line in client.stdout:  # real time: the first estimates, then the server dies
        got.append(json.loads(line))
        if len(got) == 3:
            break
    killed_at = got[-1]["t_end_s"]
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    second = Server(tmp_path, port=first.port)  # the same address, a fresh process
    try:
        out, err = client.communicate(timeout=120)
    finally:
        second.stop()
    assert client.returncode == 0, err
    got += [json.loads(line) for line in out.splitlines()]
    assert "lost the server" in err and "is back after" in err

    n = window_count(len(audio), rate)
    windows = [r["window"] for r in got]
    assert windows == sorted(windows) and len(set(windows)) == len(windows)
    assert [r["seq"] for r in got] == list(range(len(got)))
    for r in got:  # every estimate on the run's window grid and clock
        assert r["t_end_s"] == pytest.approx(1.0 + r["window"] * 1.0)
    after = [r for r in got if r["t_end_s"] > killed_at + 1.0]
    assert after, "no estimates after the restart"
    assert after[0]["dropped_samples"] > 0  # the gap: audio nobody analysed
    assert got[-1]["skipped_windows"] == n - len(got)  # every missing window counted
    assert windows[-1] == n - 1  # analysis went on to the end of the file

    (session,) = (tmp_path / "sessions").iterdir()
    meta = json.loads((session / "meta.json").read_text())
    assert meta["closed"] is True
    c = meta["counters"]
    assert c["estimates"] == len(got)
    assert c["windows_due"] == n == c["estimates"] + c["skipped_windows"]
    assert c["gap_frames"] > 0 and c["dropped_samples"] > 0
    assert len(rows((session / "estimates.jsonl").read_text())) == len(got)
