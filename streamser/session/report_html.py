"""The HTML report: one self-contained page, the figure embedded beside summary tables.

A session of several streams gets a table with one row per stream (its channel, estimates,
speech windows and mean arousal and valence); a mean over several people's voices would describe
no one, so the summary then leaves the session-wide means out."""

from __future__ import annotations

import base64
import html
import math
from typing import Any

from streamser.contracts import StreamSpec
from streamser.labels import DEMO_WARNING
from streamser.session.catalog import (
    affect_stats,
    format_duration,
    is_demo_model,
    parse_time,
    session_duration_s,
)
from streamser.session.reader import SessionData
from streamser.session.report_facts import (
    DERIVED_NOTE,
    NOT_RECORDED,
    Span,
    format_value,
    mute_spans,
    recorded_spans,
    settings_rows,
)
from streamser.session.streams import estimates_by_stream, session_streams, stream_label


def summary_rows(session: SessionData) -> list[tuple[str, str]]:
    """The facts shown beside the figure in the HTML report, every value formatted for
    people (see :func:`format_value`)."""
    meta = session.meta
    stats = affect_stats(session.estimates)
    found = meta.get("counters")
    counters: dict[str, Any] = found if isinstance(found, dict) else {}
    mutes, audio = mute_spans(session), recorded_spans(session)
    streams = session_streams(session)
    several = len(streams) > 1
    means = [
        ("Mean arousal (derived)", _fmt(stats.mean_arousal)),
        ("Mean valence (derived)", _fmt(stats.mean_valence)),
    ]
    rows = [
        ("Session", session.session_id),
        ("Start", _fmt_time(meta.get("start_time"), "unknown")),
        ("End", _fmt_time(meta.get("end_time"), "not recorded")),
        ("Duration", format_duration(session_duration_s(meta, stats.last_t_end_s))),
        ("State", session.state.text),
        *settings_rows(meta),
        ("streamser version", format_value(meta.get("streamser_version", "unknown"))),
        *([("Streams", ", ".join(stream_label(s) for s in streams))] if several else []),
        ("Estimates", str(stats.n_estimates)),
        ("Speech windows", str(stats.n_speech)),
        *([] if several else means),
        ("Marks", str(len(session.marks))),
        ("Muted", _fmt_spans(mutes)),
        ("Audio recorded", _fmt_spans(audio)),
        ("Unreadable log lines", str(session.truncated_lines)),
    ]
    rows += [(f"Counter: {k}", format_value(v)) for k, v in sorted(counters.items())]
    return rows


STREAM_COLUMNS = (
    "stream",
    "channel",
    "estimates",
    "speech windows",
    "mean arousal (derived)",
    "mean valence (derived)",
)


def stream_rows(session: SessionData) -> list[tuple[str, str, str, str, str, str]]:
    """The page's streams table, one row per stream (see ``STREAM_COLUMNS``); empty for a
    one-stream session."""
    streams = session_streams(session)
    if len(streams) < 2:
        return []
    groups = estimates_by_stream(session.estimates, streams)
    rows = []
    for spec in streams:
        stats = affect_stats(groups[spec.name])
        rows.append(
            (
                spec.name,
                _fmt_channel(spec),
                str(stats.n_estimates),
                str(stats.n_speech),
                _fmt(stats.mean_arousal),
                _fmt(stats.mean_valence),
            )
        )
    return rows


def render_html(session: SessionData, png: bytes) -> str:
    """One self-contained HTML page: summary, marks, mutes, recording and the figure."""
    esc = html.escape
    table = "\n".join(
        f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary_rows(session)
    )
    marks = "\n".join(
        f"<tr><td>{'≈' if m.get('approximate') is True else ''}{float(m['t_s']):.1f}</td>"
        f"<td>{esc(format_value(m.get('note', '')))}</td></tr>"
        for m in session.marks
    )
    spans = "\n".join(
        f"<tr><td>{esc(what)}</td><td>{lo:.1f}</td>"
        f"<td>{f'{hi:.1f}' if hi < math.inf else 'end of log'}</td></tr>"
        for what, found in (("muted", mute_spans(session)), ("audio", recorded_spans(session)))
        for lo, hi in found
    )
    streams = ""
    if rows := stream_rows(session):
        head = "".join(f"<th>{esc(column)}</th>" for column in STREAM_COLUMNS)
        body = "\n".join(
            "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in rows
        )
        streams = f"<h2>Streams</h2>\n<table>\n<tr>{head}</tr>\n{body}\n</table>\n"
    demo = f'<p class="demo">{esc(DEMO_WARNING)}</p>' if is_demo_model(session.meta) else ""
    image = base64.b64encode(png).decode("ascii")
    title = f"streamser session {session.session_id}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ text-align: left; padding: 0.2em 1em 0.2em 0; border-bottom: 1px solid #ddd; }}
.demo {{ background: crimson; color: white; font-weight: bold; padding: 0.5em; }}
.note {{ font-style: italic; color: #555; }}
img {{ max-width: 100%; }}
</style>
</head>
<body>
<h1>{esc(title)}</h1>
{demo}
<p class="note">{esc(DERIVED_NOTE)}</p>
<h2>Summary</h2>
<table>
{table}
</table>
{streams}<h2>Marks</h2>
<table>
<tr><th>time (s)</th><th>note</th></tr>
{marks}
</table>
<h2>Muted and recorded stretches</h2>
<table>
<tr><th>what</th><th>from (s)</th><th>to (s)</th></tr>
{spans}
</table>
<img alt="arousal and valence over time and their plane" src="data:image/png;base64,{image}">
</body>
</html>
"""


def _fmt_time(value: Any, missing: str) -> str:
    when = parse_time(value)
    if when is not None:
        return when.isoformat(sep=" ", timespec="seconds")
    return missing if value is None else format_value(value)


def _fmt_spans(spans: list[Span]) -> str:
    if not spans:
        return "none"
    total = sum(hi - lo for lo, hi in spans if hi < math.inf)
    text = f"{format_duration(total)} in {len(spans)} stretch{'es' if len(spans) > 1 else ''}"
    return text + (", the last still on when the log ended" if spans[-1][1] == math.inf else "")


def _fmt_channel(spec: StreamSpec) -> str:
    return NOT_RECORDED if spec.channel is None else str(spec.channel + 1)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"
