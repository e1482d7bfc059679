"""The circumplex view: where the speaker is now in valence x arousal, and where they were.

A trail of the last seconds fades with age, so the direction of change reads at a glance
without a second time plot. With several streams each has its trail in its own colour, the
selected one drawn on top, and a legend under the plane names them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any, ClassVar

import numpy as np
from rich.style import Style
from textual.color import Color

from streamser.tui.palette import StreamColour
from streamser.tui.render import CachedRender, TextBuilder
from streamser.tui.track import TrackView

Cell = tuple[str, Style]


@dataclass(frozen=True)
class StreamTrail:
    """One stream's part of the plane: its name, its history, its colour, whether selected."""

    name: str
    view: TrackView
    colour: StreamColour
    selected: bool = False


class CircumplexView(CachedRender):
    """Valence (x, -1..1) against arousal (y, 0..1): the current point and a fading recent trail."""

    TRAIL_S = 10.0
    """Seconds of stream time the trail covers."""
    FADE_LEVELS = 4

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "circumplex--title",
        "circumplex--axis",
        "circumplex--label",
        "circumplex--point",
    }
    DEFAULT_CSS = """
    CircumplexView { height: 1fr; min-height: 5; }
    CircumplexView > .circumplex--title { text-style: bold; }
    CircumplexView > .circumplex--axis { color: $foreground 60%; }
    CircumplexView > .circumplex--label { color: $foreground 60%; text-style: italic; }
    CircumplexView > .circumplex--point { color: $text-accent; text-style: bold; }
    """

    LEGEND_MARK = "●"
    MAX_LEGEND_ROWS = 3

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view: TrackView | None = None
        self.streams: tuple[StreamTrail, ...] = ()
        """With several streams, each one's trail; empty when the plane shows one stream."""

    def show(self, view: TrackView) -> None:
        self.view = view
        self.refresh()

    def show_streams(self, trails: Sequence[StreamTrail]) -> None:
        """Show every stream's trail in its colour, with a legend."""
        self.streams = tuple(trails)
        self.refresh()

    def cache_key(self) -> tuple[Any, ...]:
        streams = tuple((t.name, t.view.version, t.colour, t.selected) for t in self.streams)
        return (self.view.version if self.view is not None else 0, streams)

    def trail(self, view: TrackView | None = None) -> list[tuple[float, float, float]]:
        """(valence, arousal, age in seconds) of the recent points of ``view`` (by default the
        one shown), oldest first; smoothed values where present, raw ones otherwise."""
        view = view if view is not None else self.view
        if view is None or not len(view.t_end):
            return []
        recent = view.t_end >= view.t_now - self.TRAIL_S
        v = np.where(np.isnan(view.valence_smooth), view.valence, view.valence_smooth)[recent]
        a = np.where(np.isnan(view.arousal_smooth), view.arousal, view.arousal_smooth)[recent]
        ages = view.t_now - view.t_end[recent]
        ok = ~(np.isnan(v) | np.isnan(a))
        return list(zip(v[ok].tolist(), a[ok].tolist(), ages[ok].tolist(), strict=True))

    def build(self, width: int, height: int) -> TextBuilder:
        legend = self._legend_rows(width) if self.streams else []
        rows, cols = max(height - 1 - len(legend), 3), max(width, 9)
        grid: list[list[Cell]] = [[(" ", Style())] * cols for _ in range(rows)]
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
        if self.streams:
            # the selected stream last, so its trail lies on top of the others
            for t in sorted(self.streams, key=lambda t: t.selected):
                self._draw_trail(grid, self.trail(t.view), self._fade_styles(self._colour(t)))
        else:
            point = self.get_component_styles("circumplex--point").color
            self._draw_trail(grid, self.trail(), self._fade_styles(point))
        out = TextBuilder()
        out.add("valence → · arousal ↑"[:width], self.style_of("circumplex--title"))
        for row in [*grid, *legend]:
            out.add("\n")
            for style, run in groupby(row, key=lambda cell: cell[1]):
                out.add("".join(ch for ch, _ in run), style)
        return out

    def _draw_trail(
        self, grid: list[list[Cell]], points: list[tuple[float, float, float]], fades: list[Style]
    ) -> None:
        rows, cols = len(grid), len(grid[0])
        for i, (v, a, age) in enumerate(points):
            c = round((min(max(v, -1.0), 1.0) + 1) / 2 * (cols - 1))
            r = round((1 - min(max(a, 0.0), 1.0)) * (rows - 1))
            if i == len(points) - 1:
                grid[r][c] = ("●", fades[0] + Style(bold=True))
            else:
                level = min(int(age / self.TRAIL_S * self.FADE_LEVELS), self.FADE_LEVELS - 1)
                grid[r][c] = ("•" if level < self.FADE_LEVELS - 1 else "·", fades[level])

    def _colour(self, trail: StreamTrail) -> Color:
        return trail.colour.for_theme(self.app.current_theme.dark)

    def _legend_rows(self, width: int) -> list[list[Cell]]:
        """The streams' names, each after a dot of its colour, packed into rows of ``width``;
        the selected name bold and underlined. Past ``MAX_LEGEND_ROWS`` rows the legend says
        how many more streams there are, so the plane keeps its room."""
        label = self.style_of("circumplex--label") + Style(italic=False)
        rows: list[list[list[Cell]]] = [[]]  # per row, its items: a dot and a name each

        def length(row: list[list[Cell]]) -> int:
            return sum(len(item) for item in row) + 2 * max(len(row) - 1, 0)

        for i, t in enumerate(self.streams):
            colour = self._fade_styles(self._colour(t))[0]
            name_style = label + colour + Style(bold=True, underline=True) if t.selected else label
            item = [(self.LEGEND_MARK, colour), (" ", Style())]
            item += [(ch, name_style) for ch in t.name[: max(width - 2, 1)]]
            if rows[-1] and length(rows[-1]) + 2 + len(item) > width:
                if len(rows) == self.MAX_LEGEND_ROWS:
                    self._end_with_count(rows[-1], len(self.streams) - i, width, length)
                    break
                rows.append([])
            rows[-1].append(item)
        gap: list[Cell] = [(" ", Style())] * 2
        out: list[list[Cell]] = []
        for row in rows:
            cells: list[Cell] = []
            for item in row:
                cells += (gap if cells else []) + item
            out.append(cells)
        return out

    def _end_with_count(
        self,
        row: list[list[Cell]],
        hidden: int,
        width: int,
        length: Callable[[list[list[Cell]]], int],
    ) -> None:
        """End ``row`` with ``+N more``, dropping its last names until that fits."""
        label = self.style_of("circumplex--label") + Style(italic=False)
        while True:
            more = f"+{hidden} more"
            if not row or length(row) + 2 + len(more) <= width:
                break
            row.pop()
            hidden += 1
        row.append([(ch, label) for ch in more])

    @staticmethod
    def _put(grid: list[list[Cell]], r: int, c: int, s: str, style: Style) -> None:
        for i, ch in enumerate(s):
            if 0 <= c + i < len(grid[r]):
                grid[r][c + i] = (ch, style)

    def _fade_styles(self, point: Color) -> list[Style]:
        """``point`` blended towards the background, newest (index 0) to oldest."""
        background = self.background_colors[1]
        out = []
        for level in range(self.FADE_LEVELS):
            colour: Color = point.blend(background, 0.2 * level)
            out.append(Style(color=colour.rich_color))
        return out
