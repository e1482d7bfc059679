"""``streamser export``: a session written as an ELAN ``.eaf``, a Praat ``.TextGrid`` or a CSV.

Every check that can fail on the user's side (the format, the output's directory, an existing
file) runs before anything is written, and each file is written whole or not at all, private
to its owner like the session itself (it holds inferred feelings). An existing file is never
replaced without ``force``: an ``.eaf`` or ``.TextGrid`` may carry hours of hand annotation.

ELAN and Praat exports write the session's recording beside the annotation file, under the
same name with ``.wav`` (see export_audio.py), and link it (ELAN) or name it (TextGrid). A WAV
already there that matches the recording is linked as it is; any other is refused like an
existing output.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from streamser.constants import EXPORT_FORMATS
from streamser.session.errors import SessionError
from streamser.session.export import session_tiers
from streamser.session.export_audio import (
    AUDIO_SUFFIX,
    recording_shape,
    wav_matches,
    write_joined_recording,
)
from streamser.session.export_csv import write_csv
from streamser.session.export_elan import media_link, write_eaf
from streamser.session.export_textgrid import textgrid_text
from streamser.session.files import FILE_MODE, atomic_private_file
from streamser.session.reader import SessionData, read_session

ELAN, TEXTGRID, CSV = EXPORT_FORMATS
SUFFIXES: dict[str, str] = {ELAN: ".eaf", TEXTGRID: ".TextGrid", CSV: ".csv"}
"""Each format's usual file name ending (matched without regard to case)."""
WITH_AUDIO = (ELAN, TEXTGRID)


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and what the user should hear about it."""

    output: Path
    audio: Path | None
    """The recording beside the output, or None."""
    audio_kept: bool
    """True when ``audio`` was there already, matching the recording, and was linked as is."""
    session: SessionData


def export_format(out: Path, fmt: str | None) -> str:
    """``fmt`` when given, else the format ``out``'s ending names; a one-line error when
    neither says."""
    if fmt is not None:
        if fmt not in EXPORT_FORMATS:
            raise SessionError(f"unknown export format {fmt!r}: use {', '.join(EXPORT_FORMATS)}")
        return fmt
    for name, suffix in SUFFIXES.items():
        if out.suffix.lower() == suffix.lower():
            return name
    endings = ", ".join(SUFFIXES.values())
    raise SessionError(
        f"-o {out}: name a file ending in {endings}, or say --format {'|'.join(EXPORT_FORMATS)}"
    )


def audio_path(out: Path) -> Path:
    """Where the recording goes beside ``out``: the same name, ending in ``.wav``."""
    return out.with_suffix(AUDIO_SUFFIX)


def export_session(
    session_dir: Path,
    out: Path,
    fmt: str | None = None,
    *,
    audio: bool = True,
    force: bool = False,
) -> ExportResult:
    """Export the session at ``session_dir`` to ``out``; SessionError (one line) for anything
    the user can fix, with nothing written."""
    fmt = export_format(out, fmt)
    session = read_session(session_dir)
    shape = recording_shape(session.path) if audio and fmt in WITH_AUDIO else None
    wav = audio_path(out) if shape is not None else None
    if wav is not None and wav == out:
        raise SessionError(
            f"-o {out}: the recording is written as {wav.name} beside it; "
            f"name the {fmt} file e.g. {out.with_suffix(SUFFIXES[fmt]).name}"
        )
    check_output(out, force)
    kept = False
    if wav is not None and shape is not None:
        kept = not force and wav.is_file() and wav_matches(wav, shape)
        if not kept:
            check_output(wav, force)
    try:
        if wav is not None and not kept:
            with atomic_private_file(wav) as f:
                write_joined_recording(session.path, f)
        tiers = session_tiers(session, shape.seconds if shape is not None else 0.0)
        if fmt == ELAN:
            with atomic_private_file(out) as f:
                write_eaf(tiers, media_link(wav) if wav is not None else None, f)
        elif fmt == TEXTGRID:
            with atomic_private_file(out, "w") as f:
                f.write(textgrid_text(tiers, _audio_note(wav, audio)))
        else:
            with atomic_private_file(out, "w", newline="") as f:
                write_csv(session.estimates, f)
    except OSError as e:
        raise SessionError(
            f"-o {out}: cannot write it ({e.strerror or e}); free some space or choose another -o"
        ) from e
    return ExportResult(output=out, audio=wav, audio_kept=kept, session=session)


def check_output(path: Path, force: bool) -> None:
    """Refuse, in one line, an output that cannot or should not be written: a directory, a
    missing or read-only directory, an existing file without ``force``."""
    if path.is_dir():
        raise SessionError(f"-o {path} is a directory: name a file in it")
    parent = path.parent
    if not parent.exists():
        raise SessionError(
            f"-o {path}: the directory {parent} does not exist: create it, or choose another -o"
        )
    if not parent.is_dir():
        raise SessionError(f"-o {path}: {parent} is not a directory: choose another -o")
    if path.exists() and not force:
        raise SessionError(
            f"{path} exists (it may hold annotations): choose another -o, or add --force to "
            "replace it"
        )
    probe = parent / f".{path.name}.{secrets.token_hex(4)}.probe"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        probe.unlink()
    except OSError as e:
        raise SessionError(
            f"-o {path}: cannot write in {parent} ({e.strerror or e}): "
            "choose a directory you can write to"
        ) from e


def _audio_note(wav: Path | None, audio: bool) -> str:
    if wav is not None:
        return f"audio: {wav.name} beside this file, on the same clock (open both in Praat)"
    if audio:
        return "audio: this session recorded none (streamser listen --record keeps it)"
    return "audio: the session's recording was not exported (--no-audio)"
