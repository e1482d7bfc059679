"""``streamser serve``'s settings, and the rule that keeps a server private by default.

A server binds the loopback address unless told otherwise; any other address reaches other
machines, so it needs a token (``--token`` or ``STREAMSER_TOKEN``), and the check happens here,
before anything binds. TLS needs both a certificate and its key.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from streamser.config import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
TOKEN_ENV = "STREAMSER_TOKEN"
MIN_TOKEN_CHARS = 16
"""A shared secret shorter than this is guessable; ``secrets.token_urlsafe(24)`` gives 32."""
TOKEN_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(24))'"


@dataclass(frozen=True)
class ServeConfig:
    """How the server listens, admits and bounds its clients."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    """0 picks a free port (the bound one is printed and available as ``StreamServer.port``)."""
    max_streams: int = 16
    """Most streams analysed at once (a per-channel client counts each channel)."""
    token: str | None = None
    """Shared secret every hello must carry; required to bind a non-loopback address."""
    certfile: str | None = None
    keyfile: str | None = None
    log_dir: str | None = None
    """Keep each stream's estimates as a session here (off by default: voices are personal)."""
    max_batch: int = 8
    """Most windows in one forward pass of the shared model."""
    max_wait_s: float | None = None
    """Wait for a fuller batch; None: a few ms on a GPU, none on a CPU."""
    hello_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    """A connection that sends nothing for this long is closed (``idle_timeout``)."""
    max_message_bytes: int = 1 << 20
    """Largest message a client may send; larger ones get ``too_large`` (1 MiB is 5 s of
    48 kHz stereo float32)."""
    send_queue_messages: int = 256
    """Estimates waiting for a client to read them; when they fill, a live client is too slow
    and is dropped, and a file client's analysis waits for it (up to ``slow_consumer_s``)."""
    slow_consumer_s: float = 10.0
    """How long a client may leave its messages unread (its TCP window shut, or, in file mode,
    its queue full) before it is dropped."""
    max_inflight_windows: int = 16
    """File mode: windows of one connection at the model before it stops reading its socket."""
    status_interval_s: float = 1.0

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    @property
    def scheme(self) -> str:
        return "wss" if self.tls else "ws"

    def validate(self) -> ServeConfig:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port} is out of range: use 0 to 65535 (0: any free)")
        if self.max_streams < 1 or self.max_batch < 1:
            raise ConfigError("--max-streams and --max-batch must be at least 1")
        if (self.certfile is None) != (self.keyfile is None):
            raise ConfigError("TLS needs both --certfile and --keyfile")
        for path in (self.certfile, self.keyfile):
            if path is not None and not os.path.isfile(path):
                raise ConfigError(f"cannot read {path}: give the TLS certificate or key file")
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"the token is shorter than {MIN_TOKEN_CHARS} characters: "
                f"make one with {TOKEN_HINT}"
            )
        if not is_loopback(self.host) and self.token is None:
            raise ConfigError(
                f"--host {self.host} lets other machines connect: give a token with --token or "
                f"{TOKEN_ENV} (make one with {TOKEN_HINT}), or serve on 127.0.0.1"
            )
        return self


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (``localhost``, 127.0.0.0/8,
    ``::1``). Any other name or address, and the wildcard, is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_from(flag: str | None) -> str | None:
    """``--token``, else ``STREAMSER_TOKEN``, else None (an empty variable counts as unset)."""
    return flag or os.environ.get(TOKEN_ENV) or None
