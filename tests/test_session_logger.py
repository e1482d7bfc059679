"""The session writer: layout, privacy, atomic metadata, marks and surviving a failing disk."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamser.contracts import Estimate
from streamser.session.errors import SessionError
from streamser.session.files import default_sessions_root, new_session_id
from streamser.session.logger import SessionLogger
from streamser.session.marks import append_mark
from streamser.session.reader import read_session

META = {
    "streamser_version": "0.1.0",
    "model": {"name": "amiriparian/ExHuBERT", "revision": "b158d45"},
    "compute": {"device": "cpu", "dtype": "float32"},
    "audio": {"device": "test", "native_rate_hz": 48_000, "model_rate_hz": 16_000},
    "config": {"hop_s": 0.5, "path": Path("/nowhere")},
}


def make_estimate(seq: int, *, speech: bool = True, value: float = 0.25) -> Estimate:
    """A plausible estimate; non-speech windows carry no model outputs."""
    return Estimate(
        seq=seq,
        window=seq + 3,
        t_start_s=seq * 0.5,
        t_end_s=seq * 0.5 + 3.0,
        wall_time="2026-11-23T22:15:30.123456+01:00",
        probs=(0.1, 0.2, 0.3, 0.15, 0.15, 0.1) if speech else None,
        arousal=value if speech else None,
        valence=-value / 3 if speech else None,
        arousal_smooth=value * 0.9 if speech else None,
        valence_smooth=-value / 7 if speech else None,
        speech=0.93 if speech else 0.02,
        is_speech=speech,
        compute_s=0.21,
        latency_s=0.37,
        skipped_windows=seq // 4,
        dropped_samples=seq * 10,
    )


class FailingFile:
    """A text file that fails like a full disk after ``good_lines`` lines, writing half of the
    failing line first (the worst case a real disk can leave)."""

    def __init__(self, path: Path, good_lines: int, err: int = errno.ENOSPC) -> None:
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._good = good_lines
        self._errno = err
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        if self.writes > self._good:
            self._f.write(text[: len(text) // 2])
            self._f.flush()
            raise OSError(self._errno, os.strerror(self._errno))
        return self._f.write(text)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def test_round_trip_is_lossless_and_clean(tmp_path: Path) -> None:
    estimates = [make_estimate(i, speech=i % 3 != 0, value=0.1 + i / 3) for i in range(10)]
    logger = SessionLogger(tmp_path / "sessions", META)
    for e in estimates:
        logger.write_estimate(e)
    logger.add_mark(4.5, "laughed")
    logger.add_mark(1.25, "door slammed")
    logger.close({"dropped_samples": 7, "skipped_windows": 2})

    session = read_session(logger.path)
    assert session.estimates == estimates
    assert session.clean is True
    assert session.truncated_lines == 0
    assert [(m["t_s"], m["note"]) for m in session.marks] == [
        (1.25, "door slammed"),
        (4.5, "laughed"),
    ]
    assert session.session_id == logger.session_id == logger.path.name
    meta = session.meta
    assert meta["closed"] is True
    assert meta["counters"] == {"dropped_samples": 7, "skipped_windows": 2}
    assert meta["model"] == META["model"]
    assert meta["config"]["path"] == "/nowhere"  # non-JSON values are written as text
    assert meta["estimates_logged"] == 10
    start = datetime.fromisoformat(meta["start_time"])
    end = datetime.fromisoformat(meta["end_time"])
    assert start.tzinfo is not None
    assert timedelta(0) <= end - start < timedelta(minutes=1)


@settings(max_examples=40, deadline=None)
@given(
    value=st.floats(allow_nan=False, allow_infinity=False),
    note=st.text(max_size=40),
)
def test_any_float_and_any_note_survive_the_log(value: float, note: str) -> None:
    estimate = make_estimate(1, value=value)
    with tempfile.TemporaryDirectory() as tmp:
        logger = SessionLogger(Path(tmp), META)
        logger.write_estimate(estimate)
        logger.add_mark(value, note)
        logger.close({})
        session = read_session(logger.path)
    assert session.estimates == [estimate]
    assert session.marks[0]["t_s"] == value
    assert session.marks[0]["note"] == note


def test_session_id_names_the_start_time() -> None:
    session_id = new_session_id(datetime(2026, 11, 23, 22, 15, 30, tzinfo=timezone.utc))
    assert re.fullmatch(r"20261123-221530-[0-9a-f]{6}", session_id)
    assert new_session_id() != new_session_id()


def test_default_root_is_per_user_data_dir() -> None:
    root = default_sessions_root()
    assert root.name == "sessions"
    assert "streamser" in root.parts


def test_directory_and_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old_umask = os.umask(0)
    try:
        logger = SessionLogger(tmp_path / "a" / "b", META)
        logger.update_meta(note="x")
        logger.close({})
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(logger.path.stat().st_mode) == 0o700
    names = sorted(p.name for p in logger.path.iterdir())
    assert names == ["estimates.jsonl", "marks.jsonl", "meta.json"]  # no temp files left
    for name in names:
        assert stat.S_IMODE((logger.path / name).stat().st_mode) == 0o600, name


def test_unclosed_session_is_readable_and_unclean(tmp_path: Path) -> None:
    logger = SessionLogger(tmp_path, META)
    logger.write_estimate(make_estimate(0))
    logger.write_estimate(make_estimate(1))
    logger.update_meta(audio_segments=[{"file": "audio/x.wav"}])

    session = read_session(logger.path)  # while still open, as after a crash
    assert session.clean is False
    assert session.meta["closed"] is False
    assert session.meta["audio_segments"] == [{"file": "audio/x.wav"}]
    assert [e.seq for e in session.estimates] == [0, 1]
    logger.close({})


def test_close_is_idempotent_and_later_writes_are_ignored(tmp_path: Path) -> None:
    logger = SessionLogger(tmp_path, META)
    logger.write_estimate(make_estimate(0))
    logger.close({"n": 1})
    first_end = json.loads((logger.path / "meta.json").read_text())["end_time"]
    logger.close({"n": 2})
    logger.write_estimate(make_estimate(1))
    logger.add_mark(1.0, "late")
    meta = json.loads((logger.path / "meta.json").read_text())
    assert meta["counters"] == {"n": 1}
    assert meta["end_time"] == first_end
    assert len(read_session(logger.path).estimates) == 1


def test_root_below_a_regular_file_raises_one_line_session_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(SessionError) as info:
        SessionLogger(blocker / "sessions", META)
    message = str(info.value)
    assert "\n" not in message
    assert str(blocker / "sessions") in message
    assert "writable" in message
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.parametrize(
    ("err", "reason"),
    [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")],
)
def test_write_failure_stops_logging_once_and_keeps_earlier_lines(
    tmp_path: Path, err: int, reason: str
) -> None:
    files: dict[str, FailingFile] = {}

    def opener(path: Path, mode: str, **kwargs: Any) -> FailingFile:
        files[path.name] = FailingFile(path, good_lines=3, err=err)
        return files[path.name]

    reasons: list[str] = []
    logger = SessionLogger(tmp_path, META, on_failure=reasons.append, opener=opener)
    for i in range(6):
        logger.write_estimate(make_estimate(i))  # must not raise
    logger.add_mark(2.0, "after the failure")
    logger.update_meta(extra=1)
    logger.close({"n": 6})

    assert logger.failed == reason
    assert reasons == [reason]
    assert files["estimates.jsonl"].writes == 4  # nothing attempted after the failure
    assert files["marks.jsonl"].writes == 0
    session = read_session(logger.path)
    assert [e.seq for e in session.estimates] == [0, 1, 2]
    assert session.truncated_lines == 1  # the half-written fourth line, and nothing after it
    assert session.clean is False
    assert "extra" not in session.meta


def test_failed_meta_update_leaves_the_previous_meta_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reasons: list[str] = []
    logger = SessionLogger(tmp_path, META, on_failure=reasons.append)
    before = (logger.path / "meta.json").read_text()

    def full_disk(src: Any, dst: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full_disk)
    logger.update_meta(audio_segments=[1, 2, 3])
    monkeypatch.undo()
    logger.close({})

    assert reasons == ["No space left on device"]
    assert (logger.path / "meta.json").read_text() == before
    assert sorted(p.name for p in logger.path.iterdir()) == [
        "estimates.jsonl",
        "marks.jsonl",
        "meta.json",
    ]


def test_failure_while_starting_raises_and_leaves_nothing(tmp_path: Path) -> None:
    def opener(path: Path, mode: str, **kwargs: Any) -> Any:
        if path.name == "marks.jsonl":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return open(path, mode, **kwargs)

    with pytest.raises(SessionError, match="Read-only file system"):
        SessionLogger(tmp_path, META, opener=opener)
    assert list(tmp_path.iterdir()) == []


def test_dev_full_disk_stops_logging(tmp_path: Path) -> None:
    def opener(path: Path, mode: str, **kwargs: Any) -> Any:
        target = "/dev/full" if path.name == "estimates.jsonl" else path
        return open(target, mode, **kwargs)

    reasons: list[str] = []
    logger = SessionLogger(tmp_path, META, on_failure=reasons.append, opener=opener)
    logger.add_mark(0.5, "before")
    logger.write_estimate(make_estimate(0))
    logger.write_estimate(make_estimate(1))
    logger.add_mark(1.5, "after")
    logger.close({})

    assert reasons == ["No space left on device"]
    assert logger.failed == "No space left on device"
    session = read_session(logger.path)
    assert [m["note"] for m in session.marks] == ["before"]
    assert session.clean is False


def test_failure_callback_may_call_back_into_the_logger(tmp_path: Path) -> None:
    logger: SessionLogger | None = None
    seen: list[str | None] = []

    def on_failure(reason: str) -> None:
        assert logger is not None
        logger.add_mark(0.0, "ignored")  # would deadlock if called under the lock
        seen.append(logger.failed)

    def opener(path: Path, mode: str, **kwargs: Any) -> FailingFile:
        return FailingFile(path, good_lines=0)

    logger = SessionLogger(tmp_path, META, on_failure=on_failure, opener=opener)
    logger.write_estimate(make_estimate(0))
    logger.close({})
    assert seen == ["No space left on device"]


def test_concurrent_marks_and_estimates_stay_whole_lines(tmp_path: Path) -> None:
    logger = SessionLogger(tmp_path, META)
    start = threading.Barrier(3)

    def estimates() -> None:
        start.wait()
        for i in range(300):
            logger.write_estimate(make_estimate(i))

    def marks(tag: str) -> None:
        start.wait()
        for i in range(150):
            logger.add_mark(i * 0.1, f"{tag}{i}")

    threads = [
        threading.Thread(target=estimates, name="est", daemon=True),
        threading.Thread(target=marks, args=("a",), name="marks-a", daemon=True),
        threading.Thread(target=marks, args=("b",), name="marks-b", daemon=True),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    logger.close({})
    session = read_session(logger.path)
    assert [e.seq for e in session.estimates] == list(range(300))
    assert len(session.marks) == 300
    assert session.truncated_lines == 0


def test_append_mark_from_another_terminal(tmp_path: Path) -> None:
    logger = SessionLogger(tmp_path, META)
    started = datetime.now().astimezone() - timedelta(seconds=100)
    logger.update_meta(start_time=started.isoformat())
    logger.add_mark(3.0, "from the UI")

    derived = append_mark(logger.path, "from the shell")
    explicit = append_mark(logger.path, "exact", t_s=42.5)

    assert 100.0 <= derived["t_s"] < 160.0
    assert derived["approximate"] is True
    assert explicit["t_s"] == 42.5
    logger.close({})
    notes = [(m["note"], m["t_s"]) for m in read_session(logger.path).marks]
    assert notes == [("from the UI", 3.0), ("exact", 42.5), ("from the shell", derived["t_s"])]
    assert stat.S_IMODE((logger.path / "marks.jsonl").stat().st_mode) == 0o600


def test_append_mark_refuses_guessing_the_time_of_a_closed_session(tmp_path: Path) -> None:
    logger = SessionLogger(tmp_path, META)
    logger.close({})
    with pytest.raises(SessionError, match="has ended"):
        append_mark(logger.path, "too late")
    assert append_mark(logger.path, "annotated later", t_s=1.0)["t_s"] == 1.0
    with pytest.raises(SessionError, match="not a readable streamser session"):
        append_mark(tmp_path, "nowhere")
