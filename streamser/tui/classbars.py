"""The six class probabilities of the newest estimate as horizontal bars.

Arousal and valence are derived from these; showing them lets a user see whether a middling
value means a confident middle class or a split between two extremes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from streamser.constants import NUM_CLASSES
from streamser.contracts import Estimate
from streamser.labels import CLASS_NAMES
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

    def show(self, estimate: Estimate | None) -> None:
        if estimate is not self.estimate:
            self.estimate = estimate
            self.refresh()

    def cache_key(self) -> tuple[Any, ...]:
        return (None if self.estimate is None else self.estimate.seq,)

    def build(self, width: int, height: int) -> TextBuilder:
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
        return out
