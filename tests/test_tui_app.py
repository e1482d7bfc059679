"""Dashboard behaviour under Pilot: every key, the data path from the engine thread, the layout.

The app is driven by ``ScriptedController``; estimates are pushed by the test, so nothing waits
on wall-clock time. ``draw_frame`` and ``poll_status`` are the timers' callbacks, called directly
where a test needs a frame now.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rich.style import Style
from textual.geometry import Region
from textual.message import Message
from textual.pilot import Pilot
from textual.widgets import Input
from tui_fakes import BASE_STATUS, ScriptedController, scripted_estimate, scripted_estimates

from streamser.constants import HISTORY_MAX_ESTIMATES, MIN_HOP_S
from streamser.contracts import DashboardController
from streamser.labels import CLASS_NAMES, class_name
from streamser.tui.app import (
    DEFAULT_RANGE_S,
    RANGE_STEPS_S,
    DashboardApp,
    HelpScreen,
    MarkScreen,
    make_app,
)
from streamser.tui.messages import EstimatesReady
from streamser.tui.widgets import (
    BannerStack,
    CircumplexView,
    ClassBars,
    EstimateTrack,
    LevelMeter,
    PlotCells,
    StatusPanel,
    TextBuilder,
    TrajectoryPlot,
    bar,
    format_ago,
    pack_braille,
    plot_cells,
    run_kinds,
    sample_plot,
    status_fields,
    tick_label_row,
)

pytestmark = pytest.mark.anyio

SIZE = (80, 24)


def text_of(widget: StatusPanel | BannerStack | LevelMeter | TrajectoryPlot | ClassBars) -> str:
    """The plain text a cached widget currently shows."""
    return widget.render().plain


def plot(app: DashboardApp, name: str = "arousal") -> TrajectoryPlot:
    return app.query_one(f"#{name}", TrajectoryPlot)


async def fed(
    app: DashboardApp, pilot: Pilot[None], controller: ScriptedController, n: int
) -> None:
    """Emit ``n`` more estimates, let the messages land, and draw a frame."""
    start = app.received
    controller.emit(scripted_estimates(n, start=start))
    await pilot.pause()
    app.draw_frame()
    app.poll_status()
    await pilot.pause()


# --- naming ------------------------------------------------------------------------------------


def test_class_names_follow_arousal_by_valence_order() -> None:
    assert CLASS_NAMES == (
        "low / negative",
        "low / neutral",
        "low / positive",
        "high / negative",
        "high / neutral",
        "high / positive",
    )
    assert class_name(4) == "high / neutral"
    with pytest.raises(IndexError):
        class_name(6)


def test_scripted_controller_satisfies_the_protocol() -> None:
    assert isinstance(ScriptedController(), DashboardController)


# --- lifecycle and data path -------------------------------------------------------------------


async def test_mount_starts_controller_and_loads_history() -> None:
    controller = ScriptedController(history=scripted_estimates(12))
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert controller.started == 1
        assert len(controller.subscribers) == 1
        assert app.received == 12
        assert app.latest is not None and app.latest.seq == 11
        assert plot(app).shown_version == 12


async def test_estimates_from_an_engine_thread_all_reach_the_plots() -> None:
    """A burst posted from another thread: the wake-ups coalesce, and the app still takes every
    estimate from the history, once, in order."""
    controller = ScriptedController()
    app = make_app(controller)
    n = 200
    async with app.run_test(size=SIZE) as pilot:
        engine = threading.Thread(
            target=controller.emit, args=(scripted_estimates(n),), name="fake-engine"
        )
        engine.start()
        engine.join()
        await pilot.pause()
        assert app.received == n and app.latest is not None and app.latest.seq == n - 1
        assert len(app.tracks.tracks["main"]) == n
        # the burst was queued before the loop ran: far fewer reads than estimates
        assert controller.history_calls >= 1 and controller.history_calls < n


def test_a_wake_up_replaces_an_older_one() -> None:
    assert EstimatesReady().can_replace(EstimatesReady())
    assert not EstimatesReady().can_replace(Message())


async def test_duplicates_from_history_and_messages_are_dropped() -> None:
    controller = ScriptedController(history=scripted_estimates(5))
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        controller.emit(scripted_estimates(3, start=3))  # seq 3, 4 already known; 5 is new
        await pilot.pause()
        assert app.received == 6 and app.latest is not None and app.latest.seq == 5


def test_history_covers_ten_minutes_at_the_smallest_hop() -> None:
    """The smallest hop is the one the settings accept, not a figure of the dashboard's own."""
    from streamser.config import ConfigError, ListenConfig, WindowConfig

    ListenConfig(windows=WindowConfig(hop_s=MIN_HOP_S)).validate()
    with pytest.raises(ConfigError, match="--hop"):
        ListenConfig(windows=WindowConfig(hop_s=MIN_HOP_S * 0.99)).validate()
    app = make_app(ScriptedController())
    assert app.tracks.capacity == HISTORY_MAX_ESTIMATES
    assert RANGE_STEPS_S[-1] <= HISTORY_MAX_ESTIMATES * MIN_HOP_S


