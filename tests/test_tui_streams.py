"""The dashboard of a run with several streams (``--per-channel``) under Pilot: a trajectory pair
per stream, the selection key, paging, per-stream shading and levels, the layout at 80x24 and
160x48, and the replay of a hand-written two-stream session.

Driven by ``ScriptedController`` as in ``test_tui_app.py``: the test pushes the estimates, so
nothing waits on wall-clock time.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_replay_streams import two_stream_lines, write_session
from textual.pilot import Pilot
from tui_fakes import (
    BASE_STATUS,
    STREAM_NAMES,
    ScriptedController,
    scripted_estimates,
    scripted_streams,
    streams_status,
)

from streamser.session.reader import read_session
from streamser.session.replay import ReplayController
from streamser.tui.app import DashboardApp, HelpScreen, make_app
from streamser.tui.roster import STREAMS_PER_PAGE, StreamRoster
from streamser.tui.widgets import (
    BannerState,
    CircumplexView,
    ClassBars,
    EstimateTrack,
    LevelMeter,
    StatusPanel,
    StreamStack,
    TrajectoryPlot,
    sample_plot,
    status_banners,
)

pytestmark = pytest.mark.anyio

SIZE = (80, 24)
WAIT_S = 10.0


def text_of(widget: ClassBars | LevelMeter | CircumplexView | TrajectoryPlot) -> str:
    return widget.render().plain


def stack_of(app: DashboardApp) -> StreamStack:
    assert app.stack is not None
    return app.stack


def shown(app: DashboardApp) -> list[str | None]:
    """The streams of the blocks on screen, top to bottom."""
    return [block.stream for block in stack_of(app).shown_blocks()]


def shown_keys(app: DashboardApp) -> set[str]:
    """The actions the footer offers now."""
    return {b.binding.action for b in app.screen.active_bindings.values() if b.binding.show}


async def fed(
    app: DashboardApp, pilot: Pilot[None], controller: ScriptedController, n: int, k: int
) -> None:
    """Emit ``n`` windows of each of the first ``k`` scripted streams and draw a frame."""
    windows = app.received // k
    controller.emit(scripted_streams(n, STREAM_NAMES[:k], start=windows))
    await pilot.pause()
    app.draw_frame()
    app.poll_status()
    await pilot.pause()


def streams_controller(k: int) -> ScriptedController:
    return ScriptedController(status=streams_status(STREAM_NAMES[:k]))


# --- one stream looks as it did -----------------------------------------------------------------


async def test_one_stream_keeps_the_two_plots_and_no_stream_keys() -> None:
    controller = ScriptedController(status=streams_status(("main",)))
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        controller.emit(scripted_estimates(30))
        await pilot.pause()
        app.draw_frame()
        assert app.stack is None and not app.query(StreamStack)
        assert app.query_one("#arousal", TrajectoryPlot).shown_version == 30
        assert {"next_stream", "turn_page(1)"}.isdisjoint(shown_keys(app))
        assert "quit" in shown_keys(app)
        await pilot.press("n", "right_square_bracket")  # unbound with one stream: no change
        assert app.roster.selected == 0 and app.roster.page == 0
        assert text_of(app.query_one(LevelMeter)).startswith("input ")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert all(key != "n" for key, _ in app.screen.keys)


# --- a pair per stream --------------------------------------------------------------------------


async def test_each_stream_gets_its_pair_in_the_run_order() -> None:
    controller = streams_controller(2)
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert shown(app) == ["alice", "bob"]  # from the status, before any estimate
        assert not app.query("#arousal")
        await fed(app, pilot, controller, 40, 2)
        for block in stack_of(app).shown_blocks():
            assert block.stream is not None
            track = app.tracks.tracks[block.stream]
            assert len(track) == 40
            assert all(plot.shown_version == track.version for plot in block.plots)
            assert block.stream in block.header.render().plain
        assert "2 streams" in stack_of(app).page_header.render().plain
        assert {"next_stream"} <= shown_keys(app) and "turn_page(1)" not in shown_keys(app)
        # every block's plots draw in its stream's colour, the two streams' differ
        colours = [
            block.plots[0].style_of("trajectory--smooth").color
            for block in stack_of(app).shown_blocks()
        ]
        assert colours[0] != colours[1]


async def test_streams_are_learned_from_the_estimates_when_the_status_lists_none() -> None:
    controller = ScriptedController(status=BASE_STATUS)  # an older controller: no streams
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.stack is None
        controller.emit(scripted_streams(10, ("bob", "alice")))
        await pilot.pause()
        app.draw_frame()
        await pilot.pause()
        assert app.roster.names == ["bob", "alice"]  # in order of first appearance
        assert shown(app) == ["bob", "alice"]
        assert app.received == 20


async def test_each_stream_shades_its_own_non_speech() -> None:
    controller = streams_controller(2)
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        estimates = scripted_streams(120, STREAM_NAMES[:2])  # a minute and three seconds
        # bob says nothing in the first half of the last minute; alice talks throughout
        estimates = [replace(e, is_speech=e.stream == "alice" or e.window >= 60) for e in estimates]
        controller.emit(estimates)
        await pilot.pause()
        app.draw_frame()
        await pilot.pause()
        alice, bob = (block.plots[0].samples() for block in stack_of(app).shown_blocks())
        assert alice is not None and bob is not None
        assert alice.speech.all()
        half = len(bob.speech) // 2
        assert not bob.speech[: half - 2].any() and bob.speech[half + 2 :].all()


# --- selection ----------------------------------------------------------------------------------


async def test_n_selects_the_next_stream_for_the_class_bars_and_the_level() -> None:
    controller = streams_controller(3)
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, controller, 30, 3)  # each stream's last window is speech
        bars, meter = app.query_one(ClassBars), app.query_one(LevelMeter)
        latest = {e.stream: e for e in controller.history_since(-1)}
        assert app.roster.selected_name == "alice"
        assert bars.estimate is latest["alice"]
        assert text_of(bars).startswith("alice · class probabilities")
        assert text_of(meter).startswith("alice ") and "-18.0 dBFS" in text_of(meter)
        headers = [b.header.render().plain for b in stack_of(app).shown_blocks()]
        assert headers[0].startswith("▶ alice") and headers[1].startswith("  bob")
        before = text_of(bars)

        await pilot.press("n")
        assert app.roster.selected_name == "bob"
        assert bars.estimate is latest["bob"]
        assert text_of(bars).startswith("bob · class probabilities")
        assert text_of(bars) != before  # bob's probabilities, not alice's
        assert text_of(meter).startswith("bob ") and "-24.0 dBFS" in text_of(meter)
        headers = [b.header.render().plain for b in stack_of(app).shown_blocks()]
        assert headers[0].startswith("  alice") and headers[1].startswith("▶ bob")
        circumplex = app.query_one(CircumplexView)
        assert [t.name for t in circumplex.streams if t.selected] == ["bob"]

        await pilot.press("n", "n")  # carol, then round to alice
        assert app.roster.selected_name == "alice"
        assert bars.estimate is latest["alice"]


async def test_selecting_while_paused_shows_the_paused_moment() -> None:
    controller = streams_controller(2)
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, controller, 10, 2)
        await pilot.press("space")
        frozen = app.tracks.frame()
        await fed(app, pilot, controller, 10, 2)
        await pilot.press("n")
        bars = app.query_one(ClassBars)
        assert bars.estimate is frozen.latest["bob"]  # the selection moved; the data did not
        for block in stack_of(app).shown_blocks():
            assert block.stream is not None
            assert all(p.view is frozen.views[block.stream] for p in block.plots)
        await pilot.press("space")
        assert bars.estimate is not None and bars.estimate.window == 19


async def test_a_stream_level_missing_from_the_status_shows_the_input() -> None:
    """A controller that lists the streams' names but not for the selected one: the meter
    falls back to the input's level, labelled as such rather than as the stream."""
    status = streams_status(STREAM_NAMES[:2])
    status = replace(status, streams=status.streams[:1], level_dbfs=-30.0)
    controller = ScriptedController(status=status)
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, controller, 5, 2)
        await pilot.press("n")
        assert app.roster.selected_name == "bob"
        meter = text_of(app.query_one(LevelMeter))
        assert meter.startswith("input ") and "-30.0 dBFS" in meter


