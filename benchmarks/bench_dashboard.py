"""Dashboard budget: frame time and the UI's share of one core with a full 10-minute history.

The dashboard must leave the CPU to the model (on a 2-core laptop the model needs all of it), so
its budget is stated as a share of one core, measured the way a user runs it: a real session
recorded by ``streamser listen --fast --headless --model demo`` from ten minutes of speech, the
whole history loaded into the dashboard, then new estimates arriving at the session's own pace
(one per hop; replay speed 1) while the dashboard runs headless at a given terminal size and
plot range. ``--hop 0.25`` records a session with four estimates a second: every plot frame
(4 Hz) then has new data, the most the dashboard ever draws.

Measured per case, over the live phase only:

- frame time: wall and CPU time of each screen update that redrew a plot (Textual's update
  pass: layout, every dirty widget's render, the compositor), plus encoding the changed lines
  into terminal escapes as a real terminal would get them (headless mode skips that step, so it
  is done here and counted); median, p95, max, and the median CPU time of the first and last
  thirds of the frames that redrew a plot body, to see whether frames get slower as the
  history grows;
- CPU share: process CPU time over wall time. Nothing else runs in the process but the replay
  thread, which only hands over one estimate at a time.

``--streams N`` records an N-channel file (the speech, each channel a few seconds later than the
last) with ``--per-channel``: the dashboard then draws a plot pair per stream (four at most) and
every stream's trail, and the estimates per second are the streams' together.

Run: ``.venv/bin/python benchmarks/bench_dashboard.py`` (about 6 minutes: 1 to 1.5 to record
the session, 60 s per case). ``--session DIR`` reuses a recorded session. Wall times depend on
what else the machine runs (the load average is printed with each case); CPU times much less.
Figures are printed, never asserted; see benchmarks/dashboard.md for the figures on record.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from textual.app import App
from textual.screen import Screen

from streamser.contracts import Estimate, StatusSnapshot, estimates_after
from streamser.session.reader import SessionData, read_session
from streamser.session.replay import ReplayController
from streamser.tui.app import RANGE_STEPS_S, DashboardApp, make_app
from streamser.tui.widgets import TrajectoryPlot

ROOT_DIR = Path(__file__).resolve().parent.parent
SPEECH_WAV = ROOT_DIR / "assets" / "speech.wav"
BUDGET_CPU_SHARE = 0.15
"""The dashboard's target: at most 15 % of one core, whatever the size and history."""


# --- the session ---------------------------------------------------------------------------


STREAM_LAG_S = 3.7
"""How much later each channel of a ``--streams`` recording starts the speech than the last."""


def record_session(minutes: float, hop_s: float, work_dir: Path, streams: int = 1) -> Path:
    """Loop the demo speech to ``minutes`` of audio and analyse it as fast as the CPU allows,
    one estimate every ``hop_s`` of audio (per stream: with ``streams`` above one, one channel
    per stream, each lagging the last by ``STREAM_LAG_S``)."""
    audio, rate_hz = soundfile.read(SPEECH_WAV, dtype="float32")
    wav = work_dir / "speech-loop.wav"
    loop = np.resize(audio, round(minutes * 60 * rate_hz))
    lag = round(STREAM_LAG_S * rate_hz)
    channels = np.stack([np.roll(loop, k * lag) for k in range(streams)], axis=1)
    soundfile.write(wav, channels, rate_hz)
    log_dir = work_dir / "sessions"
    cmd = [sys.executable, "-m", "streamser", "listen", "--input", str(wav), "--fast"]
    cmd += ["--headless", "--model", "demo", "--hop", str(hop_s), "--log-dir", str(log_dir)]
    if streams > 1:
        cmd.append("--per-channel")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    (session_dir,) = [p for p in log_dir.iterdir() if p.is_dir()]
    return session_dir


def continuation(session: SessionData, n: int) -> list[Estimate]:
    """``n`` estimates that carry the session on where it ended: its own estimates again, in
    order, with the stream clock and sequence numbers moved past the end."""
    base = session.estimates
    out: list[Estimate] = []
    for k in range(n):
        lap, e = divmod(k, len(base))
        shift = (lap + 1) * base[-1].t_end_s
        seq = (lap + 1) * len(base) + e
        src = base[e]
        moved = replace(
            src, seq=seq, window=seq, t_start_s=src.t_start_s + shift, t_end_s=src.t_end_s + shift
        )
        out.append(moved)
    return out


