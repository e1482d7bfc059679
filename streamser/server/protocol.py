"""The streamser stream protocol, version 1: what a client may send and what the server says.

docs/protocol.md is the prose; this module is the one definition the server and the remote
``listen`` client share: the hello's fields and their rules (checked with the project's own
setting rules, so a remote stream accepts exactly what a local run accepts, within the
server's narrower bounds), the binary frame format, and the server's messages.

Nothing a client sends reaches a path or a shell: stream names follow the one stream-name rule
(:func:`streamser.config.stream_name_list`), every number is range-checked, and unknown hello
fields are refused rather than ignored, so a typo never silently does nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamser.config import SETTINGS, ConfigError, StreamConfig, WindowConfig, stream_name_list
from streamser.constants import DEFAULT_STREAM_NAME, MIN_INPUT_RATE_HZ
from streamser.contracts import StreamSpec
from streamser.errors import StreamserError

PROTOCOL_VERSION = 1
STREAM_PATH = "/v1/stream"
"""Where a client opens its WebSocket: one connection per client stream."""

MAX_REMOTE_RATE_HZ = 96_000
"""Highest sample rate a client may send: above it, a stream costs more to carry and resample
than any voice needs (local runs take up to MAX_INPUT_RATE_HZ from files)."""
MAX_REMOTE_CHANNELS = 8
"""Most channels in one client stream (each may be its own stream with ``per_channel``)."""
MIN_REMOTE_HOP_S = 0.25
"""Shortest hop a client may ask for: one model window per stream every 0.25 s at most, so
one client cannot claim a shared model for itself."""

SAMPLE_FORMATS: dict[str, tuple[str, float]] = {
    "pcm16": ("<i2", 1.0 / 32768.0),
    "float32": ("<f4", 1.0),
}
"""Binary frame formats: numpy dtype (little-endian) and the scale to full-scale 1.0."""
MODES = ("live", "file")
"""live: newest window wins (skips counted); file: every window, paced by backpressure."""

HELLO_FIELDS = frozenset(
    {"type", "protocol", "sample_rate_hz", "channels", "format", "hop_s", "vad", "per_channel"}
    | {"stream_names", "mode", "name", "token", "first_s", "smooth_s", "vad_threshold"}
    | {"skip_non_speech"}
)

# Error codes, each with the WebSocket close code that follows the error message.
ERROR_CLOSE_CODES: dict[str, int] = {
    "bad_hello": 1002,  # protocol error
    "unsupported": 1003,  # unsupported data
    "bad_frame": 1007,  # invalid frame payload data
    "too_large": 1009,  # message too big
    "unauthorized": 1008,  # policy violation
    "hello_timeout": 1008,
    "idle_timeout": 1008,
    "slow_consumer": 1008,
    "internal": 1011,  # internal error
}
BUSY_CLOSE_CODE = 1013
"""Try again later: the server refused the stream at admission (``busy``, ``max_streams``)."""
SHUTDOWN_CLOSE_CODE = 1001
"""Going away: after ``closing`` (reason ``shutdown``)."""


class ProtocolError(StreamserError):
    """A client broke the protocol; ``code`` is the error code sent before the close."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_CLOSE_CODES:
            raise ValueError(f"unknown protocol error code {code!r}")
        super().__init__(message)
        self.code = code

    @property
    def close_code(self) -> int:
        return ERROR_CLOSE_CODES[self.code]


@dataclass(frozen=True)
class Hello:
    """A client stream as its hello describes it, every field checked."""

    sample_rate_hz: int
    channels: int
    format: str
    windows: WindowConfig
    streams: tuple[StreamSpec, ...]
    mode: str
    name: str | None
    token: str | None

    @property
    def bytes_per_frame(self) -> int:
        return self.channels * np.dtype(SAMPLE_FORMATS[self.format][0]).itemsize

    @property
    def lossless(self) -> bool:
        return self.mode == "file"

    def describe(self) -> dict[str, Any]:
        """The hello as a session's meta.json records it (never the token)."""
        return {
            "sample_rate_hz": self.sample_rate_hz,
            "channels": self.channels,
            "format": self.format,
            "mode": self.mode,
            "name": self.name,
        }


def parse_hello(message: str | bytes) -> Hello:
    """The client's first message, checked; a :class:`ProtocolError` says what is wrong.

    ``bad_hello``: not a JSON object of the right shape and types. ``unsupported``: well formed
    but outside what this server takes (protocol version, rate, channels, format, mode, hop).
    """
    if isinstance(message, bytes):
        raise ProtocolError("bad_hello", "the first message must be the JSON hello, sent as text")
    try:
        d = json.loads(message)
    except ValueError as e:
        raise ProtocolError("bad_hello", f"the hello is not JSON ({e})") from None
    if not isinstance(d, dict) or d.get("type") != "hello":
        raise ProtocolError("bad_hello", 'the first message must be {"type": "hello", ...}')
    unknown = sorted(set(d) - HELLO_FIELDS)
    if unknown:
        raise ProtocolError(
            "bad_hello", f"unknown hello field(s) {', '.join(unknown)}: see docs/protocol.md"
        )
    protocol = _field(d, "protocol", int)
    if protocol != PROTOCOL_VERSION:
        raise ProtocolError(
            "unsupported", f"protocol {protocol} is not spoken here: use protocol 1"
        )
    rate = _field(d, "sample_rate_hz", int)
    if not MIN_INPUT_RATE_HZ <= rate <= MAX_REMOTE_RATE_HZ:
        raise ProtocolError(
            "unsupported",
            f"sample_rate_hz {rate} is not supported: use {MIN_INPUT_RATE_HZ} to "
            f"{MAX_REMOTE_RATE_HZ} (resample first)",
        )
    channels = _field(d, "channels", int)
    if not 1 <= channels <= MAX_REMOTE_CHANNELS:
        raise ProtocolError(
            "unsupported", f"channels {channels} is not supported: use 1 to {MAX_REMOTE_CHANNELS}"
        )
    fmt = _field(d, "format", str)
    if fmt not in SAMPLE_FORMATS:
        raise ProtocolError(
            "unsupported", f'format "{fmt}" is not supported: use "pcm16" or "float32"'
        )
    mode = _field(d, "mode", str, "live")
    if mode not in MODES:
        raise ProtocolError("unsupported", f'mode "{mode}" is not supported: use "live" or "file"')
    token = _field(d, "token", str, None)
    return Hello(
        sample_rate_hz=rate,
        channels=channels,
        format=fmt,
        windows=_windows(d),
        streams=_streams(d, channels),
        mode=mode,
        name=_name(d),
        token=token,
    )


