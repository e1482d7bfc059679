"""Pure functions that turn a :class:`TrackView` into braille plot cells and time-axis labels.

A full-screen plotting library refreshed at a few hertz stole enough CPU to triple the model's
compute time, so the plots are purpose-built: each series is sampled once per braille dot
column and packed into characters with a handful of vectorised operations. Nothing here knows
about Textual, so the layout is tested with plain arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streamser.tui.track import Series, TrackView, sample_columns

_BRAILLE_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.int64)
"""Bit of the dot at (row, column) inside one braille cell of 4 x 2 dots."""


def pack_braille(dots: np.ndarray) -> np.ndarray:
    """Pack a (4*rows, 2*cols) boolean dot grid into (rows, cols) braille bit patterns."""
    h4, w2 = dots.shape
    cells = dots.reshape(h4 // 4, 4, w2 // 2, 2) * _BRAILLE_BITS[None, :, None, :]
    return cells.sum(axis=(1, 3))


def value_rows(values: np.ndarray, lo: float, hi: float, n_rows: int) -> np.ndarray:
    """Dot row of each value, 0 at the top (``hi``); values outside are clipped; NaN gives -1."""
    with np.errstate(invalid="ignore"):
        r = np.rint((hi - values) / (hi - lo) * (n_rows - 1))
    r = np.clip(r, 0, n_rows - 1)
    return np.where(np.isnan(values), -1, r).astype(np.int64)


def line_dots(rows: np.ndarray, n_rows: int, *, connect: bool) -> np.ndarray:
    """Dot grid of a series; with ``connect`` each column also fills the step from its neighbour."""
    lo, hi = rows.copy(), rows.copy()
    if connect and len(rows) > 1:
        prev, cur = rows[:-1], rows[1:]
        both = (prev >= 0) & (cur >= 0)
        lo[1:] = np.where(both, np.minimum(prev, cur), cur)
        hi[1:] = np.where(both, np.maximum(prev, cur), cur)
    r = np.arange(n_rows)[:, None]
    return (rows[None, :] >= 0) & (r >= lo[None, :]) & (r <= hi[None, :])


# Cell kinds, by drawing priority; NONSPEECH is added on top as a background.
_EMPTY, _GRID, _RAW, _SMOOTH = 0, 1, 2, 3
_NONSPEECH = 4


@dataclass(frozen=True)
class PlotCells:
    """One plot area as braille characters plus a kind per cell (which style to draw it in)."""

    codes: np.ndarray
    """(rows, cols) braille bit patterns; 0 is an empty cell."""
    kinds: np.ndarray
    """(rows, cols) of ``_EMPTY`` .. ``_SMOOTH``, plus ``_NONSPEECH`` for non-speech columns."""
    nonspeech_cols: np.ndarray
    """(cols,) True where the column's audio was judged non-speech."""


@dataclass(frozen=True, eq=False)
class PlotSamples:
    """One series sampled at the centre of every dot column: all the plot body depends on.

    The right edge is the newest estimate's time rounded down to a whole column, so the
    columns sit still between steps: a new estimate leaves them unchanged until the stream
    moves on by a column, and the body need not be redrawn (and the dots do not shimmer, as
    they do when every frame resamples at a fraction of a column further on).
    """

    t_right: float
    raw: np.ndarray
    smooth: np.ndarray
    speech: np.ndarray

    def same_as(self, other: PlotSamples | None) -> bool:
        """True when ``other`` would draw the same body."""
        return (
            other is not None
            and other.t_right == self.t_right
            and np.array_equal(other.raw, self.raw, equal_nan=True)
            and np.array_equal(other.smooth, self.smooth, equal_nan=True)
            and np.array_equal(other.speech, self.speech)
        )


def sample_plot(view: TrackView, series: Series, range_s: float, n_dot_cols: int) -> PlotSamples:
    """Sample ``series`` of ``view`` for a plot ``n_dot_cols`` dots wide covering ``range_s``."""
    column_s = range_s / n_dot_cols
    t_right = math.floor(view.t_now / column_s) * column_s
    t_left = t_right - range_s
    raw, speech = sample_columns(view, view.raw(series), t_left, range_s, n_dot_cols)
    smooth, _ = sample_columns(view, view.smooth(series), t_left, range_s, n_dot_cols)
    return PlotSamples(t_right=t_right, raw=raw, smooth=smooth, speech=speech)


