"""The dashboard's widgets and the pure helpers they draw with, in one namespace.

Each lives in a module of its own (data in :mod:`~streamser.tui.track`, braille layout in
:mod:`~streamser.tui.plotting`, the cached drawing base in :mod:`~streamser.tui.render`, one
module per widget family); this module gathers them so the app and the tests import the
dashboard's parts from one place, whichever module a part moves to.
"""

from __future__ import annotations

from streamser.tui.circumplex import CircumplexView, StreamTrail
from streamser.tui.classbars import ClassBars, bar
from streamser.tui.plotting import (
    PlotCells,
    PlotSamples,
    format_ago,
    format_range,
    layout_cells,
    line_dots,
    pack_braille,
    plot_cells,
    run_kinds,
    sample_plot,
    tick_label_row,
    time_ticks,
    value_rows,
)
from streamser.tui.render import Band, CachedRender, StyledWidget, TextBuilder
from streamser.tui.status import (
    Banner,
    BannerStack,
    BannerState,
    LevelMeter,
    StatusField,
    StatusPanel,
    pack_fields,
    state_fields,
    status_banners,
    status_fields,
)
from streamser.tui.streamplots import (
    StreamBlock,
    StreamHeader,
    StreamPageHeader,
    StreamStack,
    TimeAxisRow,
)
from streamser.tui.track import (
    EstimateTrack,
    Series,
    StreamTracks,
    TrackFrame,
    TrackView,
    sample_columns,
)
from streamser.tui.trajectory import TrajectoryPlot

__all__ = [
    "Band",
    "Banner",
    "BannerStack",
    "BannerState",
    "CachedRender",
    "CircumplexView",
    "ClassBars",
    "EstimateTrack",
    "LevelMeter",
    "PlotCells",
    "PlotSamples",
    "Series",
    "StatusField",
    "StatusPanel",
    "StreamBlock",
    "StreamHeader",
    "StreamPageHeader",
    "StreamStack",
    "StreamTracks",
    "StreamTrail",
    "StyledWidget",
    "TextBuilder",
    "TimeAxisRow",
    "TrackFrame",
    "TrackView",
    "TrajectoryPlot",
    "bar",
    "format_ago",
    "format_range",
    "layout_cells",
    "line_dots",
    "pack_braille",
    "pack_fields",
    "plot_cells",
    "run_kinds",
    "sample_columns",
    "sample_plot",
    "state_fields",
    "status_banners",
    "status_fields",
    "tick_label_row",
    "time_ticks",
    "value_rows",
]
