"""Which streams a session holds, and its estimates grouped by stream.

A run with ``--per-channel`` analyses one stream per input channel; its meta.json lists them
under ``"streams"`` (``[{"name": "ch1", "channel": 1}, ...]``) and each logged estimate names its
stream. Older sessions have neither: they are one stream, ``main``. The replay, the report and
the HTML page all read the streams from here, so they agree on the names and their order.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from streamser.config import StreamConfig
from streamser.contracts import MAIN_STREAM, Estimate, StreamSpec
from streamser.session.reader import SessionData, is_session_dir, read_meta


def listed_streams(meta: dict[str, Any]) -> list[StreamSpec]:
    """The streams meta.json lists, in the run's order; malformed or repeated entries are
    left out (a hand-edited or damaged meta.json must not stop a replay or a report)."""
    found = meta.get("streams")
    out: list[StreamSpec] = []
    for entry in found if isinstance(found, list) else []:
        if not isinstance(entry, dict) or entry.get("name") is None:
            continue
        try:
            spec = StreamSpec.from_json_dict(entry)
        except (TypeError, ValueError):
            spec = StreamSpec(str(entry["name"]), None)
        if spec.name not in (s.name for s in out):
            out.append(spec)
    return out


def stream_specs(meta: dict[str, Any], estimates: Iterable[Estimate]) -> tuple[StreamSpec, ...]:
    """The streams of a session: those meta.json lists, in its order, then any other stream the
    estimates name, in order of first appearance (channel unknown). A session that names none
    is the one stream ``main``."""
    specs = listed_streams(meta)
    known = {s.name for s in specs}
    for e in estimates:
        if e.stream not in known:
            known.add(e.stream)
            specs.append(StreamSpec(e.stream, None))
    return tuple(specs) if specs else (MAIN_STREAM,)


def streams_to_analyse(
    path: Path, streams: StreamConfig, n_channels: int
) -> tuple[StreamSpec, ...]:
    """The streams an offline analysis of ``path`` follows: those the flags choose, or, for a
    session recorded with ``--per-channel`` when no flag chooses, the session's own streams
    (names and channels), so that re-analysing its recording reproduces every live stream."""
    if streams.per_channel or not is_session_dir(path):
        return streams.resolve(n_channels)
    live = listed_streams(read_meta(path))
    if live and all(s.channel is not None and s.channel < n_channels for s in live):
        return tuple(live)
    return streams.resolve(n_channels)


def session_streams(session: SessionData) -> tuple[StreamSpec, ...]:
    """The streams of ``session`` (see :func:`stream_specs`)."""
    return stream_specs(session.meta, session.estimates)


def estimates_by_stream(
    estimates: Iterable[Estimate], streams: Iterable[StreamSpec]
) -> dict[str, list[Estimate]]:
    """Each stream's estimates in log order, keyed by name in the order of ``streams`` (a stream
    without estimates gets an empty list; estimates of unlisted streams are left out)."""
    groups: dict[str, list[Estimate]] = {s.name: [] for s in streams}
    for e in estimates:
        group = groups.get(e.stream)
        if group is not None:
            group.append(e)
    return groups


def stream_label(spec: StreamSpec) -> str:
    """How a report names a stream: ``alice (channel 1)``; the name alone for the mono mix."""
    return spec.name if spec.channel is None else f"{spec.name} (channel {spec.channel + 1})"
