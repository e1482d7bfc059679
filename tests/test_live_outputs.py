"""The pieces LSL and OSC share, one stage at a time: the events read off estimates, the clocks
that date what is sent, the marks followed in a running session's file, and the flags."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from tui_fakes import scripted_estimate

from streamser.cli import build_parser
from streamser.config import ConfigError
from streamser.outputs.affect_channels import CHANNELS, channel_values
from streamser.outputs.clocks import LiveClock, ReplayClock
from streamser.outputs.errors import OutputError
from streamser.outputs.live import LSL_WAIT_S, live_output_config
from streamser.outputs.markers import Marker, MarkerTracker
from streamser.session.logger import SessionLogger
from streamser.session.marks import MarkFollower, append_mark


class FakeNow:
    """A monotonic clock the test moves by hand."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# ----------------------------------------------------------------------------- events


def test_speech_and_skip_events_follow_each_stream_separately() -> None:
    tracker = MarkerTracker()
    a0 = replace(scripted_estimate(0), stream="a")
    b0 = replace(scripted_estimate(0, speech=False), stream="b")
    a1 = replace(scripted_estimate(1, speech=False), stream="a", skipped_windows=2)
    b1 = replace(scripted_estimate(1), stream="b", skipped_windows=0)
    a2 = replace(scripted_estimate(2, speech=False), stream="a", skipped_windows=2)
    seen = [[m.text for m in tracker.update(e)] for e in (a0, b0, a1, b1, a2)]
    assert seen == [
        ["speech_on a"],  # a stream starts silent: its first speech window opens speech
        [],  # b starts silent and stays so
        ["skipped a 2", "speech_off a"],
        ["speech_on b"],  # b's own history, untouched by a's
        [],  # nothing new: no speech change, no more skipped
    ]


def test_without_a_speech_detector_there_are_no_speech_events() -> None:
    tracker = MarkerTracker()
    est = replace(scripted_estimate(0), speech=None, is_speech=True)
    assert tracker.update(est) == [] and tracker.update(replace(est, seq=1)) == []


def test_a_marker_is_one_line_whatever_its_note_holds() -> None:
    assert Marker("mark", None, "door\nopened  twice").text == "mark door opened twice"
    assert Marker("skipped", "ch2", "3").text == "skipped ch2 3"
    assert Marker("mute_on").text == "mute_on"


def test_channel_values_put_nan_where_a_value_is_missing() -> None:
    full = scripted_estimate(0)
    values = channel_values(full)
    assert len(values) == len(CHANNELS) == 11
    assert values[:2] == [full.arousal, full.valence] and values[5:] == list(full.probs or ())
    gap = replace(full, probs=None, arousal=None, valence=None, speech=None)
    gap_values = channel_values(gap)
    assert [math.isnan(v) for v in gap_values] == [True, True, False, False, True] + [True] * 6


# ----------------------------------------------------------------------------- clocks


def test_a_live_estimate_is_dated_to_its_capture_and_marks_through_it() -> None:
    now = FakeNow(100.0)
    clock = LiveClock(now)
    assert clock.stream_time_age_s(5.0) == 0.0  # nothing to date by yet: now
    est = replace(scripted_estimate(0), t_end_s=10.0, latency_s=0.3)
    assert clock.estimate_age_s(est) == pytest.approx(0.3)
    # Window end 10.0 s was captured at 99.7; stream time 9.0 s one second earlier.
    now.t = 101.0
    assert clock.stream_time_age_s(9.0) == pytest.approx(101.0 - 98.7)
    assert clock.stream_time_age_s(20.0) == 0.0  # never dated after the moment it is sent


@pytest.mark.parametrize("speed", [1.0, 4.0])
def test_a_paced_replay_keeps_the_recorded_spacing_scaled(speed: float) -> None:
    now = FakeNow(50.0)
    clock = ReplayClock(speed, now)
    first = replace(scripted_estimate(0), t_end_s=3.0)
    assert clock.estimate_age_s(first) == 0.0
    now.t = 50.0 + 2.0 / speed + 0.05  # the pacing thread woke 50 ms late
    later = replace(scripted_estimate(4), t_end_s=5.0)
    assert clock.estimate_age_s(later) == pytest.approx(0.05)  # dated when it was due
    assert clock.stream_time_age_s(4.0) == pytest.approx(1.0 / speed + 0.05)


def test_a_replay_as_fast_as_possible_is_dated_when_sent() -> None:
    clock = ReplayClock(0.0, FakeNow())
    for seq in range(3):
        assert clock.estimate_age_s(scripted_estimate(seq)) == 0.0
    assert clock.stream_time_age_s(1.0) == 0.0


# ----------------------------------------------------------------------------- marks


def test_marks_are_followed_as_the_session_gains_them(tmp_path: Path) -> None:
    logger = SessionLogger(tmp_path, {"model": {"name": "demo"}})
    follower = MarkFollower(logger.path)
    assert follower.poll() == []
    logger.add_mark(1.5, "from the dashboard")
    append_mark(logger.path, "from another terminal", 2.5)
    assert follower.poll() == [(1.5, "from the dashboard"), (2.5, "from another terminal")]
    assert follower.poll() == []  # each mark once
    marks = logger.path / "marks.jsonl"
    line = json.dumps({"t_s": 3.0, "note": "half written"}) + "\n"
    with marks.open("a") as f:  # a writer caught mid-line, then a line that is no mark
        f.write(line[:10])
        f.flush()
        assert follower.poll() == []
        f.write(line[10:] + '{"note": "no time"}\n')
    assert follower.poll() == [(3.0, "half written")]
    logger.close({})


# ----------------------------------------------------------------------------- flags


def args_of(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["listen", *argv])


def test_flags_make_a_checked_output_config() -> None:
    plain = live_output_config(args_of())
    assert not plain.wanted
    cfg = live_output_config(args_of("--lsl", "--osc", "127.0.0.1:9000"))
    assert cfg.lsl and cfg.osc is not None and cfg.osc.text == "127.0.0.1:9000"
    assert (cfg.wait_s(live_device=True), cfg.wait_s(live_device=False)) == (0.0, LSL_WAIT_S)
    waited = live_output_config(args_of("--lsl", "--lsl-wait", "2.5"))
    assert waited.wait_s(live_device=True) == 2.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lsl-wait", "3"], "--lsl-wait needs --lsl"),
        (["--lsl", "--lsl-wait", "-1"], "use 0 seconds or more"),
        (["--lsl", "--lsl-wait", "nan"], "use 0 seconds or more"),
    ],
)
def test_bad_wait_flags_are_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        live_output_config(args_of(*argv))


@pytest.mark.parametrize(("flag", "module"), [("--lsl", "pylsl"), ("--osc", "pythonosc")])
def test_a_missing_library_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, flag: str, module: str
) -> None:
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")] + [module]:
        monkeypatch.setitem(sys.modules, name, None)
    argv = [flag] if flag == "--lsl" else [flag, "127.0.0.1:9000"]
    extra = "lsl" if flag == "--lsl" else "osc"
    with pytest.raises(OutputError, match=rf"pip install 'streamser\[{extra}\]'"):
        live_output_config(args_of(*argv))
