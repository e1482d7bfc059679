"""``--lsl`` as a lab recorder meets it: pylsl inlets on this machine resolve streamser's outlets
by their stable source ids and receive every estimate, with the channel metadata, dated to the
capture time of each window, and the run's events on the marker stream.

LSL is confined to this machine by ``tests/lsl_api.cfg`` (``LSLAPICFG``, set in conftest.py before
pylsl is first imported; the streamser processes inherit it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pylsl
import pytest
import soundfile as sf
from tui_fakes import scripted_estimates

from streamser.outputs.affect_channels import CHANNELS
from streamser.outputs.lsl import markers_source_id, source_id, stream_name
from streamser.session.logger import SessionLogger
from streamser.session.marks import append_mark
from streamser.version import __version__
from tests.conftest import LSL_CONFIG, ROOT_DIR
from tests.netcheck import Socket, is_loopback, sockets_of
from tests.test_listen_cli import SPEECH, TINY, env_for
from tests.test_osc import affect_of, capture_time, probs_of, same, short_clip, speech_events
from tests.test_settings import run

RESOLVE_S = 60.0
LIBLSL_BASE_PORT, LIBLSL_PORT_RANGE = 16572, 32
"""liblsl's defaults for the ports its outlets serve data and time on."""


class Inlet:
    """An inlet on the outlet with ``sid``, pulling every sample on a thread until it goes (or,
    with ``recover``, as a recorder does: across the outlet's restarts, until stopped)."""

    def __init__(self, sid: str, recover: bool = False) -> None:
        found = pylsl.resolve_byprop("source_id", sid, timeout=RESOLVE_S)
        assert found, f"no LSL stream with source_id {sid!r}"
        self.inlet = pylsl.StreamInlet(found[0], recover=recover)
        self.inlet.open_stream(timeout=RESOLVE_S)
        self.info = self.inlet.info(timeout=RESOLVE_S)
        self.samples: list[tuple[float, list[Any]]] = []
        """(timestamp, values) of each sample, in order."""
        self.first = threading.Event()
        self.ended = threading.Event()
        self.stop = threading.Event()
        threading.Thread(target=self._pull, daemon=True).start()

    def _pull(self) -> None:
        deadline = time.monotonic() + 300
        try:
            while time.monotonic() < deadline and not self.stop.is_set():
                values, ts = self.inlet.pull_sample(timeout=0.2)
                if values is not None:
                    self.samples.append((ts, values))
                    self.first.set()
        except pylsl.util.LostError:  # the outlet went away: everything sent has arrived
            pass
        finally:
            self.ended.set()

    def wait_ended(self) -> list[tuple[float, list[Any]]]:
        assert self.ended.wait(60), "the outlet did not go away"
        return self.samples

    def wait_for(self, n: int, timeout_s: float = 60.0) -> list[tuple[float, list[Any]]]:
        """The samples once there are ``n`` (or the deadline passed)."""
        deadline = time.monotonic() + timeout_s
        while len(self.samples) < n and time.monotonic() < deadline:
            time.sleep(0.01)  # polling a condition, with a deadline
        return self.samples

    def desc(self, path: str) -> str | None:
        root = ET.fromstring(self.info.as_xml())
        node = root.find(f"desc/{path}")
        return None if node is None else (node.text or "")


def start(argv: list[str], tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamser", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT_DIR,
        env=env_for(tmp_path, **env),
    )


def finish(proc: subprocess.Popen[str]) -> tuple[list[dict[str, Any]], str]:
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()], err


def check_values(samples: list[tuple[float, list[Any]]], rows: list[dict[str, Any]]) -> None:
    assert len(samples) == len(rows) > 0
    for (_, values), row in zip(samples, rows):
        assert same([float(v) for v in values], affect_of(row) + probs_of(row)), (values, row)


def capture_errors_s(
    samples: list[tuple[float, list[Any]]], rows: list[dict[str, Any]]
) -> list[float]:
    """Each timestamp against the capture time the estimate states (wall_time - latency_s),
    both on the wall clock: LSL's clock and the wall clock differ by a constant here."""
    offset = time.time() - pylsl.local_clock()
    return [ts + offset - capture_time(row) for (ts, _), row in zip(samples, rows)]


def event_texts(samples: list[tuple[float, list[Any]]], keep: Callable[[str], bool]) -> list[str]:
    return [values[0] for _, values in samples if keep(values[0])]


# ----------------------------------------------------------------------------- runs


