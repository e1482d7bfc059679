"""Dashboard widgets, each drawn cheaply from plain data and redrawn only when its input changed.

A full-screen plotting library refreshed at a few hertz stole enough CPU to triple the model's
compute time, so the plots here are purpose-built: the estimate history lives in numpy arrays,
each plot is sampled once per braille dot column and packed into characters with a handful of
vectorised operations, and the resulting ``Text`` is cached until the data, the size, the time
range or the theme changes. Widgets never read the controller: the app hands them data on its
frame timer, on the Textual thread.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Literal

import numpy as np
from rich.style import Style
from rich.text import Span, Text
from textual.color import Color
from textual.geometry import Size
from textual.widget import Widget

from streamser.constants import NUM_CLASSES, WINDOW_S
from streamser.engine.estimate import Estimate
from streamser.labels import CLASS_NAMES
from streamser.tui.controller import StatusSnapshot

Series = Literal["arousal", "valence"]

# ---------------------------------------------------------------------------------------------
# Plot data


@dataclass(frozen=True, eq=False)
class TrackView:
    """A copy of the recent estimate history as arrays, oldest first; what every view draws.

    ``cover_start`` is where each estimate's step begins on the time axis: the previous
    estimate's end, but never more than one window back, so a pause in the stream shows as a gap
    instead of a long flat line. Missing values are NaN.
    """

    version: int
    t_end: np.ndarray
    cover_start: np.ndarray
    arousal: np.ndarray
    valence: np.ndarray
    arousal_smooth: np.ndarray
    valence_smooth: np.ndarray
    is_speech: np.ndarray

    @property
    def t_now(self) -> float:
        """Stream time of the newest estimate: the right edge of every time axis."""
        return float(self.t_end[-1]) if len(self.t_end) else 0.0

    def raw(self, series: Series) -> np.ndarray:
        return self.arousal if series == "arousal" else self.valence

    def smooth(self, series: Series) -> np.ndarray:
        return self.arousal_smooth if series == "arousal" else self.valence_smooth


_TRACK_FIELDS = ("t_end", "cover_start", "arousal", "valence", "arousal_smooth", "valence_smooth")


class EstimateTrack:
    """Bounded, append-only arrays of the values the plots need.

    Appending writes a few scalars; a view copies at most ``capacity`` rows. The arrays hold
    twice the capacity and slide the newest half to the front when full, so appends stay O(1)
    amortised without a deque of Python floats to convert on every frame.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._float = {name: np.full(2 * capacity, np.nan) for name in _TRACK_FIELDS}
        self._speech = np.zeros(2 * capacity, dtype=bool)
        self._n = 0
        self.version = 0
        """Increments on every append: the frame timer redraws only when it moved."""

    def __len__(self) -> int:
        return min(self._n, self.capacity)

    def append(self, e: Estimate) -> None:
        """Add one estimate; a stream clock that went backwards (source restarted) starts afresh."""
        if self._n and e.t_end_s < self._float["t_end"][self._n - 1]:
            self._n = 0
        if self._n == 2 * self.capacity:
            keep = slice(self.capacity, 2 * self.capacity)
            for arr in (*self._float.values(), self._speech):
                arr[: self.capacity] = arr[keep]
            self._n = self.capacity
        i = self._n
        prev_end = self._float["t_end"][i - 1] if i else e.t_start_s
        row = {
            "t_end": e.t_end_s,
            "cover_start": max(prev_end, e.t_end_s - WINDOW_S),
            "arousal": _nan_if_none(e.arousal),
            "valence": _nan_if_none(e.valence),
            "arousal_smooth": _nan_if_none(e.arousal_smooth),
            "valence_smooth": _nan_if_none(e.valence_smooth),
        }
        for name, value in row.items():
            self._float[name][i] = value
        self._speech[i] = e.is_speech
        self._n += 1
        self.version += 1

    def view(self) -> TrackView:
        """Copy out the newest ``capacity`` rows, so later appends cannot change what is drawn."""
        s = slice(max(0, self._n - self.capacity), self._n)
        arrays = {name: arr[s].copy() for name, arr in self._float.items()}
        return TrackView(version=self.version, is_speech=self._speech[s].copy(), **arrays)


def _nan_if_none(x: float | None) -> float:
    return math.nan if x is None else x


