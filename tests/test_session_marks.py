"""Marks added from another terminal: only at times the session can have had."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import pytest

from streamser.contracts import Estimate
from streamser.session.errors import SessionError
from streamser.session.logger import SessionLogger
from streamser.session.marks import END_SLACK_S, RUNNING_IDLE_S, append_mark, last_estimate_end_s
from streamser.session.reader import read_session

META: dict[str, Any] = {"model": {"name": "demo", "demo": True}}


def make_estimate(seq: int) -> Estimate:
    return Estimate(
        seq=seq, window=seq, t_start_s=max(0.0, seq - 2.0), t_end_s=seq + 1.0,
        wall_time="2026-11-23T22:15:30+00:00", probs=(1 / 6,) * 6, arousal=0.5, valence=0.1,
        arousal_smooth=0.5, valence_smooth=0.1, speech=0.9, is_speech=True, compute_s=0.1,
        latency_s=0.2, skipped_windows=0, dropped_samples=0,
    )  # fmt: skip


def logged(root: Path, n: int, meta: dict[str, Any] | None = None) -> SessionLogger:
    """A session with ``n`` estimates, the last ending at ``n`` s, still open."""
    logger = SessionLogger(root, meta or META)
    for i in range(n):
        logger.write_estimate(make_estimate(i))
    return logger


def go_quiet(path: Path, seconds: float = RUNNING_IDLE_S + 60) -> None:
    """Make the session look as if nothing was written for ``seconds`` (a killed run)."""
    then = time.time() - seconds
    for name in ("estimates.jsonl", "meta.json", "marks.jsonl"):
        os.utime(path / name, (then, then))


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, -1.0, -1e-9])
@pytest.mark.parametrize("state", ["running", "closed", "killed"])
def test_non_finite_or_negative_times_are_refused(tmp_path: Path, bad: float, state: str) -> None:
    logger = logged(tmp_path, 5)
    if state == "closed":
        logger.close({"stream_s": 5.5})
    elif state == "killed":
        go_quiet(logger.path)
    with pytest.raises(SessionError, match="finite number of seconds from 0 on") as info:
        append_mark(logger.path, "bad", t_s=bad)
    assert "\n" not in str(info.value)
    assert (logger.path / "marks.jsonl").read_text() == ""
    logger.close({})


def test_a_closed_session_takes_marks_up_to_its_stream_end(tmp_path: Path) -> None:
    logger = logged(tmp_path, 5)
    logger.close({"stream_s": 5.5})  # a little audio after the last window's end
    assert append_mark(logger.path, "start", t_s=0.0)["t_s"] == 0.0
    assert append_mark(logger.path, "end", t_s=5.5)["t_s"] == 5.5
    with pytest.raises(SessionError, match=r"has ended: it ends at 5\.5 s, so a mark at 5\.6 s"):
        append_mark(logger.path, "after", t_s=5.6)
    with pytest.raises(
        SessionError, match=r"has ended; give the mark's time in seconds \(0 to 5\.5"
    ):
        append_mark(logger.path, "now")
    assert [m["note"] for m in read_session(logger.path).marks] == ["start", "end"]


def test_without_a_stream_end_the_last_estimate_bounds_marks(tmp_path: Path) -> None:
    logger = logged(tmp_path, 5)
    logger.close({})  # counters without stream_s
    assert last_estimate_end_s(logger.path) == 5.0
    end = 5.0 + END_SLACK_S
    append_mark(logger.path, "late in the last window", t_s=end)
    with pytest.raises(SessionError, match="has ended"):
        append_mark(logger.path, "beyond", t_s=end + 0.1)


def test_a_killed_session_takes_marks_only_within_what_it_logged(tmp_path: Path) -> None:
    logger = logged(tmp_path, 8)
    with (logger.path / "estimates.jsonl").open("a") as f:
        f.write('{"seq": 8, "t_end_s": 99')  # the line being written when it was killed
    go_quiet(logger.path)
    assert last_estimate_end_s(logger.path) == 8.0
    end = 8.0 + END_SLACK_S
    assert append_mark(logger.path, "inside", t_s=4.0)["t_s"] == 4.0
    with pytest.raises(SessionError, match="is not running") as info:
        append_mark(logger.path, "beyond", t_s=end + 1)
    assert f"ends at {end:.1f} s" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(SessionError, match="is not running"):
        append_mark(logger.path, "now")  # no time to guess: the run is gone


def test_a_session_that_stopped_logging_takes_marks_only_within_its_log(tmp_path: Path) -> None:
    logger = logged(tmp_path, 4)
    logger.update_meta(log_stopped="No space left on device")  # as the logger records it
    with pytest.raises(SessionError, match=r"stopped logging \(No space left on device\)"):
        append_mark(logger.path, "beyond", t_s=4.0 + END_SLACK_S + 1)
    append_mark(logger.path, "inside", t_s=2.0)
    logger.close({})


def test_a_running_session_takes_any_time_and_now(tmp_path: Path) -> None:
    logger = logged(tmp_path, 3)  # still writing: its estimates file was just touched
    assert append_mark(logger.path, "ahead", t_s=1e6)["t_s"] == 1e6
    now = append_mark(logger.path, "now")
    assert now["approximate"] is True and now["t_s"] >= 0.0
    logger.close({})


def test_a_muted_session_is_running_though_it_logs_nothing(tmp_path: Path) -> None:
    logger = logged(tmp_path, 3)
    logger.update_meta(mutes=[{"t_start_s": 3.0, "t_end_s": None}])
    go_quiet(logger.path)
    assert append_mark(logger.path, "while muted", t_s=500.0)["t_s"] == 500.0
    logger.update_meta(mutes=[{"t_start_s": 3.0, "t_end_s": 400.0}])
    go_quiet(logger.path)
    with pytest.raises(SessionError, match="is not running"):
        append_mark(logger.path, "killed after the mute", t_s=500.0)
    logger.close({})


def test_a_long_hop_keeps_a_quiet_session_running_longer(tmp_path: Path) -> None:
    logger = logged(tmp_path, 3, {**META, "config": {"windows": {"hop_s": 60.0}}})
    go_quiet(logger.path, seconds=150)  # less than three hops
    append_mark(logger.path, "between windows", t_s=200.0)
    go_quiet(logger.path, seconds=200)
    with pytest.raises(SessionError, match="is not running"):
        append_mark(logger.path, "gone", t_s=200.0)
    logger.close({})


def test_an_empty_killed_session_allows_one_window(tmp_path: Path) -> None:
    logger = SessionLogger(tmp_path, META)
    go_quiet(logger.path)
    assert last_estimate_end_s(logger.path) is None
    append_mark(logger.path, "first seconds", t_s=END_SLACK_S)
    with pytest.raises(SessionError, match="is not running"):
        append_mark(logger.path, "later", t_s=END_SLACK_S + 1)
    lines = (logger.path / "marks.jsonl").read_text().splitlines()
    assert [json.loads(x)["note"] for x in lines] == ["first seconds"]
    logger.close({})
