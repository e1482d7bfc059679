"""The one exception the session layer raises to its users.

It lives in its own module so that the writer, the reader, the catalog and the report can all
raise it without importing one another.
"""

from __future__ import annotations

from streamser.errors import StreamserError


class SessionError(StreamserError):
    """A one-line, user-facing message about a session on disk: what is wrong and what to do.

    The CLI prints ``str(error)`` as is, so messages name the path or id concerned and never
    span several lines; the underlying ``OSError`` or ``ValueError`` is chained as the cause.
    """