async def test_start_failure_is_shown_and_quit_still_stops() -> None:
    controller = ScriptedController(fail_start=RuntimeError("no input device 'USB'"))
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "could not start: RuntimeError: no input device 'USB'" in text_of(
            app.query_one(BannerStack)
        )
        await pilot.press("q")
        assert controller.stopped == 1


async def test_unmount_stops_the_controller_exactly_once() -> None:
    controller = ScriptedController()
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert controller.stopped == 0
    assert controller.stopped == 1
    assert app.return_code is None  # left without q: the stop came from unmount


# --- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_quit_keys_stop_the_controller_then_exit(key: str) -> None:
    controller = ScriptedController()
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(key)
        assert controller.stopped == 1
        assert app.return_code == 0
        assert not app.is_running
    assert controller.stopped == 1  # unmount after quit does not stop twice


async def test_ctrl_c_quits_even_while_typing_a_note() -> None:
    controller = ScriptedController()
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        assert isinstance(app.screen, MarkScreen)
        await pilot.press("ctrl+c")
        assert controller.stopped == 1
        assert app.return_code == 0
        assert controller.marks == []


async def test_space_pauses_the_plots_while_estimates_keep_arriving() -> None:
    controller = ScriptedController()
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, controller, 20)
        frozen = plot(app).shown_version
        assert frozen == 20
        await pilot.press("space")
        assert app.paused
        assert "display paused" in text_of(app.query_one(BannerStack))
        await fed(app, pilot, controller, 15)
        assert app.received == 35  # still receiving ...
        assert plot(app).shown_version == frozen  # ... but not drawing
        assert plot(app, "valence").shown_version == frozen
        assert app.query_one(ClassBars).estimate.seq == 19
        assert "estimates 35" in text_of(app.query_one("#status", StatusPanel))
        await pilot.press("space")
        assert not app.paused
        assert plot(app).shown_version == 35
        assert app.query_one(ClassBars).estimate.seq == 34
        assert not app.query_one(BannerStack).display


async def test_c_mutes_and_unmutes_capture() -> None:
    controller = ScriptedController()
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        assert controller.mute_calls == [True]
        assert "capture muted" in text_of(app.query_one("#states", StatusPanel))
        assert "muted" in text_of(app.query_one(LevelMeter))
        await pilot.press("c")
        assert controller.mute_calls == [True, False]
        assert "capture on" in text_of(app.query_one("#states", StatusPanel))


async def test_r_starts_and_stops_recording() -> None:
    controller = ScriptedController()
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        assert controller.recording_calls == [True]
        assert "● REC" in text_of(app.query_one("#states", StatusPanel))
        await pilot.press("r")
        assert controller.recording_calls == [True, False]
        assert "rec off" in text_of(app.query_one("#states", StatusPanel))