class ContinuedReplay:
    """A replay whose history is the whole recorded session, and whose live part is a
    :class:`ReplayController` pacing the continuation: the dashboard starts with a full history
    (as when it is opened on a running analysis) and then sees estimates arrive one by one."""

    is_replay = True

    def __init__(self, session: SessionData, live: ReplayController) -> None:
        self._before = list(session.estimates)
        self.live = live

    def subscribe(self, fn: Callable[[Estimate], None]) -> None:
        self.live.subscribe(fn)

    def history_since(self, seq: int) -> list[Estimate]:
        return estimates_after(seq, self._before + self.live.history_since(-1))

    def status(self) -> StatusSnapshot:
        return self.live.status()

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.live.stop()

    def set_muted(self, muted: bool) -> None:
        self.live.set_muted(muted)

    def set_recording(self, on: bool) -> None:
        self.live.set_recording(on)

    def add_mark(self, note: str) -> None:
        self.live.add_mark(note)


# --- instrumentation -----------------------------------------------------------------------


@dataclass
class FrameLog:
    """Screen updates seen while ``recording``: (wall s, CPU s, plot pictures rebuilt, plot
    bodies rebuilt, bytes out)."""

    recording: bool = False
    updates: list[tuple[float, float, int, int, int]] = field(default_factory=list)
    _bytes: int = 0


@contextmanager
def frame_probe(app: DashboardApp) -> Iterator[FrameLog]:
    """Time every screen update of ``app`` and encode its output as a terminal would get it.

    Wraps two Textual internals for the duration of one case and restores them after: the
    screen's update pass and the app's display step (where, in a real terminal, the changed
    lines become escape sequences).
    """
    log = FrameLog()
    original_update = Screen._on_timer_update
    original_display = App._display

    def timed_update(screen: Screen[Any]) -> None:
        if not log.recording or screen.app is not app:
            original_update(screen)
            return
        plots = list(app.query(TrajectoryPlot))  # two, or a pair per stream shown
        plots_before = sum(p.renders for p in plots)
        bodies_before = sum(p.body_renders for p in plots)
        log._bytes = 0
        w0, c0 = time.perf_counter(), time.thread_time()
        original_update(screen)
        wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
        rebuilt = sum(p.renders for p in plots) - plots_before
        bodies = sum(p.body_renders for p in plots) - bodies_before
        log.updates.append((wall, cpu, rebuilt, bodies, log._bytes))

    def encoding_display(self: App[Any], screen: Screen[Any], renderable: Any) -> None:
        original_display(self, screen, renderable)
        if self is app and self.is_headless and hasattr(renderable, "render_segments"):
            log._bytes += len(renderable.render_segments(self.console))

    Screen._on_timer_update = timed_update  # type: ignore[method-assign]
    App._display = encoding_display  # type: ignore[method-assign]
    try:
        yield log
    finally:
        Screen._on_timer_update = original_update  # type: ignore[method-assign]
        App._display = original_display  # type: ignore[method-assign]


# --- one case ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    size: tuple[int, int]
    range_s: float
    speed: float
    """Replay speed of the live phase; 1 is real time, the only pace a live stream has."""


@dataclass(frozen=True)
class Result:
    case: Case
    history: int
    estimates_per_s: float
    wall_s: float
    cpu_share: float
    plot_frames: list[float]
    plot_frames_cpu: list[float]
    body_frames_cpu: list[float]
    """CPU time of the frames that redrew a plot body, in order: the ones to watch for growth."""
    other_updates: list[float]
    bytes_per_s: float
    load: tuple[float, float, float]


