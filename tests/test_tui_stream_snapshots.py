"""Snapshots of the dashboard of a run with several streams (``--per-channel``): 2 and 4 streams
at 80x24 and 160x48, and the second page of 6 streams.

As in ``test_tui_snapshots.py``, everything on screen derives from a scripted stream and a fixed
status, so the pictures are identical run to run. Update them with ``--snapshot-update`` after an
intended change, and look at the SVGs before committing them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from textual.pilot import Pilot
from tui_fakes import STREAM_NAMES, ScriptedController, scripted_streams, streams_status

from streamser.tui.app import DashboardApp, make_app

SnapCompare = Callable[..., bool]
"""The ``snap_compare`` fixture of pytest-textual-snapshot."""

N_WINDOWS = 150
"""75 s of each stream at a 0.5 s hop: more than the default one-minute range."""


def streams_app(n_streams: int, **status: object) -> tuple[DashboardApp, ScriptedController]:
    names = STREAM_NAMES[:n_streams]
    controller = ScriptedController(status=streams_status(names, **status))
    return make_app(controller), controller


def feeder(
    app: DashboardApp, controller: ScriptedController, n_streams: int, *keys: str
) -> Callable[[Pilot[None]], Awaitable[None]]:
    """A ``run_before`` that feeds every stream, presses ``keys`` and draws one frame."""

    async def run_before(pilot: Pilot[None]) -> None:
        controller.emit(scripted_streams(N_WINDOWS, STREAM_NAMES[:n_streams]))
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
        app.draw_frame()
        app.poll_status()
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("n_streams", [2, 4], ids=["2-streams", "4-streams"])
@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_streams(snap_compare: SnapCompare, n_streams: int, size: tuple[int, int]) -> None:
    app, controller = streams_app(n_streams, demo_model=size == (80, 24))
    run_before = feeder(app, controller, n_streams, "n")  # the second stream selected
    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_six_streams_second_page(snap_compare: SnapCompare) -> None:
    app, controller = streams_app(6)
    run_before = feeder(app, controller, 6, "right_square_bracket")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