async def test_m_marks_an_event_with_the_typed_note() -> None:
    controller = ScriptedController()
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        assert isinstance(app.screen, MarkScreen)
        assert app.screen.query_one(Input).has_focus
        await pilot.press(*"door slammed", "enter")
        assert controller.marks == ["door slammed"]
        assert not isinstance(app.screen, MarkScreen)
        assert controller.stopped == 0  # the q typed in the note did not quit


async def test_escape_cancels_a_mark() -> None:
    controller = ScriptedController()
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m", "x", "escape")
        assert controller.marks == []
        assert not isinstance(app.screen, MarkScreen)


async def test_plus_and_minus_step_through_the_time_ranges() -> None:
    controller = ScriptedController()
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, controller, 10)
        assert app.range_s == DEFAULT_RANGE_S == 60.0
        seen = []
        for _ in range(5):
            await pilot.press("plus")
            seen.append(app.range_s)
        assert seen == [120.0, 300.0, 600.0, 600.0, 600.0]
        assert plot(app).range_s == plot(app, "valence").range_s == 600.0
        assert "last 10 min" in text_of(plot(app))
        assert "-2:00" in text_of(plot(app))  # mm:ss ago on long ranges
        for _ in range(5):
            await pilot.press("minus")
        assert app.range_s == 30.0
        assert "last 30 s" in text_of(plot(app))
        assert "-10s" in text_of(plot(app))
        await pilot.press("equals_sign")  # + without shift
        assert app.range_s == 60.0


async def test_t_toggles_between_dark_and_light_and_redraws() -> None:
    controller = ScriptedController()
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, controller, 30)
        assert app.current_theme.dark
        dark_style = plot(app).style_of("trajectory--smooth")
        renders = plot(app).renders
        await pilot.press("t")
        await pilot.pause()
        assert app.theme == "textual-light"
        assert not app.current_theme.dark
        assert plot(app).renders > renders
        assert plot(app).style_of("trajectory--smooth").color != dark_style.color
        await pilot.press("t")
        assert app.current_theme.dark


async def test_question_mark_opens_help_and_escape_closes_it() -> None:
    app = make_app(ScriptedController())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = " ".join(str(s.render()) for s in app.screen.query("Static"))
        for key in ("ctrl+c", "space", "mark an event", "time range", "theme"):
            assert key in shown
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark", "question_mark")
        assert not isinstance(app.screen, HelpScreen)


# --- drawing ----------------------------------------------------------------------------------


async def test_frames_redraw_only_when_something_changed() -> None:
    controller = ScriptedController()
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, controller, 10)
        renders = plot(app).renders
        app.draw_frame()
        app.poll_status()
        await pilot.pause()
        assert plot(app).renders == renders
        await fed(app, pilot, controller, 1)
        assert plot(app).renders == renders + 1


async def test_status_line_and_banners_show_the_controller_state() -> None:
    controller = ScriptedController()
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        controller.set_status(
            demo_model=True,
            logging=False,
            log_error="disk full",
            silence_warning="input silent for 30 s: wrong device?",
            source_error="device lost, retrying",
            dropped_samples=480,
            clipping=True,
        )
        app.poll_status()
        await pilot.pause()
        banners = text_of(app.query_one(BannerStack))
        assert "demo model: random weights, output is meaningless" in banners
        assert "logging stopped: disk full" in banners
        assert "input silent for 30 s" in banners
        assert "input problem: device lost, retrying" in banners
        status = text_of(app.query_one("#status", StatusPanel))
        for part in ("USB Microphone", "48000 Hz", "ExHuBERT", "cpu float32", "hop 0.50 s"):
            assert part in status
        assert "RTF 0.42" in status and "lag 0.81 s" in status
        assert "dropped 480 smp" in status and "skipped 3 win" in status
        assert "sessions/2024-05-01T10-00-00" in status
        assert "log off" in text_of(app.query_one("#states", StatusPanel))
        assert "CLIP" in text_of(app.query_one(LevelMeter))
        controller.set_status(finished=True)
        app.poll_status()
        assert "input finished" in text_of(app.query_one(BannerStack))


