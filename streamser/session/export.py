"""A session as annotation tiers on its stream clock: what the ELAN and Praat exports write.

Per stream, four interval tiers (``class``, ``arousal``, ``valence``, ``speech``), then one
point tier of the session's marks (``marks``), all in seconds on the stream clock (the
estimates' ``t_start_s``/``t_end_s``, the marks' ``t_s``), so they line up with the session's
recording.

From sliding windows to intervals: the windows overlap (3 s long, one every hop), and an
interval tier cannot. Each estimate therefore covers the stretch of its stream since the
previous estimate's window end, and at most its own window: ``[max(t_start_s, previous
t_end_s), t_end_s)``. With the default 1 s hop that is the last second of its 3 s window, the
audio it was the newest reading of, as the live display showed it. The first estimate covers its
whole window (the first 1 s, padded, by default); after skipped windows or dropped audio an
estimate covers the longer stretch since the last one, never more than its window, so a gap
longer than a window stays unannotated.

* ``class``: the most probable of the six classes and its probability ("high / positive 0.62");
  windows the model did not run on (``--skip-non-speech`` on a non-speech window: null
  probabilities) get no annotation. Windows the speech gate called non-speech but the model ran
  on keep theirs: the ``speech`` tier says which they are.
* ``arousal`` and ``valence``: a third of each range per bin, low / mid / high, with the value
  ("high 0.71", "low -0.42"); arousal spans 0..1, valence -1..1.
* ``speech``: the speech segments, neighbouring speech intervals merged into one.
* ``marks``: one point per mark time (notes at the same time joined with " | "); a mark whose
  time was approximated by ``streamser mark`` without ``--at`` says so.

Tier names: a session with the single mono stream ``main`` (every session before
``--per-channel`` existed, and every run without it) gets the bare names above; a session with
named streams gets one set per stream, prefixed with the stream's name ("alice class"), in the
order meta.json's ``streams`` lists them. The marks tier belongs to the whole session and is
never prefixed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from streamser.constants import DEFAULT_STREAM_NAME, NUM_CLASSES, WINDOW_S
from streamser.contracts import Estimate
from streamser.labels import CLASS_NAMES, DEMO_WARNING
from streamser.session.catalog import is_demo_model, model_label
from streamser.session.reader import SessionData
from streamser.session.streams import session_streams
from streamser.version import __version__

CLASS_TIER, AROUSAL_TIER, VALENCE_TIER, SPEECH_TIER = "class", "arousal", "valence", "speech"
STREAM_TIERS: tuple[str, ...] = (CLASS_TIER, AROUSAL_TIER, VALENCE_TIER, SPEECH_TIER)
"""The tiers each stream gets, in this order."""
MARKS_TIER = "marks"
SPEECH_TEXT = "speech"
BIN_NAMES: tuple[str, str, str] = ("low", "mid", "high")
"""The arousal and valence bins: the lower, middle and upper third of each range."""
AROUSAL_RANGE: tuple[float, float] = (0.0, 1.0)
VALENCE_RANGE: tuple[float, float] = (-1.0, 1.0)
"""The ranges the derived values span (see model/affect.py)."""
MARK_JOINER = " | "
APPROXIMATE_NOTE = " (time approximate)"
MIN_END_S = 0.001
"""The shortest time domain written: Praat needs an end after the start, even for a session
that logged nothing."""
INTERVAL_RULE = (
    f"each estimate covers the time since its stream's previous estimate, at most its "
    f"{WINDOW_S:g} s window, up to its window's end"
)
"""The interval rule in one line, written into every exported file's notes."""


@dataclass(frozen=True)
class Annotation:
    """One annotation: an interval ``[start_s, end_s)``, or a point where the two are equal."""

    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Tier:
    """One tier: its name, the stream it describes (None: the whole session), and whether it
    holds points (marks) rather than intervals."""

    name: str
    stream: str | None
    points: bool
    annotations: tuple[Annotation, ...]


@dataclass(frozen=True)
class SessionTiers:
    """Everything an annotation file needs of a session."""

    session_id: str
    streams: tuple[str, ...]
    tiers: tuple[Tier, ...]
    end_s: float
    """The time domain's end: the last window's end, mark, logged stream time or recording."""
    notes: tuple[str, ...]
    """One-line facts for the file's header: the session, its model, how it ended, the rule."""


def session_tiers(session: SessionData, media_end_s: float = 0.0) -> SessionTiers:
    """Build the tiers of ``session``; ``media_end_s`` (the exported recording's length)
    extends the time domain so the annotation and the audio end together."""
    streams = tuple(spec.name for spec in session_streams(session))
    prefixed = streams != (DEFAULT_STREAM_NAME,)
    tiers: list[Tier] = []
    for stream in streams:
        own = [e for e in session.estimates if e.stream == stream]
        for kind, spans in stream_annotations(own).items():
            name = f"{stream} {kind}" if prefixed else kind
            tiers.append(Tier(name, stream, False, tuple(spans)))
    marks = mark_points(session.marks)
    tiers.append(Tier(MARKS_TIER, None, True, tuple(marks)))
    ends = [e.t_end_s for e in session.estimates if math.isfinite(e.t_end_s)]
    ends += [m.start_s for m in marks]
    ends += [_stream_s(session.meta), media_end_s]
    return SessionTiers(
        session_id=session.session_id,
        streams=streams,
        tiers=tuple(tiers),
        end_s=max(MIN_END_S, *ends),
        notes=session_notes(session),
    )


