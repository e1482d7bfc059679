"""Where the bundled speech clip is: the source checkout's ``assets/`` or the installed copy."""

from __future__ import annotations

import sys
from pathlib import Path

SPEECH_NAME = "speech.wav"


def speech_clip() -> Path | None:
    """The 13.7 s espeak-ng speech clip used by ``streamser demo``, or None when not installed."""
    candidates = [
        Path(__file__).resolve().parent.parent / "assets" / SPEECH_NAME,  # source checkout
        Path(sys.prefix) / "share" / "streamser" / SPEECH_NAME,  # wheel's data files
    ]
    return next((p for p in candidates if p.is_file()), None)