async def test_replay_is_labelled_as_such() -> None:
    status = replace(
        BASE_STATUS,
        device="replay of 2024-05-01T10-00-00 (mic)",
        sample_rate_hz=0,
        level_dbfs=None,
        finished=True,
        log_error="logging stopped: disk full",
    )
    controller = ScriptedController(is_replay=True, status=status)
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        status_text = text_of(app.query_one("#status", StatusPanel))
        assert "input: replay of 2024-05-01T10-00-00 (mic) │" in status_text  # no "@ 0 Hz"
        banners = text_of(app.query_one(BannerStack))
        assert "replay finished" in banners
        assert "logging stopped: disk full" in banners
        assert "logging stopped: logging stopped" not in banners
        assert "— dBFS" in text_of(app.query_one(LevelMeter))
        said: list[str] = []
        app.notify = lambda message, **_: said.append(str(message))  # type: ignore[method-assign]
        await pilot.press("c", "r")
        await pilot.pause()
        assert controller.mute_calls == [] and controller.recording_calls == []
        assert said == [
            "c: a replay captures and records nothing",
            "r: a replay captures and records nothing",
        ]


def test_status_line_names_a_file_input_as_a_file(tmp_path: Path) -> None:
    """A file path in the device field reads ``file:``; a device name keeps ``input:``."""
    no_suffix = tmp_path / "take-3"
    no_suffix.write_bytes(b"RIFF")
    cases = {
        "assets/speech.wav": "file: assets/speech.wav @ 22050 Hz",
        "/data/Interview.FLAC": "file: /data/Interview.FLAC @ 22050 Hz",
        str(no_suffix): f"file: {no_suffix} @ 22050 Hz",
        "USB Microphone (hw:2,0)": "input: USB Microphone (hw:2,0) @ 22050 Hz",
        "Mic/Line In 2.0": "input: Mic/Line In 2.0 @ 22050 Hz",
    }
    for device, expected in cases.items():
        status = replace(BASE_STATUS, device=device, sample_rate_hz=22_050)
        assert status_fields(status, received=0)[0].text == expected


async def test_digital_silence_reads_silent_not_a_level() -> None:
    """The engine reports an all-zero block as -200 dBFS: the meter says ``silent`` instead,
    with an empty bar of the same length as for a real reading."""
    controller = ScriptedController(status=replace(BASE_STATUS, level_dbfs=-23.5))
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        meter = app.query_one(LevelMeter)
        loud = text_of(meter)
        controller.set_status(level_dbfs=-200.0)
        app.poll_status()
        quiet = text_of(meter)
        assert "-23.5 dBFS" in loud
        assert "silent" in quiet and "-200" not in quiet and "dBFS" not in quiet
        assert "█" not in quiet
        assert len(quiet) == len(loud)
        assert quiet.count("·") == loud.count("█") + loud.count("·")
        controller.set_status(level_dbfs=-95.0)  # quiet but not silence: still a number
        app.poll_status()
        assert "-95.0 dBFS" in text_of(meter)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_every_panel_fits_on_screen(size: tuple[int, int]) -> None:
    controller = ScriptedController(status=replace(BASE_STATUS, demo_model=True))
    app = make_app(controller)
    async with app.run_test(size=size) as pilot:
        await fed(app, pilot, controller, 50)
        screen = app.screen.region
        for selector in ("#arousal", "#valence", CircumplexView, ClassBars, LevelMeter, "#status"):
            region = app.query_one(selector).region
            assert region.height > 0 and region.width > 0, selector
            assert screen.contains_region(region), selector
        assert plot(app).content_size.height >= 8  # at least 5 rows of plot + title and axes
        assert app.query_one(ClassBars).content_size.height >= 7
        wide = size[0] >= 120
        assert app.screen.has_class("-wide") is wide


