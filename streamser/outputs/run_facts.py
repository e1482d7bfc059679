"""What the live outputs say about the run they carry, read from its description.

A live run's description is the one its session's meta.json records (``Pipeline.describe()``),
so a replay reads the same facts back from meta.json; sessions older than streams have no
``streams`` key and are one stream, ``main``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from streamser.contracts import MAIN_STREAM, StreamSpec
from streamser.version import __version__


@dataclass(frozen=True)
class RunFacts:
    """The run as the outputs describe it: where its audio comes from, its streams, its model."""

    input_name: str
    """What identifies the input across restarts: the device's name, the file's absolute path,
    or ``session <id>`` for a replay."""
    streams: tuple[StreamSpec, ...]
    model_name: str
    model_revision: str | None
    sha256_status: str
    demo: bool
    precision: str
    window_s: float
    hop_s: float
    version: str = __version__
    """The streamser that sends (a replay's session may have been recorded by another)."""
    replay_of: str | None = None
    """The session id, when the estimates are replayed from one."""
    client: str | None = None
    """The client, when a server (``streamser serve``) sends its streams: each client has
    outputs of its own, named after it (:mod:`streamser.outputs.served`)."""

    @classmethod
    def from_description(cls, d: dict[str, Any], replay_of: str | None = None) -> RunFacts:
        """The facts of a run described as meta.json records it; missing keys read as unknown."""
        model: dict[str, Any] = d.get("model") or {}
        compute: dict[str, Any] = d.get("compute") or {}
        audio: dict[str, Any] = d.get("audio") or {}
        windows: dict[str, Any] = (d.get("config") or {}).get("windows") or {}
        listed = d.get("streams")
        streams = tuple(StreamSpec.from_json_dict(s) for s in listed) if listed else (MAIN_STREAM,)
        return cls(
            input_name=f"session {replay_of}" if replay_of is not None else input_name(audio),
            streams=streams,
            model_name=str(model.get("name", "unknown")),
            model_revision=None if model.get("revision") is None else str(model["revision"]),
            sha256_status=str(model.get("sha256_status", "unknown")),
            demo=bool(model.get("demo", False)),
            precision=str(compute.get("precision", "unknown")),
            window_s=float(windows.get("window_s", 0.0)),
            hop_s=float(windows.get("hop_s", 0.0)),
            replay_of=replay_of,
        )


def input_name(audio: dict[str, Any]) -> str:
    """A file by its absolute path (the same file from another directory is the same input);
    a device by its name."""
    source = str(audio.get("source", "unknown"))
    if audio.get("kind") == "FileSource":
        return os.path.abspath(source)
    return source
