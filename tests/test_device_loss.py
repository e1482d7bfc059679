"""A device that disappears mid-session: streamser says so, keeps the log, and reconnects."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pulse
import pytest

from tests.conftest import ROOT_DIR
from tests.test_listen_cli import env_for

pulse_null_sink = pulse.pulse_null_sink


class StreamWatcher:
    """Reads a process's stdout and stderr on threads; tests wait on the events it sets."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.out: list[str] = []
        self.err: list[str] = []
        self.changed = threading.Condition()
        for stream, sink in ((proc.stdout, self.out), (proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    def _pump(self, stream, sink: list[str]) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            with self.changed:
                sink.append(line)
                self.changed.notify_all()

    def wait_for(self, predicate, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
        with self.changed:
            return self.changed.wait_for(predicate, timeout_s)


def null_sink_module(server: pulse.PulseServer) -> str:
    for line in server.pactl("list", "short", "modules").splitlines():
        if "module-null-sink" in line:
            return line.split()[0]
    raise AssertionError("no null sink loaded")


@pytest.mark.system
@pytest.mark.parametrize("reconnect", [True, False])
def test_lost_device_is_reported_logged_and_reconnected(
    pulse_null_sink: pulse.PulseServer, tmp_path: Path, reconnect: bool
) -> None:
    log_dir = tmp_path / "sessions"
    args = [
        sys.executable, "-m", "streamser", "listen", "--headless", "--model", "demo",
        "--device", "default", "--samplerate", "16000", "--channels", "1",
        "--hop", "0.5", "--log-dir", str(log_dir),
        "--reconnect" if reconnect else "--no-reconnect",
    ]  # fmt: skip
    env = {**env_for(tmp_path), **pulse_null_sink.env}
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT_DIR
    )
    w = StreamWatcher(proc)
    try:
        assert w.wait_for(lambda: len(w.out) >= 3, 60), "".join(w.err)
        pulse_null_sink.pactl("unload-module", null_sink_module(pulse_null_sink))
        assert w.wait_for(lambda: any("input lost" in x for x in w.err), 30), "".join(w.err)
        if not reconnect:
            assert proc.wait(timeout=20) == 1
        else:
            assert proc.poll() is None, "the run must survive a lost device"
            before = len(w.out)
            pulse_null_sink.pactl(
                "load-module", "module-null-sink", f"sink_name={pulse_null_sink.sink}",
                f"rate={pulse_null_sink.sample_rate_hz}", "channels=1", "format=float32le",
            )  # fmt: skip
            pulse_null_sink.pactl("set-default-source", f"{pulse_null_sink.sink}.monitor")
            assert w.wait_for(lambda: any("input back" in x for x in w.err), 30), "".join(w.err)
            assert w.wait_for(lambda: len(w.out) >= before + 3, 30), "no estimates after reconnect"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = "".join(w.err)
    assert "Traceback" not in stderr
    (session,) = log_dir.iterdir()
    meta = json.loads((session / "meta.json").read_text())
    assert meta["closed"] is True
    logged = [json.loads(x) for x in (session / "estimates.jsonl").read_text().splitlines()]
    assert len(logged) == len(w.out) == meta["counters"]["estimates"]
    if reconnect:
        assert meta["counters"]["reconnects"] == 1
        assert meta["counters"]["dropped_samples"] > 0  # the outage, as zeros on the clock
        ends = [r["t_end_s"] for r in logged]
        assert ends == sorted(ends)