# --- paging -------------------------------------------------------------------------------------


async def test_paging_through_six_streams() -> None:
    controller = streams_controller(6)
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, controller, 20, 6)
        assert shown(app) == list(STREAM_NAMES[:STREAMS_PER_PAGE])
        assert "streams 1-4 of 6" in stack_of(app).page_header.render().plain
        assert "turn_page(1)" in shown_keys(app)

        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert shown(app) == ["erin", "frank"]
        assert app.roster.selected_name == "erin"  # the selection follows the page
        assert "streams 5-6 of 6" in stack_of(app).page_header.render().plain
        erin = app.tracks.tracks["erin"]
        block = stack_of(app).shown_blocks()[0]
        assert all(p.shown_version == erin.version for p in block.plots)
        # the plots now draw erin's history, not that of the stream the block showed before
        for plot in block.plots:
            drawn = plot.samples()
            assert drawn is not None
            own = sample_plot(erin.view(), plot.series, app.range_s, len(drawn.raw))
            assert drawn.same_as(own)
        assert app.query_one(ClassBars).estimate.stream == "erin"  # type: ignore[union-attr]
        screen = app.screen.region
        for b in stack_of(app).shown_blocks():
            assert screen.contains_region(b.region)

        await pilot.press("right_square_bracket")  # round to the first page
        assert shown(app) == list(STREAM_NAMES[:4]) and app.roster.selected_name == "alice"
        await pilot.press("left_square_bracket")
        assert shown(app) == ["erin", "frank"]
        await pilot.press("n")  # frank
        await pilot.press("n")  # alice: the page follows the selection
        assert app.roster.selected_name == "alice" and shown(app) == list(STREAM_NAMES[:4])


