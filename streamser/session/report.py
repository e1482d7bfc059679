"""A static picture of one session: ``streamser report SESSION out.png|out.html``.

The figure puts arousal and valence over time on the left (raw per-window values faint, the
smoothed track bold, non-speech stretches shaded, the user's marks as labelled lines) and the
density of the speech windows on the valence-arousal plane on the right. The HTML variant is
one self-contained file: the same PNG embedded as base64 plus summary tables, so it can be
mailed or archived without its surroundings.

matplotlib is imported inside the functions: the live analyser never pays for it, and the
object-oriented API (``Figure`` + Agg canvas, no pyplot) keeps no global state.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamser.labels import DEMO_WARNING
from streamser.session.catalog import (
    affect_stats,
    format_duration,
    is_demo_model,
    model_label,
    parse_time,
    session_duration_s,
)
from streamser.session.errors import SessionError
from streamser.session.logger import FILE_MODE
from streamser.session.reader import SessionData

__all__ = [
    "DEMO_WARNING",
    "build_figure",
    "is_demo_model",
    "model_label",
    "render_html",
    "render_png",
    "summary_rows",
    "write_report",
]

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SUPPORTED_SUFFIXES = (".png", ".html")
FIGURE_SIZE_PX = (1600, 1000)
FIGURE_DPI = 100
DERIVED_NOTE = (
    "Arousal and valence are derived quantities, computed from the model's class "
    "probabilities; they are not measurements of what anyone felt."
)
MAX_NOTE_CHARS = 40


def write_report(session: SessionData, out: Path) -> None:
    """Write the report as ``out``'s suffix says (.png or .html), private (0600) like the
    session it describes."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SessionError(
            f"cannot write a {out.suffix or 'suffix-less'} report; "
            f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    png = render_png(session)
    data = png if suffix == ".png" else render_html(session, png).encode("utf-8")
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as e:
        raise SessionError(f"cannot write report {out}: {e.strerror or e}") from e


def render_png(session: SessionData) -> bytes:
    """The report figure as PNG bytes, exactly FIGURE_SIZE_PX pixels."""
    buf = io.BytesIO()
    build_figure(session).savefig(buf, format="png", dpi=FIGURE_DPI)
    return buf.getvalue()