def hop_intervals(estimates: Iterable[Estimate]) -> list[tuple[Estimate, float, float]]:
    """One stream's estimates with the interval each covers (see the module docstring), in
    stream order; an estimate that ends no later than an earlier one covers nothing and is
    left out, as are estimates with non-finite times."""
    out: list[tuple[Estimate, float, float]] = []
    last_end: float | None = None
    ordered = sorted(
        (e for e in estimates if math.isfinite(e.t_start_s) and math.isfinite(e.t_end_s)),
        key=lambda e: (e.t_end_s, e.seq),
    )
    for e in ordered:
        start = e.t_start_s if last_end is None else max(e.t_start_s, last_end)
        if e.t_end_s > start:
            out.append((e, start, e.t_end_s))
        last_end = e.t_end_s if last_end is None else max(last_end, e.t_end_s)
    return out


def stream_annotations(estimates: Sequence[Estimate]) -> dict[str, list[Annotation]]:
    """The four interval tiers of one stream, keyed by :data:`STREAM_TIERS`."""
    tiers: dict[str, list[Annotation]] = {kind: [] for kind in STREAM_TIERS}
    for e, start, end in hop_intervals(estimates):
        for kind, text in (
            (CLASS_TIER, class_text(e.probs)),
            (AROUSAL_TIER, bin_text(e.arousal, AROUSAL_RANGE, signed=False)),
            (VALENCE_TIER, bin_text(e.valence, VALENCE_RANGE, signed=True)),
        ):
            if text is not None:
                tiers[kind].append(Annotation(start, end, text))
        if e.is_speech:
            speech = tiers[SPEECH_TIER]
            if speech and speech[-1].end_s == start:
                speech[-1] = Annotation(speech[-1].start_s, end, SPEECH_TEXT)
            else:
                speech.append(Annotation(start, end, SPEECH_TEXT))
    return tiers


def top_class(probs: Sequence[float] | None) -> tuple[int, float] | None:
    """The most probable class and its probability; None when the model did not run (or
    returned something that is not six finite probabilities)."""
    if probs is None or len(probs) != NUM_CLASSES or not all(math.isfinite(p) for p in probs):
        return None
    best = max(range(NUM_CLASSES), key=lambda i: probs[i])
    return best, float(probs[best])


def class_text(probs: Sequence[float] | None) -> str | None:
    """``"high / positive 0.62"``: the top class and its probability, or None."""
    top = top_class(probs)
    return None if top is None else f"{CLASS_NAMES[top[0]]} {top[1]:.2f}"


def affect_bin(value: float, value_range: tuple[float, float]) -> str:
    """low, mid or high: which third of ``value_range`` holds ``value`` (ends included)."""
    low, high = value_range
    third = (high - low) / 3
    if value < low + third:
        return BIN_NAMES[0]
    return BIN_NAMES[1] if value < high - third else BIN_NAMES[2]


def bin_text(value: float | None, value_range: tuple[float, float], *, signed: bool) -> str | None:
    """``"high 0.71"`` / ``"low -0.42"``; None for a missing or non-finite value."""
    if value is None or not math.isfinite(value):
        return None
    number = f"{value:+.2f}" if signed else f"{value:.2f}"
    return f"{affect_bin(value, value_range)} {number}"


def mark_points(marks: Iterable[dict[str, Any]]) -> list[Annotation]:
    """The marks as points in time order, notes at the same time joined; marks without a
    finite time from 0 on cannot be placed and are left out."""
    by_time: dict[float, list[str]] = {}
    for mark in marks:
        try:
            t_s = float(mark["t_s"])
        except (KeyError, TypeError, ValueError):
            continue
        if not math.isfinite(t_s) or t_s < 0:
            continue
        text = one_line(str(mark.get("note", "")))
        if mark.get("approximate") is True:
            text += APPROXIMATE_NOTE
        by_time.setdefault(t_s, []).append(text)
    return [Annotation(t, t, MARK_JOINER.join(notes)) for t, notes in sorted(by_time.items())]


def one_line(text: str) -> str:
    """Whitespace runs (newlines included) as single spaces: every format keeps one line."""
    return " ".join(text.split())


def session_notes(session: SessionData) -> tuple[str, ...]:
    """What a reader of the exported file should know about where it came from."""
    notes = [
        f"streamser {__version__} export of session {session.session_id}",
        f"model: {model_label(session.meta)}",
    ]
    if is_demo_model(session.meta):
        notes.append(DEMO_WARNING)
    if not session.state.clean:
        notes.append(f"session {session.state.text}: exported what it logged")
    notes.append(f"intervals: {INTERVAL_RULE}")
    return tuple(notes)


def _stream_s(meta: dict[str, Any]) -> float:
    counters = meta.get("counters")
    value = counters.get("stream_s") if isinstance(counters, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0
    return float(value)
