"""``streamser export``: a session for ELAN (.eaf), Praat (.TextGrid) or a CSV table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamser.commands.session_cmd import sessions_root
from streamser.console import write_out


def export(args: argparse.Namespace) -> int:
    from streamser.labels import DEMO_WARNING
    from streamser.session.catalog import is_demo_model
    from streamser.session.export_session import export_session
    from streamser.session.reader import resolve_session, unclean_session_note

    path = resolve_session(args.session, sessions_root(args))
    out = Path(args.output).expanduser()
    result = export_session(
        path, out, args.format, audio=args.with_audio is not False, force=bool(args.force)
    )
    session = result.session
    note = unclean_session_note(path)
    if note is not None:
        cut = f", {session.truncated_lines} cut line(s) skipped" if session.truncated_lines else ""
        print(
            f"streamser: {note}; exported the {len(session.estimates)} estimates it logged{cut}",
            file=sys.stderr,
        )
    if is_demo_model(session.meta):
        print(f"streamser: session {session.session_id}: {DEMO_WARNING}", file=sys.stderr)
    if result.audio is None:
        also = ""
    elif result.audio_kept:
        also = f", linking {result.audio} (already there)"
    else:
        also = f" and {result.audio}"
    write_out(f"wrote {out}{also}")
    return 0
