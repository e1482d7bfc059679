"""The live dashboard: a Textual app driven by a :class:`DashboardController`.

Estimates arrive at whatever rate inference runs; an :class:`EstimatesReady` wake-up makes the
app read what is new from the controller's one bounded history into the plots' arrays. Two
timers draw from the latest state: the plots at ``PLOT_HZ`` and the status, level meter and
banners at ``STATUS_HZ``, each widget redrawing only when its input changed. So a fast model
cannot make the UI busier, and a slow UI cannot hold the model back.

A run with several streams (``--per-channel``) swaps the two plots for a :class:`StreamStack`
(an arousal/valence pair per stream, a page of them at a time) as soon as a second stream is
known; the plane shows every stream's trail, and the class bars and the level meter show the
selected stream. With one stream the dashboard is what it always was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer

from streamser.constants import HISTORY_MAX_ESTIMATES
from streamser.contracts import DashboardController, Estimate, StatusSnapshot
from streamser.labels import AROUSAL_AXIS, VALENCE_AXIS
from streamser.tui.messages import EstimateRelay, EstimatesReady
from streamser.tui.palette import stream_colour
from streamser.tui.roster import StreamRoster
from streamser.tui.screens import PLOT_LEGEND, STREAMS_LEGEND, HelpScreen, MarkScreen
from streamser.tui.widgets import (
    BannerStack,
    BannerState,
    CircumplexView,
    ClassBars,
    LevelMeter,
    StatusPanel,
    StreamStack,
    StreamTracks,
    StreamTrail,
    TrackFrame,
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
STREAM_KEY_HELP: tuple[tuple[str, str], ...] = (
    ("n", "select the next stream (its class probabilities and input level)"),
    ("] / [", "next / previous page of streams (four on screen at a time)"),
)
"""Listed too when the run has several streams (the keys do nothing with one)."""

__all__ = ["DashboardApp", "HelpScreen", "MarkScreen", "make_app"]


class DashboardApp(App[None]):
    """The live dashboard. It owns the controller's lifecycle: start on mount, stop on quit.

    Public state read by tests: ``latest``, ``received``, ``paused``, ``range_s``, ``roster``
    (the streams, the selection and the page) and ``tracks``.
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
        Binding("n", "next_stream", "stream"),
        Binding("right_square_bracket", "turn_page(1)", "page"),
        Binding("left_square_bracket", "turn_page(-1)", "page back", show=False),
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
    """The one stream's plots; unmounted once a second stream is known."""
    stack: StreamStack | None
    """The streams' plots, from the moment a second stream is known."""
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
        self.roster = StreamRoster()
        self.tracks = StreamTracks(HISTORY_MAX_ESTIMATES)
        self.stack = None
        self._frame = TrackFrame()
        """What the plots show: every stream's view when last drawn (kept while paused)."""
        self._drawn: tuple[int, ...] = self._frame_key()
        self._last_seq = -1
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
        self.poll_status()  # the streams in the run's order, before the history names any
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
            self.tracks.append(e)
        self.latest = fresh[-1]
        self._last_seq = self.latest.seq
        self.received += len(fresh)
        self._learn_streams(e.stream for e in fresh)

    def _learn_streams(self, names: Iterable[str]) -> None:
        """Take in stream names not seen yet; at the second, swap to a pair of plots per stream."""
        if not self.roster.merge(names):
            return
        self.refresh_bindings()
        if self.roster.multi and self.stack is None:
            self.stack = StreamStack(self.range_s, id="streams")
            for plot in self.plots:
                plot.remove()
            self.query_one("#plots").mount(self.stack)

    # --- drawing ----------------------------------------------------------------------------

    def _frame_key(self) -> tuple[int, ...]:
        """Everything a frame depends on: the data shown, the streams, selection and page."""
        roster = self.roster
        return (self._frame.version, len(roster.names), roster.selected, roster.page)

    def draw_frame(self) -> None:
        """Hand the latest history to the plots (unless paused) if anything they show changed.
        While paused, a new selection or page is drawn from the history as it was."""
        if not self.paused and self.tracks.version != self._frame.version:
            self._frame = self.tracks.frame()
        key = self._frame_key()
        if key == self._drawn:
            return
        self._drawn = key
        frame = self._frame
        if self.stack is None:
            if self.roster.names:
                only = self.roster.names[0]
                for plot in self.plots:
                    plot.show(frame.view(only))
                self.circumplex.show(frame.view(only))
                self.class_bars.show(frame.latest.get(only))
            return
        self.stack.show(self.roster, frame)
        trails = [
            StreamTrail(
                name,
                frame.view(name),
                stream_colour(i),
                selected=name == self.roster.selected_name,
            )
            for i, name in enumerate(self.roster.names)
        ]
        self.circumplex.show_streams(trails)
        selected = self.roster.selected_name
        assert selected is not None
        colour = stream_colour(self.roster.colour_index(selected))
        self.class_bars.show(frame.latest.get(selected), (selected, colour))

    def poll_status(self) -> None:
        """Read the controller's status and update the rows that show it."""
        s = self.controller.status()
        self._learn_streams(st.name for st in s.streams)
        state = BannerState(
            paused=self.paused,
            stopping=self._stopping,
            start_error=self._start_error,
            is_replay=self.controller.is_replay,
        )
        self.banners.show(status_banners(s, state))
        self._show_level(s)
        self.states.show(state_fields(s))
        self.status_panel.show(status_fields(s, received=self.received))

    def _show_level(self, s: StatusSnapshot) -> None:
        """The input's level, or with several streams the selected stream's (the input's when
        the controller does not give the streams' levels)."""
        selected = self.roster.selected_name if self.roster.multi else None
        stream = next((st for st in s.streams if st.name == selected), None)
        if stream is None:
            self.level_meter.show(s.level_dbfs, s.clipping, s.muted)
        else:
            self.level_meter.show(stream.level_dbfs, stream.clipping, s.muted, label=stream.name)

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
        if self.stack is not None:
            self.stack.set_range(self.range_s)

    def action_next_stream(self) -> None:
        self.roster.select_next()
        self.draw_frame()
        self.poll_status()

    def action_turn_page(self, step: int) -> None:
        self.roster.turn_page(step)
        self.draw_frame()
        self.poll_status()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The stream keys exist only with several streams (and paging with a second page):
        hidden from the footer, and doing nothing, otherwise."""
        if action == "next_stream":
            return self.roster.multi
        if action == "turn_page":
            return self.roster.pages > 1
        return True

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
            if self.roster.multi:
                self.push_screen(
                    HelpScreen(KEY_HELP + STREAM_KEY_HELP, PLOT_LEGEND + STREAMS_LEGEND)
                )
            else:
                self.push_screen(HelpScreen(KEY_HELP))

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
