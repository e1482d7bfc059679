"""The trajectory plot: one derived dimension (arousal or valence) over the chosen time range.

The cells come from :mod:`streamser.tui.plotting`; this widget adds the title with the current
value, the value gutter, the non-speech shading and the time axis, and turns the cell kinds into
styled runs.

The title row and the body are cached and repainted apart. Every new estimate changes the
title's current value, but the body only changes when the time axis steps on by a dot column
(see :class:`~streamser.tui.plotting.PlotSamples`): on a ten-minute range a column is seconds
long, and a body of a thousand styled runs (shaded non-speech stretches) is the costliest thing
on screen, so most frames repaint one row.

With several streams each stream gets a pair of plots without their own title and time axis
(``framed=False``): the stream's header names it and one time axis under the stack serves all.
Such a plot draws in its stream's colour and labels its gutter with the series' short name.
"""

from __future__ import annotations

import math
from itertools import groupby
from typing import ClassVar

import numpy as np
from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip

from streamser.tui.palette import StreamColour
from streamser.tui.plotting import (
    PlotCells,
    PlotSamples,
    format_range,
    layout_cells,
    run_kinds,
    sample_plot,
    tick_label_row,
    value_rows,
)
from streamser.tui.render import Band, StyledWidget, TextBuilder
from streamser.tui.track import Series, TrackView