_MISSING = object()


def _field(d: dict[str, Any], key: str, kind: type, default: Any = _MISSING) -> Any:
    """``d[key]`` of type ``kind`` (a bool is not a number), or ``default`` when absent."""
    if key not in d or d[key] is None:
        if default is _MISSING:
            raise ProtocolError("bad_hello", f"the hello needs {key!r}: see docs/protocol.md")
        return default
    value = d[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        name = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}
        raise ProtocolError("bad_hello", f"hello {key} must be {name.get(kind, kind.__name__)}")
    return value


_SETTING_OF = {s.dest: s for s in SETTINGS}


def _windows(d: dict[str, Any]) -> WindowConfig:
    """The window settings, checked by the same rules as ``listen``'s flags."""
    hop_s = _field(d, "hop_s", float, 1.0)
    if math.isfinite(hop_s) and hop_s < MIN_REMOTE_HOP_S:
        raise ProtocolError(
            "unsupported",
            f"hop_s {hop_s:g} is shorter than this server takes: use {MIN_REMOTE_HOP_S:g} or more",
        )
    values = {
        "hop_s": hop_s,
        "vad": _field(d, "vad", bool, True),
        "first_s": _field(d, "first_s", float, 1.0),
        "smooth_s": _field(d, "smooth_s", float, WindowConfig.smooth_s),
        "vad_threshold": _field(d, "vad_threshold", float, WindowConfig.vad_threshold),
        "skip_non_speech": _field(d, "skip_non_speech", bool, False),
    }
    try:
        for key, dest in _CHECKED_WINDOW_FIELDS:
            _SETTING_OF[dest].check(values[key], key)
        return WindowConfig(**values).validate()
    except ConfigError as e:
        raise ProtocolError("unsupported", str(e)) from None


_CHECKED_WINDOW_FIELDS = (
    ("hop_s", "hop"),
    ("smooth_s", "smooth_s"),
    ("vad_threshold", "vad_threshold"),
)
"""Hello fields checked by the rule of a ``listen`` setting: (field, the setting's dest)."""


def _streams(d: dict[str, Any], channels: int) -> tuple[StreamSpec, ...]:
    """The client's streams: the mono mix, named ``name`` or ``main``; or one per channel."""
    per_channel = _field(d, "per_channel", bool, False)
    names = d.get("stream_names")
    if names is not None and not per_channel:
        raise ProtocolError("bad_hello", "stream_names needs per_channel: true")
    if not per_channel:
        return (StreamSpec(_name(d) or DEFAULT_STREAM_NAME, None),)
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ProtocolError("bad_hello", "hello stream_names must be a list of names")
        for n in names:
            _check_name(n, "stream_names")
    try:
        cfg = StreamConfig(per_channel=True, names=",".join(names) if names else None)
        return cfg.resolve(channels)
    except ConfigError as e:
        raise ProtocolError("bad_hello", str(e).replace("--stream-names", "stream_names")) from None


def _name(d: dict[str, Any]) -> str | None:
    name = _field(d, "name", str, None)
    return None if name is None else _check_name(name, "name")


def _check_name(name: str, label: str) -> str:
    """One stream name, by the one stream-name rule (no commas: it names a single stream)."""
    try:
        if stream_name_list(name, label) == [name]:
            return name
    except ConfigError as e:
        raise ProtocolError("bad_hello", str(e)) from None
    raise ProtocolError("bad_hello", f'{label} "{name}": one name, without commas or spaces')


def decode_frames(data: bytes, hello: Hello) -> np.ndarray:
    """A binary message as ``(frames, channels)`` float32 at full scale 1.0."""
    if len(data) % hello.bytes_per_frame:
        raise ProtocolError(
            "bad_frame",
            f"a binary message of {len(data)} bytes is not a whole number of {hello.channels}-"
            f"channel {hello.format} frames ({hello.bytes_per_frame} bytes each)",
        )
    dtype, scale = SAMPLE_FORMATS[hello.format]
    samples = np.frombuffer(data, dtype=dtype).astype(np.float32)
    if scale != 1.0:
        samples *= np.float32(scale)
    return samples.reshape(-1, hello.channels)


def encode_frames(block: np.ndarray, fmt: str = "float32") -> bytes:
    """``(frames, channels)`` float samples as one binary message (the client's side)."""
    dtype, scale = SAMPLE_FORMATS[fmt]
    if fmt == "pcm16":
        ints = np.clip(np.round(np.asarray(block, dtype=np.float64) / scale), -32768, 32767)
        return ints.astype(dtype).tobytes()
    return np.ascontiguousarray(block, dtype=dtype).tobytes()


# -- the server's messages ---------------------------------------------------------------


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def error_message(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def busy_message(reason: str, message: str) -> dict[str, Any]:
    return {"type": "busy", "reason": reason, "message": message}