async def test_an_estimate_within_the_same_dot_column_repaints_only_the_title() -> None:
    """On a long range a dot column spans seconds: estimates that do not move the time axis by
    a column leave the plot body as it is (no rebuild, no repaint); one that does redraws it."""
    controller = ScriptedController()
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("plus", "plus", "plus")
        assert app.range_s == 600.0
        await fed(app, pilot, controller, 40)
        arousal = plot(app)
        repaints: list[tuple[Region, ...]] = []
        original_refresh = arousal.refresh

        def spy(*regions: Region, **kwargs: bool) -> TrajectoryPlot:
            repaints.append(regions)
            return original_refresh(*regions, **kwargs)

        arousal.refresh = spy  # type: ignore[method-assign]
        kept = moved = 0
        for _ in range(30):
            samples = arousal.samples()
            assert samples is not None
            t_right, body_renders = samples.t_right, arousal.body_renders
            repaints.clear()
            await fed(app, pilot, controller, 1)
            now = arousal.samples()
            assert now is not None
            if now.t_right == t_right:
                kept += 1
                assert arousal.body_renders == body_renders
                assert all(r and r[0].y == 0 and r[0].height == 1 for r in repaints), repaints
            else:
                moved += 1
                assert arousal.body_renders == body_renders + 1
                assert () in repaints  # the whole plot
        assert kept and moved