def build_figure(session: SessionData) -> Figure:
    """The report figure, for saving or inspecting (tests look at its texts)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width_px, height_px = FIGURE_SIZE_PX
    fig = Figure(figsize=(width_px / FIGURE_DPI, height_px / FIGURE_DPI), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        2,
        2,
        width_ratios=(2.3, 1.0),
        left=0.06,
        right=0.97,
        top=0.85,
        bottom=0.08,
        hspace=0.12,
        wspace=0.16,
    )
    ax_arousal = fig.add_subplot(grid[0, 0])
    ax_valence = fig.add_subplot(grid[1, 0], sharex=ax_arousal)
    ax_plane = fig.add_subplot(grid[:, 1])
    _draw_titles(fig, session)
    _draw_timeline(ax_arousal, ax_valence, session)
    _draw_plane(fig, ax_plane, session)
    return fig


def _draw_titles(fig: Figure, session: SessionData) -> None:
    meta = session.meta
    start = parse_time(meta.get("start_time"))
    duration = session_duration_s(meta, affect_stats(session.estimates).last_t_end_s)
    fig.suptitle(
        f"streamser session {session.session_id}",
        x=0.06,
        y=0.975,
        ha="left",
        fontsize=18,
        fontweight="bold",
    )
    facts = [
        f"started {start:%Y-%m-%d %H:%M:%S %Z}".rstrip() if start else "start unknown",
        f"duration {format_duration(duration)}",
        f"model {model_label(meta)}",
        session.state.text,
    ]
    fig.text(0.06, 0.935, "   |   ".join(facts), fontsize=11, ha="left")
    fig.text(0.06, 0.905, DERIVED_NOTE, fontsize=10, ha="left", style="italic", color="0.35")
    if is_demo_model(meta):
        fig.text(
            0.97,
            0.975,
            DEMO_WARNING.upper(),
            fontsize=14,
            ha="right",
            va="top",
            color="white",
            fontweight="bold",
            bbox={"facecolor": "crimson", "edgecolor": "none", "pad": 6},
        )


def _draw_timeline(ax_a: Axes, ax_v: Axes, session: SessionData) -> None:
    est = session.estimates
    last_s = max((e.t_end_s for e in est), default=0.0)
    scale, unit = (60.0, "min") if last_s > 600 else (1.0, "s")
    x = [(e.t_start_s + e.t_end_s) / 2 / scale for e in est]
    for ax, name, raw, smooth, limits, color in (
        (
            ax_a,
            "arousal",
            [e.arousal for e in est],
            [e.arousal_smooth for e in est],
            (0.0, 1.0),
            "tab:red",
        ),
        (
            ax_v,
            "valence",
            [e.valence for e in est],
            [e.valence_smooth for e in est],
            (-1.0, 1.0),
            "tab:blue",
        ),
    ):
        ax.plot(x, _nan(raw), color=color, alpha=0.3, linewidth=0.8, label=f"{name} (raw)")
        ax.plot(x, _nan(smooth), color=color, linewidth=2.2, label=f"{name} (smoothed)")
        ax.set_ylim(*limits)
        ax.set_ylabel(f"{name} (derived)")
        ax.grid(True, alpha=0.3)
        for lo, hi in non_speech_spans(x, [e.is_speech for e in est]):
            ax.axvspan(lo, hi, color="0.5", alpha=0.15, linewidth=0)
        for mark in session.marks:
            ax.axvline(float(mark["t_s"]) / scale, color="darkgreen", linewidth=1, alpha=0.8)
    ax_v.axhline(0.0, color="0.4", linewidth=0.8)
    ax_v.set_xlabel(f"stream time ({unit})")
    ax_a.tick_params(labelbottom=False)
    ax_a.set_title("over time (grey: non-speech; green lines: marks)", fontsize=11, loc="left")
    if not est:
        ax_a.text(0.5, 0.5, "no estimates", transform=ax_a.transAxes, ha="center")
    for mark in session.marks:
        note = str(mark.get("note", ""))
        note = note if len(note) <= MAX_NOTE_CHARS else note[: MAX_NOTE_CHARS - 1] + "…"
        ax_a.text(
            float(mark["t_s"]) / scale,
            0.98,
            f" {note}",
            rotation=90,
            va="top",
            ha="left",
            fontsize=8,
            color="darkgreen",
            transform=ax_a.get_xaxis_transform(),
        )
    ax_a.legend(loc="lower right", fontsize=8)
    ax_v.legend(loc="lower right", fontsize=8)


def _draw_plane(fig: Figure, ax: Axes, session: SessionData) -> None:
    points = [
        (e.valence, e.arousal)
        for e in session.estimates
        if e.is_speech and _finite(e.valence) and _finite(e.arousal)
    ]
    ax.set_xlim(-1.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    if points:
        valence, arousal = zip(*points, strict=True)
        *_, image = ax.hist2d(
            valence, arousal, bins=(40, 20), range=((-1, 1), (0, 1)), cmap="magma_r", cmin=1
        )
        fig.colorbar(image, ax=ax, label="speech windows", shrink=0.8)
    else:
        ax.text(0.0, 0.5, "no speech windows", ha="center", va="center")
    ax.axvline(0.0, color="0.4", linewidth=0.8)
    ax.axhline(0.5, color="0.4", linewidth=0.8)
    for vx, ay, label in (
        (-0.97, 0.97, "tense, upset"),
        (0.97, 0.97, "excited, happy"),
        (-0.97, 0.03, "sad, tired"),
        (0.97, 0.03, "calm, content"),
    ):
        ax.text(
            vx,
            ay,
            label,
            fontsize=8,
            color="0.45",
            ha="left" if vx < 0 else "right",
            va="top" if ay > 0.5 else "bottom",
        )
    ax.set_xlabel("valence (derived): negative ← → positive")
    ax.set_ylabel("arousal (derived): low → high")
    ax.set_title(f"circumplex density, raw speech windows (n={len(points)})", fontsize=11)


def non_speech_spans(x: list[float], is_speech: list[bool]) -> list[tuple[float, float]]:
    """Merged x-ranges of consecutive non-speech estimates; each estimate owns the stretch
    halfway to its neighbours, so overlapping 3 s windows do not shade speech."""
    if not x:
        return []
    midpoints = [(a + b) / 2 for a, b in itertools.pairwise(x)]
    first = midpoints[0] - x[0] if midpoints else 0.25
    last = x[-1] - midpoints[-1] if midpoints else 0.25
    edges = [x[0] - first, *midpoints, x[-1] + last]
    spans: list[tuple[float, float]] = []
    for (lo, hi), speech in zip(itertools.pairwise(edges), is_speech, strict=True):
        if speech:
            continue
        if spans and math.isclose(spans[-1][1], lo):
            spans[-1] = (spans[-1][0], hi)
        else:
            spans.append((lo, hi))
    return spans


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _nan(values: list[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def summary_rows(session: SessionData) -> list[tuple[str, str]]:
    """The facts shown beside the figure in the HTML report."""
    meta = session.meta
    stats = affect_stats(session.estimates)
    found = meta.get("counters")
    counters: dict[str, Any] = found if isinstance(found, dict) else {}
    rows = [
        ("Session", session.session_id),
        ("Start", str(meta.get("start_time", "unknown"))),
        ("End", str(meta.get("end_time", "not recorded"))),
        ("Duration", format_duration(session_duration_s(meta, stats.last_t_end_s))),
        ("Model", model_label(meta) + (f" ({DEMO_WARNING})" if is_demo_model(meta) else "")),
        ("streamser version", str(meta.get("streamser_version", "unknown"))),
        ("Estimates", str(stats.n_estimates)),
        ("Speech windows", str(stats.n_speech)),
        ("Mean arousal (derived)", _fmt(stats.mean_arousal)),
        ("Mean valence (derived)", _fmt(stats.mean_valence)),
        ("Marks", str(len(session.marks))),
        ("State", session.state.text),
        ("Unreadable log lines", str(session.truncated_lines)),
    ]
    rows += [(f"Counter: {k}", str(v)) for k, v in sorted(counters.items())]
    return rows


def render_html(session: SessionData, png: bytes) -> str:
    """One self-contained HTML page: summary, marks and the embedded figure."""
    esc = html.escape
    table = "\n".join(
        f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary_rows(session)
    )
    marks = "\n".join(
        f"<tr><td>{float(m['t_s']):.1f}</td><td>{esc(str(m.get('note', '')))}</td></tr>"
        for m in session.marks
    )
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
<h2>Marks</h2>
<table>
<tr><th>time (s)</th><th>note</th></tr>
{marks}
</table>
<img alt="arousal and valence over time and their density" src="data:image/png;base64,{image}">
</body>
</html>
"""


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"