def sample_columns(
    view: TrackView, values: np.ndarray, t_left: float, range_s: float, n_cols: int
) -> tuple[np.ndarray, np.ndarray]:
    """Value and speech flag at the centre time of each of ``n_cols`` columns spanning the range.

    Each estimate is a step covering ``(cover_start, t_end]``; columns no estimate covers get
    NaN and count as speech (nothing to mark).
    """
    centres = t_left + (np.arange(n_cols) + 0.5) * (range_s / n_cols)
    n = len(view.t_end)
    if n == 0:
        return np.full(n_cols, np.nan), np.ones(n_cols, dtype=bool)
    idx = np.searchsorted(view.t_end, centres, side="left")
    idx_c = np.minimum(idx, n - 1)
    covered = (idx < n) & (view.cover_start[idx_c] <= centres)
    return np.where(covered, values[idx_c], np.nan), np.where(covered, view.is_speech[idx_c], True)


# ---------------------------------------------------------------------------------------------
# Braille rendering

_BRAILLE_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.int64)
"""Bit of the dot at (row, column) inside one braille cell of 4 x 2 dots."""


def pack_braille(dots: np.ndarray) -> np.ndarray:
    """Pack a (4*rows, 2*cols) boolean dot grid into (rows, cols) braille bit patterns."""
    h4, w2 = dots.shape
    cells = dots.reshape(h4 // 4, 4, w2 // 2, 2) * _BRAILLE_BITS[None, :, None, :]
    return cells.sum(axis=(1, 3))


def value_rows(values: np.ndarray, lo: float, hi: float, n_rows: int) -> np.ndarray:
    """Dot row of each value, 0 at the top (``hi``); values outside are clipped; NaN gives -1."""
    with np.errstate(invalid="ignore"):
        r = np.rint((hi - values) / (hi - lo) * (n_rows - 1))
    r = np.clip(r, 0, n_rows - 1)
    return np.where(np.isnan(values), -1, r).astype(np.int64)


def line_dots(rows: np.ndarray, n_rows: int, *, connect: bool) -> np.ndarray:
    """Dot grid of a series; with ``connect`` each column also fills the step from its neighbour."""
    lo, hi = rows.copy(), rows.copy()
    if connect and len(rows) > 1:
        prev, cur = rows[:-1], rows[1:]
        both = (prev >= 0) & (cur >= 0)
        lo[1:] = np.where(both, np.minimum(prev, cur), cur)
        hi[1:] = np.where(both, np.maximum(prev, cur), cur)
    r = np.arange(n_rows)[:, None]
    return (rows[None, :] >= 0) & (r >= lo[None, :]) & (r <= hi[None, :])


# Cell kinds, by drawing priority; NONSPEECH is added on top as a background.
_EMPTY, _GRID, _RAW, _SMOOTH = 0, 1, 2, 3
_NONSPEECH = 4


@dataclass(frozen=True)
class PlotCells:
    """One plot area as braille characters plus a kind per cell (which style to draw it in)."""

    codes: np.ndarray
    """(rows, cols) braille bit patterns; 0 is an empty cell."""
    kinds: np.ndarray
    """(rows, cols) of ``_EMPTY`` .. ``_SMOOTH``, plus ``_NONSPEECH`` for non-speech columns."""
    nonspeech_cols: np.ndarray
    """(cols,) True where the column's audio was judged non-speech."""


def plot_cells(
    view: TrackView,
    series: Series,
    *,
    lo: float,
    hi: float,
    grid_at: float | None,
    range_s: float,
    rows: int,
    cols: int,
) -> PlotCells:
    """Lay out raw dots (faint), the smoothed line (connected) and a dotted grid line."""
    n_dot_rows, n_dot_cols = 4 * rows, 2 * cols
    t_left = view.t_now - range_s
    raw, speech = sample_columns(view, view.raw(series), t_left, range_s, n_dot_cols)
    smooth, _ = sample_columns(view, view.smooth(series), t_left, range_s, n_dot_cols)
    raw_dots = line_dots(value_rows(raw, lo, hi, n_dot_rows), n_dot_rows, connect=False)
    smooth_dots = line_dots(value_rows(smooth, lo, hi, n_dot_rows), n_dot_rows, connect=True)
    grid_dots = np.zeros((n_dot_rows, n_dot_cols), dtype=bool)
    if grid_at is not None:
        grid_row = value_rows(np.array([grid_at]), lo, hi, n_dot_rows)[0]
        grid_dots[grid_row, ::4] = True
    layers = [(grid_dots, _GRID), (raw_dots, _RAW), (smooth_dots, _SMOOTH)]
    codes = np.zeros((rows, cols), dtype=np.int64)
    kinds = np.zeros((rows, cols), dtype=np.int64)
    for dots, kind in layers:
        packed = pack_braille(dots)
        codes |= packed
        kinds = np.where(packed > 0, kind, kinds)
    nonspeech_cols = ~(speech[0::2] & speech[1::2])
    kinds = kinds + np.where(nonspeech_cols[None, :], _NONSPEECH, 0)
    return PlotCells(codes=codes, kinds=kinds, nonspeech_cols=nonspeech_cols)


def time_ticks(range_s: float) -> tuple[float, ...]:
    """Seconds-ago positions of the labelled ticks, four or five per range, ``0`` being now."""
    step = {30.0: 10.0, 60.0: 15.0, 120.0: 30.0, 300.0: 60.0, 600.0: 120.0}.get(range_s)
    if step is None:
        step = range_s / 4
    n = round(range_s / step)
    return tuple(k * step for k in range(n, -1, -1))


def format_ago(seconds: float, range_s: float) -> str:
    """Tick label: ``now``, ``-20s`` below two minutes, otherwise ``-m:ss``."""
    if seconds <= 0:
        return "now"
    if range_s < 120:
        return f"-{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"-{minutes}:{secs:02d}"


def format_range(range_s: float) -> str:
    """Range caption for the plot title, e.g. ``last 30 s`` or ``last 5 min``."""
    return f"last {range_s:.0f} s" if range_s < 60 else f"last {range_s / 60:g} min"


def tick_label_row(range_s: float, cols: int) -> str:
    """``cols`` characters with the tick labels under their columns, dropping any that overlap."""
    row = [" "] * cols
    free_from = 0
    for ago in time_ticks(range_s):
        label = format_ago(ago, range_s)
        col = round((1 - ago / range_s) * (cols - 1))
        start = min(max(col - len(label) // 2, 0), cols - len(label))
        if start < free_from or start < 0:
            continue
        row[start : start + len(label)] = label
        free_from = start + len(label) + 1
    return "".join(row)


class TextBuilder:
    """Collects plain text and styled spans, then makes one ``Text``.

    Thousands of ``Text.append`` calls (each copies and scans its string) were most of a plot's
    drawing time; building the string once with a span list is several times cheaper.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._spans: list[Span] = []
        self._len = 0

    def add(self, s: str, style: Style | None = None) -> None:
        if style:
            self._spans.append(Span(self._len, self._len + len(s), style))
        self._parts.append(s)
        self._len += len(s)

    def text(self) -> Text:
        return Text("".join(self._parts), spans=self._spans, no_wrap=True, overflow="crop")


class CachedRender(Widget):
    """A widget whose ``Text`` is rebuilt only when its cache key changes.

    Subclasses implement :meth:`cache_key` (everything the picture depends on) and
    :meth:`build`. The theme is always part of the key because the styles come from CSS.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._cache: tuple[Any, Text] | None = None
        self.renders = 0
        """How many times the picture was rebuilt (tests check the caching)."""

    def cache_key(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def build(self, width: int, height: int) -> Text:
        raise NotImplementedError

    def render(self) -> Text:
        size = self.content_size
        key = (self.app.theme, size.width, size.height, *self.cache_key())
        if self._cache is None or self._cache[0] != key:
            self.renders += 1
            self._cache = (key, self.build(size.width, size.height))
        return self._cache[1]

    def style_of(self, component: str) -> Style:
        """Rich style of a component class, with translucent colours blended over this widget's
        background (Textual's partial styles leave the alpha out, which turns a faint tint into
        a solid block). Component rules must name concrete colours (``$foreground 60%``, not
        ``$text-muted``): an ``auto`` colour in a component class resolves against no background
        and comes out white, unreadable in a light theme."""
        styles = self.get_component_styles(component)
        base = self.background_colors[1]
        bg = base + styles.background if styles.has_rule("background") else None
        fg = None
        if styles.has_rule("color"):
            under = bg or base
            fg = (
                under.get_contrast_text(styles.color.a)
                if styles.color.auto
                else under + styles.color
            )
        return (
            Style(
                color=fg.rich_color if fg is not None else None,
                bgcolor=bg.rich_color if bg is not None else None,
            )
            + styles.text_style
        )


class TrajectoryPlot(CachedRender):
    """One derived dimension over time: faint raw dots, a bold smoothed line, shaded non-speech."""

    COMPONENT_CLASSES = frozenset(
        {
            "trajectory--title",
            "trajectory--axis",
            "trajectory--grid",
            "trajectory--raw",
            "trajectory--smooth",
            "trajectory--nonspeech",
            "trajectory--nonspeech-mark",
        }
    )
    DEFAULT_CSS = """
    TrajectoryPlot { height: 1fr; min-height: 5; }
    TrajectoryPlot > .trajectory--title { text-style: bold; }
    TrajectoryPlot > .trajectory--axis { color: $foreground 60%; }
    TrajectoryPlot > .trajectory--grid { color: $foreground 40%; }
    TrajectoryPlot > .trajectory--raw { color: $text-primary 40%; }
    TrajectoryPlot > .trajectory--smooth { color: $text-primary; text-style: bold; }
    TrajectoryPlot > .trajectory--nonspeech { background: $warning 18%; }
    TrajectoryPlot > .trajectory--nonspeech-mark { color: $text-warning; }
    """
    GUTTER = 6
    """Columns left of the plot area: a value label and the axis line."""

    def __init__(
        self,
        title: str,
        series: Series,
        *,
        lo: float,
        hi: float,
        grid_at: float | None,
        range_s: float,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.title = title
        self.series: Series = series
        self.lo, self.hi, self.grid_at = lo, hi, grid_at
        self.range_s = range_s
        self.view: TrackView | None = None

    def show(self, view: TrackView) -> None:
        """Draw ``view`` at the next refresh."""
        self.view = view
        self.refresh()

    def set_range(self, range_s: float) -> None:
        self.range_s = range_s
        self.refresh()

    @property
    def shown_version(self) -> int:
        """Version of the track this plot shows (0 before any data)."""
        return self.view.version if self.view is not None else 0

    def cache_key(self) -> tuple[Any, ...]:
        return (self.shown_version, self.range_s)

    def build(self, width: int, height: int) -> Text:
        cols, rows = max(width - self.GUTTER, 1), max(height - 3, 1)
        out = TextBuilder()
        self._add_title_row(out, width)
        view = self.view
        cells = None
        if view is not None and len(view.t_end):
            cells = plot_cells(
                view,
                self.series,
                lo=self.lo,
                hi=self.hi,
                grid_at=self.grid_at,
                range_s=self.range_s,
                rows=rows,
                cols=cols,
            )
        self._add_plot_rows(out, cells, rows, cols)
        self._add_axis_rows(out, cells, cols)
        return out.text()

    def _add_title_row(self, out: TextBuilder, width: int) -> None:
        title = self.title
        if self.view is not None and len(self.view.t_end):
            now = float(self.view.smooth(self.series)[-1])
            if not math.isnan(now):
                title += f"  {now:+.2f}" if self.lo < 0 else f"  {now:.2f}"
        right = format_range(self.range_s)
        pad = width - len(title) - len(right)
        out.add(title[:width], self.style_of("trajectory--title"))
        if pad >= 1:
            out.add(" " * pad)
            out.add(right, self.style_of("trajectory--axis"))
        out.add("\n")

    def _gutters(self, rows: int) -> list[str]:
        """The left margin of each plot row: value labels at their rows, an axis line elsewhere."""
        values = [self.hi, self.lo]
        if self.grid_at is not None and rows >= 5:
            values.append(self.grid_at)
        if rows >= 12:
            values += [self.lo + (self.hi - self.lo) * q for q in (0.25, 0.75)]
        dot_rows = value_rows(np.array(values), self.lo, self.hi, 4 * rows)
        gutters = [" " * (self.GUTTER - 1) + "│"] * rows
        for r, value in zip(dot_rows.tolist(), values, strict=True):
            label = f"{value:+.2f}" if self.lo < 0 and value != 0 else f"{value:.2f}"
            label = label[:-1] if label.endswith("0") else label  # 0.25 but 0.5, 1.0
            gutters[r // 4] = f"{label:>{self.GUTTER - 2}} ┤"
        return gutters

    def _add_plot_rows(
        self, out: TextBuilder, cells: PlotCells | None, rows: int, cols: int
    ) -> None:
        axis = self.style_of("trajectory--axis")
        base = [
            Style(),
            self.style_of("trajectory--grid"),
            self.style_of("trajectory--raw"),
            self.style_of("trajectory--smooth"),
        ]
        shade = self.style_of("trajectory--nonspeech")
        styles = base + [s + shade for s in base]
        chars = None
        if cells is not None:
            chars = np.where(cells.codes > 0, cells.codes + 0x2800, 0x20).astype("<u4")
        for r, gutter in enumerate(self._gutters(rows)):
            out.add(gutter, axis)
            if cells is None or chars is None:
                out.add(" " * cols + "\n")
                continue
            line = chars[r].tobytes().decode("utf-32-le")
            kinds = cells.kinds[r]
            bounds = (np.flatnonzero(np.diff(kinds)) + 1).tolist()
            for start, end in zip([0, *bounds], [*bounds, cols], strict=True):
                out.add(line[start:end], styles[int(kinds[start])])
            out.add("\n")

    def _add_axis_rows(self, out: TextBuilder, cells: PlotCells | None, cols: int) -> None:
        axis = self.style_of("trajectory--axis")
        out.add(" " * (self.GUTTER - 1) + "└", axis)
        if cells is None:
            out.add("─" * cols, axis)
        else:
            mark = self.style_of("trajectory--nonspeech-mark") + self.style_of(
                "trajectory--nonspeech"
            )
            for nonspeech, run in groupby(cells.nonspeech_cols.tolist()):
                n = len(list(run))
                out.add("░" * n if nonspeech else "─" * n, mark if nonspeech else axis)
        out.add("\n")
        out.add(" " * self.GUTTER + tick_label_row(self.range_s, cols), axis)


# ---------------------------------------------------------------------------------------------
# Circumplex


class CircumplexView(CachedRender):
    """Valence (x, -1..1) against arousal (y, 0..1): the current point and a fading recent trail."""

    TRAIL_S = 10.0
    """Seconds of stream time the trail covers."""
    FADE_LEVELS = 4

    COMPONENT_CLASSES = frozenset(
        {"circumplex--title", "circumplex--axis", "circumplex--label", "circumplex--point"}
    )
    DEFAULT_CSS = """
    CircumplexView { height: 1fr; min-height: 5; }
    CircumplexView > .circumplex--title { text-style: bold; }
    CircumplexView > .circumplex--axis { color: $foreground 60%; }
    CircumplexView > .circumplex--label { color: $foreground 60%; text-style: italic; }
    CircumplexView > .circumplex--point { color: $text-accent; text-style: bold; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view: TrackView | None = None

    def show(self, view: TrackView) -> None:
        self.view = view
        self.refresh()

    def cache_key(self) -> tuple[Any, ...]:
        return (self.view.version if self.view is not None else 0,)

    def trail(self) -> list[tuple[float, float, float]]:
        """(valence, arousal, age in seconds) of the recent points, oldest first; smoothed values
        where present, raw ones otherwise."""
        view = self.view
        if view is None or not len(view.t_end):
            return []
        recent = view.t_end >= view.t_now - self.TRAIL_S
        v = np.where(np.isnan(view.valence_smooth), view.valence, view.valence_smooth)[recent]
        a = np.where(np.isnan(view.arousal_smooth), view.arousal, view.arousal_smooth)[recent]
        ages = view.t_now - view.t_end[recent]
        ok = ~(np.isnan(v) | np.isnan(a))
        return list(zip(v[ok].tolist(), a[ok].tolist(), ages[ok].tolist(), strict=True))

    def build(self, width: int, height: int) -> Text:
        rows, cols = max(height - 1, 3), max(width, 9)
        grid: list[list[tuple[str, Style]]] = [[(" ", Style())] * cols for _ in range(rows)]
        axis, label = self.style_of("circumplex--axis"), self.style_of("circumplex--label")
        x0, y0 = (cols - 1) // 2, (rows - 1) // 2
        for c in range(cols):
            grid[y0][c] = ("─", axis)
        for r in range(rows):
            grid[r][x0] = ("┼" if r == y0 else "│", axis)
        self._put(grid, 0, x0 + 2, "high arousal", label)
        self._put(grid, rows - 1, x0 + 2, "low", label)
        self._put(grid, y0 - 1 if y0 > 0 else y0, 0, "neg", label)
        self._put(grid, y0 - 1 if y0 > 0 else y0, cols - 3, "pos", label)
        points = self.trail()
        fades = self._fade_styles()
        for i, (v, a, age) in enumerate(points):
            c = round((min(max(v, -1.0), 1.0) + 1) / 2 * (cols - 1))
            r = round((1 - min(max(a, 0.0), 1.0)) * (rows - 1))
            if i == len(points) - 1:
                grid[r][c] = ("●", fades[0] + Style(bold=True))
            else:
                level = min(int(age / self.TRAIL_S * self.FADE_LEVELS), self.FADE_LEVELS - 1)
                grid[r][c] = ("•" if level < self.FADE_LEVELS - 1 else "·", fades[level])
        out = TextBuilder()
        out.add("valence → · arousal ↑"[:width], self.style_of("circumplex--title"))
        for row in grid:
            out.add("\n")
            for style, run in groupby(row, key=lambda cell: cell[1]):
                out.add("".join(ch for ch, _ in run), style)
        return out.text()

    @staticmethod
    def _put(grid: list[list[tuple[str, Style]]], r: int, c: int, s: str, style: Style) -> None:
        for i, ch in enumerate(s):
            if 0 <= c + i < len(grid[r]):
                grid[r][c + i] = (ch, style)

    def _fade_styles(self) -> list[Style]:
        """Point colour blended towards the background, newest (index 0) to oldest."""
        point = self.get_component_styles("circumplex--point").color
        background = self.background_colors[1]
        out = []
        for level in range(self.FADE_LEVELS):
            colour: Color = point.blend(background, 0.2 * level)
            out.append(Style(color=colour.rich_color))
        return out


# ---------------------------------------------------------------------------------------------
# Class probabilities

_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of ``width`` cells filled to ``fraction`` with eighth-cell resolution."""
    eighths = round(min(max(fraction, 0.0), 1.0) * width * 8)
    full, part = divmod(eighths, 8)
    s = "█" * full + (_EIGHTHS[part] if part else "")
    return s.ljust(width)


class ClassBars(CachedRender):
    """The six class probabilities as bars named by arousal x valence; the top class stands out."""

    COMPONENT_CLASSES = frozenset(
        {"classbars--title", "classbars--name", "classbars--bar", "classbars--top"}
    )
    DEFAULT_CSS = """
    ClassBars { height: 7; }
    ClassBars > .classbars--title { text-style: bold; }
    ClassBars > .classbars--name { color: $foreground 60%; }
    ClassBars > .classbars--bar { color: $text-primary; }
    ClassBars > .classbars--top { color: $text-accent; text-style: bold; }
    """
    NAME_WIDTH = max(len(n) for n in CLASS_NAMES)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.estimate: Estimate | None = None

    def show(self, estimate: Estimate | None) -> None:
        if estimate is not self.estimate:
            self.estimate = estimate
            self.refresh()

    def cache_key(self) -> tuple[Any, ...]:
        return (None if self.estimate is None else self.estimate.seq,)

    def build(self, width: int, height: int) -> Text:
        probs = self.estimate.probs if self.estimate is not None else None
        title = "class probabilities"
        if self.estimate is not None and probs is None:
            title += " (non-speech)"
        out = TextBuilder()
        out.add(title[:width], self.style_of("classbars--title"))
        bar_width = max(width - self.NAME_WIDTH - 7, 1)
        top = int(np.argmax(probs)) if probs is not None else -1
        name, top_style = self.style_of("classbars--name"), self.style_of("classbars--top")
        bar_style = self.style_of("classbars--bar")
        for i in range(NUM_CLASSES):
            out.add("\n")
            is_top = i == top
            out.add(f"{CLASS_NAMES[i]:<{self.NAME_WIDTH}} ", top_style if is_top else name)
            if probs is None:
                out.add(" " * bar_width + "    —")
                continue
            out.add(bar(probs[i], bar_width), top_style if is_top else bar_style)
            out.add(f" {probs[i]:4.2f}", top_style if is_top else name)
        return out.text()


# ---------------------------------------------------------------------------------------------
# Level meter

LEVEL_FLOOR_DBFS = -60.0
"""Bottom of the level meter; quieter input shows an empty bar."""
LEVEL_WARN_DBFS = -12.0
LEVEL_HOT_DBFS = -3.0


class LevelMeter(CachedRender):
    """Input level in dBFS on one row, coloured by headroom, with a clipping flag."""

    COMPONENT_CLASSES = frozenset(
        {"meter--label", "meter--ok", "meter--warn", "meter--hot", "meter--clip", "meter--track"}
    )
    DEFAULT_CSS = """
    LevelMeter { height: 1; }
    LevelMeter > .meter--label { color: $foreground 60%; }
    LevelMeter > .meter--ok { color: $text-success; }
    LevelMeter > .meter--warn { color: $text-warning; }
    LevelMeter > .meter--hot { color: $text-error; }
    LevelMeter > .meter--clip { color: $foreground; background: $error; text-style: bold; }
    LevelMeter > .meter--track { color: $foreground 60%; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.reading: tuple[float | None, bool, bool] = (None, False, False)

    def show(self, level_dbfs: float | None, clipping: bool, muted: bool) -> None:
        reading = (None if level_dbfs is None else round(level_dbfs, 1), clipping, muted)
        if reading != self.reading:
            self.reading = reading
            self.refresh()

    def cache_key(self) -> tuple[Any, ...]:
        return self.reading

    def build(self, width: int, height: int) -> Text:
        level, clipping, muted = self.reading
        label = "input "
        value = "  muted   " if muted else "   — dBFS " if level is None else f"{level:5.1f} dBFS "
        flag = " CLIP " if clipping else ""
        bar_width = max(width - len(label) - len(value) - len(flag) - 1, 4)
        filled = 0
        if level is not None and not muted:
            fraction = (level - LEVEL_FLOOR_DBFS) / -LEVEL_FLOOR_DBFS
            filled = round(min(max(fraction, 0.0), 1.0) * bar_width)
        out = TextBuilder()
        out.add(label, self.style_of("meter--label"))
        for zone, cells in groupby(self._zones(bar_width)[:filled]):
            out.add("█" * len(list(cells)), self.style_of(f"meter--{zone}"))
        out.add("·" * (bar_width - filled), self.style_of("meter--track"))
        out.add(" " + value)
        if flag:
            out.add(flag, self.style_of("meter--clip"))
        return out.text()

    @staticmethod
    def _zones(bar_width: int) -> list[str]:
        """Headroom zone of each bar cell, judged at the cell's upper edge."""
        zones = []
        for i in range(bar_width):
            db = LEVEL_FLOOR_DBFS * (1 - (i + 1) / bar_width)
            zones.append("ok" if db < LEVEL_WARN_DBFS else "warn" if db < LEVEL_HOT_DBFS else "hot")
        return zones


# ---------------------------------------------------------------------------------------------
# Status line and banners

Kind = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class StatusField:
    """One item of the status line; ``kind`` picks a highlight when it needs attention."""

    text: str
    kind: Kind | None = None


def status_fields(s: StatusSnapshot, *, received: int) -> list[StatusField]:
    """The status lines' items in reading order: source, model, timing, losses, session.

    Short labels (``win`` windows, ``smp`` samples) keep it to three lines at 80 columns.
    """
    rate = f" @ {s.sample_rate_hz} Hz" if s.sample_rate_hz > 0 else ""
    rtf = "—" if s.rtf is None else f"{s.rtf:.2f}"
    lag = "—" if s.latency_s is None else f"{s.latency_s:.2f} s"
    return [
        StatusField(f"input: {s.device}{rate}"),
        StatusField(
            f"model: {s.model_name}" + (" (demo)" if s.demo_model else ""),
            "warning" if s.demo_model else None,
        ),
        StatusField(f"{s.compute_device} {s.dtype}"),
        StatusField(f"hop {s.hop_s:.2f} s"),
        StatusField(f"RTF {rtf}", "warning" if s.rtf is not None and s.rtf > 1 else None),
        StatusField(f"lag {lag}"),
        StatusField(f"skipped {s.skipped_windows} win", "warning" if s.skipped_windows else None),
        StatusField(f"dropped {s.dropped_samples} smp", "error" if s.dropped_samples else None),
        StatusField(f"estimates {received}"),
        StatusField(f"session: {s.session_path or '—'}"),
    ]


def state_fields(s: StatusSnapshot) -> list[StatusField]:
    """Capture, recording and logging state: shown beside the level meter, where eyes go."""
    return [
        StatusField("capture muted" if s.muted else "capture on", "warning" if s.muted else None),
        StatusField("● REC" if s.recording else "rec off", "error" if s.recording else None),
        StatusField("log on" if s.logging else "log off", None if s.logging else "warning"),
    ]


def pack_fields(
    fields: Iterable[StatusField], width: int, sep: str = " │ "
) -> list[list[StatusField]]:
    """Greedily pack fields into lines of at most ``width`` cells (a long field may exceed it)."""
    lines: list[list[StatusField]] = []
    used = 0
    for f in fields:
        if lines and used + len(sep) + len(f.text) <= width:
            lines[-1].append(f)
            used += len(sep) + len(f.text)
        else:
            lines.append([f])
            used = len(f.text)
    return lines


class StatusPanel(CachedRender):
    """Device, model, timing, counters, recording and logging state: wrapped at field boundaries."""

    COMPONENT_CLASSES = frozenset({"status--sep", "status--warning", "status--error"})
    DEFAULT_CSS = """
    StatusPanel { height: auto; color: $text-muted; }
    StatusPanel > .status--sep { color: $foreground 35%; }
    StatusPanel > .status--warning { color: $text-warning; text-style: bold; }
    StatusPanel > .status--error { color: $text-error; text-style: bold; }
    """

    SEP = " │ "

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.fields: tuple[StatusField, ...] = ()

    def show(self, fields: Iterable[StatusField]) -> None:
        fields = tuple(fields)
        if fields != self.fields:
            self.fields = fields
            self.refresh(layout=True)

    def cache_key(self) -> tuple[Any, ...]:
        return self.fields

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(len(pack_fields(self.fields, width)), 1)

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return sum(len(f.text) for f in self.fields) + len(self.SEP) * max(len(self.fields) - 1, 0)

    def build(self, width: int, height: int) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        sep = self.style_of("status--sep")
        for n, line in enumerate(pack_fields(self.fields, width)):
            if n:
                text.append("\n")
            for i, f in enumerate(line):
                if i:
                    text.append(self.SEP, style=sep)
                text.append(f.text, style=self.style_of(f"status--{f.kind}") if f.kind else "")
        return text


@dataclass(frozen=True)
class Banner:
    """A full-width line that must not be missed: why the output cannot be trusted or is stale."""

    kind: Kind
    text: str


@dataclass(frozen=True)
class BannerState:
    """The app-side facts that, with the controller's status, decide which banners show."""

    paused: bool = False
    stopping: bool = False
    start_error: str | None = None
    is_replay: bool = False


def status_banners(s: StatusSnapshot, state: BannerState) -> tuple[Banner, ...]:
    """Banners in order of severity."""
    out: list[Banner] = []
    if state.start_error:
        out.append(Banner("error", f"could not start: {state.start_error}"))
    if s.source_error:
        out.append(Banner("error", f"input problem: {s.source_error}"))
    if s.log_error:
        stopped = s.log_error.startswith("logging stopped")
        out.append(Banner("error", s.log_error if stopped else f"logging stopped: {s.log_error}"))
    if s.demo_model:
        out.append(Banner("warning", "demo model: random weights, output is meaningless"))
    if s.silence_warning:
        out.append(Banner("warning", s.silence_warning))
    if s.finished:
        what = "replay" if state.is_replay else "input"
        out.append(Banner("info", f"{what} finished: no more estimates (q quits)"))
    if state.paused:
        out.append(Banner("info", "display paused (space resumes); estimates are still received"))
    if state.stopping:
        out.append(Banner("info", "stopping: closing the session…"))
    return tuple(out)


class BannerStack(CachedRender):
    """One highlighted line per active banner; takes no space when there is none."""

    COMPONENT_CLASSES = frozenset({"banner--info", "banner--warning", "banner--error"})
    DEFAULT_CSS = """
    BannerStack { height: auto; }
    BannerStack > .banner--info { background: $primary 30%; color: $foreground; }
    BannerStack > .banner--warning {
        background: $warning 30%; color: $foreground; text-style: bold;
    }
    BannerStack > .banner--error { background: $error 60%; color: $foreground; text-style: bold; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.banners: tuple[Banner, ...] = ()
        self.display = False

    def show(self, banners: tuple[Banner, ...]) -> None:
        if banners != self.banners:
            self.banners = banners
            self.display = bool(banners)
            self.refresh(layout=True)

    def cache_key(self) -> tuple[Any, ...]:
        return self.banners

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.banners)

    def build(self, width: int, height: int) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, b in enumerate(self.banners):
            if i:
                text.append("\n")
            line = Text(f" {b.text}".ljust(width), style=self.style_of(f"banner--{b.kind}"))
            line.truncate(width, overflow="ellipsis")
            text.append_text(line)
        return text