def test_roster_keeps_the_selection_on_the_page_shown() -> None:
    roster = StreamRoster()
    assert roster.merge(["a", "b"]) and not roster.merge(["b", "a"])
    assert roster.merge(["c", "d", "e"]) and roster.names == ["a", "b", "c", "d", "e"]
    assert roster.pages == 2 and roster.visible() == ["a", "b", "c", "d"]
    roster.select_next(4)
    assert roster.selected_name == "e" and roster.visible() == ["e"]
    roster.select_next()
    assert roster.selected_name == "a" and roster.page == 0
    roster.turn_page(-1)
    assert roster.page == 1 and roster.selected_name == "e"
    assert roster.colour_index("e") == 4


# --- layout -------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 4, 6])
@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_every_panel_fits_on_screen(size: tuple[int, int], k: int) -> None:
    controller = ScriptedController(status=streams_status(STREAM_NAMES[:k], demo_model=True))
    app = make_app(controller)
    async with app.run_test(size=size) as pilot:
        await fed(app, pilot, controller, 30, k)
        screen = app.screen.region
        blocks = stack_of(app).shown_blocks()
        assert len(blocks) == min(k, STREAMS_PER_PAGE)
        heights = set()
        for block in blocks:
            assert screen.contains_region(block.region)
            assert block.header.region.height == 1
            for plot in block.plots:
                assert plot.region.height >= 1 and screen.contains_region(plot.region)
                heights.add(plot.region.height)
        assert len(heights) == 1  # every plot on the page equally high
        if size == (160, 48):
            assert heights.pop() >= 4
        axis = stack_of(app).time_axis
        assert axis.region.y > blocks[-1].region.bottom - 1 and screen.contains_region(axis.region)
        for selector in (CircumplexView, ClassBars, LevelMeter, "#status"):
            region = app.query_one(selector).region
            assert region.height > 0 and screen.contains_region(region), selector
        assert app.query_one(ClassBars).content_size.height >= 7
        legend = text_of(app.query_one(CircumplexView))
        for name in STREAM_NAMES[:k]:
            assert name in legend


