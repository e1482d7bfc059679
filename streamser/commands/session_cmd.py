"""``streamser sessions``, ``replay``, ``mark`` and ``report``: what runs left on disk."""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
from pathlib import Path

from streamser.config import read_config_file
from streamser.session.errors import SessionError


def sessions_root(args: argparse.Namespace) -> Path:
    """``--log-dir``, else the config file's ``log_dir``, else the user data directory."""
    if getattr(args, "log_dir", None):
        return Path(args.log_dir).expanduser()
    configured = read_config_file().get("log_dir")
    if configured:
        return Path(configured).expanduser()
    from streamser.session.logger import default_sessions_root

    return default_sessions_root()


def sessions(args: argparse.Namespace) -> int:
    from streamser.session.catalog import (
        delete_sessions,
        format_sessions_table,
        list_sessions,
    )

    root = sessions_root(args)
    if args.action == "delete":
        if not args.ids:
            raise SessionError("name the sessions to delete: streamser sessions delete ID...")
        for path in delete_sessions(root, list(args.ids)):
            print(f"deleted {path}")
        return 0
    found = list_sessions(root) if root.is_dir() else []
    if not found:
        print(f"no sessions under {root}")
        return 0
    print(format_sessions_table(found))
    print(f"\n{len(found)} session(s) under {root}")
    return 0


def replay(args: argparse.Namespace) -> int:
    """Re-emit a session's estimates at their recorded pace (or faster), headless or on screen."""
    from streamser.session.reader import read_session, resolve_session

    session = read_session(resolve_session(args.session, sessions_root(args)))
    if not session.clean:
        print(
            f"streamser: session {session.session_id} was not closed cleanly "
            f"(the run was killed); replaying the {len(session.estimates)} estimates it logged",
            file=sys.stderr,
        )
    if not args.headless:
        from streamser.session.replay import ReplayController
        from streamser.tui.app import make_app

        make_app(ReplayController(session, speed=args.speed), title="streamser replay").run()
        return 0
    stop = threading.Event()
    from streamser.commands.listen import stop_on_signals

    speed = args.speed
    with stop_on_signals(stop):
        previous: float | None = None
        for est in session.estimates:
            paced = speed > 0 and math.isfinite(speed)
            if (
                previous is not None
                and paced
                and stop.wait(max(0.0, (est.t_end_s - previous) / speed))
            ):
                break
            if stop.is_set():
                break
            previous = est.t_end_s
            sys.stdout.write(json.dumps(est.to_json_dict(), separators=(",", ":")) + "\n")
            sys.stdout.flush()
    return 0


def mark(args: argparse.Namespace) -> int:
    from streamser.session.logger import append_mark
    from streamser.session.reader import resolve_session

    path = resolve_session(args.session, sessions_root(args))
    record = append_mark(path, args.note, args.at)
    print(f"marked {path.name} at {record['t_s']:.1f} s: {record['note']}")
    return 0


def report(args: argparse.Namespace) -> int:
    from streamser.session.reader import read_session, resolve_session
    from streamser.session.report import write_report

    session = read_session(resolve_session(args.session, sessions_root(args)))
    out = Path(args.output)
    write_report(session, out)
    note = "" if session.clean else " (session was not closed cleanly)"
    print(f"wrote {out}{note}")
    return 0
