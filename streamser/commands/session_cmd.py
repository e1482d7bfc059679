"""``streamser sessions``, ``replay``, ``mark`` and ``report``: what runs left on disk."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from streamser.config import ConfigError, LogConfig
from streamser.console import hint, require_terminal, write_out
from streamser.contracts import Estimate
from streamser.session.errors import SessionError
from streamser.settings import build_config


def sessions_root(args: argparse.Namespace) -> Path:
    """``--log-dir``, else the config file's ``log_dir``, else the user data directory."""
    from streamser.session.files import resolve_sessions_root

    return resolve_sessions_root(build_config(LogConfig, vars(args)).log_dir)


def sessions(args: argparse.Namespace) -> int:
    from streamser.session.catalog import delete_sessions, format_sessions_table, list_sessions

    root = sessions_root(args)
    if args.action == "delete":
        if not args.ids:
            raise SessionError(f"name the sessions to delete: {hint('sessions delete')} ID...")
        for path in delete_sessions(root, list(args.ids)):
            write_out(f"deleted {path}")
        return 0
    found = list_sessions(root) if root.is_dir() else []
    if not found:
        write_out(f"no sessions under {root}")
        return 0
    write_out(format_sessions_table(found))
    write_out(f"\n{len(found)} session(s) under {root}")
    return 0


def replay_speed(args: argparse.Namespace) -> float:
    """``--speed``, by default 1 in the dashboard and 0 (as fast as possible) headless."""
    speed = args.speed
    if speed is None:
        return 0.0 if args.headless else 1.0
    if math.isnan(speed) or speed < 0:
        raise ConfigError(f"--speed {speed} is out of range: use 0 (as fast as possible) or more")
    return speed


def replay(args: argparse.Namespace) -> int:
    """Re-emit a session's estimates at their recorded pace (or faster), headless or on screen."""
    from streamser.outputs.live import live_output_config, replay_outputs
    from streamser.session.reader import read_session, resolve_session
    from streamser.session.replay import replay_paced

    speed = replay_speed(args)
    outputs = live_output_config(args)
    if not args.headless:
        require_terminal("replay")
    session = read_session(resolve_session(args.session, sessions_root(args)))
    if not session.clean:
        print(
            f"streamser: session {session.session_id}: {session.state.text}; "
            f"replaying the {len(session.estimates)} estimates it logged",
            file=sys.stderr,
        )
    with replay_outputs(outputs, session, speed) as feed:  # sends nowhere without --lsl, --osc
        if args.headless:
            from streamser.outputs.headless import estimate_line

            def emit(est: Estimate) -> None:
                write_out(estimate_line(est))
                feed(est)

            replay_paced(session, speed, emit)
            return 0
        from streamser.session.replay import ReplayController
        from streamser.tui.app import make_app

        controller = ReplayController(session, speed=speed)
        controller.subscribe(feed)
        make_app(controller, title="streamser replay").run()
    return 0


def mark(args: argparse.Namespace) -> int:
    from streamser.session.marks import append_mark
    from streamser.session.reader import resolve_session

    if args.at is not None and not (math.isfinite(args.at) and args.at >= 0):
        raise ConfigError(f"--at {args.at} is out of range: use a stream time of 0 s or more")
    path = resolve_session(args.session, sessions_root(args))
    record = append_mark(path, args.note, args.at)
    write_out(f"marked {path.name} at {record['t_s']:.1f} s: {record['note']}")
    return 0


def report(args: argparse.Namespace) -> int:
    from streamser.session.reader import read_session, resolve_session
    from streamser.session.report import write_report

    session = read_session(resolve_session(args.session, sessions_root(args)))
    out = Path(args.output).expanduser()
    write_report(session, out)
    note = "" if session.clean else f" (session {session.state.text})"
    write_out(f"wrote {out}{note}")
    return 0
