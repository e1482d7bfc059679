"""One input of an archive analysis, ahead of the model and after it.

:func:`prepare_file` is what a worker process (or a Ray task) does with one file or session:
decode it once, cut each stream into windows (``engine.offline.prepare_audio``), leave out a
session's windows that hold no recorded audio and mark those that hold only some. A file that
cannot be read, or that breaks mid-way (a corrupt frame), comes back as a :class:`FileFailure`
with a one-line reason: one bad file never ends the run. :func:`file_rows` turns the
estimates the model gave back into the rows ``analyze`` writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamser.config import StreamConfig, WindowConfig
from streamser.contracts import Estimate
from streamser.engine.offline import PreparedStream, prepare_audio
from streamser.errors import StreamserError
from streamser.session.results import summary_row


class FileError(StreamserError):
    """One input could not be analysed (it is reported and skipped, the run goes on)."""


@dataclass(frozen=True, eq=False)
class FileInfo:
    """What the rows of one prepared file need besides its estimates."""

    path: str
    duration_s: float
    stream_names: tuple[str, ...]
    note: str | None
    """Said before its rows: a session that was not closed cleanly."""
    partly: tuple[tuple[bool, ...], ...]
    """Per stream, per window: whether the window holds only some recorded audio."""
    left_out: tuple[int, ...]
    """Per stream: windows left out because they hold no recorded audio."""


@dataclass(frozen=True, eq=False)
class PreparedFile:
    info: FileInfo
    streams: list[PreparedStream]


@dataclass(frozen=True)
class FileFailure:
    path: str
    reason: str


def prepare_file(
    path: str, windows: WindowConfig, streams: StreamConfig
) -> PreparedFile | FileFailure:
    """Decode ``path`` once and prepare every stream's windows (see the module doc)."""
    from streamser.audio.devices import one_line
    from streamser.session.reader import is_session_dir, unclean_session_note
    from streamser.session.recording import (
        PARTLY,
        UNRECORDED,
        open_native_audio,
        window_coverage,
    )
    from streamser.session.streams import streams_to_analyse

    p = Path(path)
    try:
        audio = open_native_audio(p)
        note = unclean_session_note(p) if is_session_dir(p) else None
        specs = streams_to_analyse(p, streams, audio.channels)
        keep = None
        if audio.recorded is not None:
            keep = lambda w: window_coverage(audio, w.t_start_s, w.t_end_s) != UNRECORDED  # noqa: E731
        prepared = prepare_audio(windows, audio, specs, keep=keep)
    except StreamserError as e:
        return FileFailure(path, str(e))
    except Exception as e:  # the decoder failed mid-way: a corrupt file, skipped
        return FileFailure(path, f"cannot decode {path}: {one_line(e)}")
    partly = tuple(
        tuple(
            window_coverage(audio, s.t_start_s(i), s.t_end_s(i)) == PARTLY for i in range(s.windows)
        )
        for s in prepared
    )
    info = FileInfo(
        path=path,
        duration_s=audio.frames / audio.sample_rate_hz,
        stream_names=tuple(s.name for s in specs),
        note=note,
        partly=partly,
        left_out=tuple(s.left_out for s in prepared),
    )
    return PreparedFile(info, prepared)


def failure_error(failure: FileFailure) -> FileError:
    return FileError(failure.reason)


def file_rows(
    info: FileInfo, estimates: Sequence[Sequence[Estimate]], hop_s: float
) -> list[dict[str, Any]]:
    """The window rows of every stream, then one summary row per stream."""
    rows: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    for k, stream in enumerate(estimates):
        mine = []
        for i, est in enumerate(stream):
            row = {"type": "window", "file": info.path, **est.to_json_dict()}
            if info.partly[k][i]:
                row["partly_recorded"] = True
            mine.append(row)
        rows += mine
        summaries.append(
            summary_row(
                info.path,
                mine,
                info.duration_s,
                hop_s,
                stream=info.stream_names[k],
                unrecorded=info.left_out[k],
            )
        )
    return rows + summaries
