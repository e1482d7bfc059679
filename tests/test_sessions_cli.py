"""Sessions as users meet them: logged, killed, listed, replayed, analysed, reported."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from streamser.audio.replay import FileSource
from streamser.config import ListenConfig, LogConfig
from streamser.engine.pipeline import Pipeline
from streamser.model import load_model
from streamser.session.catalog import list_sessions
from streamser.session.logger import SessionLogger
from streamser.session.reader import read_session, unclean_session_note
from streamser.session.recorder import read_recording
from streamser.session.sink import SessionSink
from tests.conftest import ROOT_DIR
from tests.test_listen_cli import SPEECH, LineWatcher, env_for, expected_windows, streamser


def run_fast(tmp_path: Path, *extra: str) -> Path:
    log_dir = tmp_path / "sessions"
    r = streamser(
        "listen", "--input", str(SPEECH), "--fast", "--headless", "--model", "demo",
        "--log-dir", str(log_dir), *extra, env=env_for(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (session,) = log_dir.iterdir()
    return session


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def test_replay_headless_gives_identical_estimates(tmp_path: Path) -> None:
    session = run_fast(tmp_path)
    logged = jsonl((session / "estimates.jsonl").read_text())
    r = streamser("replay", str(session), "--headless", "--speed", "0", env=env_for(tmp_path))
    assert r.returncode == 0, r.stderr
    assert jsonl(r.stdout) == logged and len(logged) == expected_windows(SPEECH, 1.0, 1.0)
    by_id = streamser(
        "replay", "latest", "--headless", "--speed", "0", "--log-dir", str(session.parent),
        env=env_for(tmp_path),
    )  # fmt: skip
    assert jsonl(by_id.stdout) == logged


def test_analyze_of_the_recording_reproduces_the_live_estimates(tmp_path: Path) -> None:
    session = run_fast(tmp_path, "--record")
    live = jsonl((session / "estimates.jsonl").read_text())
    out = tmp_path / "offline.jsonl"
    r = streamser("analyze", str(session), "-o", str(out), "--model", "demo", env=env_for(tmp_path))
    assert r.returncode == 0, r.stderr
    rows = jsonl(out.read_text())
    offline = [row for row in rows if row["type"] == "window"]
    assert len(offline) == len(live) > 10
    for a, b in zip(live, offline):
        assert (a["t_start_s"], a["t_end_s"], a["is_speech"]) == (
            b["t_start_s"],
            b["t_end_s"],
            b["is_speech"],
        )
        assert a["speech"] == pytest.approx(b["speech"], abs=1e-9)
        np.testing.assert_allclose(a["probs"], b["probs"], atol=1e-4)
    recorded, rate = read_recording(session)
    original, orig_rate = sf.read(SPEECH, dtype="float32", always_2d=True)
    assert rate == orig_rate and np.array_equal(recorded[: len(original)], original)
    assert "not closed cleanly" not in r.stderr

    meta_path = session / "meta.json"  # as a killed run leaves it: never marked closed
    meta = json.loads(meta_path.read_text())
    meta["closed"] = False
    meta_path.write_text(json.dumps(meta))
    if meta.get("log_reserve"):  # a killed run leaves its reserve file in place
        (session / meta["log_reserve"]).write_bytes(b"\0")
    again = streamser(
        "analyze", str(session), "-o", str(tmp_path / "again.jsonl"), "--model", "demo",
        env=env_for(tmp_path),
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert f"session {session.name} was not closed cleanly" in again.stderr


def test_kill_9_mid_run_leaves_a_usable_session(tmp_path: Path) -> None:
    log_dir = tmp_path / "sessions"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamser", "listen", "--input", str(SPEECH), "--headless",
         "--model", "demo", "--record", "--log-dir", str(log_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_for(tmp_path),
        cwd=ROOT_DIR,
    )  # fmt: skip
    watcher = LineWatcher(proc, want=8)  # 8 s of real-time audio analysed and logged
    assert watcher.enough.wait(90)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    (session,) = log_dir.iterdir()
    env = env_for(tmp_path)
    listing = streamser("sessions", "--log-dir", str(log_dir), env=env)
    assert listing.returncode == 0 and session.name in listing.stdout
    assert "not closed (killed or still running)" in listing.stdout
    assert "logging stopped" not in listing.stdout
    replayed = streamser("replay", str(session), "--headless", "--speed", "0", env=env)
    assert replayed.returncode == 0 and "not closed cleanly" in replayed.stderr
    assert len(jsonl(replayed.stdout)) >= 7
    png = tmp_path / "r.png"
    assert streamser("report", str(session), "-o", str(png), env=env).returncode == 0
    assert png.stat().st_size > 10_000
    recorded, rate = read_recording(session)
    last_estimate_end_s = jsonl(replayed.stdout)[-1]["t_end_s"]
    assert len(recorded) / rate >= last_estimate_end_s - 5.0  # at most a few seconds lost
    out = tmp_path / "a.jsonl"
    analysed = streamser("analyze", str(session), "-o", str(out), "--model", "demo", env=env)
    assert analysed.returncode == 0, analysed.stderr
    assert sum(r["type"] == "window" for r in jsonl(out.read_text())) >= 7


def make_corpus(d: Path) -> dict[str, float]:
    """Files of mixed rates, channel counts and formats; returns their durations."""
    rng = np.random.default_rng(7)
    specs = [
        ("a.wav", 8_000, 1, "PCM_16", 2.5),
        ("b.wav", 44_100, 2, "PCM_24", 4.2),
        ("sub/c.flac", 48_000, 1, "PCM_16", 3.0),
        ("sub/d.wav", 22_050, 6, "FLOAT", 1.7),
        ("e.ogg", 16_000, 1, "VORBIS", 0.6),
    ]
    durations = {}
    for name, rate, ch, subtype, dur in specs:
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        x = (rng.standard_normal((int(rate * dur), ch)) * 0.1).astype(np.float32)
        sf.write(path, x, rate, subtype=subtype)
        durations[str(path)] = sf.info(str(path)).frames / rate
    (d / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return durations


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_analyze_a_directory_then_resume(tmp_path: Path, suffix: str) -> None:
    corpus = tmp_path / "corpus"
    durations = make_corpus(corpus)
    out = tmp_path / f"result{suffix}"
    env = env_for(tmp_path)
    first = streamser(
        "analyze", str(corpus), "-o", str(out), "--model", "demo", "--hop", "0.5", env=env
    )
    assert first.returncode == 0, first.stderr
    assert "broken.wav" in first.stderr and "Traceback" not in first.stderr
    rows = read_any(out)
    for path, dur in durations.items():
        n16 = round(dur * 16_000)
        want = (n16 - 16_000) // 8_000 + 1 if n16 >= 16_000 else 1
        mine = [r for r in rows if r["file"] == path]
        assert sum(r["type"] == "window" for r in mine) == want, path
        assert sum(r["type"] == "summary" for r in mine) == 1
    again = streamser(
        "analyze", str(corpus), "-o", str(out), "--model", "demo", "--hop", "0.5", env=env
    )
    assert again.returncode == 0 and "5 file(s) already done" in again.stderr
    assert len(read_any(out)) == len(rows)


def read_any(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        return jsonl(path.read_text())
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_report_png_and_html(tmp_path: Path) -> None:
    session = run_fast(tmp_path)
    env = env_for(tmp_path)
    streamser("mark", str(session), "laughed", "--at", "4.5", env=env)
    png, html = tmp_path / "r.png", tmp_path / "r.html"
    assert streamser("report", str(session), "-o", str(png), env=env).returncode == 0
    assert streamser("report", str(session), "-o", str(html), env=env).returncode == 0
    import matplotlib.image

    h, w = matplotlib.image.imread(png).shape[:2]
    assert (w, h) == (1600, 1000)
    text = html.read_text()
    assert "data:image/png;base64," in text and "demo model" in text
    bad = streamser("report", str(session), "-o", str(tmp_path / "r.pdf"), env=env)
    assert bad.returncode == 2 and ".png" in bad.stderr


def test_sessions_list_and_delete(tmp_path: Path) -> None:
    session = run_fast(tmp_path)
    env = env_for(tmp_path)
    root = str(session.parent)
    listed = streamser("sessions", "--log-dir", root, env=env)
    assert session.name in listed.stdout and "closed" in listed.stdout
    assert oct(session.stat().st_mode & 0o777) == "0o700"
    assert oct((session / "estimates.jsonl").stat().st_mode & 0o777) == "0o600"
    outside = streamser("sessions", "delete", "../etc", "--log-dir", root, env=env)
    assert outside.returncode == 2 and session.exists()
    gone = streamser("sessions", "delete", session.name, "--log-dir", root, env=env)
    assert gone.returncode == 0 and not session.exists()


def test_unwritable_log_dir_keeps_the_analysis_going(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = streamser(
        "listen", "--input", str(SPEECH), "--fast", "--headless", "--model", "demo",
        "--log-dir", str(blocker / "sessions"), env=env_for(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0
    assert len(jsonl(r.stdout)) == expected_windows(SPEECH, 1.0, 1.0)
    assert "logging stopped" in r.stderr and "Traceback" not in r.stderr


class FullDisk:
    """A log file that accepts a few lines, then fails as a full disk does."""

    def __init__(self, path: Path, mode: str, encoding: str, lines_ok: int) -> None:
        self.f = open(path, mode, encoding=encoding)  # noqa: SIM115
        self.left = lines_ok

    def write(self, s: str) -> int:
        if self.left <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.left -= 1
        return self.f.write(s)

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def test_full_disk_mid_run_stops_logging_not_analysis(tmp_path: Path) -> None:
    cfg = ListenConfig(logging=LogConfig(log_dir=str(tmp_path)))
    sink = SessionSink(
        tmp_path, opener=lambda path, mode, encoding: FullDisk(path, mode, encoding, lines_ok=5)
    )
    pipeline = Pipeline(
        cfg, load_model("demo", compute="cpu"), FileSource(SPEECH, realtime=False), sink=sink
    )
    got: list = []
    pipeline.bus.subscribe_lossless("test", got.append)
    with pipeline:
        assert pipeline.wait(60)
    assert len(got) == expected_windows(SPEECH, 1.0, 1.0)
    assert sink.log_error is not None and "No space" in sink.log_error
    assert pipeline.status().log_error == sink.log_error
    assert sink.path is not None
    lines = (sink.path / "estimates.jsonl").read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(x)["seq"] == i for i, x in enumerate(lines))
    meta = json.loads((sink.path / "meta.json").read_text())
    assert meta["log_stopped"] == "No space left on device" and meta["closed"] is False
    state = read_session(sink.path).state
    assert state.text == "logging stopped: No space left on device"
    note = unclean_session_note(sink.path)
    assert note is not None and "logging stopped" in note and "killed" not in note
    (listed,) = list_sessions(tmp_path)
    assert listed.state is not None and listed.state.label == state.text


def test_mark_refuses_impossible_times_with_one_line(tmp_path: Path) -> None:
    logger = SessionLogger(tmp_path / "sessions", {"model": {"name": "demo", "demo": True}})
    logger.close({"stream_s": 12.0})
    env = env_for(tmp_path)
    for bad in ("inf", "nan", "-1", "-inf", "12.5"):
        r = streamser("mark", str(logger.path), "note", f"--at={bad}", env=env)
        assert r.returncode == 2, (bad, r.stderr)
        assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Traceback" not in r.stderr
    ok = streamser("mark", str(logger.path), "note", "--at", "12", env=env)
    assert ok.returncode == 0, ok.stderr
    assert [m["t_s"] for m in read_session(logger.path).marks] == [12.0]