async def test_non_speech_is_marked_on_the_time_axis() -> None:
    controller = ScriptedController()
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        controller.emit([scripted_estimate(k, speech=k >= 60) for k in range(120)])
        await pilot.pause()
        app.draw_frame()
        axis = text_of(plot(app)).splitlines()[-2]
        marked = axis.strip().lstrip("└")
        # the first half of the last minute was non-speech, the second half speech
        assert marked[: len(marked) // 2 - 2].strip("░") == ""
        assert marked[len(marked) // 2 + 2 :].strip("─") == ""


# --- pure pieces ------------------------------------------------------------------------------


def test_track_keeps_the_newest_rows_in_order() -> None:
    track = EstimateTrack(capacity=10)
    for e in scripted_estimates(37):
        track.append(e)
    view = track.view()
    assert len(track) == 10
    assert view.version == 37
    np.testing.assert_allclose(view.t_end, [scripted_estimate(k).t_end_s for k in range(27, 37)])
    track.append(scripted_estimate(37))
    assert view.t_end[-1] == scripted_estimate(36).t_end_s  # views are copies


def test_braille_packing_and_plot_cells() -> None:
    dots = np.zeros((4, 2), dtype=bool)
    dots[0, 0] = dots[3, 1] = True
    assert pack_braille(dots).tolist() == [[0x01 | 0x80]]
    track = EstimateTrack(capacity=100)
    for k in range(40):
        track.append(replace(scripted_estimate(k), arousal=1.0, arousal_smooth=0.0))
    cells = plot_cells(
        track.view(), "arousal", lo=0.0, hi=1.0, grid_at=None, range_s=20.0, rows=3, cols=10
    )
    assert (cells.codes[0] & 0x09).all()  # raw 1.0 on the top dot row everywhere
    assert (cells.codes[2] & 0xC0).all()  # smoothed 0.0 on the bottom dot row
    assert (cells.kinds[2] == 3).all() and (cells.kinds[0] == 2).all()


def test_plot_columns_stay_put_until_the_stream_moves_a_whole_column() -> None:
    """The right edge snaps to whole dot columns, so an estimate that lands inside the newest
    column changes nothing in the body; the next column moves everything by one."""
    track = EstimateTrack(capacity=1000)
    for e in scripted_estimates(200):  # hop 0.5 s: the newest ends at 102.5 s
        track.append(e)
    first = sample_plot(track.view(), "arousal", 60.0, 24)  # 2.5 s per dot column
    assert first.t_right == 102.5
    track.append(scripted_estimate(200))  # 103.0 s: same column
    assert sample_plot(track.view(), "arousal", 60.0, 24).same_as(first)
    for k in range(201, 205):  # 105.0 s: one column on
        track.append(scripted_estimate(k))
    moved = sample_plot(track.view(), "arousal", 60.0, 24)
    assert moved.t_right == 105.0
    assert not moved.same_as(first)
    np.testing.assert_array_equal(moved.raw[:-1], first.raw[1:])  # shifted by one column


def test_blank_cells_take_the_foreground_of_their_left_neighbour() -> None:
    """Fewer styled runs, same picture: only blanks change, and only their foreground."""
    cells = PlotCells(
        codes=np.array([[0, 1, 0, 0, 2, 0]]),
        kinds=np.array([[0, 2, 0, 4, 7, 4]]),  # the last three columns are non-speech
        nonspeech_cols=np.array([False, False, False, True, True, True]),
    )
    assert run_kinds(cells).tolist() == [[0, 2, 2, 6, 7, 7]]


def test_text_builder_strips_carry_the_text_and_styles_of_its_text() -> None:
    bold, red = Style(bold=True), Style(color="red")
    base = Style(color="white", bgcolor="black")
    out = TextBuilder()
    out.add("ab", bold)
    out.add("cd\nef")
    out.add("gh", red)
    out.add("\n")
    out.add("a long line", red)
    strips = out.strips(8, base)
    assert out.text().plain == "abcd\nefgh\na long line"
    assert [s.text for s in strips] == ["abcd", "efgh", "a long l"]  # cropped to the width
    first, second, third = (list(s) for s in strips)
    assert first[0].style == base + bold and first[1].style == base
    assert second[1].style == base + red
    assert second[1].style is third[0].style  # one style object per distinct style


def test_axis_labels_and_bars() -> None:
    row = tick_label_row(60.0, 40)
    assert row.startswith("-60s") and row.endswith("now") and "-30s" in row
    assert format_ago(90.0, 300.0) == "-1:30"
    assert format_ago(0.0, 30.0) == "now"
    assert bar(0.5, 4) == "██  "
    assert bar(1 / 16, 2) == "▏ "
    assert bar(2.0, 3) == "███"


async def test_s_saves_a_screenshot_into_the_session_directory(tmp_path: Path) -> None:
    session = tmp_path / "session"
    session.mkdir()
    controller = ScriptedController(history=scripted_estimates(80))
    controller.set_status(session_path=str(session))
    app = make_app(controller)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.draw_frame()
        await pilot.press("s")
        await pilot.pause()
    shots = list(session.glob("*.svg"))
    assert len(shots) == 1
    svg = shots[0].read_text(encoding="utf-8")
    assert svg.startswith("<svg")
    assert "arousal&#160;(0..1,&#160;derived)" in svg
    assert "estimates&#160;80" in svg
    assert (controller.started, controller.stopped) == (1, 1)


async def test_circumplex_shows_the_current_point_and_the_last_ten_seconds() -> None:
    controller = ScriptedController()
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, controller, 60)  # 30 s of estimates at a 0.5 s hop
        trail = app.circumplex.trail()
        assert len(trail) == 21  # ages 0 .. 10 s inclusive
        assert max(age for _, _, age in trail) == pytest.approx(CircumplexView.TRAIL_S)
        newest = scripted_estimate(59)
        assert trail[-1][:2] == pytest.approx((newest.valence_smooth, newest.arousal_smooth))
        drawn = text_of(app.circumplex)
        assert drawn.count("●") == 1
        assert "high arousal" in drawn and "neg" in drawn and "pos" in drawn


async def test_class_bars_name_every_class_and_flag_unscored_windows() -> None:
    controller = ScriptedController()
    app = make_app(controller)
    async with app.run_test(size=SIZE) as pilot:
        await fed(app, pilot, controller, 5)
        shown = text_of(app.class_bars)
        for name in CLASS_NAMES:
            assert name in shown
        assert "LABEL_" not in shown
        probs = scripted_estimate(4).probs
        assert probs is not None
        assert f"{max(probs):4.2f}" in shown
        controller.emit([scripted_estimate(5, speech=False)])
        await pilot.pause()
        app.draw_frame()
        assert "(non-speech)" in text_of(app.class_bars)
