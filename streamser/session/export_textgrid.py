"""A Praat TextGrid (long text format, ``.TextGrid``) from a session's tiers.

The layout is the one Praat writes with "Save as text file" (Praat's manual, "TextGrid file
formats"): every tier spans the whole time domain, interval tiers are contiguous (the stretches
no annotation covers are written as empty intervals, as Praat does), a point tier's times
strictly increase, and a double quote inside a text is doubled. Praat takes everything after
``!`` on a line as a comment: the export's notes and the recording to open with the grid are
written so, after the header, where Praat and other readers (praatio) skip them. Times are
written in full (``repr``), never in exponent notation, which not every reader accepts.
"""

from __future__ import annotations

from collections.abc import Iterator

from streamser.session.export import Annotation, SessionTiers, Tier, one_line

INDENT = "    "


def seconds(t_s: float) -> str:
    """A time as Praat writes it: shortest exact decimal, no exponent, no trailing ``.0``."""
    text = repr(float(t_s))
    if "e" in text or "E" in text:
        text = f"{t_s:.9f}".rstrip("0")
    return text.removesuffix(".0").rstrip(".") or "0"


def quoted(text: str) -> str:
    """A TextGrid string: one line, double quotes doubled, in double quotes."""
    return '"' + one_line(text).replace('"', '""') + '"'


def textgrid_text(tiers: SessionTiers, audio_note: str) -> str:
    """The whole file; ``audio_note`` says which recording to open with it (or that none)."""
    end = seconds(tiers.end_s)
    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        "xmin = 0",
        f"xmax = {end}",
        "tiers? <exists>",
        f"size = {len(tiers.tiers)}",
        *(f"! {one_line(note)}" for note in (*tiers.notes, audio_note)),
        "item []:",
    ]
    for n, tier in enumerate(tiers.tiers, start=1):
        lines.append(f"{INDENT}item [{n}]:")
        lines.extend(INDENT * 2 + line for line in _tier_lines(tier, tiers.end_s))
    return "\n".join(lines) + "\n"


def _tier_lines(tier: Tier, end_s: float) -> Iterator[str]:
    yield f'class = "{"TextTier" if tier.points else "IntervalTier"}"'
    yield f"name = {quoted(tier.name)}"
    yield "xmin = 0"
    yield f"xmax = {seconds(end_s)}"
    if tier.points:
        yield f"points: size = {len(tier.annotations)}"
        for n, point in enumerate(tier.annotations, start=1):
            yield f"points [{n}]:"
            yield f"{INDENT}number = {seconds(point.start_s)}"
            yield f"{INDENT}mark = {quoted(point.text)}"
        return
    intervals = contiguous(tier.annotations, end_s)
    yield f"intervals: size = {len(intervals)}"
    for n, interval in enumerate(intervals, start=1):
        yield f"intervals [{n}]:"
        yield f"{INDENT}xmin = {seconds(interval.start_s)}"
        yield f"{INDENT}xmax = {seconds(interval.end_s)}"
        yield f"{INDENT}text = {quoted(interval.text)}"


def contiguous(annotations: tuple[Annotation, ...], end_s: float) -> list[Annotation]:
    """The annotations with empty intervals filling the stretches between them, from 0 to
    ``end_s``, as an interval tier must be; an annotation that would overlap the one before
    starts where that one ends."""
    out: list[Annotation] = []
    cursor = 0.0
    for a in annotations:
        start = max(a.start_s, cursor)
        if a.end_s <= start:
            continue
        if start > cursor:
            out.append(Annotation(cursor, start, ""))
        out.append(Annotation(start, a.end_s, a.text))
        cursor = a.end_s
    if end_s > cursor:
        out.append(Annotation(cursor, end_s, ""))
    return out
