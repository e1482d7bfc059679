"""The error types that reach the user as one line (no traceback) from every command."""

from __future__ import annotations

from streamser.audio.devices import SourceError
from streamser.config import ConfigError
from streamser.model.errors import ModelError
from streamser.session.errors import SessionError

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, ModelError, SessionError, SourceError)
