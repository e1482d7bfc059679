"""The dashboard's two modal screens: the help (keys and what the plots show) and the note
asked for when the user marks an event."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

PLOT_LEGEND = (
    "Plots: bold line = smoothed, faint dots = raw estimate, shaded ░ = non-speech. "
    "Arousal and valence are derived from the six class probabilities."
)
STREAMS_LEGEND = (
    " With several streams, each has its pair of plots and its trail in its own colour; "
    "▶ marks the selected stream, whose class probabilities and level are shown."
)


class HelpScreen(ModalScreen[None]):
    """Lists the keys and the plot legend; Escape or ``?`` closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark", "dismiss_help", "close", show=False),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: auto; max-width: 90%; height: auto; max-height: 90%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    HelpScreen .keys { width: auto; }
    HelpScreen .legend { color: $text-muted; width: 60; }
    """

    def __init__(self, keys: Sequence[tuple[str, str]], legend: str = PLOT_LEGEND) -> None:
        super().__init__()
        self.keys = tuple(keys)
        """(key, what it does) rows, as the app's bindings are at the moment."""
        self.legend = legend

    def compose(self) -> ComposeResult:
        width = max(len(k) for k, _ in self.keys)
        rows = "\n".join(f"[b]{k:<{width}}[/b]  {what}" for k, what in self.keys)
        with Vertical() as box:
            box.border_title = "keys"
            yield Static(rows, classes="keys")
            yield Static(self.legend, classes="legend")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)


class MarkScreen(ModalScreen[str | None]):
    """Asks for a note for a marked event; Enter returns it, Escape returns ``None``."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel", show=False)]
    DEFAULT_CSS = """
    MarkScreen { align: center middle; }
    MarkScreen > Vertical {
        width: 60; max-width: 95%; height: auto;
        border: round $accent; background: $surface; padding: 0 1;
    }
    """

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "mark an event"
            yield Label("Note (Enter saves, Escape cancels):")
            yield Input(placeholder="e.g. door slammed", id="note")

    @on(Input.Submitted)
    def _save(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)
