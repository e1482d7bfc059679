"""Snapshots of the dashboard fed a scripted estimate stream, small and large, dark and light.

Everything on screen derives from the scripted stream and a fixed status (times are stream
time, never wall-clock), so the pictures are identical run to run. Update them with
``pytest tests/test_tui_snapshots.py --snapshot-update`` after an intended change, and look at
the SVGs before committing them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from textual.pilot import Pilot
from tui_fakes import BASE_STATUS, ScriptedController, scripted_estimates

from streamser.tui.app import DashboardApp, make_app

SnapCompare = Callable[..., bool]
"""The ``snap_compare`` fixture of pytest-textual-snapshot."""

N_ESTIMATES = 150
"""75 s of estimates at a 0.5 s hop: more than the default one-minute range."""


def scripted_app(**status_changes: Any) -> tuple[DashboardApp, ScriptedController]:
    controller = ScriptedController(status=replace(BASE_STATUS, **status_changes))
    return make_app(controller), controller


def feeder(
    app: DashboardApp, controller: ScriptedController, theme: str | None = None
) -> Callable[[Pilot[None]], Awaitable[None]]:
    """A ``run_before`` that feeds the stream and draws one frame before the picture is taken."""

    async def run_before(pilot: Pilot[None]) -> None:
        if theme is not None:
            app.theme = theme
        controller.emit(scripted_estimates(N_ESTIMATES))
        await pilot.pause()
        app.draw_frame()
        app.poll_status()
        await pilot.pause()

    return run_before


def test_dashboard_80x24(snap_compare: SnapCompare) -> None:
    app, controller = scripted_app(demo_model=True)
    assert snap_compare(app, terminal_size=(80, 24), run_before=feeder(app, controller))


def test_dashboard_160x48(snap_compare: SnapCompare) -> None:
    app, controller = scripted_app(recording=True)
    assert snap_compare(app, terminal_size=(160, 48), run_before=feeder(app, controller))


def test_dashboard_light_theme_with_warnings(snap_compare: SnapCompare) -> None:
    app, controller = scripted_app(
        clipping=True, level_dbfs=-0.5, log_error="disk full", muted=True
    )
    run_before = feeder(app, controller, theme="textual-light")
    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)
