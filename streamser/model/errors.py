"""Errors a user can act on; ``str(e)`` is one line that says what to do."""

from __future__ import annotations

from streamser.errors import StreamserError


class ModelError(StreamserError):
    """The model could not be found, fetched, verified or loaded."""
