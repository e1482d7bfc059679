"""The serve extra's libraries, checked before anything needs them.

``streamser serve`` and ``listen --server`` need websockets and prometheus-client, which a plain
``pip install streamser`` does not bring; this module imports neither, so the command line can
say which extra to install in one line instead of failing with an ImportError deep inside.
"""

from __future__ import annotations

import importlib.util

from streamser.errors import StreamserError

SERVE_LIBRARIES = ("websockets", "prometheus_client")


class MissingExtraError(StreamserError):
    """An optional library is not installed; the message names the pip command."""


def require_serve_extra(what: str) -> None:
    """Raise :class:`MissingExtraError` unless the serve extra's libraries are importable."""
    missing = [name for name in SERVE_LIBRARIES if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(
            f"{what} needs {', '.join(missing)}: pip install 'streamser[serve]'"
        )
