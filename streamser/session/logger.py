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
import os
import shutil
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from streamser.contracts import Estimate
from streamser.session.errors import SessionError
from streamser.session.files import (
    DIR_MODE,
    ESTIMATES_NAME,
    FILE_MODE,
    MARKS_NAME,
    META_FORMAT_VERSION,
    RESERVE_NAME,
    create_private_file,
    json_line,
    new_session_id,
    now_iso,
    write_meta_atomic,
)

RESERVE_BYTES = 64 * 1024
"""The reserve file's size: room for meta.json saying why logging stopped."""


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
