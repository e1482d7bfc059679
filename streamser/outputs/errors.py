"""The one exception the live outputs raise to their users.

It lives in its own module so that the LSL and OSC outputs and their wiring can raise it without
importing one another.
"""

from __future__ import annotations

from streamser.errors import StreamserError


class OutputError(StreamserError):
    """A live output cannot start: its library is missing or cannot load, or its target is
    wrong. One line that says what to install or type instead."""
