"""The sessions under a root: list them, summarise them, delete them.

Deletion is irreversible and the data is personal, so it accepts only exact session ids found
directly under the root (no prefixes, no paths, no symlinks) and checks every id before it
deletes anything.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from streamser.contracts import Estimate
from streamser.session.errors import SessionError
from streamser.session.reader import (
    SESSION_ID_RE,
    SessionState,
    iter_estimates,
    read_meta,
    session_ids,
    session_state,
)

DEMO_MARKER = "DEMO (random weights)"
"""What the sessions table says for a session of the random-weight demo model."""
MAX_MODEL_CHARS = 36


@dataclass(frozen=True)
class AffectStats:
    """Aggregate of a stream of estimates; means are over speech windows the model ran on."""

    n_estimates: int
    n_speech: int
    mean_arousal: float | None
    mean_valence: float | None
    last_t_end_s: float | None


def affect_stats(estimates: Iterable[Estimate]) -> AffectStats:
    """One pass over ``estimates``, so it works on an iterator over a long session."""
    n = n_speech = 0
    sum_a = sum_v = 0.0
    last: float | None = None
    for e in estimates:
        n += 1
        last = e.t_end_s if last is None else max(last, e.t_end_s)
        a, v = e.arousal, e.valence
        if e.is_speech and a is not None and v is not None and math.isfinite(a + v):
            n_speech += 1
            sum_a += a
            sum_v += v
    return AffectStats(
        n_estimates=n,
        n_speech=n_speech,
        mean_arousal=sum_a / n_speech if n_speech else None,
        mean_valence=sum_v / n_speech if n_speech else None,
        last_t_end_s=last,
    )


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time from meta.json, or None when absent or malformed."""
    try:
        return datetime.fromisoformat(str(value)) if value is not None else None
    except ValueError:
        return None


def session_duration_s(meta: dict[str, Any], last_t_end_s: float | None) -> float:
    """Length of the analysed audio: the stream-clock end of the last estimate (right for fast
    file replay too); without estimates, the wall time between start and end, else 0."""
    if last_t_end_s is not None:
        return float(last_t_end_s)
    start, end = parse_time(meta.get("start_time")), parse_time(meta.get("end_time"))
    if start is not None and end is not None:
        try:
            return max(0.0, (end - start).total_seconds())
        except TypeError:  # one aware, one naive
            return 0.0
    return 0.0


def is_demo_model(meta: dict[str, Any]) -> bool:
    """True when meta.json's ``model`` says the random-weight demo model produced the log
    (``{"demo": true}``, ``kind``/``source`` "demo", or a model string mentioning demo)."""
    model = meta.get("model")
    if isinstance(model, dict):
        kinds = {str(model.get(k, "")).lower() for k in ("kind", "source")}
        return model.get("demo") is True or "demo" in kinds
    return isinstance(model, str) and "demo" in model.lower()


def model_label(meta: dict[str, Any]) -> str:
    """A short name for the model that produced the session: ``name@revision``."""
    model = meta.get("model")
    if isinstance(model, dict):
        name = next((model[k] for k in ("name", "id", "repo_id", "path") if model.get(k)), None)
        revision = model.get("revision")
        label = str(name) if name is not None else "unknown model"
        return f"{label}@{str(revision)[:7]}" if revision else label
    return str(model) if model else "unknown model"


def model_column(meta: dict[str, Any]) -> str:
    """The sessions table's MODEL cell: the model's label, shortened from the left (a local
    path's end says most); a demo session says so first, so it never passes for a real one."""
    label = model_label(meta)
    if is_demo_model(meta):
        return (
            DEMO_MARKER if label.lower() in ("demo", "unknown model") else f"{DEMO_MARKER} {label}"
        )
    if len(label) > MAX_MODEL_CHARS:
        label = "…" + label[-(MAX_MODEL_CHARS - 1) :]
    return label


@dataclass(frozen=True)
class SessionSummary:
    """One row of ``streamser sessions``."""

    session_id: str
    path: Path
    start: datetime | None
    duration_s: float
    n_estimates: int
    mean_arousal: float | None
    mean_valence: float | None
    clean: bool
    size_bytes: int
    model: str = "?"
    """The MODEL cell (see :func:`model_column`); "?" when meta.json is unreadable."""
    demo: bool = False
    state: SessionState | None = None
    """How the run ended; None when meta.json is unreadable."""


def summarize_session(path: Path) -> SessionSummary:
    """Summarise one session; a damaged meta.json gives an unclean row rather than an error,
    so the session can still be seen and deleted."""
    state: SessionState | None
    try:
        meta = read_meta(path)
        stats = affect_stats(iter_estimates(path))
        state = session_state(path, meta)
    except SessionError:
        meta, stats, state = {}, affect_stats([]), None
    return SessionSummary(
        session_id=path.name,
        path=path,
        start=parse_time(meta.get("start_time")),
        duration_s=session_duration_s(meta, stats.last_t_end_s),
        n_estimates=stats.n_estimates,
        mean_arousal=stats.mean_arousal,
        mean_valence=stats.mean_valence,
        clean=meta.get("closed") is True,
        size_bytes=_tree_size(path),
        model=model_column(meta) if meta else "?",
        demo=is_demo_model(meta),
        state=state,
    )


def list_sessions(root: Path) -> list[SessionSummary]:
    """Every session directly under ``root``, oldest first; empty when root does not exist."""
    return [summarize_session(Path(root) / i) for i in session_ids(Path(root))]


def format_sessions_table(summaries: Sequence[SessionSummary]) -> str:
    """A plain-text table for the terminal (the CLI prints it)."""
    if not summaries:
        return "No sessions."
    header = (
        "ID", "START", "DURATION", "ESTIMATES", "AROUSAL", "VALENCE", "SIZE", "MODEL", "STATE"
    )  # fmt: skip
    rows = [
        (
            s.session_id,
            f"{s.start:%Y-%m-%d %H:%M:%S}" if s.start is not None else "?",
            format_duration(s.duration_s),
            str(s.n_estimates),
            _fmt_mean(s.mean_arousal, signed=False),
            _fmt_mean(s.mean_valence, signed=True),
            format_size(s.size_bytes),
            s.model,
            s.state.label if s.state is not None else "unreadable meta.json",
        )
        for s in summaries
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    right = {2, 3, 4, 5, 6}
    lines = [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in (header, *rows)
    ]
    return "\n".join(lines)


def format_duration(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    total = round(seconds)
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_size(size_bytes: int) -> str:
    """Bytes in the largest unit that keeps the number below 1024."""
    size = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _fmt_mean(value: float | None, *, signed: bool) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _tree_size(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:
            continue  # vanished while we looked (a live session rotating meta.json)
    return total


def delete_sessions(root: Path, ids: list[str]) -> list[Path]:
    """Delete the sessions with these exact ids under ``root``; returns the deleted paths.

    Every id is checked first, so an unknown one deletes nothing and raises SessionError
    naming it.
    """
    root = Path(root)
    known = set(session_ids(root))
    real_root = root.resolve()
    targets: list[Path] = []
    for session_id in dict.fromkeys(ids):
        if not SESSION_ID_RE.match(session_id) or session_id not in known:
            raise SessionError(f"no session {session_id!r} under {root}; nothing was deleted")
        path = root / session_id
        if path.is_symlink() or path.resolve().parent != real_root:
            raise SessionError(f"refusing to delete {path}: it is not inside {root}")
        targets.append(path)
    for path in targets:
        try:
            shutil.rmtree(path)
        except OSError as e:
            raise SessionError(f"cannot delete {path}: {e.strerror or e}") from e
    return targets
