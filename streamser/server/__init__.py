"""``streamser serve``: one model for many remote streams over WebSocket (see docs/protocol.md),
and the client side that ``listen --server`` uses."""
