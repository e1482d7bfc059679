"""The client side of the stream protocol, for ``listen --server``: one connection to a
``streamser serve``, opened with a hello built from the run's own settings, and the server's
model as the run sees it.

The connection is a websockets threaded client: one thread sends (the worker), another reads
(the receiver), which the library allows. Every way the server can refuse a stream (busy,
bad token, an unsupported setting) ends as one :class:`RemoteError` line that quotes the
server's own message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from streamser.audio.sources import mix_to_mono
from streamser.config import WindowConfig
from streamser.contracts import ComputeInfo, ModelInfo, StreamSpec
from streamser.errors import StreamserError
from streamser.server.protocol import PROTOCOL_VERSION, STREAM_PATH, dumps, encode_frames

OPEN_TIMEOUT_S = 10.0
SEND_SECONDS = 0.1
"""Audio per binary message: small beside the server's message limit at any rate."""


class RemoteError(StreamserError):
    """The server cannot be reached, or refused the stream; the message says which and why."""


def stream_url(url: str) -> str:
    """``ws://host:port`` (or with the stream path, or ``wss://``) as the stream's URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise RemoteError(
            f"--server {url}: give the server's address as ws://HOST:PORT (wss:// with TLS)"
        )
    return urlunsplit((parts.scheme, parts.netloc, parts.path or STREAM_PATH, "", ""))


def public_url(url: str) -> str:
    """The URL without any user name or password in it, as meta.json records it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def hello_for(
    windows: WindowConfig,
    streams: Sequence[StreamSpec],
    sample_rate_hz: int,
    lossless: bool,
    token: str | None,
) -> dict[str, Any]:
    """The hello for a run's streams: the mono mix (one channel is sent), or the chosen
    channels, one stream each (only those channels are sent, in the run's order)."""
    per_channel = streams[0].channel is not None
    hello: dict[str, Any] = {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "sample_rate_hz": sample_rate_hz,
        "channels": len(streams) if per_channel else 1,
        "format": "float32",
        "hop_s": windows.hop_s,
        "first_s": windows.first_s,
        "smooth_s": windows.smooth_s,
        "vad": windows.vad,
        "vad_threshold": windows.vad_threshold,
        "skip_non_speech": windows.skip_non_speech,
        "mode": "file" if lossless else "live",
    }
    if per_channel:
        hello |= {"per_channel": True, "stream_names": [s.name for s in streams]}
    if token is not None:
        hello["token"] = token
    return hello


class RemoteLink:
    """One open stream connection: after :meth:`open`, ``ready`` holds the server's answer."""

    def __init__(self, url: str, hello: dict[str, Any], streams: Sequence[StreamSpec]) -> None:
        self.url = stream_url(url)
        self.hello = hello
        chosen = [s.channel for s in streams if s.channel is not None]
        self.channels = chosen if chosen else None
        """The input channels sent (per-channel), or None: their mix is sent."""
        self.chunk_frames = max(1, round(SEND_SECONDS * int(hello["sample_rate_hz"])))
        self.ready: dict[str, Any] = {}
        self._ws: ClientConnection | None = None

    def open(self) -> RemoteLink:
        """Connect and say hello; a :class:`RemoteError` when the server refuses."""
        try:
            # Entered at once: the connection outlives this call (websockets 17 asks of a
            # connection used outside a ``with`` block that it be entered).
            ws = connect(self.url, open_timeout=OPEN_TIMEOUT_S, max_size=None).__enter__()
        except InvalidURI as e:
            raise RemoteError(f"--server {self.url}: not a WebSocket URL ({e})") from e
        except (OSError, InvalidHandshake, TimeoutError) as e:
            raise RemoteError(
                f"cannot reach streamser serve at {public_url(self.url)}: {e} (is it running?)"
            ) from e
        try:
            ws.send(dumps(self.hello))
            answer = json.loads(ws.recv(timeout=OPEN_TIMEOUT_S))
        except (ConnectionClosed, TimeoutError, ValueError) as e:
            ws.close()
            raise RemoteError(f"the server at {public_url(self.url)} did not answer: {e}") from e
        if answer.get("type") != "ready":
            ws.close()
            raise RemoteError(
                f"the server at {public_url(self.url)} refused the stream: "
                f"{answer.get('message', answer)}"
            )
        self._ws, self.ready = ws, answer
        return self

    def send(self, block: np.ndarray) -> None:
        """``(frames, input channels)`` capture frames: the run's channels, in messages of
        about :data:`SEND_SECONDS`. Blocks while the server reads no more (backpressure)."""
        assert self._ws is not None
        # The mix, as the server would make it (less to send), or the chosen channels.
        frames = mix_to_mono(block)[:, None] if self.channels is None else block[:, self.channels]
        for first in range(0, len(frames), self.chunk_frames):
            self._ws.send(encode_frames(frames[first : first + self.chunk_frames]))

    def end(self) -> None:
        assert self._ws is not None
        self._ws.send(dumps({"type": "end"}))

    def messages(self) -> Iterator[dict[str, Any]]:
        """The server's messages until it closes (ConnectionClosed ends the iteration)."""
        assert self._ws is not None
        for text in self._ws:
            yield json.loads(text)

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()

    @property
    def close_reason(self) -> str:
        ws = self._ws
        if ws is None or ws.close_code is None:
            return "connection lost"
        return f"closed {ws.close_code} {ws.close_reason}".strip()


class RemoteModel:
    """The server's model as the run sees it (meta.json, the status line): what ``ready``
    said. It computes nothing here."""

    def __init__(self, ready: dict[str, Any], url: str) -> None:
        m = ready.get("model", {})
        self.info = ModelInfo(
            name=str(m.get("name", "?")),
            kind="remote",
            revision=m.get("revision"),
            config_path=None,
            weights_path=None,
            loaded_from=public_url(url),
            size_bytes=None,
            sha256=m.get("sha256"),
            sha256_status=str(m.get("sha256_status", "unknown")),
            n_params=int(m.get("n_params") or 0),
            demo=bool(m.get("demo", False)),
        )
        self._compute = ComputeInfo(
            device=str(ready.get("device", "?")),
            dtype=str(ready.get("precision", "?")),
            backend=str(ready.get("backend", "?")),
            fallbacks=0,
            precision=str(ready.get("precision", "?")),
        )

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        raise RuntimeError("the model runs on the server: windows go there as audio")

    def compute_info(self) -> ComputeInfo:
        return self._compute
