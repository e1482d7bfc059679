"""A session directory's files: their names and modes, where sessions live, and how a file is
written so that a crash never leaves it half-written or readable to others (see
:mod:`streamser.session.logger` for the layout)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import platformdirs

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
    """Replace ``meta.json`` atomically (see :func:`write_json_atomic`), then fsync the folder
    so the rename itself survives a crash."""
    write_json_atomic(session_dir / META_NAME, meta)
    _fsync_dir(session_dir)


def write_json_atomic(target: Path, record: dict[str, Any]) -> None:
    """Replace ``target`` so that a reader (or a crash) sees the old or the new file, never a
    mixture: write a private (0600) temporary file, fsync it, then rename it over the old one."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    data = json.dumps(record, ensure_ascii=False, indent=2, default=str) + "\n"
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


@contextlib.contextmanager
def atomic_private_file(target: Path, mode: str = "wb", **kw: Any) -> Iterator[IO[Any]]:
    """Write ``target`` whole or not at all, readable only by its owner (0600): the caller
    writes into a private temporary file beside it, which replaces ``target`` when the block
    ends without an error and is removed when it raises. An export interrupted halfway (a full
    disk, Ctrl+C) so never leaves a cut file under the name a user asked for."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    if "b" not in mode:
        kw.setdefault("encoding", "utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, mode, **kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


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
