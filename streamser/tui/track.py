"""The estimate history as numpy arrays: what every plot on the dashboard is drawn from.

Estimates arrive as objects at the inference rate, but a plot needs columns of floats once per
frame. Keeping the history as preallocated arrays makes an append a few scalar writes and a
frame's copy one slice per field, instead of converting thousands of Python objects per frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from streamser.constants import WINDOW_S
from streamser.contracts import Estimate

Series = Literal["arousal", "valence"]


@dataclass(frozen=True, eq=False)
class TrackView:
    """A copy of the recent estimate history as arrays, oldest first; what every view draws.

    ``cover_start`` is where each estimate's step begins on the time axis: the previous
    estimate's end, but never more than one window back, so a pause in the stream shows as a gap
    instead of a long flat line. Missing values are NaN.
    """

    version: int
    t_end: np.ndarray
    cover_start: np.ndarray
    arousal: np.ndarray
    valence: np.ndarray
    arousal_smooth: np.ndarray
    valence_smooth: np.ndarray
    is_speech: np.ndarray

    @property
    def t_now(self) -> float:
        """Stream time of the newest estimate: the right edge of every time axis."""
        return float(self.t_end[-1]) if len(self.t_end) else 0.0

    def raw(self, series: Series) -> np.ndarray:
        return self.arousal if series == "arousal" else self.valence

    def smooth(self, series: Series) -> np.ndarray:
        return self.arousal_smooth if series == "arousal" else self.valence_smooth


_TRACK_FIELDS = ("t_end", "cover_start", "arousal", "valence", "arousal_smooth", "valence_smooth")


class EstimateTrack:
    """Bounded, append-only arrays of the values the plots need.

    Appending writes a few scalars; a view copies at most ``capacity`` rows. The arrays hold
    twice the capacity and slide the newest half to the front when full, so appends stay O(1)
    amortised without a deque of Python floats to convert on every frame.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._float = {name: np.full(2 * capacity, np.nan) for name in _TRACK_FIELDS}
        self._speech = np.zeros(2 * capacity, dtype=bool)
        self._n = 0
        self.version = 0
        """Increments on every append: the frame timer redraws only when it moved."""

    def __len__(self) -> int:
        return min(self._n, self.capacity)

    def append(self, e: Estimate) -> None:
        """Add one estimate; a stream clock that went backwards (source restarted) starts afresh."""
        if self._n and e.t_end_s < self._float["t_end"][self._n - 1]:
            self._n = 0
        if self._n == 2 * self.capacity:
            keep = slice(self.capacity, 2 * self.capacity)
            for arr in (*self._float.values(), self._speech):
                arr[: self.capacity] = arr[keep]
            self._n = self.capacity
        i = self._n
        prev_end = self._float["t_end"][i - 1] if i else e.t_start_s
        row = {
            "t_end": e.t_end_s,
            "cover_start": max(prev_end, e.t_end_s - WINDOW_S),
            "arousal": _nan_if_none(e.arousal),
            "valence": _nan_if_none(e.valence),
            "arousal_smooth": _nan_if_none(e.arousal_smooth),
            "valence_smooth": _nan_if_none(e.valence_smooth),
        }
        for name, value in row.items():
            self._float[name][i] = value
        self._speech[i] = e.is_speech
        self._n += 1
        self.version += 1

    def view(self) -> TrackView:
        """Copy out the newest ``capacity`` rows, so later appends cannot change what is drawn."""
        s = slice(max(0, self._n - self.capacity), self._n)
        arrays = {name: arr[s].copy() for name, arr in self._float.items()}
        return TrackView(version=self.version, is_speech=self._speech[s].copy(), **arrays)


def _nan_if_none(x: float | None) -> float:
    return math.nan if x is None else x


def sample_columns(
    view: TrackView, values: np.ndarray, t_left: float, range_s: float, n_cols: int
) -> tuple[np.ndarray, np.ndarray]:
    """Value and speech flag at the centre time of each of ``n_cols`` columns spanning the range.

    Each estimate is a step covering ``(cover_start, t_end]``; columns no estimate covers get
    NaN and count as speech (nothing to mark).
    """
    centres = t_left + (np.arange(n_cols) + 0.5) * (range_s / n_cols)
    n = len(view.t_end)
    if n == 0:
        return np.full(n_cols, np.nan), np.ones(n_cols, dtype=bool)
    idx = np.searchsorted(view.t_end, centres, side="left")
    idx_c = np.minimum(idx, n - 1)
    covered = (idx < n) & (view.cover_start[idx_c] <= centres)
    return np.where(covered, values[idx_c], np.nan), np.where(covered, view.is_speech[idx_c], True)
