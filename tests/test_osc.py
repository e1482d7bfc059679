"""``--osc HOST:PORT`` as receivers meet it: a python-osc server on 127.0.0.1 gets every estimate
of a run, in order, in timetagged bundles, with the run's events; a target nobody listens on
never slows or stops the analysis."""

from __future__ import annotations

import json
import math
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_server import BlockingOSCUDPServer
from tui_fakes import scripted_estimates

from streamser.audio.ring import RingBuffer
from streamser.config import ConfigError
from streamser.contracts import Estimate
from streamser.engine.bus import ResultBus
from streamser.engine.sinks import RunContext
from streamser.outputs.live import LiveOutputConfig, LiveOutputsSink
from streamser.outputs.osc import parse_osc_target
from streamser.session.logger import SessionLogger
from streamser.session.marks import MarkFollower, append_mark
from streamser.session.sink import SessionSink
from tests.conftest import ROOT_DIR
from tests.netcheck import is_loopback, sockets_of
from tests.test_listen_cli import SPEECH, TINY, env_for, streamser
from tests.test_settings import error_of, run

# ----------------------------------------------------------------------------- a receiver


@dataclass(frozen=True)
class Received:
    timetag: float
    """The bundle's timetag, Unix seconds."""
    address: str
    args: tuple[Any, ...]


class RecordingDispatcher(Dispatcher):
    """Keeps every message of every packet with its bundle's timetag, in arrival order."""

    def __init__(self) -> None:
        super().__init__(strict_timing=False)
        self.received: list[Received] = []
        self.first = threading.Event()

    def call_handlers_for_packet(self, data: bytes, client_address: tuple[str, int]) -> list:
        # The bundle's own timetag: python-osc's OscPacket replaces a past one with "now".
        assert OscBundle.dgram_is_bundle(data), "streamser sends bundles only"
        bundle = OscBundle(data)
        for msg in bundle:
            self.received.append(Received(bundle.timestamp, msg.address, tuple(msg.params)))
        self.first.set()
        return []


class OscReceiver:
    """A BlockingOSCUDPServer on 127.0.0.1 (a free port), served on a thread."""

    def __init__(self) -> None:
        self.dispatcher = RecordingDispatcher()
        self.server = BlockingOSCUDPServer(("127.0.0.1", 0), self.dispatcher)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OscReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def at(self, address: str) -> list[Received]:
        return [m for m in self.dispatcher.received if m.address == address]

    def wait_for(self, address: str, n: int, timeout_s: float = 10.0) -> list[Received]:
        """The first ``n`` messages to ``address`` (UDP on loopback: they are in flight)."""
        deadline = time.monotonic() + timeout_s
        while len(self.at(address)) < n and time.monotonic() < deadline:
            time.sleep(0.01)  # polling a condition, with a deadline
        return self.at(address)


