"""The estimate history as numpy arrays: what every plot on the dashboard is drawn from.

Estimates arrive as objects at the inference rate, but a plot needs columns of floats once per
frame. Keeping the history as preallocated arrays makes an append a few scalar writes and a
frame's copy one slice per field, instead of converting thousands of Python objects per frame.
With several streams (``--per-channel``) each stream has a track of its own: its clock, its
speech and its values are its own, and they arrive interleaved with the other streams'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
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


INITIAL_ROWS = 1024
"""Rows a track holds before it first grows: a stream at a one-second hop needs 600 for the
longest range, so most tracks never grow, and a run of many streams does not hold the
smallest hop's worth of rows for each."""


class EstimateTrack:
    """Bounded, append-only arrays of the values the plots need.

    Appending writes a few scalars; a view copies at most ``capacity`` rows. The arrays grow by
    doubling up to twice the capacity, then slide the newest half to the front when full, so
    appends stay O(1) amortised without a deque of Python floats to convert on every frame.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        size = min(INITIAL_ROWS, 2 * capacity)
        self._float = {name: np.full(size, np.nan) for name in _TRACK_FIELDS}
        self._speech = np.zeros(size, dtype=bool)
        self._n = 0
        self.version = 0
        """Increments on every append: the frame timer redraws only when it moved."""

    def __len__(self) -> int:
        return min(self._n, self.capacity)

    def append(self, e: Estimate, version: int | None = None) -> None:
        """Add one estimate; a stream clock that went backwards (source restarted) starts afresh.
        The track's version becomes ``version`` when given, else goes up by one."""
        if self._n and e.t_end_s < self._float["t_end"][self._n - 1]:
            self._n = 0
        if self._n == len(self._speech):
            self._make_room()
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
        self.version = self.version + 1 if version is None else version

    def _make_room(self) -> None:
        """Grow the full arrays (doubling, up to twice the capacity), or slide the newest
        ``capacity`` rows to the front once they are that large."""
        size = len(self._speech)
        if size < 2 * self.capacity:
            grown = min(2 * size, 2 * self.capacity)
            for name, arr in self._float.items():
                self._float[name] = np.concatenate([arr, np.full(grown - size, np.nan)])
            self._speech = np.concatenate([self._speech, np.zeros(grown - size, dtype=bool)])
            return
        keep = slice(self.capacity, 2 * self.capacity)
        for arr in (*self._float.values(), self._speech):
            arr[: self.capacity] = arr[keep]
        self._n = self.capacity

    def view(self) -> TrackView:
        """Copy out the newest ``capacity`` rows, so later appends cannot change what is drawn."""
        s = slice(max(0, self._n - self.capacity), self._n)
        arrays = {name: arr[s].copy() for name, arr in self._float.items()}
        return TrackView(version=self.version, is_speech=self._speech[s].copy(), **arrays)


EMPTY_VIEW = EstimateTrack(1).view()
"""What a stream without estimates shows: no rows."""


@dataclass(frozen=True)
class TrackFrame:
    """Every stream's view and newest estimate at one moment: what one frame draws, and what a
    paused display keeps showing while the streams go on."""

    version: int = 0
    views: dict[str, TrackView] = field(default_factory=dict)
    latest: dict[str, Estimate] = field(default_factory=dict)

    def view(self, stream: str) -> TrackView:
        return self.views.get(stream, EMPTY_VIEW)


class StreamTracks:
    """One :class:`EstimateTrack` per stream, made on the stream's first estimate."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.tracks: dict[str, EstimateTrack] = {}
        self._latest: dict[str, Estimate] = {}
        self._views: dict[str, TrackView] = {}
        self.version = 0
        """Increments on every append, whichever the stream."""

    def append(self, e: Estimate) -> None:
        """Add ``e`` to its stream's track. The track's version becomes the count of every
        stream's appends, so no two streams' views share a version: a plot rebound to another
        stream (paging) cannot take the other stream's view for the one it drew."""
        track = self.tracks.get(e.stream)
        if track is None:
            track = self.tracks[e.stream] = EstimateTrack(self.capacity)
        self.version += 1
        track.append(e, self.version)
        self._latest[e.stream] = e

    def frame(self) -> TrackFrame:
        """Views of every stream, copying only the tracks that changed since the last frame."""
        for name, track in self.tracks.items():
            view = self._views.get(name)
            if view is None or view.version != track.version:
                self._views[name] = track.view()
        return TrackFrame(self.version, dict(self._views), dict(self._latest))


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