class TrajectoryPlot(StyledWidget):
    """One derived dimension over time: faint raw dots, a bold smoothed line, shaded non-speech."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "trajectory--title",
        "trajectory--axis",
        "trajectory--grid",
        "trajectory--raw",
        "trajectory--smooth",
        "trajectory--nonspeech",
        "trajectory--nonspeech-mark",
    }
    DEFAULT_CSS = """
    TrajectoryPlot { height: 1fr; min-height: 5; }
    TrajectoryPlot.-bare { min-height: 1; }
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
    RAW_ALPHA = 0.4
    """Opacity of a stream colour's raw dots, as ``trajectory--raw`` has the theme's."""

    def __init__(
        self,
        title: str,
        series: Series,
        *,
        lo: float,
        hi: float,
        grid_at: float | None,
        range_s: float,
        framed: bool = True,
        short: str = "",
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.title = title
        self.framed = framed
        """With a title row and a time axis; without, the plot area and its gutter only."""
        self.short = short
        """The series' short name, in the gutter of a plot without a title."""
        self.colour: StreamColour | None = None
        """The stream's colour for the lines; None: the theme's."""
        if not framed:
            self.add_class("-bare")
        self.series: Series = series
        self.lo, self.hi, self.grid_at = lo, hi, grid_at
        self.range_s = range_s
        self.view: TrackView | None = None
        self._title = Band()
        self._body = Band()
        self._samples: tuple[tuple[int, float, int], PlotSamples | None] | None = None
        self._body_epoch = 0
        """Increments whenever the sampled body changes: the body band's key."""
        self.body_renders = 0
        """How many times the body (plot area and time axis) was rebuilt."""

    def show(self, view: TrackView) -> None:
        """Draw ``view``: repaint what it changes (often only the title row), or nothing."""
        self.view = view
        if not self.framed:
            if self._body.picture is None or self._keys()[1] != self._body.key:
                self.refresh()
            return
        if self._title.picture is None or self._body.picture is None:
            self.refresh()
            return
        title_key, body_key = self._keys()
        if body_key != self._body.key:
            self.refresh()
        elif title_key != self._title.key:
            self.refresh(Region(0, 0, self.content_size.width, 1))

    def set_range(self, range_s: float) -> None:
        self.range_s = range_s
        self.refresh()

    def set_colour(self, colour: StreamColour | None) -> None:
        """Draw the lines in ``colour`` (a stream's), or in the theme's with None."""
        if colour != self.colour:
            self.colour = colour
            self._styles.clear()
            self.refresh()

    def _resolve_style(self, component: str) -> Style:
        style = super()._resolve_style(component)
        if self.colour is None or component not in ("trajectory--raw", "trajectory--smooth"):
            return style
        alpha = self.RAW_ALPHA if component == "trajectory--raw" else 1.0
        colour = self.colour.for_theme(self.app.current_theme.dark).with_alpha(alpha)
        return style + Style(color=(self.background_colors[1] + colour).rich_color)

    @property
    def shown_version(self) -> int:
        """Version of the track this plot shows (0 before any data)."""
        return self.view.version if self.view is not None else 0

    def _plot_size(self) -> tuple[int, int]:
        """(columns, rows) of the braille area at the current size."""
        width, height = self.content_size
        return max(width - self.GUTTER, 1), max(height - (3 if self.framed else 0), 1)

    def samples(self) -> PlotSamples | None:
        """The view sampled for the current size and range; recomputed only when one changed."""
        cols, _ = self._plot_size()
        key = (self.shown_version, self.range_s, cols)
        if self._samples is None or self._samples[0] != key:
            view = self.view
            samples = None
            if view is not None and len(view.t_end):
                samples = sample_plot(view, self.series, self.range_s, 2 * cols)
            previous = self._samples[1] if self._samples is not None else None
            unchanged = samples is None and previous is None
            if not unchanged and (samples is None or not samples.same_as(previous)):
                self._body_epoch += 1
            self._samples = (key, samples)
        return self._samples[1]

    def _keys(self) -> tuple[tuple[object, ...], tuple[object, ...]]:
        width, height = self.content_size
        self.samples()
        size = (self.app.theme, self.colour, width, height, self.range_s)
        return (*size, self._title_text()), (*size, self._body_epoch)

    def _update(self) -> None:
        """Rebuild the bands whose inputs changed (counted once in ``renders``)."""
        width, height = self.content_size
        title_key, body_key = self._keys()
        rebuilt = self.framed and self._title.update(title_key, lambda: self._build_title(width))
        if self._body.update(body_key, lambda: self._build_body(width, height)):
            self.body_renders += 1
            rebuilt = True
        if rebuilt:
            self.renders += 1

    def render(self) -> Text:
        self._update()
        if not self.framed:
            return self._body.text()
        text = self._title.text().copy()
        text.append("\n")
        text.append_text(self._body.text())
        return text

    def render_line(self, y: int) -> Strip:
        self._update()
        width = self.content_size.width
        base = self.visual_style.rich_style
        title_rows = 1 if self.framed else 0
        band, row = (self._title, y) if y < title_rows else (self._body, y - title_rows)
        strips = band.strips(width, base)
        return strips[row] if 0 <= row < len(strips) else Strip.blank(width, base)

    def _title_text(self) -> str:
        title = self.title
        if self.view is not None and len(self.view.t_end):
            now = float(self.view.smooth(self.series)[-1])
            if not math.isnan(now):
                title += f"  {now:+.2f}" if self.lo < 0 else f"  {now:.2f}"
        return title

    def _build_title(self, width: int) -> TextBuilder:
        out = TextBuilder()
        self._add_title_row(out, width)
        return out

    def _build_body(self, width: int, height: int) -> TextBuilder:
        cols, rows = self._plot_size()
        samples = self.samples()
        cells = None
        if samples is not None:
            cells = layout_cells(
                samples, lo=self.lo, hi=self.hi, grid_at=self.grid_at, rows=rows, cols=cols
            )
        out = TextBuilder()
        self._add_plot_rows(out, cells, rows, cols)
        if self.framed:
            self._add_axis_rows(out, cells, cols)
        return out

    def _add_title_row(self, out: TextBuilder, width: int) -> None:
        title = self._title_text()
        right = format_range(self.range_s)
        pad = width - len(title) - len(right)
        out.add(title[:width], self.style_of("trajectory--title"))
        if pad >= 1:
            out.add(" " * pad)
            out.add(right, self.style_of("trajectory--axis"))

    def _gutters(self, rows: int) -> list[str]:
        """The left margin of each plot row: value labels at their rows, an axis line elsewhere.
        Without a title, the series' short name replaces the middle label (or, on fewer than
        three rows, every label)."""
        if not self.framed and rows < 3:
            return [f"{self.short:>{self.GUTTER - 2}} ┤"] + [" " * (self.GUTTER - 1) + "│"] * (
                rows - 1
            )
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
        if not self.framed:
            gutters[(rows - 1) // 2] = f"{self.short:>{self.GUTTER - 2}} ┤"
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
        chars = runs = None
        if cells is not None:
            chars = np.where(cells.codes > 0, cells.codes + 0x2800, 0x20).astype("<u4")
            runs = run_kinds(cells)
        for r, gutter in enumerate(self._gutters(rows)):
            out.add(gutter, axis)
            if chars is None or runs is None:
                out.add(" " * cols + "\n")
                continue
            line = chars[r].tobytes().decode("utf-32-le")
            kinds = runs[r]
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
