"""The streams the dashboard knows, which one is selected and which page of them is on screen.

A run with ``--per-channel`` has one stream per input channel. The dashboard learns their names
from the controller's status (in the run's order) and from the estimates (a controller that
does not list its streams), shows up to ``STREAMS_PER_PAGE`` of them at once, and gives the
class bars and the level meter to the selected one. The selection is always on the page shown,
so what the side panel describes is always on screen.
"""

from __future__ import annotations

from collections.abc import Iterable

STREAMS_PER_PAGE = 4
"""Trajectory pairs on screen at once: at 80x24 four pairs leave each plot one row."""


class StreamRoster:
    """Stream names in order of discovery, the selected stream and the page shown."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.selected = 0
        """Index into ``names`` of the stream the class bars and the level meter show."""
        self.page = 0

    def merge(self, names: Iterable[str]) -> bool:
        """Add the names not known yet, in the order given; True when any was new."""
        before = len(self.names)
        for name in names:
            if name not in self.names:
                self.names.append(name)
        return len(self.names) != before

    @property
    def multi(self) -> bool:
        """More than one stream: the dashboard shows a trajectory pair per stream."""
        return len(self.names) > 1

    @property
    def pages(self) -> int:
        return max(1, -(-len(self.names) // STREAMS_PER_PAGE))

    @property
    def selected_name(self) -> str | None:
        return self.names[self.selected] if self.names else None

    def visible(self) -> list[str]:
        """The names on the page shown, in order."""
        start = self.page * STREAMS_PER_PAGE
        return self.names[start : start + STREAMS_PER_PAGE]

    def first_shown(self) -> int:
        """Index of the first stream on the page shown."""
        return self.page * STREAMS_PER_PAGE

    def select_next(self, step: int = 1) -> None:
        """Select the next stream (wrapping), turning to its page."""
        if self.names:
            self.selected = (self.selected + step) % len(self.names)
            self.page = self.selected // STREAMS_PER_PAGE

    def turn_page(self, step: int) -> None:
        """Show the next (or previous) page, wrapping, and select its first stream."""
        self.page = (self.page + step) % self.pages
        self.selected = min(self.page * STREAMS_PER_PAGE, max(len(self.names) - 1, 0))

    def colour_index(self, name: str) -> int:
        """Each stream keeps its colour whatever page is shown: its place in the run's order."""
        return self.names.index(name)
