"""The circumplex view: where the speaker is now in valence x arousal, and where they were.

A trail of the last seconds fades with age, so the direction of change reads at a glance
without a second time plot.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any, ClassVar

import numpy as np
from rich.style import Style
from textual.color import Color

from streamser.tui.render import CachedRender, TextBuilder
from streamser.tui.track import TrackView


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

    def build(self, width: int, height: int) -> TextBuilder:
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
        return out

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
