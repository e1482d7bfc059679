"""The error types that reach the user as one line (no traceback) from every command."""

from __future__ import annotations

from streamser.config import ConfigError
from streamser.model.errors import ModelError

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, ModelError)
"""Extended as stages add their own user-facing errors (audio sources, sessions)."""