async def test_range_keys_change_every_stream_plot() -> None:
    controller = streams_controller(2)
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, controller, 20, 2)
        await pilot.press("plus")
        assert app.range_s == 120.0
        ranges = {p.range_s for b in stack_of(app).blocks for p in b.plots}
        assert ranges == {120.0}
        assert "last 2 min" in stack_of(app).page_header.render().plain
        assert "-1:00" in stack_of(app).time_axis.render().plain


async def test_help_lists_the_stream_keys_with_several_streams() -> None:
    app = make_app(streams_controller(2))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown_help = " ".join(str(s.render()) for s in app.screen.query("Static"))
        assert "select the next stream" in shown_help and "page of streams" in shown_help
        assert "own colour" in shown_help


# --- status -------------------------------------------------------------------------------------


def test_silent_streams_are_named_in_one_banner() -> None:
    warning = "input silent for 30 s: wrong device?"
    status = streams_status(STREAM_NAMES[:4], silence_warning="from the input")
    streams = list(status.streams)
    for k in (1, 3):  # bob's and dave's microphones are off
        streams[k] = replace(streams[k], level_dbfs=-200.0, silence_warning=warning)
    status = replace(status, streams=tuple(streams))
    texts = [b.text for b in status_banners(status, BannerState())]
    assert texts == [f"bob, dave: {warning}"]
    assert status_banners(replace(status, muted=True), BannerState()) == ()
    one = replace(BASE_STATUS, silence_warning=warning)
    assert [b.text for b in status_banners(one, BannerState())] == [warning]


def test_a_track_grows_as_its_stream_goes_on() -> None:
    track = EstimateTrack(capacity=3000)
    for e in scripted_estimates(2500):
        track.append(e)
    view = track.view()
    assert len(view.t_end) == 2500 and view.version == 2500
    np.testing.assert_allclose(np.diff(view.t_end), 0.5)  # nothing lost while growing
    for e in scripted_estimates(5000, start=2500):
        track.append(e)
    assert len(track.view().t_end) == 3000
    assert track.view().t_end[-1] == scripted_estimates(1, start=7499)[0].t_end_s


# --- replay -------------------------------------------------------------------------------------


async def test_replay_of_a_two_stream_session_shows_both(tmp_path: Path) -> None:
    streams = [{"name": "alice", "channel": 1}, {"name": "bob", "channel": 2}]
    path = write_session(tmp_path, two_stream_lines(8), {"streams": streams})
    controller = ReplayController(read_session(path), speed=0)
    app = make_app(controller, title="streamser replay")
    async with app.run_test(size=SIZE) as pilot:
        assert controller.finished.wait(WAIT_S)
        await pilot.pause()
        app._pull()
        app.draw_frame()
        app.poll_status()
        await pilot.pause()
        assert shown(app) == ["alice", "bob"]
        assert {name: len(t) for name, t in app.tracks.tracks.items()} == {"alice": 8, "bob": 8}
        status = app.query_one("#status", StatusPanel).render().plain
        assert "estimates 16" in status
        await pilot.press("n")
        bars = app.query_one(ClassBars)
        assert bars.estimate is not None and bars.estimate.stream == "bob"
        assert text_of(app.query_one(LevelMeter)).startswith("bob ")  # no level in a replay
        assert "— dBFS" in text_of(app.query_one(LevelMeter))


async def test_many_streams_keep_the_plane_and_say_how_many_more() -> None:
    names = tuple(f"voice{k}" for k in range(20))
    controller = ScriptedController(status=streams_status(names))
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        controller.emit(scripted_streams(8, names))
        await pilot.pause()
        app.draw_frame()
        await pilot.pause()
        circumplex = app.query_one(CircumplexView)
        lines = text_of(circumplex).splitlines()
        legend = [line for line in lines if "●" in line and "voice" in line]
        assert len(legend) == CircumplexView.MAX_LEGEND_ROWS
        shown_names = sum(line.count("voice") for line in legend)
        assert legend[-1].endswith(f"+{20 - shown_names} more")
        assert len(lines) == circumplex.content_size.height  # the plane kept its rows
        assert app.roster.pages == 5
        assert "streams 1-4 of 20" in stack_of(app).page_header.render().plain
