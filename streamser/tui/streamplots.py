"""The plots of a run with several streams: an arousal/valence pair per stream, a page at a time.

Each stream gets a :class:`StreamBlock`: a header row (its name in its colour, its current
values, a marker when it is the selected stream) over two plots without titles or time axes.
A :class:`StreamStack` holds ``STREAMS_PER_PAGE`` blocks under a row that says which streams are
shown and over one time axis for all of them, so four pairs fit in 80x24. Paging rebinds the
blocks to other streams instead of building new widgets.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from rich.style import Style
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical

from streamser.labels import AROUSAL_AXIS, VALENCE_AXIS
from streamser.tui.palette import StreamColour, stream_colour
from streamser.tui.plotting import format_range, tick_label_row
from streamser.tui.render import CachedRender, StyledWidget, TextBuilder
from streamser.tui.roster import STREAMS_PER_PAGE, StreamRoster
from streamser.tui.track import TrackFrame, TrackView
from streamser.tui.trajectory import TrajectoryPlot

SELECTED_MARK = "▶ "
UNSELECTED_MARK = "  "


def colour_style(widget: StyledWidget, colour: StreamColour, *, bold: bool = False) -> Style:
    """A stream's colour as a rich style over ``widget``'s background, for the current theme."""
    blended = widget.background_colors[1] + colour.for_theme(widget.app.current_theme.dark)
    return Style(color=blended.rich_color, bold=bold)


def latest_value(view: TrackView, series: str) -> float | None:
    """The newest smoothed value of ``series`` in ``view``; None before any, or when unknown."""
    values = view.arousal_smooth if series == "arousal" else view.valence_smooth
    if not len(values) or math.isnan(values[-1]):
        return None
    return float(values[-1])


class StreamHeader(CachedRender):
    """One row naming a stream in its colour, with its current arousal and valence."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"streamheader--values"}
    DEFAULT_CSS = """
    StreamHeader { height: 1; }
    StreamHeader > .streamheader--values { color: $foreground 60%; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.name_shown = ""
        self.colour: StreamColour | None = None
        self.selected = False
        self.values: tuple[float | None, float | None] = (None, None)

    def show(
        self,
        name: str,
        colour: StreamColour,
        selected: bool,
        values: tuple[float | None, float | None],
    ) -> None:
        state = (name, colour, selected, values)
        if state != (self.name_shown, self.colour, self.selected, self.values):
            self.name_shown, self.colour, self.selected, self.values = state
            self.refresh()

    def cache_key(self) -> tuple[Any, ...]:
        return (self.name_shown, self.colour, self.selected, self.values)

    def build(self, width: int, height: int) -> TextBuilder:
        arousal, valence = self.values
        a = "—" if arousal is None else f"{arousal:.2f}"
        v = "—" if valence is None else f"{valence:+.2f}"
        values = f"  arousal {a} · valence {v}"
        mark = SELECTED_MARK if self.selected else UNSELECTED_MARK
        name = self.name_shown[: max(width - len(mark) - len(values), 8)]
        out = TextBuilder()
        if self.colour is not None:
            style = colour_style(self, self.colour, bold=self.selected)
            out.add(mark, style)
            out.add(name, style + Style(underline=self.selected))
        out.add(
            values[: max(width - len(mark) - len(name), 0)], self.style_of("streamheader--values")
        )
        return out


class StreamBlock(Vertical):
    """One stream's header over its arousal and valence plots (the stack sets their height)."""

    DEFAULT_CSS = """
    StreamBlock { height: auto; }
    StreamBlock.-spaced { margin-bottom: 1; }
    """

    def __init__(self, range_s: float, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.stream: str | None = None
        self.header = StreamHeader()
        self.plots = (
            TrajectoryPlot(
                AROUSAL_AXIS, "arousal", lo=0.0, hi=1.0, grid_at=0.5, range_s=range_s,
                framed=False, short="aro",
            ),
            TrajectoryPlot(
                VALENCE_AXIS, "valence", lo=-1.0, hi=1.0, grid_at=0.0, range_s=range_s,
                framed=False, short="val",
            ),
        )  # fmt: skip

    def compose(self) -> ComposeResult:
        yield self.header
        yield from self.plots

    def set_plot_rows(self, rows: int) -> None:
        for plot in self.plots:
            plot.styles.height = rows

    def show(self, name: str, colour: StreamColour, selected: bool, view: TrackView) -> None:
        self.stream = name
        values = (latest_value(view, "arousal"), latest_value(view, "valence"))
        self.header.show(name, colour, selected, values)
        for plot in self.plots:
            plot.set_colour(colour)
            plot.show(view)

    def set_range(self, range_s: float) -> None:
        for plot in self.plots:
            plot.set_range(range_s)


class StreamPageHeader(CachedRender):
    """Which streams are on screen (``streams 5-6 of 6``), and the time range."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"streampage--title", "streampage--range"}
    DEFAULT_CSS = """
    StreamPageHeader { height: 1; }
    StreamPageHeader > .streampage--title { text-style: bold; }
    StreamPageHeader > .streampage--range { color: $foreground 60%; }
    """

    def __init__(self, range_s: float, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.range_s = range_s
        self.shown: tuple[int, int, int] = (0, 0, 0)
        """First and last stream shown (counted from 1) and how many there are."""

    def show(self, roster: StreamRoster) -> None:
        first = roster.first_shown()
        shown = (first + 1, first + len(roster.visible()), len(roster.names))
        if shown != self.shown:
            self.shown = shown
            self.refresh()

    def set_range(self, range_s: float) -> None:
        self.range_s = range_s
        self.refresh()

    def cache_key(self) -> tuple[Any, ...]:
        return (*self.shown, self.range_s)

    def build(self, width: int, height: int) -> TextBuilder:
        first, last, n = self.shown
        title = f"{n} streams" if first == 1 and last == n else f"streams {first}-{last} of {n}"
        right = format_range(self.range_s)
        out = TextBuilder()
        out.add(title[:width], self.style_of("streampage--title"))
        pad = width - len(title) - len(right)
        if pad >= 1:
            out.add(" " * pad)
            out.add(right, self.style_of("streampage--range"))
        return out


class TimeAxisRow(CachedRender):
    """The tick labels under the last plot of the stack, aligned with the plots' columns."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"timeaxis--label"}
    DEFAULT_CSS = """
    TimeAxisRow { height: 1; }
    TimeAxisRow > .timeaxis--label { color: $foreground 60%; }
    """

    def __init__(self, range_s: float, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.range_s = range_s

    def set_range(self, range_s: float) -> None:
        self.range_s = range_s
        self.refresh()

    def cache_key(self) -> tuple[Any, ...]:
        return (self.range_s,)

    def build(self, width: int, height: int) -> TextBuilder:
        gutter = TrajectoryPlot.GUTTER
        out = TextBuilder()
        ticks = tick_label_row(self.range_s, max(width - gutter, 1))
        out.add(" " * gutter + ticks, self.style_of("timeaxis--label"))
        return out


class StreamStack(Vertical):
    """The page of streams on screen: a page header, a block per stream, one time axis.

    Every plot on the page gets the same number of rows, however the height divides, so the
    streams can be compared at a glance; a blank row parts one stream from the next when there
    is room, and the rows left over stay blank under the time axis.
    """

    DEFAULT_CSS = """
    StreamStack { height: 1fr; }
    StreamStack > #stream-blocks { height: auto; }
    """

    def __init__(self, range_s: float, *, id: str | None = None) -> None:
        super().__init__(id=id)
        # Made here rather than in compose: the app hands them data in the same frame it
        # mounts the stack, before Textual composes it.
        self.page_header = StreamPageHeader(range_s)
        self.blocks = tuple(StreamBlock(range_s, id=f"stream-{i}") for i in range(STREAMS_PER_PAGE))
        self.time_axis = TimeAxisRow(range_s)

    def compose(self) -> ComposeResult:
        yield self.page_header
        with Vertical(id="stream-blocks"):
            yield from self.blocks
        yield self.time_axis

    def on_resize(self, event: events.Resize) -> None:
        self._size_blocks(event.size.height)

    def _size_blocks(self, height: int) -> None:
        """Share ``height`` (less the page header and the time axis) among the blocks shown:
        a header row and two equal plots each, a blank row between blocks where it fits."""
        shown = self.shown_blocks()
        n = max(len(shown), 1)
        free = height - 2
        rows = max(((free - (n - 1)) // n - 1) // 2, 1)
        spaced = n * (2 * rows + 1) + (n - 1) <= free
        for i, block in enumerate(shown):
            block.set_plot_rows(rows)
            block.set_class(spaced and i < n - 1, "-spaced")

    def show(self, roster: StreamRoster, frame: TrackFrame) -> None:
        """Bind the blocks to the streams of the page shown and hand them their views."""
        visible = roster.visible()
        if len(visible) != len(self.shown_blocks()):
            for i, block in enumerate(self.blocks):
                block.display = i < len(visible)
            self._size_blocks(self.size.height)
        for i, block in enumerate(self.blocks):
            if i < len(visible):
                name = visible[i]
                colour = stream_colour(roster.colour_index(name))
                selected = name == roster.selected_name
                block.show(name, colour, selected, frame.view(name))
        self.page_header.show(roster)

    def set_range(self, range_s: float) -> None:
        for block in self.blocks:
            block.set_range(range_s)
        self.page_header.set_range(range_s)
        self.time_axis.set_range(range_s)

    def shown_blocks(self) -> list[StreamBlock]:
        """The blocks on screen, top to bottom."""
        return [block for block in self.blocks if block.display]
