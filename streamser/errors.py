"""The base of every error a user can act on.

Each layer raises its own subclass (``ConfigError``, ``ModelError``, ``SessionError``,
``SourceError``); the command line catches this one class and prints ``str(error)`` as one line
with exit code 2, never a traceback. It sits at the bottom so no layer imports another's errors
to be caught.
"""

from __future__ import annotations


class StreamserError(Exception):
    """A one-line, user-facing message: what is wrong and what to do about it."""
