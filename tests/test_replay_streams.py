"""Replay of sessions with several streams: the status lists each stream, from meta.json or,
in a session that does not list them, from the estimates; an old session is one stream."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamser.constants import DEFAULT_STREAM_NAME
from streamser.contracts import Estimate
from streamser.session.reader import read_session
from streamser.session.replay import ReplayController

WAIT_S = 10.0


def estimate_line(seq: int, stream: str | None, window: int, **changes: Any) -> dict[str, Any]:
    """One estimates.jsonl line as the documented schema writes it (``stream`` left out for a
    log written before streams existed)."""
    line: dict[str, Any] = {
        "seq": seq, "window": window, "t_start_s": window * 1.0, "t_end_s": window * 1.0 + 3.0,
        "wall_time": "2026-11-23T22:15:30+00:00", "probs": [0.1, 0.1, 0.2, 0.2, 0.2, 0.2],
        "arousal": 0.6, "valence": 0.1, "arousal_smooth": 0.6, "valence_smooth": 0.1,
        "speech": 0.9, "is_speech": True, "compute_s": 0.2, "latency_s": 0.4,
        "skipped_windows": 0, "dropped_samples": 0,
    }  # fmt: skip
    if stream is not None:
        line["stream"] = stream
    line.update(changes)
    return line


def write_session(root: Path, lines: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
    path = root / "20261123-221530-a1b2c3"
    path.mkdir()
    (path / "meta.json").write_text(json.dumps({"session_id": path.name, "closed": True, **meta}))
    (path / "estimates.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def two_stream_lines(n_windows: int) -> list[dict[str, Any]]:
    """``--per-channel`` with two people: one ``seq`` over both, ``window`` per stream; bob's
    second window was skipped and his first three were silence (no probabilities)."""
    lines = []
    for w in range(n_windows):
        lines.append(estimate_line(len(lines), "alice", w))
        bob = {"skipped_windows": 1 if w >= 2 else 0, "dropped_samples": 160 if w >= 4 else 0}
        if w < 3:
            bob |= {"probs": None, "arousal": None, "valence": None, "is_speech": False}
        lines.append(estimate_line(len(lines), "bob", w, **bob))
    return lines


def replayed(path: Path) -> ReplayController:
    controller = ReplayController(read_session(path), speed=0)
    seen: list[Estimate] = []
    controller.subscribe(seen.append)
    controller.start()
    assert controller.finished.wait(WAIT_S)
    controller.stop()
    assert len(seen) == len(controller.history_since(-1))
    return controller


def test_the_status_lists_the_streams_meta_json_names(tmp_path: Path) -> None:
    streams = [{"name": "alice", "channel": 1}, {"name": "bob", "channel": 2}]
    path = write_session(tmp_path, two_stream_lines(6), {"streams": streams})
    controller = ReplayController(read_session(path), speed=0)
    before = controller.status()
    assert [(s.name, s.estimates) for s in before.streams] == [("alice", 0), ("bob", 0)]
    controller = replayed(path)
    status = controller.status()
    assert [s.name for s in status.streams] == ["alice", "bob"]
    alice, bob = status.streams
    assert (alice.estimates, bob.estimates) == (6, 6)
    assert (alice.skipped_windows, bob.skipped_windows) == (0, 1)
    assert alice.level_dbfs is None and not alice.clipping  # a replay has no input level
    assert status.skipped_windows == 1  # summed over the streams
    assert status.dropped_samples == 160  # a capture gap drops the same samples from each
    history = controller.history_since(-1)
    assert [e.stream for e in history[:4]] == ["alice", "bob", "alice", "bob"]
    assert [e.seq for e in history] == list(range(12))


def test_streams_missing_from_meta_json_come_from_the_estimates(tmp_path: Path) -> None:
    lines = two_stream_lines(3)
    lines[0], lines[1] = lines[1], lines[0]  # bob's first estimate came first
    lines = [line | {"seq": k} for k, line in enumerate(lines)]
    path = write_session(tmp_path, lines, {})
    status = replayed(path).status()
    assert [s.name for s in status.streams] == ["bob", "alice"]  # in order of first appearance


def test_an_old_session_is_one_main_stream(tmp_path: Path) -> None:
    lines = [estimate_line(k, None, k, skipped_windows=k) for k in range(4)]
    path = write_session(tmp_path, lines, {})
    status = replayed(path).status()
    assert [(s.name, s.estimates) for s in status.streams] == [(DEFAULT_STREAM_NAME, 4)]
    assert status.skipped_windows == 3  # the last estimate's running total, as before
