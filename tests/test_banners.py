"""The silence warning lasts exactly as long as the digital silence, in the analyzer and on the
dashboard; and every word of a long banner stays readable at 80 and 120 columns."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from tui_fakes import BASE_STATUS, ScriptedController

from streamser.audio.silence import SilenceWatch
from streamser.config import WindowConfig
from streamser.engine.analyzer import StreamAnalyzer
from streamser.labels import DEMO_WARNING
from streamser.tui.app import DashboardApp, make_app
from streamser.tui.status import (
    Banner,
    BannerStack,
    BannerState,
    banner_lines,
    status_banners,
)
from tests.model_standins import NoModel

pytestmark = pytest.mark.anyio

CAPTURE_RATE_HZ = 8_000
SILENCE = SilenceWatch(16_000).message
LONG_PATH = "/home/someone/recordings/" + "very-long-folder-name/" * 6 + "take.wav"
SOURCE_ERROR = f"cannot read {LONG_PATH}: Error : unexpected end of data in the FLAC stream"


def words(text: str) -> list[str]:
    return text.split()


def test_a_short_banner_is_one_full_width_row_as_before() -> None:
    assert banner_lines(DEMO_WARNING, 80) == [f" {DEMO_WARNING}".ljust(80)]
    exact = "x" * 79
    assert banner_lines(exact, 80) == [" " + exact]


@pytest.mark.parametrize("width", [20, 80, 120])
def test_a_long_banner_wraps_at_words_and_keeps_every_character(width: int) -> None:
    for text in (SILENCE, SOURCE_ERROR):
        rows = banner_lines(text, width)
        assert all(len(row) == width and row.startswith(" ") for row in rows)
        assert len(rows) > 1
        assert "".join(words(" ".join(rows))) == "".join(words(text))
    sentence_rows = banner_lines(SILENCE, width)
    assert words(" ".join(sentence_rows)) == words(SILENCE)  # no word broken in a sentence


def test_the_silence_warning_is_not_shown_while_capture_is_muted_by_the_user() -> None:
    state = BannerState()
    silent = replace(BASE_STATUS, silence_warning=SILENCE)
    assert Banner("warning", SILENCE) in status_banners(silent, state)
    assert all(b.text != SILENCE for b in status_banners(replace(silent, muted=True), state))


def shown_rows(app: DashboardApp) -> list[str]:
    stack = app.query_one(BannerStack)
    return stack.render().plain.split("\n")


@pytest.mark.parametrize("columns", [80, 120])
async def test_long_banners_are_readable_whole_at_80_and_120_columns(columns: int) -> None:
    status = replace(
        BASE_STATUS, demo_model=True, silence_warning=SILENCE, source_error=SOURCE_ERROR
    )
    controller = ScriptedController(status=status)
    app = make_app(controller)
    async with app.run_test(size=(columns, 30)) as pilot:
        app.poll_status()
        await pilot.pause()
        stack = app.query_one(BannerStack)
        rows = shown_rows(app)
        texts = [f"input problem: {SOURCE_ERROR}", DEMO_WARNING, SILENCE]
        assert stack.size.width == columns
        assert stack.size.height == len(rows) == sum(len(banner_lines(t, columns)) for t in texts)
        assert all(len(row) <= columns for row in rows)
        assert "…" not in "".join(rows)
        assert "".join(words(" ".join(rows))) == "".join(words(" ".join(texts)))
        # the screen shows the banner rows, and the panels below still have their place
        assert app.query_one("#status").region.y >= stack.region.bottom


async def test_the_silence_banner_goes_as_soon_as_sound_returns_and_comes_back() -> None:
    controller = ScriptedController()
    app = make_app(controller)
    async with app.run_test(size=(120, 30)) as pilot:
        stack = app.query_one(BannerStack)
        for silent in (True, False, True, False):
            level = -200.0 if silent else -30.0
            controller.set_status(silence_warning=SILENCE if silent else None, level_dbfs=level)
            app.poll_status()
            await pilot.pause()
            assert stack.display is silent
            assert ("No sound" in stack.render().plain) is silent


def test_the_silence_warning_clears_when_sound_returns_and_comes_back_with_silence() -> None:
    an = StreamAnalyzer(NoModel(), WindowConfig(vad=False), CAPTURE_RATE_HZ)
    zeros = np.zeros((400, 2), np.float32)  # 50 ms blocks
    sound = np.full((400, 2), 0.01, np.float32)
    frame = 0

    def push(block: np.ndarray, times: int) -> None:
        nonlocal frame
        for _ in range(times):
            an.push_capture(frame, block)
            frame += len(block)

    push(zeros, 59)  # 2.95 s
    assert an.silence_warning is None
    push(zeros, 1)  # 3 s
    assert an.silence_warning == SilenceWatch(CAPTURE_RATE_HZ).message
    push(zeros, 20)
    assert an.silence_warning is not None  # still silent: still said
    push(sound, 1)
    assert an.silence_warning is None  # the level meter and the banner agree at once
    one_blip = zeros.copy()
    one_blip[-1, 0] = 1e-6
    push(zeros, 30)
    push(one_blip, 1)
    assert an.silence_warning is None  # 1.55 s of zeros: not yet
    push(zeros, 60)
    assert an.silence_warning is not None  # silent again for 3 s: said again
    push(sound[:1], 1)
    assert an.silence_warning is None


def test_a_whole_silent_run_inside_one_block_shows_until_the_next_block() -> None:
    """The worker reads the warning right after each push: a run that began and ended within
    one (late, large) block is still said once, and gone with the next block."""
    an = StreamAnalyzer(NoModel(), WindowConfig(vad=False), CAPTURE_RATE_HZ)
    block = np.zeros(4 * CAPTURE_RATE_HZ, np.float32)
    block[[0, -1]] = 0.5
    an.push_capture(0, block)
    assert an.silence_warning is not None
    an.push_capture(len(block), np.full(10, 0.5, np.float32))
    assert an.silence_warning is None