def free_udp_port() -> int:
    """A loopback UDP port that nothing listens on once this returns."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def short_clip(tmp_path: Path, seconds: float) -> Path:
    audio, rate = sf.read(str(SPEECH), dtype="float32")
    path = tmp_path / "clip.wav"
    sf.write(str(path), audio[: int(seconds * rate)], rate)
    return path


def as_float32(values: list[float | None]) -> list[float]:
    return [float(np.float32(math.nan if v is None else v)) for v in values]


def same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b)
    )


def affect_of(row: dict[str, Any]) -> list[float]:
    keys = ("arousal", "valence", "arousal_smooth", "valence_smooth", "speech")
    return as_float32([row[k] for k in keys])


def probs_of(row: dict[str, Any]) -> list[float]:
    return as_float32(row["probs"] if row["probs"] is not None else [None] * 6)


def speech_events(rows: list[dict[str, Any]]) -> list[str]:
    """speech_on/off where is_speech changes, a stream starting silent."""
    events, was = [], False
    for row in rows:
        if row["speech"] is not None and row["is_speech"] != was:
            events.append("speech_on" if row["is_speech"] else "speech_off")
            was = row["is_speech"]
    return events


def capture_time(row: dict[str, Any]) -> float:
    """Unix time the window's last sample was captured, from the estimate's own timing."""
    return datetime.fromisoformat(row["wall_time"]).timestamp() - row["latency_s"]


# ----------------------------------------------------------------------------- the target


@pytest.mark.parametrize(
    ("text", "shown", "family"),
    [
        ("127.0.0.1:9000", "127.0.0.1:9000", socket.AF_INET),
        ("[::1]:57120", "[::1]:57120", socket.AF_INET6),
        ("localhost:9000", "localhost:9000", None),
    ],
)
def test_a_target_is_parsed_and_resolved_once(text: str, shown: str, family: int | None) -> None:
    target = parse_osc_target(text)
    assert target.text == shown and target.port == int(shown.rsplit(":", 1)[1])
    assert family is None or target.family == family
    assert is_loopback(str(target.sockaddr[0]))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9000", "give the receiver as HOST:PORT"),
        (":9000", "give the receiver as HOST:PORT"),
        ("127.0.0.1:", "a port from 1 to 65535"),
        ("127.0.0.1:0", "a port from 1 to 65535"),
        ("127.0.0.1:70000", "a port from 1 to 65535"),
        ("127.0.0.1:90a", "a port from 1 to 65535"),
        ("::1:9000", "IPv6 address in brackets"),
    ],
)
def test_a_bad_target_says_how_to_write_one(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_osc_target(text)
    assert "\n" not in str(caught.value)


def test_a_bad_target_stops_listen_before_the_model_loads() -> None:
    line = error_of("listen", "--input", str(SPEECH), "--headless", "--osc", "127.0.0.1")
    assert "--osc 127.0.0.1: give the receiver as HOST:PORT" in line


# ----------------------------------------------------------------------------- a run


def test_a_receiver_gets_every_estimate_in_order_dated_to_capture(tmp_path: Path) -> None:
    """Real time on a 4 s clip: the bundles arrive as the run goes, on loopback only."""
    clip, log_dir = short_clip(tmp_path, 4.0), tmp_path / "sessions"
    with OscReceiver() as rx:
        argv = ["listen", "--input", str(clip), "--headless", "--model", TINY]
        argv += ["--log-dir", str(log_dir), "--osc", f"127.0.0.1:{rx.port}"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamser", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT_DIR,
            env=env_for(tmp_path),
        )
        try:
            assert rx.dispatcher.first.wait(120), "no bundle arrived"
            sockets = sockets_of(proc.pid)
            out, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
        rows = [json.loads(line) for line in out.splitlines()]
        affect = rx.wait_for("/streamser/main/affect", len(rows))
    assert proc.returncode == 0, err
    assert len(rows) >= 3
    assert len(affect) == len(rows)
    assert all(same(list(m.args), affect_of(r)) for m, r in zip(affect, rows))
    probs = rx.at("/streamser/main/probs")
    assert [list(m.args) for m in probs] == [probs_of(r) for r in rows]
    # The timetag is the capture time of the window's last sample, on the wall clock.
    errors = [m.timetag - capture_time(r) for m, r in zip(affect, rows)]
    assert max(map(abs, errors)) < 0.020, (errors, [r["latency_s"] for r in rows])
    markers = rx.at("/streamser/main/marker")
    assert [m.args[0] for m in markers] == speech_events(rows)
    # Every socket the run held: UDP, connected to the receiver, on loopback.
    assert sockets, "the run held no socket while it sent"
    for s in sockets:
        assert is_loopback(s.local_host) and not s.bound_to_all, s
        assert not s.has_peer or is_loopback(s.peer_host), s
    meta = json.loads(next(log_dir.iterdir()).joinpath("meta.json").read_text())
    counters = meta["counters"]["live_outputs"]["osc"]
    assert counters["sent"] == len(rows) and counters["errors"] == 0
    assert f"osc: {len(rows)} bundles sent to 127.0.0.1:{rx.port}" in err


def test_nobody_listening_neither_slows_nor_stops_the_run(tmp_path: Path) -> None:
    argv = ["listen", "--input", str(SPEECH), "--fast", "--headless", "--model", TINY, "--no-log"]
    started = time.monotonic()
    plain = streamser(*argv, env=env_for(tmp_path))
    plain_s = time.monotonic() - started
    port = free_udp_port()
    started = time.monotonic()
    sent = streamser(*argv, "--osc", f"127.0.0.1:{port}", env=env_for(tmp_path))
    sent_s = time.monotonic() - started
    assert plain.returncode == 0 and sent.returncode == 0, sent.stderr
    rows = sent.stdout.splitlines()
    assert len(rows) == len(plain.stdout.splitlines()) > 0
    assert sent_s < 2 * plain_s + 10, (sent_s, plain_s)
    summary = re.search(
        rf"osc: (\d+) bundles sent to 127\.0\.0\.1:{port}(?:, (\d+) send errors)?", sent.stderr
    )
    assert summary is not None, sent.stderr
    ok, failed = int(summary[1]), int(summary[2] or 0)
    assert ok + failed == len(rows)  # every estimate tried once, failures counted
    assert "Traceback" not in sent.stderr


# ----------------------------------------------------------------------------- the run's events


def test_mute_recording_and_marks_reach_the_receiver_and_meta_json(tmp_path: Path) -> None:
    """The record keeper with the outputs beside it, driven as the pipeline drives it."""
    with OscReceiver() as rx:
        cfg = LiveOutputConfig(osc=parse_osc_target(f"127.0.0.1:{rx.port}"))
        sink = LiveOutputsSink(cfg, SessionSink(tmp_path / "sessions"), MarkFollower)
        bus: ResultBus[Estimate] = ResultBus()
        ring = RingBuffer(16_000, 1)
        description = {
            "audio": {"source": "test", "kind": "ArraySource", "sample_rate_hz": 16_000,
                      "channels": 1},
            "model": {"name": "demo", "demo": True},
        }  # fmt: skip
        sink.open(RunContext(bus, ring, description, lambda: False, lambda: False))
        estimates = scripted_estimates(3)
        bus.publish(estimates[0])
        sink.on_mute(True, 3.2)
        sink.on_mute(False, 3.4)
        sink.set_recording(True, 0)
        sink.set_recording(True, 0)  # already recording: no second event
        session = Path(sink.status().session_path or "")
        sink.add_mark(3.5, "from the dashboard")
        append_mark(session, "from another terminal", 3.6)
        # Both marks come through the session's marks file, followed while the run goes on.
        assert len(rx.wait_for("/streamser/marker", 5)) == 5
        for est in estimates[1:]:
            bus.publish(est)
        bus.close()
        sink.set_recording(False, 0)
        sink.close({"stream_s": 4.0})
        events = [m.args for m in rx.wait_for("/streamser/marker", 6)]
    assert events == [
        ("mute_on",),
        ("mute_off",),
        ("recording_on",),
        ("mark", "from the dashboard"),
        ("mark", "from another terminal"),
        ("recording_off",),
    ]
    assert len(rx.at("/streamser/main/affect")) == 3
    meta = json.loads((session / "meta.json").read_text())
    assert meta["counters"]["live_outputs"]["osc"]["sent"] == 3 + 6


# ----------------------------------------------------------------------------- a replay


def test_a_replay_sends_the_session_and_its_marks(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    logger = SessionLogger(root, {"model": {"name": "demo", "demo": True}})
    estimates = scripted_estimates(12, nonspeech_every=6, nonspeech_len=2)
    for est in estimates:
        logger.write_estimate(est)
    logger.add_mark(estimates[4].t_end_s - 0.1, "look here")
    logger.close({"estimates": len(estimates)})
    with OscReceiver() as rx:
        rc, out, err = run(
            "replay", str(logger.path), "--headless", "--log-dir", str(root),
            "--osc", f"127.0.0.1:{rx.port}",
        )  # fmt: skip
        rows = [json.loads(line) for line in out.splitlines()]
        affect = rx.wait_for("/streamser/main/affect", len(rows))
    assert rc == 0, err
    assert len(rows) == len(estimates) == len(affect)
    assert all(same(list(m.args), affect_of(r)) for m, r in zip(affect, rows))
    mark_at = next(
        i for i, m in enumerate(rx.dispatcher.received) if m.address == "/streamser/marker"
    )
    assert rx.dispatcher.received[mark_at].args == ("mark", "look here")
    before = [m for m in rx.dispatcher.received[:mark_at] if m.address.endswith("/affect")]
    assert len(before) == 4  # sent as the replay passed its time: before window 4's estimate
    markers = rx.at("/streamser/main/marker")
    assert [m.args[0] for m in markers] == speech_events(rows)


def test_cli_start_up_imports_no_output_library() -> None:
    code = (
        "import sys\n"
        "from streamser.cli import main\n"
        "import streamser.outputs.live\n"
        "for argv in (['listen', '--help'], ['replay', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('pylsl', 'pythonosc') if m in sys.modules), file=sys.stderr)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT_DIR, timeout=60
    )
    assert r.returncode == 0 and r.stderr.strip() == "[]", r.stderr
    assert "--osc HOST:PORT" in r.stdout and "--lsl" in r.stdout
