"""A static picture of one session: ``streamser report SESSION out.png|out.html``.

The figure puts arousal and valence over time on the left (raw per-window values as dots on a
thin line, the smoothed track bold, non-speech stretches shaded, muted stretches hatched, the
recorded audio as a strip along the bottom, the user's marks as labelled lines) and the speech
windows on the valence-arousal plane on the right (each window as a dot when there are few,
their density with a count scale when there are many). The header says how the run was set up
(model, hop, smoothing, voice-activity threshold, input, compute) and how it ended. The HTML
variant is one self-contained file: the same PNG embedded as base64 plus summary tables in
plain words and numbers, so it can be mailed or archived without its surroundings.

matplotlib is imported inside the functions: the live analyser never pays for it, and the
object-oriented API (``Figure`` + Agg canvas, no pyplot) keeps no global state.
"""

from __future__ import annotations

import os
from pathlib import Path

from streamser.session.errors import SessionError
from streamser.session.files import FILE_MODE
from streamser.session.reader import SessionData
from streamser.session.report_figure import render_png
from streamser.session.report_html import render_html

SUPPORTED_SUFFIXES = (".png", ".html")


def write_report(session: SessionData, out: Path) -> None:
    """Write the report as ``out``'s suffix says (.png or .html), private (0600) like the
    session it describes."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SessionError(
            f"cannot write a {out.suffix or 'suffix-less'} report; "
            f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    png = render_png(session)
    data = png if suffix == ".png" else render_html(session, png).encode("utf-8")
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as e:
        raise SessionError(f"cannot write report {out}: {e.strerror or e}") from e
