"""The process's side of the terminal: how to name the program in hints, a stdout that
survives its reader leaving, the dashboard's need of a terminal, and signals that end a run.

It sits at the bottom of the package, so every layer can name a command in a hint.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from streamser.config import ConfigError

NAME = "streamser"


def program() -> str:
    """How to run this same streamser from a shell: ``streamser`` when that name on PATH is
    this program, else the path it was started by (``.venv/bin/streamser``), or
    ``python -m streamser`` when it runs as a module."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    path = Path(argv0)
    if path.name == "__main__.py" and path.parent.name == NAME:
        python = Path(sys.executable).name or "python"
        return (
            f"{python if _same(shutil.which(python), sys.executable) else sys.executable} -m {NAME}"
        )
    if not path.name.startswith(NAME):  # e.g. tests calling the CLI's main in-process
        return NAME
    if _same(shutil.which(NAME), argv0) or not path.exists():
        return NAME
    return argv0


def _same(a: str | None, b: str) -> bool:
    try:
        return a is not None and os.path.samefile(a, b)
    except OSError:
        return False


def hint(command: str) -> str:
    """``command`` (e.g. ``"demo"``) as the user can type it: ``streamser demo``."""
    return f"{program()} {command}".rstrip()


# ----------------------------------------------------------------------------- stdout


class StdoutGone(Exception):
    """Stdout's reader has gone (``... | head -1``): the run should end quietly."""


def write_out(text: str) -> None:
    """Write ``text`` and a newline to stdout and flush; StdoutGone when the reader has left.

    Once the pipe is broken, stdout is pointed at the null device so that the interpreter's
    final flush does not print an error either.
    """
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError as e:
        silence_stdout()
        raise StdoutGone from e


def silence_stdout() -> None:
    """Point stdout's file descriptor at the null device (after its reader has gone)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's StringIO)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class LineSink:
    """A lossless consumer that writes one line per item to stdout and notices when the reader
    leaves: it then drops what follows and sets ``gone``, so the producer can stop."""

    def __init__(
        self, render: Callable[[Any], str], on_gone: Callable[[], Any] | None = None
    ) -> None:
        self.render = render
        self.on_gone = on_gone
        self.gone = threading.Event()
        self.written = 0

    def __call__(self, item: Any) -> None:
        if self.gone.is_set():
            return
        try:
            write_out(self.render(item))
        except StdoutGone:
            self.gone.set()
            if self.on_gone is not None:
                self.on_gone()
            return
        self.written += 1


# ----------------------------------------------------------------------------- terminal


def has_terminal() -> bool:
    """Whether stdout is a terminal a full-screen dashboard can draw on."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def require_terminal(command: str) -> None:
    """Refuse to draw the dashboard into a pipe or a file: say how to get JSON lines instead."""
    if not has_terminal():
        raise ConfigError(
            "the dashboard needs a terminal and stdout is not one: add --headless for JSON "
            f"lines ({hint(command)} --headless ...)"
        )


# ----------------------------------------------------------------------------- signals


@contextmanager
def stop_on_signals(
    stop: threading.Event, on_signal: Callable[[], Any] | None = None
) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP (terminal closed) all end the run cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {s: signal.getsignal(s) for s in sigs}

    def handler(signum: int, frame: object) -> None:
        stop.set()
        if on_signal is not None:
            on_signal()

    for s in sigs:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
