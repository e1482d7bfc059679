"""The drawing base of every dashboard widget: build a picture once, reuse it until it changes.

Widgets never read the controller: the app hands them data on its timers, on the Textual
thread, and each widget rebuilds its picture only when its cache key (data, size, theme)
changed, so a refresh that changes nothing costs a tuple comparison.

A picture made with :class:`TextBuilder` is handed to Textual as ready-made lines of segments
(:meth:`CachedRender.render_line`) instead of a ``Text`` for Textual to parse: converting a plot
with a few hundred styled runs (one per shaded non-speech stretch per row) through Textual's
``Content`` cost several times what drawing it took, because every run gets a style object of
its own (benchmarks/dashboard.md). Runs that share a style share one here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Span, Text
from textual.strip import Strip
from textual.widget import Widget


class TextBuilder:
    """Collects runs of text, each with one style, then makes one ``Text`` or a list of strips.

    Thousands of ``Text.append`` calls (each copies and scans its string) were most of a plot's
    drawing time; building the string once with a span list is several times cheaper, and
    keeping the runs lets :meth:`strips` skip the parsing altogether.
    """

    def __init__(self) -> None:
        self._runs: list[tuple[str, Style | None]] = []

    def add(self, s: str, style: Style | None = None) -> None:
        self._runs.append((s, style or None))

    def text(self) -> Text:
        parts, spans, n = [], [], 0
        for s, style in self._runs:
            if style is not None:
                spans.append(Span(n, n + len(s), style))
            parts.append(s)
            n += len(s)
        return Text("".join(parts), spans=spans, no_wrap=True, overflow="crop")

    def strips(self, width: int, base: Style) -> list[Strip]:
        """One strip per line, cropped to ``width``, each run styled ``base + style`` as Textual
        would style a ``Text`` (one style object for all the runs that share one). Short lines
        are left short: Textual pads them with the widget's background, as it pads a ``Text``."""
        combined: dict[int, Style] = {id(None): base}  # by identity: Style hashing is slow
        lines: list[list[Segment]] = [[]]
        line = lines[0]
        for s, style in self._runs:
            line_style = combined.get(id(style))
            if line_style is None:
                line_style = combined[id(style)] = base + style
            if "\n" not in s:
                line.append(Segment(s, line_style))
                continue
            first, *more = s.split("\n")
            if first:
                line.append(Segment(first, line_style))
            for piece in more:
                line = [Segment(piece, line_style)] if piece else []
                lines.append(line)
        strips = [Strip(segments) for segments in lines]
        return [s.crop(0, width) if s.cell_length > width else s for s in strips]


class Band:
    """A horizontal slice of a widget's picture, rebuilt only when its key changes.

    The picture's strips are kept with it, so a slice whose inputs did not change costs
    neither a rebuild nor a conversion when the widget is repainted.
    """

    def __init__(self) -> None:
        self.key: Any = None
        self.picture: Text | TextBuilder | None = None
        self._text: Text | None = None
        self._strips: tuple[Style, int, list[Strip]] | None = None

    def update(self, key: Any, build: Callable[[], Text | TextBuilder]) -> bool:
        """Rebuild with ``build`` if ``key`` changed; True when it did."""
        if self.picture is not None and key == self.key:
            return False
        self.key, self.picture = key, build()
        self._text = self._strips = None
        return True

    def text(self) -> Text:
        """The picture as one ``Text`` (what tests and screenshots of the text read)."""
        picture = self.picture
        if isinstance(picture, Text):
            return picture
        if self._text is None:
            self._text = picture.text() if picture is not None else Text()
        return self._text

    def strips(self, width: int, base: Style) -> list[Strip]:
        """The picture as strips; only for a :class:`TextBuilder` picture."""
        picture = self.picture
        assert isinstance(picture, TextBuilder)
        cached = self._strips
        if cached is None or cached[1] != width or cached[0] != base:
            cached = self._strips = (base, width, picture.strips(width, base))
        return cached[2]


class StyledWidget(Widget):
    """A widget that draws with the rich styles of its CSS component classes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._styles: dict[tuple[str, str], Style] = {}
        self.renders = 0
        """How many times the picture was rebuilt (tests check the caching)."""

    def notify_style_update(self) -> None:
        self._styles.clear()
        super().notify_style_update()

    def style_of(self, component: str) -> Style:
        """Rich style of a component class, with translucent colours blended over this widget's
        background (Textual's partial styles leave the alpha out, which turns a faint tint into
        a solid block). Component rules must name concrete colours (``$foreground 60%``, not
        ``$text-muted``): an ``auto`` colour in a component class resolves against no background
        and comes out white, unreadable in a light theme.

        Kept until the CSS changes: resolving one is a sizeable share of a plot's drawing time,
        and the same style object each time lets runs share their styles."""
        key = (self.app.theme, component)
        style = self._styles.get(key)
        if style is None:
            style = self._styles[key] = self._resolve_style(component)
        return style

    def _resolve_style(self, component: str) -> Style:
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


class CachedRender(StyledWidget):
    """A widget whose picture is rebuilt only when its cache key changes.

    Subclasses implement :meth:`cache_key` (everything the picture depends on) and
    :meth:`build`. The theme is always part of the key because the styles come from CSS.
    A :class:`TextBuilder` picture reaches the screen as prepared strips; a ``Text`` one
    (status rows that need Textual's ellipsis) goes through Textual's own rendering.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._band = Band()

    def cache_key(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def build(self, width: int, height: int) -> Text | TextBuilder:
        raise NotImplementedError

    def picture(self) -> Text | TextBuilder:
        """The current picture, rebuilt if anything it depends on changed."""
        width, height = self.content_size
        key = (self.app.theme, width, height, *self.cache_key())
        if self._band.update(key, lambda: self.build(width, height)):
            self.renders += 1
        assert self._band.picture is not None
        return self._band.picture

    def render(self) -> Text:
        self.picture()
        return self._band.text()

    def render_line(self, y: int) -> Strip:
        if isinstance(self.picture(), Text):
            return super().render_line(y)
        width = self.content_size.width
        base = self.visual_style.rich_style
        strips = self._band.strips(width, base)
        return strips[y] if 0 <= y < len(strips) else Strip.blank(width, base)