def test_a_fast_run_sends_every_estimate_with_its_metadata(tmp_path: Path) -> None:
    argv = ["listen", "--input", str(SPEECH), "--fast", "--lsl", "--headless"]
    proc = start([*argv, "--model", TINY, "--no-log"], tmp_path)
    name = str(SPEECH.resolve())
    affect, markers = Inlet(source_id(name, "main")), Inlet(markers_source_id(name))
    rows, err = finish(proc)
    samples = affect.wait_ended()
    check_values(samples, rows)
    errors = capture_errors_s(samples, rows)
    assert max(map(abs, errors)) < 0.020, errors
    info = affect.info
    assert (info.name(), info.type(), info.nominal_srate()) == (stream_name("main"), "Affect", 0.0)
    assert info.channel_format() == pylsl.cf_float32 and info.channel_count() == len(CHANNELS)
    assert info.get_channel_labels() == [label for label, _ in CHANNELS]
    assert info.get_channel_labels()[:2] == ["arousal", "valence"]
    assert info.get_channel_units()[0] == "probability"
    assert Path(affect.desc("streamser/model/id") or "").name == "tiny-parametrized"
    assert affect.desc("streamser/model/demo") == "false"
    assert affect.desc("streamser/precision") == "fp32"
    assert (affect.desc("streamser/window_s"), affect.desc("streamser/hop_s")) == ("3", "1")
    assert affect.desc("streamser/version") == __version__
    assert "capture time" in (affect.desc("streamser/timestamps") or "")
    events = markers.wait_ended()
    assert event_texts(events, lambda t: t.startswith("speech_")) == [
        f"{e} main" for e in speech_events(rows)
    ]
    assert f"lsl: {len(rows)} estimates" in err


def test_a_restarted_run_is_picked_up_again_by_its_source_id(tmp_path: Path) -> None:
    """A recorder's inlet recovers a lost stream that has a source_id: the same inlets get the
    second run of the same input, as LabRecorder does when streamser restarts."""
    argv = ["listen", "--input", str(SPEECH), "--fast", "--lsl", "--headless", "--model", TINY]
    argv += ["--no-log"]
    name = str(SPEECH.resolve())
    first = start(argv, tmp_path)
    affect = Inlet(source_id(name, "main"), recover=True)
    markers = Inlet(markers_source_id(name), recover=True)
    rows, _ = finish(first)
    assert len(affect.wait_for(len(rows))) == len(rows)
    second = start(argv, tmp_path)  # waits for its consumers: the inlets above, recovered
    again, err = finish(second)
    samples = affect.wait_for(len(rows) + len(again))
    affect.stop.set()
    markers.stop.set()
    assert "no consumer" not in err and "not every stream has a consumer" not in err, err
    check_values(samples, rows + again)


def test_a_real_time_run_is_dated_to_capture_and_carries_a_mark(tmp_path: Path) -> None:
    clip, log_dir = short_clip(tmp_path, 5.0), tmp_path / "sessions"
    proc = start(["listen", "--input", str(clip), "--lsl", "--headless", "--model", TINY,
                  "--log-dir", str(log_dir)], tmp_path)  # fmt: skip
    name = str(clip.resolve())
    affect, markers = Inlet(source_id(name, "main")), Inlet(markers_source_id(name))
    assert affect.first.wait(60), "no estimate arrived"
    sockets = sockets_of(proc.pid)
    session = next(log_dir.iterdir())
    marked_at = pylsl.local_clock()
    append_mark(session, "door opened")  # what `streamser mark latest "door opened"` does
    rows, _ = finish(proc)
    samples = affect.wait_ended()
    check_values(samples, rows)
    # Real time: the timestamps keep the stream clock's spacing, and match the capture times.
    offsets = [ts - row["t_end_s"] for (ts, _), row in zip(samples, rows)]
    assert max(offsets) - min(offsets) < 0.020, offsets
    errors = capture_errors_s(samples, rows)
    assert max(map(abs, errors)) < 0.020, errors
    events = markers.wait_ended()
    marks = [(ts, values[0]) for ts, values in events if values[0].startswith("mark ")]
    assert [text for _, text in marks] == ["mark door opened"]
    assert abs(marks[0][0] - marked_at) < 0.5  # dated to the mark's stream time
    meta = json.loads((session / "meta.json").read_text())
    assert meta["counters"]["live_outputs"]["lsl"]["estimates"] == len(rows)
    assert meta["counters"]["live_outputs"]["lsl"]["markers"] == len(events)
    check_sockets(sockets, outlets=2)