async def run_case(session: SessionData, case: Case, live_s: float) -> Result:
    first = session.estimates[0].stream
    hop_s = statistics.median(np.diff([e.t_end_s for e in session.estimates if e.stream == first]))
    n_streams = len({e.stream for e in session.estimates})
    n_live = max(1, round(live_s * case.speed / hop_s)) * n_streams
    live = ReplayController(replace(session, estimates=continuation(session, n_live)), case.speed)
    app = make_app(ContinuedReplay(session, live))
    with frame_probe(app) as log:
        async with app.run_test(size=case.size) as pilot:
            steps = RANGE_STEPS_S.index(case.range_s) - RANGE_STEPS_S.index(app.range_s)
            for _ in range(abs(steps)):
                await pilot.press("plus" if steps > 0 else "minus")
            await pilot.pause()
            history = app.received
            received_before = app.received
            log.recording = True
            w0, c0 = time.perf_counter(), time.process_time()
            while not live.finished.is_set():
                await asyncio.sleep(0.25)
            await asyncio.sleep(0.5)  # the last estimate's frame
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            log.recording = False
            arrived = app.received - received_before
            load = os.getloadavg()
    plot = [u for u in log.updates if u[2]]
    return Result(
        case=case,
        history=history,
        estimates_per_s=arrived / wall,
        wall_s=wall,
        cpu_share=cpu / wall,
        plot_frames=[u[0] for u in plot],
        plot_frames_cpu=[u[1] for u in plot],
        body_frames_cpu=[u[1] for u in plot if u[3]],
        other_updates=[u[1] for u in log.updates if not u[2]],
        bytes_per_s=sum(u[4] for u in log.updates) / wall,
        load=load,
    )


# --- report --------------------------------------------------------------------------------


def ms(xs: list[float], q: float) -> str:
    return f"{np.quantile(xs, q) * 1e3:.1f}" if xs else "-"


def thirds(xs: list[float]) -> tuple[float, float]:
    k = max(len(xs) // 3, 1)
    return statistics.median(xs[:k]) * 1e3, statistics.median(xs[-k:]) * 1e3


HEADER = (
    "| size | range | est/s | history | plot frames (body redrawn) | frame ms p50 / p95 / max "
    "| frame CPU ms p50 / max | body frame CPU ms 1st / last third | status-only CPU ms p50 "
    "| UI CPU % of a core | KiB/s out | load |"
)


def row(r: Result) -> str:
    c = r.case
    first, last = thirds(r.body_frames_cpu) if r.body_frames_cpu else (0.0, 0.0)
    cols = [
        f"{c.size[0]}x{c.size[1]}",
        f"{c.range_s:g} s",
        f"{r.estimates_per_s:.1f}",
        str(r.history),
        f"{len(r.plot_frames)} ({len(r.body_frames_cpu)})",
        " / ".join(ms(r.plot_frames, q) for q in (0.5, 0.95, 1.0)),
        " / ".join(ms(r.plot_frames_cpu, q) for q in (0.5, 1.0)),
        f"{first:.1f} / {last:.1f}",
        ms(r.other_updates, 0.5),
        f"{r.cpu_share * 100:.1f}",
        f"{r.bytes_per_s / 1024:.1f}",
        f"{r.load[0]:.2f}",
    ]
    return "| " + " | ".join(cols) + " |"


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return f"nproc {os.cpu_count()}; {model}; uptime: {uptime}"


def parse_size(s: str) -> tuple[int, int]:
    cols, rows = s.lower().split("x")
    return int(cols), int(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session", type=Path, help="a recorded session (default: record one)")
    parser.add_argument("--minutes", type=float, default=10.0, help="history to record")
    parser.add_argument("--hop", type=float, default=1.0, help="hop of the recorded session, s")
    parser.add_argument("--live-s", type=float, default=60.0, help="live phase per case, s")
    parser.add_argument("--sizes", default="80x24,200x50")
    parser.add_argument(
        "--streams", type=int, default=1, help="streams of the recorded session (--per-channel)"
    )
    parser.add_argument(
        "--cases",
        default="60:1,600:1",
        help="range_s:speed pairs (the plots' time range, the replay speed of the live phase)",
    )
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="streamser-bench-") as tmp:
        t0 = time.perf_counter()
        path = args.session or record_session(args.minutes, args.hop, Path(tmp), args.streams)
        session = read_session(path)
        print(f"session {path}: {len(session.estimates)} estimates", end="")
        print(f" ({time.perf_counter() - t0:.0f} s to load or record)")
        print(HEADER)
        print("|---" * (HEADER.count("|") - 1) + "|")
        results = []
        for size in map(parse_size, args.sizes.split(",")):
            for spec in args.cases.split(","):
                range_s, speed = (float(x) for x in spec.split(":"))
                r = asyncio.run(run_case(session, Case(size, range_s, speed), args.live_s))
                results.append(r)
                print(row(r), flush=True)
    worst = max(r.cpu_share for r in results)
    verdict = "within" if worst <= BUDGET_CPU_SHARE else "OVER"
    print(f"worst UI CPU share {worst * 100:.1f} % of a core: {verdict} the 15 % budget")
    print(machine())


if __name__ == "__main__":
    main()
