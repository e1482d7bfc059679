"""Errors a user can act on; ``str(e)`` is one line that says what to do."""

from __future__ import annotations


class ModelError(Exception):
    """The model could not be found, fetched, verified or loaded."""
