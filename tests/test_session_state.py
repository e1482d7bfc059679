"""How a session ended, as the reader, the catalog, the report and `analyze` tell it: closed
cleanly, logging stopped (and why), or not closed cleanly (killed or still running)."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from streamser.contracts import Estimate
from streamser.session.catalog import format_sessions_table, list_sessions
from streamser.session.files import RESERVE_NAME
from streamser.session.logger import SessionLogger
from streamser.session.reader import (
    SessionState,
    read_session,
    session_state,
    unclean_session_note,
)
from streamser.session.report_figure import build_figure
from streamser.session.report_html import render_html

META: dict[str, Any] = {"model": {"name": "amiriparian/ExHuBERT", "revision": "b158d45"}}
FULL = os.strerror(errno.ENOSPC)


def make_estimate(seq: int) -> Estimate:
    return Estimate(
        seq=seq, window=seq, t_start_s=seq * 1.0, t_end_s=seq * 1.0 + 3.0,
        wall_time="2026-11-23T22:15:30+00:00", probs=(1 / 6,) * 6, arousal=0.5, valence=0.1,
        arousal_smooth=0.5, valence_smooth=0.1, speech=0.9, is_speech=True, compute_s=0.1,
        latency_s=0.2, skipped_windows=0, dropped_samples=0,
    )  # fmt: skip


class FullDisk:
    """A log file that takes ``good`` lines, then fails as a full disk does."""

    def __init__(self, path: Path, good: int, err: int = errno.ENOSPC) -> None:
        self.f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.good, self.err = good, err

    def write(self, text: str) -> int:
        if self.good <= 0:
            raise OSError(self.err, os.strerror(self.err))
        self.good -= 1
        return self.f.write(text)

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def full_disk_after(good: int, err: int = errno.ENOSPC) -> Any:
    return lambda path, mode, **kw: FullDisk(path, good, err)


def meta_of(path: Path) -> dict[str, Any]:
    return json.loads((path / "meta.json").read_text())


def assert_says_logging_stopped(path: Path, reason: str) -> None:
    """Every reader of the session says why logging stopped, and none says it was killed."""
    session = read_session(path)
    assert session.clean is False
    assert session.state == SessionState(closed=False, log_stopped=reason)
    assert session.state.text == f"logging stopped: {reason}"
    note = unclean_session_note(path)
    assert note is not None and f"logging stopped: {reason}" in note and "\n" not in note
    (summary,) = list_sessions(path.parent)
    row = format_sessions_table([summary]).splitlines()[1]
    assert f"logging stopped: {reason}" in row
    figure_texts = " ".join(t.get_text() for t in build_figure(session).texts)
    page = render_html(session, b"")
    for shown in (note, row, figure_texts, page):
        assert "killed" not in shown
    assert f"logging stopped: {reason}" in figure_texts and f"logging stopped: {reason}" in page


def test_running_session_holds_a_private_reserve_and_a_clean_close_frees_it(
    tmp_path: Path,
) -> None:
    logger = SessionLogger(tmp_path, META)
    reserve = logger.path / RESERVE_NAME
    assert reserve.stat().st_size >= 64 * 1024
    assert stat.S_IMODE(reserve.stat().st_mode) == 0o600
    assert meta_of(logger.path)["log_reserve"] == RESERVE_NAME
    logger.write_estimate(make_estimate(0))
    logger.close({"stream_s": 3.0})
    assert not reserve.exists()
    assert read_session(logger.path).state == SessionState(closed=True)
    assert read_session(logger.path).state.text == "closed cleanly"
    assert unclean_session_note(logger.path) is None


@pytest.mark.parametrize(
    ("err", "reason"), [(errno.ENOSPC, FULL), (errno.EIO, "Input/output error")]
)
def test_a_disk_that_fails_mid_run_reads_back_as_logging_stopped(
    tmp_path: Path, err: int, reason: str
) -> None:
    logger = SessionLogger(tmp_path, META, opener=full_disk_after(2, err))
    for i in range(5):
        logger.write_estimate(make_estimate(i))
    meta = meta_of(logger.path)  # recorded at the failure, before the run ends
    assert meta["log_stopped"] == reason and meta["closed"] is False
    assert "log_stopped_time" in meta
    assert not (logger.path / RESERVE_NAME).exists()
    logger.close({"stream_s": 7.0})
    assert meta_of(logger.path)["log_stopped"] == reason
    assert [e.seq for e in read_session(logger.path).estimates] == [0, 1]
    assert_says_logging_stopped(logger.path, reason)


def test_a_disk_too_full_even_for_meta_json_is_inferred_from_the_lost_reserve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = SessionLogger(tmp_path, META, opener=full_disk_after(1))

    def no_room(src: Any, dst: Any) -> None:
        raise OSError(errno.ENOSPC, FULL)

    monkeypatch.setattr(os, "replace", no_room)  # every meta.json rewrite fails too
    logger.write_estimate(make_estimate(0))
    logger.write_estimate(make_estimate(1))
    logger.close({})
    monkeypatch.undo()
    assert "log_stopped" not in meta_of(logger.path)
    assert_says_logging_stopped(logger.path, "reason not recorded")


def test_a_failing_meta_update_alone_also_records_the_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = SessionLogger(tmp_path, META)
    real_replace = os.replace
    calls = {"n": 0}

    def fails_once(src: Any, dst: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.ENOSPC, FULL)
        real_replace(src, dst)  # the reserve's space lets the record of the stop through

    monkeypatch.setattr(os, "replace", fails_once)
    logger.update_meta(audio_segments=[])
    logger.close({})
    monkeypatch.undo()
    assert meta_of(logger.path)["log_stopped"] == FULL
    assert_says_logging_stopped(logger.path, FULL)


def test_a_killed_session_reads_back_as_not_closed_cleanly(tmp_path: Path) -> None:
    logger = SessionLogger(tmp_path, META)
    logger.write_estimate(make_estimate(0))
    # No close(): the process was killed (or is still running); the reserve is still there.
    session = read_session(logger.path)
    assert session.state == SessionState(closed=False)
    text = "not closed cleanly (killed or still running)"
    assert session.state.text == text
    assert unclean_session_note(logger.path) == f"session {logger.path.name} was {text}"
    table = format_sessions_table(list_sessions(tmp_path))
    assert "not closed (killed or still running)" in table and "logging stopped" not in table
    assert text in " ".join(t.get_text() for t in build_figure(session).texts)
    assert text in render_html(session, b"")
    logger.close({})


def test_sessions_from_before_the_reserve_are_not_taken_for_stopped_logs(tmp_path: Path) -> None:
    path = tmp_path / "20261123-221530-aaaaaa"
    path.mkdir()
    (path / "meta.json").write_text(json.dumps({"session_id": path.name, "closed": False}))
    assert session_state(path, meta_of(path)) == SessionState(closed=False)
    assert session_state(path, {"closed": True}).clean is True
    reason = "a very long reason\nover two lines " + "x" * 200
    state = session_state(path, {"closed": False, "log_stopped": reason})
    assert state.log_stopped is not None and "\n" not in state.log_stopped
    assert len(state.log_stopped) <= 80


def test_unclean_note_of_something_that_is_not_a_session_is_one_line_error(
    tmp_path: Path,
) -> None:
    from streamser.session.errors import SessionError

    with pytest.raises(SessionError, match="not a streamser session"):
        unclean_session_note(tmp_path)
