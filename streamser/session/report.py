"""A static picture of one session: ``streamser report SESSION out.png|out.html``.

The figure puts arousal and valence over time on the left (raw per-window values as dots on a
thin line, the smoothed track bold, non-speech stretches shaded, muted stretches hatched, the
recorded audio as a strip along the bottom, the user's marks as labelled lines) and the speech
windows on the valence-arousal plane on the right (each window as a dot when there are few,
their density with a count scale when there are many). The header says how the run was set up
(model, hop, smoothing, voice-activity threshold, input, compute) and how it ended. The HTML
variant is one self-contained file: the same PNG embedded as base64 plus summary tables in
plain words and numbers, so it can be mailed or archived without its surroundings.

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
from streamser.session.recorder import list_recording_segments

__all__ = [
    "DEMO_WARNING",
    "build_figure",
    "format_value",
    "is_demo_model",
    "model_label",
    "render_html",
    "render_png",
    "settings_rows",
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
MAX_INPUT_CHARS = 48
DENSITY_MIN_POINTS = 50
"""Below this many speech windows the plane shows each one as a dot: a density of a handful
of points, with a colour scale of one or two counts, says nothing."""
DENSITY_MIN_PEAK = 3
"""A density whose fullest cell holds fewer windows than this is shown as dots too."""
Span = tuple[float, float]


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
        top=0.845,
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
    fig.text(0.06, 0.94, "   |   ".join(facts), fontsize=11, ha="left")
    settings = "   |   ".join(
        f"{name.lower()} {value}" for name, value in settings_rows(meta) if name != "Model"
    )
    fig.text(0.06, 0.913, settings, fontsize=10, ha="left", color="0.2")
    fig.text(0.06, 0.888, DERIVED_NOTE, fontsize=10, ha="left", style="italic", color="0.35")
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
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    est = session.estimates
    mutes = mute_spans(session)
    audio = recorded_spans(session)
    last_s = max(
        [e.t_end_s for e in est] + [t for span in mutes + audio for t in span if t < math.inf],
        default=0.0,
    )
    right_s = last_s + max(1.0, 0.03 * last_s)  # a mute still on at the end is drawn to here
    mutes = [(lo, min(hi, right_s)) for lo, hi in mutes]
    scale, unit = (60.0, "min") if last_s > 600 else (1.0, "s")
    x = [(e.t_start_s + e.t_end_s) / 2 / scale for e in est]
    speech_gaps = non_speech_spans(x, [e.is_speech for e in est])
    for ax, name, raw, smooth, limits, colors in (
        (
            ax_a,
            "arousal",
            [e.arousal for e in est],
            [e.arousal_smooth for e in est],
            (0.0, 1.0),
            ("#e8686a", "#8b0000"),
        ),
        (
            ax_v,
            "valence",
            [e.valence for e in est],
            [e.valence_smooth for e in est],
            (-1.0, 1.0),
            ("#5b9bd5", "#08306b"),
        ),
    ):
        raw_color, smooth_color = colors
        ax.plot(
            x,
            _nan(raw),
            color=raw_color,
            linewidth=1.0,
            marker="o",
            markersize=2.5,
            label=f"{name}, each window",
        )
        ax.plot(x, _nan(smooth), color=smooth_color, linewidth=2.4, label=f"{name}, smoothed")
        ax.set_ylim(*limits)
        ax.set_ylabel(f"{name} (derived)")
        ax.grid(True, alpha=0.3)
        for lo, hi in speech_gaps:
            ax.axvspan(lo, hi, color="0.5", alpha=0.15, linewidth=0)
        for lo, hi in mutes:
            ax.axvspan(
                lo / scale, hi / scale, facecolor="none", edgecolor="#6a3d9a", hatch="//",
                linewidth=0, alpha=0.6,
            )  # fmt: skip
        for lo, hi in audio:
            ax.axvspan(lo / scale, hi / scale, ymin=0.0, ymax=0.03, color="#ff7f00", linewidth=0)
        for mark in session.marks:
            ax.axvline(float(mark["t_s"]) / scale, color="darkgreen", linewidth=1, alpha=0.8)
    ax_v.axhline(0.0, color="0.4", linewidth=0.8)
    ax_v.set_xlabel(f"stream time ({unit})")
    ax_a.tick_params(labelbottom=False)
    ax_a.set_title("over time", fontsize=11, loc="left")
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
    ax_v.legend(loc="lower right", fontsize=8, framealpha=0.85)
    handles, _ = ax_a.get_legend_handles_labels()
    extra = [
        (bool(speech_gaps), Patch(color="0.5", alpha=0.3, label="non-speech")),
        (
            bool(mutes),
            Patch(facecolor="none", edgecolor="#6a3d9a", hatch="//", label="muted (not captured)"),
        ),
        (bool(audio), Patch(color="#ff7f00", label="audio recorded")),
        (bool(session.marks), Line2D([], [], color="darkgreen", linewidth=1, label="mark")),
    ]
    ax_a.legend(
        handles=handles + [h for shown, h in extra if shown],
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        ncol=6,
        fontsize=8,
        frameon=False,
        borderaxespad=0.2,
    )


def mute_spans(session: SessionData) -> list[Span]:
    """Muted stretches in stream seconds, from meta.json's ``mutes``. A mute still on when the
    log ended (the sink closes every mute at a clean close) has no known end: it ends at
    ``math.inf``, which the figure draws to its right edge and the HTML calls the end of the
    log."""
    found = session.meta.get("mutes")
    spans: list[Span] = []
    for mute in found if isinstance(found, list) else []:
        if not isinstance(mute, dict):
            continue
        lo, hi = _float_or_none(mute.get("t_start_s")), _float_or_none(mute.get("t_end_s"))
        if lo is None:
            continue
        hi = hi if hi is not None else math.inf
        if hi >= lo:
            spans.append((lo, hi))
    return spans


def recorded_spans(session: SessionData) -> list[Span]:
    """Stretches of recorded audio in stream seconds, merged where segments touch: from the
    segment files when the session's directory has them (their headers are the truth after a
    kill), else from meta.json's ``audio_segments``."""
    spans: list[Span] = []
    try:
        segments = list_recording_segments(session.path)
    except (SessionError, OSError):
        segments = []
    if segments:
        spans = [
            (s.start_frame / s.sample_rate_hz, s.end_frame / s.sample_rate_hz) for s in segments
        ]
    else:
        audio = session.meta.get("audio")
        rate = _float_or_none(audio.get("sample_rate_hz")) if isinstance(audio, dict) else None
        found = session.meta.get("audio_segments")
        for seg in found if isinstance(found, list) else []:
            if not isinstance(seg, dict):
                continue
            start_frame, frames = _float_or_none(seg.get("start_frame")), seg.get("frames")
            start_s = _float_or_none(seg.get("start_s"))
            if start_s is None and start_frame is not None and rate:
                start_s = start_frame / rate
            n = _float_or_none(frames)
            if start_s is not None and n is not None and rate:
                spans.append((start_s, start_s + n / rate))
    merged: list[Span] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1] + 1e-6:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _draw_plane(fig: Figure, ax: Axes, session: SessionData) -> None:
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    points = [
        (e.valence, e.arousal)
        for e in session.estimates
        if e.is_speech and _finite(e.valence) and _finite(e.arousal)
    ]
    ax.set_xlim(-1.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    bins, limits = (40, 20), ((-1.0, 1.0), (0.0, 1.0))
    title = f"speech windows on the valence-arousal plane (n={len(points)})"
    if points:
        valence, arousal = (list(axis) for axis in zip(*points, strict=True))
        counts, _, _ = np.histogram2d(valence, arousal, bins=bins, range=limits)
        if len(points) >= DENSITY_MIN_POINTS and counts.max() >= DENSITY_MIN_PEAK:
            *_, image = ax.hist2d(
                valence, arousal, bins=bins, range=limits, cmap="magma_r", cmin=1, vmin=1
            )
            bar = fig.colorbar(image, ax=ax, label="speech windows per cell", shrink=0.8)
            bar.locator = MaxNLocator(integer=True)
            bar.update_ticks()
            title = f"density of speech windows (n={len(points)})"
        else:
            ax.scatter(valence, arousal, s=22, color="#6a3d9a", alpha=0.6, linewidths=0)
    else:
        ax.text(
            0.0, 0.5, "no speech windows", ha="center", va="center", zorder=5,
            bbox={"facecolor": "white", "edgecolor": "none"},
        )  # fmt: skip
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
    ax.set_title(title, fontsize=11)


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


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _nan(values: list[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def settings_rows(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """How the run was set up, as meta.json recorded it: model, hop, smoothing, voice-activity
    threshold, input and compute. Whatever is missing says "not recorded"."""
    config = _section(meta, "config")
    windows, model_cfg = _section(config, "windows"), _section(config, "model")
    audio, compute = _section(meta, "audio"), _section(meta, "compute")
    hop = _float_or_none(windows.get("hop_s"))
    smooth = _float_or_none(windows.get("smooth_s"))
    threshold = _float_or_none(windows.get("vad_threshold"))
    if windows.get("vad") is False:
        vad = "off (every window counts as speech)"
    else:
        vad = format_value(threshold) if threshold is not None else NOT_RECORDED
        if windows.get("skip_non_speech") is True:
            vad += ", non-speech windows skipped"
    source = str(audio.get("source") or audio.get("device") or "")
    if len(source) > MAX_INPUT_CHARS:
        source = "…" + source[-(MAX_INPUT_CHARS - 1) :]
    rate, channels = audio.get("sample_rate_hz"), audio.get("channels")
    details = [f"{format_value(rate)} Hz" if rate else "", f"{channels} ch" if channels else ""]
    if audio.get("realtime") is False:
        details.append("as fast as possible")
    shown = ", ".join(d for d in details if d)
    input_text = (source or NOT_RECORDED) + (f" ({shown})" if shown else "")
    compute_parts = [str(compute[k]) for k in ("device", "dtype", "backend") if compute.get(k)]
    if model_cfg.get("quantize"):
        compute_parts.append(f"quantized {model_cfg['quantize']}")
    model = model_label(meta) + (f" ({DEMO_WARNING})" if is_demo_model(meta) else "")
    return [
        ("Model", model),
        ("Hop", f"{format_value(hop)} s" if hop is not None else NOT_RECORDED),
        (
            "Smoothing",
            (f"{format_value(smooth)} s" if smooth else "off")
            if smooth is not None
            else NOT_RECORDED,
        ),
        ("VAD threshold", vad),
        ("Input", input_text),
        ("Compute", " ".join(compute_parts) if compute_parts else NOT_RECORDED),
    ]


def summary_rows(session: SessionData) -> list[tuple[str, str]]:
    """The facts shown beside the figure in the HTML report, every value formatted for
    people (see :func:`format_value`)."""
    meta = session.meta
    stats = affect_stats(session.estimates)
    found = meta.get("counters")
    counters: dict[str, Any] = found if isinstance(found, dict) else {}
    mutes, audio = mute_spans(session), recorded_spans(session)
    rows = [
        ("Session", session.session_id),
        ("Start", _fmt_time(meta.get("start_time"), "unknown")),
        ("End", _fmt_time(meta.get("end_time"), "not recorded")),
        ("Duration", format_duration(session_duration_s(meta, stats.last_t_end_s))),
        ("State", session.state.text),
        *settings_rows(meta),
        ("streamser version", format_value(meta.get("streamser_version", "unknown"))),
        ("Estimates", str(stats.n_estimates)),
        ("Speech windows", str(stats.n_speech)),
        ("Mean arousal (derived)", _fmt(stats.mean_arousal)),
        ("Mean valence (derived)", _fmt(stats.mean_valence)),
        ("Marks", str(len(session.marks))),
        ("Muted", _fmt_spans(mutes)),
        ("Audio recorded", _fmt_spans(audio)),
        ("Unreadable log lines", str(session.truncated_lines)),
    ]
    rows += [(f"Counter: {k}", format_value(v)) for k, v in sorted(counters.items())]
    return rows


NOT_RECORDED = "not recorded"


def format_value(value: Any) -> str:
    """A meta.json value in words and numbers, never a Python repr: None is "none", booleans
    "yes"/"no", floats at most 6 significant digits, lists joined with "; " ("none" when
    empty), objects as "key: value" pairs joined with ", "."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list | tuple):
        return "; ".join(format_value(v) for v in value) or "none"
    return str(value)


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
<h2>Muted and recorded stretches</h2>
<table>
<tr><th>what</th><th>from (s)</th><th>to (s)</th></tr>
{spans}
</table>
<img alt="arousal and valence over time and their plane" src="data:image/png;base64,{image}">
</body>
</html>
"""


def _section(meta: dict[str, Any], key: str) -> dict[str, Any]:
    found = meta.get(key)
    return found if isinstance(found, dict) else {}


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


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"