def layout_cells(
    samples: PlotSamples, *, lo: float, hi: float, grid_at: float | None, rows: int, cols: int
) -> PlotCells:
    """Lay out raw dots (faint), the smoothed line (connected) and a dotted grid line."""
    n_dot_rows, n_dot_cols = 4 * rows, 2 * cols
    raw_dots = line_dots(value_rows(samples.raw, lo, hi, n_dot_rows), n_dot_rows, connect=False)
    smooth_rows = value_rows(samples.smooth, lo, hi, n_dot_rows)
    smooth_dots = line_dots(smooth_rows, n_dot_rows, connect=True)
    grid_dots = np.zeros((n_dot_rows, n_dot_cols), dtype=bool)
    if grid_at is not None:
        grid_row = value_rows(np.array([grid_at]), lo, hi, n_dot_rows)[0]
        grid_dots[grid_row, ::4] = True
    layers = [(grid_dots, _GRID), (raw_dots, _RAW), (smooth_dots, _SMOOTH)]
    codes = np.zeros((rows, cols), dtype=np.int64)
    kinds = np.zeros((rows, cols), dtype=np.int64)
    for dots, kind in layers:
        packed = pack_braille(dots)
        codes |= packed
        kinds = np.where(packed > 0, kind, kinds)
    nonspeech_cols = ~(samples.speech[0::2] & samples.speech[1::2])
    kinds = kinds + np.where(nonspeech_cols[None, :], _NONSPEECH, 0)
    return PlotCells(codes=codes, kinds=kinds, nonspeech_cols=nonspeech_cols)


def plot_cells(
    view: TrackView,
    series: Series,
    *,
    lo: float,
    hi: float,
    grid_at: float | None,
    range_s: float,
    rows: int,
    cols: int,
) -> PlotCells:
    """Sample and lay out one plot area of ``rows`` x ``cols`` cells in one call."""
    samples = sample_plot(view, series, range_s, 2 * cols)
    return layout_cells(samples, lo=lo, hi=hi, grid_at=grid_at, rows=rows, cols=cols)


def run_kinds(cells: PlotCells) -> np.ndarray:
    """``cells.kinds`` with each empty cell drawn in its left neighbour's foreground.

    A blank shows only its background, so its foreground is free; taking the neighbour's lets a
    row of sparse dots go out as a few long runs instead of one run per dot and one per gap.
    Every styled run costs several microseconds on its way to the terminal, and the dotted grid
    row alone was a hundred runs. Backgrounds (non-speech shading) are untouched.
    """
    cols = cells.codes.shape[1]
    drawn = np.where(cells.codes > 0, np.arange(cols)[None, :], 0)
    last_drawn = np.maximum.accumulate(drawn, axis=1)
    foreground = np.take_along_axis(cells.kinds % _NONSPEECH, last_drawn, axis=1)
    return cells.kinds - cells.kinds % _NONSPEECH + foreground


def time_ticks(range_s: float) -> tuple[float, ...]:
    """Seconds-ago positions of the labelled ticks, four or five per range, ``0`` being now."""
    step = {30.0: 10.0, 60.0: 15.0, 120.0: 30.0, 300.0: 60.0, 600.0: 120.0}.get(range_s)
    if step is None:
        step = range_s / 4
    n = round(range_s / step)
    return tuple(k * step for k in range(n, -1, -1))


def format_ago(seconds: float, range_s: float) -> str:
    """Tick label: ``now``, ``-20s`` below two minutes, otherwise ``-m:ss``."""
    if seconds <= 0:
        return "now"
    if range_s < 120:
        return f"-{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"-{minutes}:{secs:02d}"


def format_range(range_s: float) -> str:
    """Range caption for the plot title, e.g. ``last 30 s`` or ``last 5 min``."""
    return f"last {range_s:.0f} s" if range_s < 60 else f"last {range_s / 60:g} min"


def tick_label_row(range_s: float, cols: int) -> str:
    """``cols`` characters with the tick labels under their columns, dropping any that overlap."""
    row = [" "] * cols
    free_from = 0
    for ago in time_ticks(range_s):
        label = format_ago(ago, range_s)
        col = round((1 - ago / range_s) * (cols - 1))
        start = min(max(col - len(label) // 2, 0), cols - len(label))
        if start < free_from or start < 0:
            continue
        row[start : start + len(label)] = label
        free_from = start + len(label) + 1
    return "".join(row)
