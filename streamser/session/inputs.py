"""The inputs of an offline analysis: audio files and recorded sessions, each found once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from streamser.errors import StreamserError
from streamser.session.files import AUDIO_DIR_NAME

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au"}


def discover(inputs: Iterable[str]) -> list[Path]:
    """Audio files named or found (recursively) under directories; session dirs are taken whole.

    Each file is listed once, at its first mention, however it is spelt (named twice, through a
    link, or named and also found under a directory): paths are compared resolved. A session
    directory found under a directory is taken whole when it holds a recording, never its
    segment files one by one. A named path that does not exist is a typing mistake: it fails
    here, before the model loads.
    """
    from streamser.audio.devices import SourceError
    from streamser.session.reader import is_session_dir

    found: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item).expanduser()
        if not p.exists():
            raise SourceError(f"audio file not found: {p}")
        for f in _walk(p) if p.is_dir() and not is_session_dir(p) else [p]:
            key = resolved(f)
            if key not in seen:
                seen.add(key)
                found.append(f)
    return found


def _walk(directory: Path) -> Iterator[Path]:
    """Audio files and recorded sessions under ``directory``, in sorted path order; links to
    directories are not followed (they could loop)."""
    from streamser.session.reader import is_session_dir

    try:
        children = sorted(directory.iterdir())
    except OSError:
        return
    for child in children:
        if child.is_dir():
            if is_session_dir(child):
                if _has_recording(child):
                    yield child
            elif not child.is_symlink():
                yield from _walk(child)
        elif child.is_file() and child.suffix.lower() in AUDIO_SUFFIXES:
            yield child


def _has_recording(session_dir: Path) -> bool:
    from streamser.session.recorder import SEGMENT_NAME_RE

    audio = session_dir / AUDIO_DIR_NAME
    try:
        return audio.is_dir() and any(SEGMENT_NAME_RE.match(p.name) for p in audio.iterdir())
    except OSError:
        return False


def resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop: the spelling is all there is
        return path.absolute()


def readable(path: Path, skip: Callable[[Path, Exception], None]) -> float | None:
    """The duration in seconds of ``path`` when it opens as audio (or a session with a
    recording), its header read, nothing decoded; else None, and ``skip`` it."""
    from streamser.session.recording import open_native_audio

    try:
        audio = open_native_audio(path)
    except StreamserError as e:
        skip(path, e)
        return None
    return audio.frames / audio.sample_rate_hz


def done_names(summaries: list[dict[str, Any]]) -> dict[str, str]:
    """The files earlier runs finished, by their name in the rows and by their resolved path
    (so another spelling of the same file is done too) -> their name in the rows."""
    done: dict[str, str] = {}
    for row in summaries:
        name = str(row["file"])
        done.setdefault(str(resolved(Path(name))), name)
        done[name] = name
    return done
