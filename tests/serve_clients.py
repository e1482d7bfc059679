"""Test clients of ``streamser serve``: real WebSocket clients on loopback (websockets' threaded
client), and stand-in models for a server under test."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.request import urlopen

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from streamser.constants import NUM_CLASSES
from streamser.contracts import ComputeInfo, ModelInfo
from streamser.server.protocol import encode_frames

TOKEN = "test-token-0123456789abcdef"


class FastModel:
    """Zero logits at once: the protocol's tests need a model that costs nothing."""

    info = ModelInfo.random_weights("fast stand-in", "not applicable", 0)

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        return np.zeros((len(inputs), NUM_CLASSES), dtype=np.float32)

    def compute_info(self) -> ComputeInfo:
        return ComputeInfo(device="cpu", dtype="float32", backend="none", fallbacks=0)


def hello(**fields: Any) -> str:
    d: dict[str, Any] = {
        "type": "hello",
        "protocol": 1,
        "sample_rate_hz": 16000,
        "channels": 1,
        "format": "float32",
        "mode": "file",
    }
    d.update(fields)
    return json.dumps({k: v for k, v in d.items() if v is not None})


def connected(url: str, sock: socket.socket | None = None) -> ClientConnection:
    """An open connection the test closes itself (entered at once, as websockets 17 asks of a
    connection used outside a ``with`` block)."""
    return connect(url, max_size=None, open_timeout=10, sock=sock).__enter__()


def open_stream(
    url: str, sock: socket.socket | None = None, **fields: Any
) -> tuple[ClientConnection, dict[str, Any]]:
    """A connection that sent its hello; the server's first answer (``ready`` or not)."""
    ws = connected(url, sock=sock)
    ws.send(hello(**fields))
    return ws, json.loads(ws.recv(timeout=30))


def read_all(
    ws: ClientConnection, timeout_s: float = 60.0, arrivals: list[float] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Every message until the server closes; and its close code. ``arrivals`` gets each
    message's ``time.monotonic()`` of arrival."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            out.append(json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic()))))
        except ConnectionClosed:
            break
        if arrivals is not None:
            arrivals.append(time.monotonic())
    code = ws.close_code
    assert code is not None
    return out, code


def send_blocks(
    ws: ClientConnection,
    audio: np.ndarray,
    rate_hz: int,
    block_s: float = 0.1,
    fmt: str = "float32",
    realtime: bool = False,
    sent_at: list[float] | None = None,
) -> None:
    """``audio`` ((n,) or (n, channels)) in blocks; in real time, each when it would be
    captured (pacing a simulated microphone, not synchronisation)."""
    frames = audio if audio.ndim == 2 else audio[:, None]
    step = max(1, round(block_s * rate_hz))
    start = time.monotonic()
    for first in range(0, len(frames), step):
        block = frames[first : first + step]
        if realtime:
            due = start + (first + len(block)) / rate_hz
            time.sleep(max(0.0, due - time.monotonic()))
        ws.send(encode_frames(block, fmt))
        if sent_at is not None:
            sent_at.append(time.monotonic())


def stream_file(
    url: str, audio: np.ndarray, rate_hz: int, **fields: Any
) -> tuple[list[dict[str, Any]], int]:
    """A whole file in file mode: hello, frames, end; every message and the close code."""
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    ws, ready = open_stream(url, sample_rate_hz=rate_hz, channels=channels, **fields)
    assert ready["type"] == "ready", ready
    sender = threading.Thread(
        target=lambda: (send_blocks(ws, audio, rate_hz), ws.send(json.dumps({"type": "end"})))
    )
    sender.start()
    messages, code = read_all(ws)
    sender.join(30)
    return [ready, *messages], code


def estimates(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == "estimate"]


def http_get(url: str) -> tuple[int, str, bytes]:
    with urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


def page_url(stream_url: str) -> str:
    return stream_url.replace("ws://", "http://").replace("/v1/stream", "/")


def metrics(stream_url: str) -> dict[str, float]:
    """/metrics as ``{sample name with labels: value}``, parsed by prometheus-client."""
    _, _, body = http_get(page_url(stream_url) + "metrics")
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def health(stream_url: str) -> dict[str, Any]:
    _, _, body = http_get(page_url(stream_url) + "healthz")
    return json.loads(body)


def wait_until(condition: Any, timeout_s: float = 20.0, what: str = "condition") -> None:
    """Poll ``condition()`` until true, with a deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class LiveClient:
    """A client streaming a tone in real time on a thread, reading on another, until stopped:
    the "another client" a server must keep serving while others misbehave."""

    url: str
    fields: dict[str, Any]
    block_s: float = 0.05
    rate_hz: int = 16000
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self.ws, self.ready = open_stream(
            self.url, sample_rate_hz=self.rate_hz, mode="live", **self.fields
        )
        assert self.ready["type"] == "ready", self.ready
        self._threads = [
            threading.Thread(target=self._send, daemon=True),
            threading.Thread(target=self._read, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _send(self) -> None:
        n = round(self.block_s * self.rate_hz)
        t = np.arange(n) / self.rate_hz
        block = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        start, sent = time.monotonic(), 0
        try:
            while not self._stop.is_set():
                sent += n
                self._stop.wait(max(0.0, start + sent / self.rate_hz - time.monotonic()))
                self.ws.send(encode_frames(block[:, None]))
        except Exception as e:  # reported by the test
            self.error = e

    def _read(self) -> None:
        try:
            while True:
                self.received.append((time.monotonic(), json.loads(self.ws.recv())))
        except ConnectionClosed:
            pass

    def estimates_since(self, t: float) -> int:
        return sum(1 for at, m in list(self.received) if at >= t and m["type"] == "estimate")

    def stop(self) -> None:
        self._stop.set()
        self._threads[0].join(5)
        self.ws.close()
        self._threads[1].join(5)


@contextmanager
def live_client(url: str, **fields: Any) -> Iterator[LiveClient]:
    client = LiveClient(url, fields)
    try:
        yield client
    finally:
        client.stop()
