"""The report figure: arousal and valence over time, and the speech windows on their plane.

A session of several streams (``--per-channel``: one voice per input channel) gets one row of
these panels per stream, stacked on one shared time axis, so what one speaker did can be read
against what the other did at the same moment. A one-stream session is one row, as it always was.

matplotlib is imported inside the functions (see :mod:`streamser.session.report`)."""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streamser.contracts import Estimate
from streamser.labels import DEMO_WARNING
from streamser.session.catalog import (
    affect_stats,
    format_duration,
    is_demo_model,
    model_label,
    parse_time,
    session_duration_s,
)
from streamser.session.reader import SessionData
from streamser.session.report_facts import DERIVED_NOTE, mute_spans, recorded_spans, settings_rows
from streamser.session.streams import estimates_by_stream, session_streams, stream_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIGURE_SIZE_PX = (1600, 1000)
"""The figure of a one-stream session."""
FIGURE_DPI = 100
HEADER_PX = 155
"""Above the panels: the title, the facts, the settings and the note on derived values."""
FOOTER_PX = 80
"""Below the panels: the time axis' label."""
STREAM_ROW_PX = 520
"""Height of one stream's row of panels when a session has several streams."""
MAX_FIGURE_HEIGHT_PX = 6000
"""Past this, the rows of a many-stream session get lower instead of the figure taller: its
pixels must stay in memory (1600 x 6000 RGBA is 38 MB)."""
MAX_NOTE_CHARS = 40
DENSITY_MIN_POINTS = 50
"""Below this many speech windows the plane shows each one as a dot: a density of a handful
of points, with a colour scale of one or two counts, says nothing."""
DENSITY_MIN_PEAK = 3
"""A density whose fullest cell holds fewer windows than this is shown as dots too."""


def figure_size_px(n_streams: int) -> tuple[int, int]:
    """The figure's size: ``FIGURE_SIZE_PX`` for one stream, one ``STREAM_ROW_PX`` row more per
    stream for several, at most ``MAX_FIGURE_HEIGHT_PX`` high."""
    if n_streams <= 1:
        return FIGURE_SIZE_PX
    height = HEADER_PX + FOOTER_PX + n_streams * STREAM_ROW_PX
    return FIGURE_SIZE_PX[0], min(height, MAX_FIGURE_HEIGHT_PX)


def render_png(session: SessionData) -> bytes:
    """The report figure as PNG bytes, exactly ``figure_size_px(streams)`` pixels."""
    buf = io.BytesIO()
    build_figure(session).savefig(buf, format="png", dpi=FIGURE_DPI)
    return buf.getvalue()


def build_figure(session: SessionData) -> Figure:
    """The report figure, for saving or inspecting (tests look at its texts)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    streams = session_streams(session)
    width_px, height_px = figure_size_px(len(streams))
    fig = Figure(figsize=(width_px / FIGURE_DPI, height_px / FIGURE_DPI), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    frame = {
        "left": 0.06,
        "right": 0.97,
        "top": 1 - HEADER_PX / height_px,
        "bottom": FOOTER_PX / height_px,
    }
    panels = {"width_ratios": (2.3, 1.0), "hspace": 0.12, "wspace": 0.16}
    _draw_titles(fig, session, height_px)
    axis = _TimeAxis.of(session)
    if len(streams) == 1:
        grid = fig.add_gridspec(2, 2, **frame, **panels)
        ax_arousal = fig.add_subplot(grid[0, 0])
        ax_valence = fig.add_subplot(grid[1, 0], sharex=ax_arousal)
        ax_plane = fig.add_subplot(grid[:, 1])
        _draw_timeline(ax_arousal, ax_valence, session, session.estimates, axis)
        _draw_plane(fig, ax_plane, session.estimates)
        return fig
    rows = fig.add_gridspec(len(streams), 1, **frame, hspace=0.25)
    groups = estimates_by_stream(session.estimates, streams)
    nonspeech = any(not e.is_speech for e in session.estimates)
    shared: Axes | None = None
    for i, spec in enumerate(streams):
        cell = rows[i].subgridspec(2, 2, **panels)
        ax_arousal = fig.add_subplot(cell[0, 0], sharex=shared)
        shared = shared or ax_arousal
        ax_valence = fig.add_subplot(cell[1, 0], sharex=shared)
        ax_plane = fig.add_subplot(cell[:, 1])
        row = _Row(
            label=stream_label(spec),
            first=i == 0,
            last=i == len(streams) - 1,
            nonspeech_elsewhere=nonspeech,
        )
        _draw_timeline(ax_arousal, ax_valence, session, groups[spec.name], axis, row)
        _draw_plane(fig, ax_plane, groups[spec.name], f"{spec.name}: ")
    return fig


@dataclass(frozen=True)
class _TimeAxis:
    """The time axis every row shares: its unit and right edge, from all streams' estimates,
    the mutes and the recorded audio."""

    right_s: float
    scale: float
    unit: str

    @classmethod
    def of(cls, session: SessionData) -> _TimeAxis:
        spans = mute_spans(session) + recorded_spans(session)
        last_s = max(
            [e.t_end_s for e in session.estimates]
            + [t for span in spans for t in span if t < math.inf],
            default=0.0,
        )
        right_s = last_s + max(1.0, 0.03 * last_s)  # a mute still on at the end is drawn to here
        scale, unit = (60.0, "min") if last_s > 600 else (1.0, "s")
        return cls(right_s=right_s, scale=scale, unit=unit)


@dataclass(frozen=True)
class _Row:
    """Where a stream's row sits: the first carries the legends and the marks' notes, the last
    the time axis' label."""

    label: str | None = None
    """The stream's name in the row's title; None for a one-stream session."""
    first: bool = True
    last: bool = True
    nonspeech_elsewhere: bool = False
    """Another row shades non-speech: the first row's legend explains the shading."""


