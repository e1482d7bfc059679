"""Marks added to a session from another process (``streamser mark``), and where a session
that no longer logs ends."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from streamser.constants import WINDOW_S
from streamser.session.errors import SessionError
from streamser.session.files import (
    ESTIMATES_NAME,
    FILE_MODE,
    MARKS_NAME,
    META_NAME,
    json_line,
    now_iso,
)

RUNNING_IDLE_S = 30.0
"""A session that is not closed counts as running while its estimates.jsonl or meta.json
changed this recently (or within three hops, for long hops)."""
END_SLACK_S = WINDOW_S
"""How far past its last estimate a session without a final ``stream_s`` may have run."""
TAIL_BYTES = 64 * 1024


def append_mark(session_dir: Path, note: str, t_s: float | None = None) -> dict[str, Any]:
    """Add a mark to a session from another process (``streamser mark SESSION "note"``).

    ``t_s`` must be a finite number of seconds from 0 on. A session that no longer logs (closed,
    logging stopped, or not closed and idle for a while: killed) takes marks only up to its
    end: the counters' ``stream_s`` when it was closed with them, else its last estimate's
    ``t_end_s`` plus one window (the audio a killed run captured after its last estimate).
    A running session (not closed, its estimates still growing, or muted) takes any time.

    Without ``t_s`` the stream time is approximated as now minus meta.json's ``start_time``:
    it ignores dropped audio and clock drift, so it can be off by a fraction of a second on a
    live run, and it is refused for a session that no longer logs (give ``t_s`` to annotate
    one). The line is appended with a single ``O_APPEND`` write, so it never interleaves with
    the logger's. Returns the mark as written.
    """
    session_dir = Path(session_dir)
    meta_path = session_dir / META_NAME
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SessionError(f"not a readable streamser session: {session_dir}") from e
    if not isinstance(meta, dict):
        raise SessionError(f"not a readable streamser session: {session_dir}")
    at = None if t_s is None else _valid_mark_time(t_s)
    stopped = _stopped_session_end(session_dir, meta)
    record: dict[str, Any] = {"t_s": at, "wall_time": now_iso(), "note": str(note)}
    if stopped is not None:
        why, end_s = stopped
        if at is None:
            raise SessionError(
                f"session {session_dir.name} {why}; "
                f"give the mark's time in seconds (0 to {end_s:.1f})"
            )
        if at > end_s + 1e-9:
            raise SessionError(
                f"session {session_dir.name} {why}: it ends at {end_s:.1f} s, "
                f"so a mark at {at:g} s would lie beyond it"
            )
    if at is None:
        try:
            start = datetime.fromisoformat(str(meta["start_time"]))
        except (KeyError, ValueError) as e:
            raise SessionError(f"session {session_dir.name} has no valid start_time") from e
        record["t_s"] = max(0.0, (datetime.now().astimezone() - start).total_seconds())
        record["approximate"] = True
    data = json_line(record).encode("utf-8")
    try:
        fd = os.open(session_dir / MARKS_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as e:
        raise SessionError(f"cannot add a mark to {session_dir}: {e.strerror or e}") from e
    return record


def _valid_mark_time(t_s: Any) -> float:
    try:
        at = float(t_s)
    except (TypeError, ValueError) as e:
        raise SessionError(f"a mark's time must be a number of seconds, not {t_s!r}") from e
    if not math.isfinite(at) or at < 0:
        raise SessionError(
            f"a mark's time must be a finite number of seconds from 0 on, not {at:g}"
        )
    return at


def _stopped_session_end(session_dir: Path, meta: dict[str, Any]) -> tuple[str, float] | None:
    """``(why, end_s)`` for a session that no longer logs; None while it runs."""
    if meta.get("closed") is True:
        why = "has ended"
    elif meta.get("log_stopped"):
        why = f"stopped logging ({meta['log_stopped']})"
    elif _looks_running(session_dir, meta):
        return None
    else:
        why = "is not running (not closed cleanly, and nothing logged for a while)"
    return why, _stream_end_s(session_dir, meta)


def _looks_running(session_dir: Path, meta: dict[str, Any]) -> bool:
    mutes = meta.get("mutes")
    if isinstance(mutes, list) and mutes:
        last = mutes[-1]
        if isinstance(last, dict) and last.get("t_end_s") is None:
            return True  # muted: nothing is logged until the user unmutes
    config = meta.get("config")
    windows = config.get("windows") if isinstance(config, dict) else None
    hop_s = _finite(windows.get("hop_s")) if isinstance(windows, dict) else None
    idle_s = max(RUNNING_IDLE_S, 3 * (hop_s or 0.0))
    newest: float | None = None
    for name in (ESTIMATES_NAME, META_NAME):
        try:
            mtime = (session_dir / name).stat().st_mtime
        except OSError:
            continue
        newest = mtime if newest is None else max(newest, mtime)
    return newest is not None and time.time() - newest <= idle_s


def _stream_end_s(session_dir: Path, meta: dict[str, Any]) -> float:
    counters = meta.get("counters")
    stream_s = _finite(counters.get("stream_s")) if isinstance(counters, dict) else None
    last = last_estimate_end_s(session_dir)
    if stream_s is not None:
        return max(stream_s, last or 0.0)
    if last is not None:
        return last + END_SLACK_S
    wall_s = 0.0
    with contextlib.suppress(KeyError, TypeError, ValueError):
        start = datetime.fromisoformat(str(meta["start_time"]))
        end = datetime.fromisoformat(str(meta["end_time"]))
        wall_s = max(0.0, (end - start).total_seconds())
    return wall_s + END_SLACK_S


def last_estimate_end_s(session_dir: Path) -> float | None:
    """The ``t_end_s`` of the last readable estimate, from the end of estimates.jsonl (a cut
    last line is passed over); None without estimates."""
    try:
        with (Path(session_dir) / ESTIMATES_NAME).open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read()
    except OSError:
        return None
    for raw in reversed(tail.splitlines()):
        try:
            record = json.loads(raw.decode("utf-8"))
        except ValueError:
            continue
        end = _finite(record.get("t_end_s")) if isinstance(record, dict) else None
        if end is not None:
            return end
    return None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class MarkFollower:
    """Reads the marks a running session gains, as they are appended to marks.jsonl by the
    dashboard or by ``streamser mark`` from another process (a synchronous stage: call
    :meth:`poll` as often as you like).

    The file is the one place both kinds of mark meet, so following it sees each mark once.
    Only complete lines are read; a line still being written is left for the next poll, and a
    line that is not a mark is passed over.
    """

    def __init__(self, session_dir: Path) -> None:
        self.path = Path(session_dir) / MARKS_NAME
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[tuple[float, str]]:
        """The ``(t_s, note)`` of each mark appended since the last poll, in file order."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return []
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        out: list[tuple[float, str]] = []
        for raw in lines:
            try:
                record = json.loads(raw.decode("utf-8"))
                t_s = _valid_mark_time(record["t_s"])
            except (ValueError, KeyError, TypeError, SessionError):
                continue
            out.append((t_s, str(record.get("note", ""))))
        return out