def check_sockets(sockets: list[Socket], outlets: int) -> None:
    """Everything connected talks to loopback, and everything bound is bound to loopback, except
    what liblsl binds for each outlet on every interface whatever its configuration (its TCP
    data server and its UDP time service, each on a port of its range): those are told apart
    and counted, so nothing else may listen on all interfaces."""
    assert sockets
    for s in sockets:
        assert not s.has_peer or (is_loopback(s.peer_host) and is_loopback(s.local_host)), s
    wide = [s for s in sockets if s.bound_to_all]
    assert all(
        LIBLSL_BASE_PORT <= s.local_port < LIBLSL_BASE_PORT + LIBLSL_PORT_RANGE for s in wide
    )
    listening = sorted(s.netid for s in wide if s.netid == "udp" or s.state == "LISTEN")
    assert listening == ["tcp"] * outlets + ["udp"] * outlets, wide
    assert all(is_loopback(s.local_host) for s in sockets if not s.bound_to_all and not s.has_peer)


def test_each_stream_gets_its_own_outlet_with_per_channel(tmp_path: Path) -> None:
    audio, rate = sf.read(str(SPEECH), dtype="float32")
    stereo = tmp_path / "two voices.wav"
    sf.write(str(stereo), np.stack([audio, 0.5 * audio[::-1]], axis=1), rate)
    argv = ["listen", "--input", str(stereo), "--fast", "--lsl", "--headless", "--model", TINY]
    proc = start([*argv, "--no-log", "--per-channel", "--stream-names", "alice,bob"], tmp_path)
    name = str(stereo.resolve())
    inlets = {s: Inlet(source_id(name, s)) for s in ("alice", "bob")}
    markers = Inlet(markers_source_id(name))
    rows, _ = finish(proc)
    for stream, inlet in inlets.items():
        assert inlet.info.name() == stream_name(stream)
        assert inlet.desc("streamser/input_channel") == ("1" if stream == "alice" else "2")
        check_values(inlet.wait_ended(), [r for r in rows if r["stream"] == stream])
    events = markers.wait_ended()
    for stream in inlets:
        mine = [r for r in rows if r["stream"] == stream]
        assert event_texts(events, lambda t, s=stream: t.endswith(f" {s}")) == [
            f"{e} {stream}" for e in speech_events(mine)
        ]


def test_a_replay_keeps_the_recorded_spacing_at_its_speed(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    logger = SessionLogger(root, {"model": {"name": "demo", "demo": True}})
    estimates = scripted_estimates(10, nonspeech_every=5, nonspeech_len=2)
    for est in estimates:
        logger.write_estimate(est)
    logger.add_mark(estimates[3].t_end_s, "look here")
    logger.close({"estimates": len(estimates)})
    name = f"session {logger.session_id}"
    inlets: dict[str, Inlet] = {}

    def connect() -> None:  # while the replay waits for its consumers
        inlets["affect"] = Inlet(source_id(name, "main"))
        inlets["markers"] = Inlet(markers_source_id(name))

    connector = threading.Thread(target=connect, daemon=True)
    connector.start()
    speed = 4.0
    rc, out, err = run("replay", str(logger.path), "--headless", "--speed", str(speed), "--lsl",
                       "--log-dir", str(root))  # fmt: skip
    connector.join(60)
    assert rc == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    samples = inlets["affect"].wait_ended()
    check_values(samples, rows)
    first_ts, first_end = samples[0][0], rows[0]["t_end_s"]
    lag = [
        ts - first_ts - (row["t_end_s"] - first_end) / speed for (ts, _), row in zip(samples, rows)
    ]
    assert max(map(abs, lag)) < 0.020, lag
    assert inlets["affect"].desc("streamser/replay_of") == logger.session_id
    events = inlets["markers"].wait_ended()
    (mark_ts,) = [ts for ts, values in events if values[0] == "mark look here"]
    assert mark_ts == pytest.approx(samples[3][0], abs=0.020)  # the replay's time of window 3
    assert event_texts(events, lambda t: t.startswith("speech_")) == [
        f"{e} main" for e in speech_events(rows)
    ]


def test_an_unloadable_liblsl_is_one_line_saying_what_to_install(tmp_path: Path) -> None:
    not_a_library = tmp_path / "liblsl.so"
    not_a_library.write_text("not a shared library\n")
    argv = ["listen", "--input", str(SPEECH), "--lsl", "--headless", "--model", TINY, "--no-log"]
    proc = start(argv, tmp_path, PYLSL_LIB=str(not_a_library))
    out, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 2 and out == ""
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "cannot load liblsl" in lines[0] and "pip install 'streamser[lsl]'" in lines[0]


def test_the_tests_confine_lsl_to_this_machine() -> None:
    assert os.environ["LSLAPICFG"] == str(LSL_CONFIG)
    text = LSL_CONFIG.read_text()
    assert "ResolveScope = machine" in text and "KnownPeers = {127.0.0.1}" in text
