"""Reads a session directory back, tolerating what a crash can leave behind.

The writer flushes one whole line at a time, so after a crash or a full disk only the last
line of a JSONL file can be cut short; such lines are skipped and counted, never fatal. A
session whose meta.json does not say ``"closed": true`` reads back as not clean, and
:class:`SessionState` says why as far as the directory tells: logging stopped (the logger
recorded ``"log_stopped"`` in meta.json, or lost the reserve it frees to record it), or the
run was killed or is still running.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamser.contracts import Estimate
from streamser.session.errors import SessionError
from streamser.session.files import ESTIMATES_NAME, MARKS_NAME, META_NAME, RESERVE_NAME

SESSION_ID_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]*$")
"""What a session id (or a prefix of one) may look like: no dots, no separators."""


UNRECORDED_REASON = "reason not recorded"
MAX_REASON_CHARS = 80


@dataclass(frozen=True)
class SessionState:
    """How a session's run ended, as far as its directory tells."""

    closed: bool
    """meta.json says ``"closed": true``: the run ended and its log was closed normally."""
    log_stopped: str | None = None
    """Why logging stopped before the run ended (e.g. "No space left on device"), or None."""

    @property
    def clean(self) -> bool:
        return self.closed and self.log_stopped is None

    @property
    def text(self) -> str:
        """One phrase for people: "closed cleanly", "logging stopped: <reason>" or "not
        closed cleanly (killed or still running)"."""
        if self.log_stopped is not None:
            return f"logging stopped: {self.log_stopped}"
        return "closed cleanly" if self.closed else "not closed cleanly (killed or still running)"

    @property
    def label(self) -> str:
        """The same, shorter, for a table column."""
        if self.log_stopped is not None:
            return self.text
        return "closed" if self.closed else "not closed (killed or still running)"


def session_state(path: Path, meta: dict[str, Any]) -> SessionState:
    """Read the state from meta.json (and, for a run that could not record why its logging
    stopped, from the reserve file it deleted trying to)."""
    if meta.get("closed") is True:
        return SessionState(closed=True)
    reason = meta.get("log_stopped")
    if reason is not None and reason != "":
        return SessionState(closed=False, log_stopped=_one_line(str(reason)))
    reserve = meta.get("log_reserve")
    if reserve == RESERVE_NAME and not (Path(path) / RESERVE_NAME).exists():
        return SessionState(closed=False, log_stopped=UNRECORDED_REASON)
    return SessionState(closed=False)


def unclean_session_note(path: Path) -> str | None:
    """One line saying that the session at ``path`` was not closed cleanly, and how (for
    ``analyze SESSION`` and the other commands that read a session), or None when it was;
    SessionError when ``path`` is not a readable session."""
    path = Path(path)
    state = session_state(path, read_meta(path))
    if state.clean:
        return None
    if state.log_stopped is not None:
        return f"session {path.name}: {state.text} (what was logged before that is intact)"
    return f"session {path.name} was {state.text}"


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


@dataclass(frozen=True)
class SessionData:
    """Everything a session directory holds except its audio (see recorder.read_recording)."""

    path: Path
    session_id: str
    meta: dict[str, Any]
    estimates: list[Estimate]
    marks: list[dict[str, Any]]
    clean: bool
    """True when the run closed its log normally (meta.json says ``"closed": true``)."""
    truncated_lines: int
    """Lines of estimates.jsonl and marks.jsonl that could not be parsed and were skipped."""
    log_stopped: str | None = None
    """Why logging stopped before the run ended (see :class:`SessionState`), or None."""

    @property
    def state(self) -> SessionState:
        """How the run ended: closed cleanly, logging stopped, or killed / still running."""
        return SessionState(closed=self.clean, log_stopped=self.log_stopped)


def is_session_dir(path: Path) -> bool:
    """A session directory is any directory holding a meta.json."""
    return path.is_dir() and (path / META_NAME).is_file()


