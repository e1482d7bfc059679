"""Writes one ``streamser listen`` run to its own private session directory.

Layout of ``<root>/<session id>/`` (directories 0700, files 0600: they hold people's voices and
inferred feelings)::

    meta.json        run description; "closed": false until close() completes
    estimates.jsonl  one Estimate.to_json_dict() per line
    marks.jsonl      {"t_s", "wall_time", "note"} per line
    audio/           recorded segments (see recorder.py), only when recording

Every JSONL line is written with one ``write`` call and flushed at once, so a crash leaves at
most one cut last line, which the reader tolerates and counts. ``meta.json`` is replaced
atomically (temporary file, fsync, ``os.replace``), so it is never half-written.

A full or failing disk must not take the analyser down: the first ``OSError`` stops logging,
sets :attr:`SessionLogger.failed`, calls ``on_failure`` once, and nothing more is written, so
everything already on disk stays valid. Except one thing: the logger then tries once to say so
in meta.json (``"log_stopped": "<reason>"``, atomically, so it cannot damage the old file). To
make that possible on a full disk, a running session holds a small reserve file
(``.log-reserve``, declared in meta.json as ``"log_reserve"``), which is deleted first to give
that last write room; a clean close deletes it too. A session that declares a reserve, is not
closed and has lost its reserve stopped logging even if it could not record why.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import platformdirs

from streamser.constants import WINDOW_S
from streamser.contracts import Estimate
from streamser.session.errors import SessionError

META_NAME = "meta.json"
ESTIMATES_NAME = "estimates.jsonl"
MARKS_NAME = "marks.jsonl"
AUDIO_DIR_NAME = "audio"
DIR_MODE = 0o700
FILE_MODE = 0o600
META_FORMAT_VERSION = 1
"""Bumped when the layout changes incompatibly, so readers can tell old sessions apart."""
RESERVE_NAME = ".log-reserve"
"""Space held while a session runs, freed to record in meta.json why logging stopped."""
RESERVE_BYTES = 64 * 1024


def default_sessions_root() -> Path:
    """Where sessions go unless the user says otherwise: the per-user data directory."""
    return platformdirs.user_data_path("streamser") / "sessions"


def resolve_sessions_root(log_dir: str | None) -> Path:
    """The sessions directory a run with this ``log_dir`` setting writes to."""
    return Path(log_dir).expanduser() if log_dir else default_sessions_root()


def new_session_id(now: datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS-xxxxxx``: sorts by start time and stays unique within one second."""
    when = now if now is not None else datetime.now().astimezone()
    return f"{when:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def now_iso() -> str:
    """The current local wall time, ISO 8601 with its UTC offset."""
    return datetime.now().astimezone().isoformat()


