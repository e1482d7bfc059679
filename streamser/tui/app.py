"""The live dashboard: a Textual app driven by a :class:`DashboardController`.

Estimates arrive at whatever rate inference runs; an :class:`EstimatesReady` wake-up makes the
app read what is new from the controller's one bounded history into the plots' arrays. Two
timers draw from the latest state: the plots at ``PLOT_HZ`` and the status, level meter and
banners at ``STATUS_HZ``, each widget redrawing only when its input changed. So a fast model
cannot make the UI busier, and a slow UI cannot hold the model back.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static

from streamser.constants import HISTORY_MAX_ESTIMATES
from streamser.contracts import DashboardController, Estimate
from streamser.labels import AROUSAL_AXIS, VALENCE_AXIS
from streamser.tui.messages import EstimateRelay, EstimatesReady
from streamser.tui.widgets import (
    BannerStack,
    BannerState,
    CircumplexView,
    ClassBars,
    EstimateTrack,
    LevelMeter,
    StatusPanel,
    TrajectoryPlot,
    state_fields,
    status_banners,
    status_fields,
)

RANGE_STEPS_S: tuple[float, ...] = (30.0, 60.0, 120.0, 300.0, 600.0)
"""Time ranges the plots step through with ``+`` and ``-``."""
DEFAULT_RANGE_S = 60.0


PLOT_HZ = 4.0
"""Plot frame rate: fast enough to look live, slow enough to leave the CPU to the model."""
STATUS_HZ = 10.0
"""Status and level meter poll rate: one cheap row each, so it can be livelier."""

KEY_HELP: tuple[tuple[str, str], ...] = (
    ("q, ctrl+c", "quit: stop capture and close the session"),
    ("space", "pause / resume the display (estimates keep arriving)"),
    ("c", "mute / unmute capture"),
    ("r", "start / stop recording audio"),
    ("m", "mark an event with a note (Enter saves, Escape cancels)"),
    ("+ / -", "longer / shorter time range (30 s, 1, 2, 5, 10 min)"),
    ("t", "dark / light theme"),
    ("s", "save a screenshot (SVG) into the session directory"),
    ("?", "this help (Escape closes it)"),
)
"""What the help screen lists; kept beside ``BINDINGS`` so the two agree."""

PLOT_LEGEND = (
    "Plots: bold line = smoothed, faint dots = raw estimate, shaded ░ = non-speech. "
    "Arousal and valence are derived from the six class probabilities."
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

    def compose(self) -> ComposeResult:
        width = max(len(k) for k, _ in KEY_HELP)
        rows = "\n".join(f"[b]{k:<{width}}[/b]  {what}" for k, what in KEY_HELP)
        with Vertical() as box:
            box.border_title = "keys"
            yield Static(rows, classes="keys")
            yield Static(PLOT_LEGEND, classes="legend")

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


class DashboardApp(App[None]):
    """The live dashboard. It owns the controller's lifecycle: start on mount, stop on quit.

    Public state read by tests: ``latest``, ``received``, ``paused`` and ``range_s``.
    """

    ENABLE_COMMAND_PALETTE = False
    HORIZONTAL_BREAKPOINTS = [  # noqa: RUF012 (Textual declares it an instance attribute)
        (0, "-narrow"),
        (120, "-wide"),
    ]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
        Binding("question_mark", "help", "help"),
        Binding("space", "toggle_pause", "pause"),
        Binding("c", "toggle_mute", "mute"),
        Binding("r", "toggle_recording", "record"),
        Binding("m", "mark", "mark"),
        Binding("plus,equals_sign", "change_range(1)", "range +", show=False),
        Binding("minus", "change_range(-1)", "range -", show=False),
        Binding("t", "toggle_theme", "theme", show=False),
        Binding("s", "save_screenshot", "screenshot", show=False),
    ]
    CSS = """
    #main { height: 1fr; }
    #plots { width: 1fr; }
    #side { width: 34; margin-left: 1; }
    .-wide #side { width: 45%; margin-left: 2; }
    #classes { margin-top: 1; }
    .-wide #classes { height: 9; padding-top: 1; }
    #input-row { height: 1; }
    #level { width: 1fr; }
    #states { width: auto; margin-left: 1; }
    """

    banners: BannerStack
    plots: tuple[TrajectoryPlot, TrajectoryPlot]
    circumplex: CircumplexView
    class_bars: ClassBars
    level_meter: LevelMeter
    states: StatusPanel
    status_panel: StatusPanel

    def __init__(self, controller: DashboardController, *, title: str = "streamser") -> None:
        super().__init__()
        self.title = title
        self.controller = controller
        self.latest: Estimate | None = None
        """The newest estimate received."""
        self.received = 0
        """Estimates received since start (keeps counting while the display is paused)."""
        self.paused = False
        self.range_s = DEFAULT_RANGE_S
        self._track = EstimateTrack(HISTORY_MAX_ESTIMATES)
        self._last_seq = -1
        self._drawn_version = 0
        self._stopping = False
        self._stopped = False
        self._start_error: str | None = None

    # --- layout and lifecycle ---------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # Kept as attributes: the timers draw into them without a query each frame, and a
        # tick that lands while the app is being torn down finds them still there.
        self.banners = BannerStack(id="banners")
        self.plots = (
            TrajectoryPlot(
                AROUSAL_AXIS,
                "arousal",
                lo=0.0,
                hi=1.0,
                grid_at=0.5,
                range_s=self.range_s,
                id="arousal",
            ),
            TrajectoryPlot(
                VALENCE_AXIS,
                "valence",
                lo=-1.0,
                hi=1.0,
                grid_at=0.0,
                range_s=self.range_s,
                id="valence",
            ),
        )
        self.circumplex = CircumplexView(id="circumplex")
        self.class_bars = ClassBars(id="classes")
        self.level_meter = LevelMeter(id="level")
        self.states = StatusPanel(id="states")
        self.status_panel = StatusPanel(id="status")
        yield self.banners
        with Horizontal(id="main"):
            with Vertical(id="plots"):
                yield from self.plots
            with Vertical(id="side"):
                yield self.circumplex
                yield self.class_bars
        with Horizontal(id="input-row"):
            yield self.level_meter
            yield self.states
        yield self.status_panel
        yield Footer()

    def on_mount(self) -> None:
        self.controller.subscribe(EstimateRelay(self))
        try:
            self.controller.start()
        except Exception as e:  # shown on screen: the user can still quit cleanly
            self._start_error = f"{type(e).__name__}: {e}"
        self._pull()
        self.draw_frame()
        self.poll_status()
        self.set_interval(1 / PLOT_HZ, self.draw_frame, name="plot frame")
        self.set_interval(1 / STATUS_HZ, self.poll_status, name="status poll")

    def on_unmount(self) -> None:
        self._stop_controller()

    def _stop_controller(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.controller.stop()

    async def action_quit(self) -> None:
        """Stop the controller (off the UI thread, so the screen stays live), then exit."""
        if self._stopping:
            return
        self._stopping = True
        self.poll_status()
        try:
            await asyncio.to_thread(self._stop_controller)
        finally:
            self.exit()

    # --- data in ----------------------------------------------------------------------------

    def on_estimates_ready(self, message: EstimatesReady) -> None:
        self._pull()

    def _pull(self) -> None:
        """Read the estimates not seen yet (by ``seq``) from the controller's history."""
        fresh = self.controller.history_since(self._last_seq)
        if not fresh:
            return
        for e in fresh:
            self._track.append(e)
        self.latest = fresh[-1]
        self._last_seq = self.latest.seq
        self.received += len(fresh)

    # --- drawing ----------------------------------------------------------------------------

    def draw_frame(self) -> None:
        """Hand the latest history to the plots, unless paused or nothing changed."""
        if self.paused or self._track.version == self._drawn_version:
            return
        self._drawn_version = self._track.version
        view = self._track.view()
        for plot in self.plots:
            plot.show(view)
        self.circumplex.show(view)
        self.class_bars.show(self.latest)

    def poll_status(self) -> None:
        """Read the controller's status and update the rows that show it."""
        s = self.controller.status()
        state = BannerState(
            paused=self.paused,
            stopping=self._stopping,
            start_error=self._start_error,
            is_replay=self.controller.is_replay,
        )
        self.banners.show(status_banners(s, state))
        self.level_meter.show(s.level_dbfs, s.clipping, s.muted)
        self.states.show(state_fields(s))
        self.status_panel.show(status_fields(s, received=self.received))

    # --- keys -------------------------------------------------------------------------------

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self.poll_status()
        self.draw_frame()

    def action_toggle_mute(self) -> None:
        if self._replay_says_no("c"):
            return
        self.controller.set_muted(not self.controller.status().muted)
        self.poll_status()

    def action_toggle_recording(self) -> None:
        if self._replay_says_no("r"):
            return
        self.controller.set_recording(not self.controller.status().recording)
        self.poll_status()

    def _replay_says_no(self, key: str) -> bool:
        """A replay captures and records nothing: say so rather than ignore the key."""
        if self.controller.is_replay:
            self.notify(f"{key}: a replay captures and records nothing", timeout=3)
        return self.controller.is_replay

    def action_change_range(self, step: int) -> None:
        i = RANGE_STEPS_S.index(self.range_s) + step
        self.range_s = RANGE_STEPS_S[min(max(i, 0), len(RANGE_STEPS_S) - 1)]
        for plot in self.plots:
            plot.set_range(self.range_s)

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def action_save_screenshot(self) -> None:
        """Save the screen as SVG into the session directory (or the working directory)."""
        folder = self.controller.status().session_path or "."
        try:
            path = self.save_screenshot(path=folder)
        except OSError as e:
            self.notify(f"screenshot not saved: {e}", severity="error", timeout=5)
            return
        self.notify(f"screenshot saved: {path}", timeout=5)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_mark(self) -> None:
        def save(note: str | None) -> None:
            if note is not None:
                self.controller.add_mark(note)
                self.notify(f"mark saved: {note}" if note else "mark saved", timeout=3)

        if not isinstance(self.screen, MarkScreen):
            self.push_screen(MarkScreen(), save)


def make_app(controller: DashboardController, *, title: str = "streamser") -> DashboardApp:
    """The dashboard for ``controller``; ``main`` runs it, tests drive it with Pilot."""
    return DashboardApp(controller, title=title)