def read_meta(path: Path) -> dict[str, Any]:
    """meta.json of the session at ``path``; SessionError when it is not a session."""
    if not is_session_dir(path):
        raise SessionError(f"not a streamser session (no {META_NAME}): {path}")
    try:
        meta = json.loads((path / META_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SessionError(f"cannot read {path / META_NAME}: {e}") from e
    if not isinstance(meta, dict):
        raise SessionError(f"{path / META_NAME} does not hold a JSON object")
    return meta


def read_session(path: Path) -> SessionData:
    """Load a session's metadata, estimates and marks."""
    path = Path(path)
    meta = read_meta(path)
    counter = _LineCounter()
    estimates = list(_iter_estimates(path, counter))
    marks: list[dict[str, Any]] = []
    for record in _iter_json_lines(path / MARKS_NAME, counter):
        if _is_mark(record):
            marks.append(record)
        else:
            counter.bad += 1
    state = session_state(path, meta)
    return SessionData(
        path=path,
        session_id=str(meta.get("session_id", path.name)),
        meta=meta,
        estimates=estimates,
        marks=sorted(marks, key=lambda m: float(m["t_s"])),
        clean=state.closed,
        truncated_lines=counter.bad,
        log_stopped=state.log_stopped,
    )


def iter_estimates(path: Path) -> Iterator[Estimate]:
    """Stream a session's estimates without holding them all (long sessions, replay)."""
    path = Path(path)
    read_meta(path)
    yield from _iter_estimates(path, _LineCounter())


class _LineCounter:
    """Counts the lines that had to be skipped."""

    def __init__(self) -> None:
        self.bad = 0


def _iter_estimates(path: Path, counter: _LineCounter) -> Iterator[Estimate]:
    for record in _iter_json_lines(path / ESTIMATES_NAME, counter):
        try:
            yield Estimate.from_json_dict(record)
        except (KeyError, TypeError, ValueError):
            counter.bad += 1


def _iter_json_lines(path: Path, counter: _LineCounter) -> Iterator[dict[str, Any]]:
    """JSON objects, one per line; a cut or garbled line is counted and skipped."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    except OSError as e:
        raise SessionError(f"cannot read {path}: {e.strerror or e}") from e
    with f:
        for raw in f:
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except ValueError:
                counter.bad += 1
                continue
            if isinstance(record, dict):
                yield record
            else:
                counter.bad += 1


def _is_mark(record: dict[str, Any]) -> bool:
    try:
        float(record["t_s"])
    except (KeyError, TypeError, ValueError):
        return False
    return True


def resolve_session(arg: str, root: Path) -> Path:
    """Turn what the user typed into a session directory.

    ``"latest"`` is the newest session under ``root`` (ids sort by start time); anything with
    a path separator, or starting with ``.`` or ``~``, is a path; anything else is a session
    id, or a unique prefix of one, looked up only among ``root``'s entries, so an id can never
    reach outside ``root``.
    """
    root = Path(root)
    if arg == "latest":
        ids = session_ids(root)
        if not ids:
            raise SessionError(f"no sessions under {root}")
        return root / ids[-1]
    if "/" in arg or "\\" in arg or arg.startswith((".", "~")):
        path = Path(arg).expanduser()
        if not is_session_dir(path):
            raise SessionError(f"not a streamser session (no {META_NAME}): {path}")
        return path
    if not SESSION_ID_RE.match(arg):
        raise SessionError(f"not a session id: {arg!r}")
    ids = session_ids(root)
    if arg in ids:
        return root / arg
    matches = [i for i in ids if i.startswith(arg)]
    if len(matches) == 1:
        return root / matches[0]
    if matches:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise SessionError(f"{arg!r} matches {len(matches)} sessions ({shown}); type more of it")
    raise SessionError(f"no session {arg!r} under {root}")


def session_ids(root: Path) -> list[str]:
    """Names of the session directories directly under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if not p.is_symlink() and is_session_dir(p))