def json_line(record: dict[str, Any]) -> str:
    """One compact JSON line; floats are written with repr, so they read back bit-exactly."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"


def write_meta_atomic(session_dir: Path, meta: dict[str, Any]) -> None:
    """Replace ``meta.json`` so that a reader (or a crash) sees the old or the new file, never
    a mixture: write a private temporary file, fsync it, then rename it over the old one."""
    target = session_dir / META_NAME
    tmp = session_dir / f".{META_NAME}.{secrets.token_hex(4)}.tmp"
    data = json.dumps(meta, ensure_ascii=False, indent=2, default=str) + "\n"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(session_dir)


def _fsync_dir(path: Path) -> None:
    """Make a rename durable; some platforms cannot open directories, which is harmless."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def create_private_file(path: Path) -> None:
    """Create ``path`` as an empty 0600 file before any opener touches it, so the mode does not
    depend on the process umask (the builtin ``open`` would create 0644 files)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    os.close(fd)
    os.chmod(path, FILE_MODE)


class SessionLogger:
    """Owns one session directory for the length of a run; every method is thread-safe.

    ``meta`` is the caller's description of the run (``streamser_version``, ``model``,
    ``compute``, ``audio``, ``config``, ...); the logger adds ``format_version``,
    ``session_id``, ``start_time`` (now, unless given: it should be the wall time at which the
    stream clock read zero) and ``closed``. ``opener`` opens the two JSONL logs (called as
    ``opener(path, "a", encoding="utf-8")``); it exists so tests can inject a failing disk.
    """

    def __init__(
        self,
        root: Path,
        meta: dict[str, Any],
        on_failure: Callable[[str], None] | None = None,
        opener: Callable[..., IO[str]] = open,
    ) -> None:
        self._lock = threading.Lock()
        self._on_failure = on_failure
        self._closed = False
        self.failed: str | None = None
        """Why logging stopped (e.g. "No space left on device"); None while healthy."""
        self.estimates_written = 0
        self.marks_written = 0
        now = datetime.now().astimezone()
        self.path, self.session_id = _make_session_dir(Path(root), now)
        self._meta: dict[str, Any] = {
            "format_version": META_FORMAT_VERSION,
            "start_time": now.isoformat(),
            **meta,
            "session_id": self.session_id,
            "closed": False,
        }
        if _make_reserve(self.path / RESERVE_NAME):
            self._meta["log_reserve"] = RESERVE_NAME
        opened: list[IO[str]] = []
        try:
            write_meta_atomic(self.path, self._meta)
            for name in (ESTIMATES_NAME, MARKS_NAME):
                create_private_file(self.path / name)
                opened.append(opener(self.path / name, "a", encoding="utf-8"))
        except OSError as e:
            for f in opened:
                with contextlib.suppress(OSError):
                    f.close()
            shutil.rmtree(self.path, ignore_errors=True)
            raise SessionError(
                f"cannot start a session in {self.path}: {e.strerror or e}; "
                "free some space or choose another sessions directory"
            ) from e
        self._estimates, self._marks = opened

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of the metadata as last written (or about to be)."""
        with self._lock:
            return dict(self._meta)

    def write_estimate(self, estimate: Estimate) -> None:
        """Append one estimate losslessly; called from the bus's consumer thread."""
        self._append(self._estimates, json_line(estimate.to_json_dict()), is_mark=False)

    def add_mark(self, t_s: float, note: str) -> None:
        """Append a user mark at stream-clock time ``t_s``; called from the UI thread."""
        record = {"t_s": float(t_s), "wall_time": now_iso(), "note": str(note)}
        self._append(self._marks, json_line(record), is_mark=True)

    def update_meta(self, **fields: Any) -> None:
        """Merge ``fields`` into meta.json (e.g. the recorder's segment list) and rewrite it."""
        with self._lock:
            self._meta.update(fields)
            if self._closed or self.failed is not None:
                return
            reason = self._try(lambda: write_meta_atomic(self.path, self._meta))
        self._announce(reason)

    def close(self, counters: dict[str, Any]) -> None:
        """Record the end time and the run's counters and mark the session clean; idempotent.

        After a failure the session stays marked unclean (nothing more is written: meta.json
        says ``log_stopped`` when that could be recorded); closing the logs may still complete
        a line cut by the failure from their buffers, never start one.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            reason = self._try(self._close_files)
            if self.failed is None:
                self._meta.update(
                    end_time=now_iso(),
                    counters=dict(counters),
                    estimates_logged=self.estimates_written,
                    marks_logged=self.marks_written,
                    closed=True,
                )
                reason = self._try(lambda: write_meta_atomic(self.path, self._meta))
                if reason is None:
                    _remove_reserve(self.path)
        self._announce(reason)

    def __enter__(self) -> SessionLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close({})

    def _append(self, f: IO[str], line: str, *, is_mark: bool) -> None:
        with self._lock:
            if self._closed or self.failed is not None:
                return

            def write() -> None:
                f.write(line)
                f.flush()

            reason = self._try(write)
            if reason is None:
                if is_mark:
                    self.marks_written += 1
                else:
                    self.estimates_written += 1
        self._announce(reason)

    def _close_files(self) -> None:
        first_error: OSError | None = None
        for f in (self._estimates, self._marks):
            try:
                f.close()
            except OSError as e:
                first_error = first_error or e
        if first_error is not None:
            raise first_error

    def _try(self, action: Callable[[], None]) -> str | None:
        """Run a write under the lock; the first OSError stops logging and its reason is
        returned to be announced once, outside the lock (so the callback may call back in)."""
        try:
            action()
        except OSError as e:
            if self.failed is not None:
                return None
            self.failed = e.strerror or str(e)
            self._record_stop_locked(self.failed)
            return self.failed
        return None

    def _record_stop_locked(self, reason: str) -> None:
        """Say in meta.json, once and if at all possible, that logging stopped and why: the
        reserve is deleted first so that the atomic rewrite finds room on a full disk."""
        self._meta.update(log_stopped=reason, log_stopped_time=now_iso(), closed=False)
        _remove_reserve(self.path)
        with contextlib.suppress(OSError):
            write_meta_atomic(self.path, self._meta)

    def _announce(self, reason: str | None) -> None:
        if reason is not None and self._on_failure is not None:
            self._on_failure(reason)


def _make_reserve(path: Path) -> bool:
    """Create the reserve file (allocated, not sparse); False when there is no room for it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except OSError:
        return False
    try:
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        except (AttributeError, OSError):  # no fallocate here, or a filesystem without it
            os.ftruncate(fd, 0)
            os.write(fd, bytes(RESERVE_BYTES))
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        return False
    os.close(fd)
    return True


def _remove_reserve(session_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (session_dir / RESERVE_NAME).unlink(missing_ok=True)


def _make_session_dir(root: Path, now: datetime) -> tuple[Path, str]:
    """Create ``root`` (parents too) and a fresh 0700 session directory inside it."""
    try:
        root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        while True:
            session_id = new_session_id(now)
            path = root / session_id
            try:
                path.mkdir(mode=DIR_MODE)
            except FileExistsError:
                continue
            os.chmod(path, DIR_MODE)
            return path, session_id
    except OSError as e:
        raise SessionError(
            f"cannot create a session directory under {root}: {e.strerror or e}; "
            "choose a writable sessions directory"
        ) from e


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


RUNNING_IDLE_S = 30.0
"""A session that is not closed counts as running while its estimates.jsonl or meta.json
changed this recently (or within three hops, for long hops)."""
END_SLACK_S = WINDOW_S
"""How far past its last estimate a session without a final ``stream_s`` may have run."""
TAIL_BYTES = 64 * 1024


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
