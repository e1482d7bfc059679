"""The colours that tell streams apart: one per stream, the same in every panel.

Theme variables give only a few distinct hues, and the warning hue already marks non-speech, so
the streams get a palette of their own: six hues apart from orange, each in a light tint for
dark themes and a deep shade for light ones, so the lines keep their contrast in both. A seventh
stream takes the first colour again (the legend and the headers name every stream).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.color import Color


@dataclass(frozen=True)
class StreamColour:
    """One stream's colour, as drawn on a dark and on a light background."""

    on_dark: str
    on_light: str

    def for_theme(self, dark: bool) -> Color:
        return Color.parse(self.on_dark if dark else self.on_light)


STREAM_COLOURS: tuple[StreamColour, ...] = (
    StreamColour("#58a6ff", "#0969da"),  # blue
    StreamColour("#56d364", "#1a7f37"),  # green
    StreamColour("#f778ba", "#bf3989"),  # pink
    StreamColour("#d2a8ff", "#8250df"),  # violet
    StreamColour("#39c5cf", "#1b7c83"),  # teal
    StreamColour("#ff7b72", "#cf222e"),  # red
)


def stream_colour(index: int) -> StreamColour:
    """The colour of the stream at ``index`` in the run's order."""
    return STREAM_COLOURS[index % len(STREAM_COLOURS)]
