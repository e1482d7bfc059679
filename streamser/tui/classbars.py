"""The six class probabilities of the newest estimate as horizontal bars.

Arousal and valence are derived from these; showing them lets a user see whether a middling
value means a confident middle class or a split between two extremes. With several streams
the bars are the selected stream's, and the title names it in its colour.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from rich.style import Style

from streamser.constants import NUM_CLASSES
from streamser.contracts import Estimate
from streamser.labels import CLASS_NAMES
from streamser.tui.palette import StreamColour
from streamser.tui.render import CachedRender, TextBuilder

_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of ``width`` cells filled to ``fraction`` with eighth-cell resolution."""
    eighths = round(min(max(fraction, 0.0), 1.0) * width * 8)
    full, part = divmod(eighths, 8)
    s = "█" * full + (_EIGHTHS[part] if part else "")
    return s.ljust(width)


class ClassBars(CachedRender):
    """The six class probabilities as bars named by arousal x valence; the top class stands out."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "classbars--title",
        "classbars--name",
        "classbars--bar",
        "classbars--top",
    }
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
        self.stream: tuple[str, StreamColour] | None = None
        """The selected stream's name and colour, with several streams; else None."""

    def show(
        self, estimate: Estimate | None, stream: tuple[str, StreamColour] | None = None
    ) -> None:
        if estimate is not self.estimate or stream != self.stream:
            self.estimate = estimate
            self.stream = stream
            self.refresh()

    def cache_key(self) -> tuple[Any, ...]:
        return (None if self.estimate is None else self.estimate.seq, self.stream)

    def build(self, width: int, height: int) -> TextBuilder:
        probs = self.estimate.probs if self.estimate is not None else None
        non_speech = self.estimate is not None and probs is None
        out = TextBuilder()
        if self.stream is None:
            title = "class probabilities" + (" (non-speech)" if non_speech else "")
            out.add(title[:width], self.style_of("classbars--title"))
        else:  # runs past the width are cropped when drawn
            stream, colour = self.stream
            shade = self.background_colors[1] + colour.for_theme(self.app.current_theme.dark)
            title_style = self.style_of("classbars--title")
            out.add(stream, title_style + Style(color=shade.rich_color))
            rest = " · non-speech (no classes)" if non_speech else " · class probabilities"
            out.add(rest, title_style)
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
        return out