def _draw_titles(fig: Figure, session: SessionData, height_px: int) -> None:
    """The header, at fixed pixel offsets from the figure's top whatever its height."""

    def y(px_from_top: float) -> float:
        return 1 - px_from_top / height_px

    meta = session.meta
    start = parse_time(meta.get("start_time"))
    duration = session_duration_s(meta, affect_stats(session.estimates).last_t_end_s)
    fig.suptitle(
        f"streamser session {session.session_id}",
        x=0.06,
        y=y(25),
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
    fig.text(0.06, y(60), "   |   ".join(facts), fontsize=11, ha="left")
    settings = "   |   ".join(
        f"{name.lower()} {value}" for name, value in settings_rows(meta) if name != "Model"
    )
    fig.text(0.06, y(87), settings, fontsize=10, ha="left", color="0.2")
    fig.text(0.06, y(112), DERIVED_NOTE, fontsize=10, ha="left", style="italic", color="0.35")
    if is_demo_model(meta):
        fig.text(
            0.97,
            y(25),
            DEMO_WARNING.upper(),
            fontsize=14,
            ha="right",
            va="top",
            color="white",
            fontweight="bold",
            bbox={"facecolor": "crimson", "edgecolor": "none", "pad": 6},
        )


def _draw_timeline(
    ax_a: Axes,
    ax_v: Axes,
    session: SessionData,
    est: list[Estimate],
    axis: _TimeAxis,
    row: _Row | None = None,
) -> None:
    """One stream's arousal and valence over time, with the session's mutes, recorded audio
    and marks (they concern every stream)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    row = row or _Row()
    mutes = [(lo, min(hi, axis.right_s)) for lo, hi in mute_spans(session)]
    audio = recorded_spans(session)
    scale = axis.scale
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
    if row.last:
        ax_v.set_xlabel(f"stream time ({axis.unit})")
    ax_a.tick_params(labelbottom=False)
    if row.label is None:
        ax_a.set_title("over time", fontsize=11, loc="left")
    else:
        ax_a.set_title(f"{row.label}: over time", fontsize=11, loc="left", fontweight="bold")
    if not est:
        ax_a.text(0.5, 0.5, "no estimates", transform=ax_a.transAxes, ha="center")
    if not row.first:
        return
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
        (
            bool(speech_gaps) or row.nonspeech_elsewhere,
            Patch(color="0.5", alpha=0.3, label="non-speech"),
        ),
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


def _draw_plane(fig: Figure, ax: Axes, estimates: list[Estimate], prefix: str = "") -> None:
    """One stream's speech windows on the valence-arousal plane; ``prefix`` names the stream
    in the title where there are several."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    points = [
        (e.valence, e.arousal)
        for e in estimates
        if e.is_speech and _finite(e.valence) and _finite(e.arousal)
    ]
    ax.set_xlim(-1.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    bins, limits = (40, 20), ((-1.0, 1.0), (0.0, 1.0))
    title = f"{prefix}speech windows on the valence-arousal plane (n={len(points)})"
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
            title = f"{prefix}density of speech windows (n={len(points)})"
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


def _nan(values: list[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]
