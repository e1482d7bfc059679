"""Sliding analysis windows cut from the 16 kHz stream, on exact sample indices.

Every estimate is stamped with the sample-clock span of its window, so windows are defined in
integer samples and never drift: with ``first = round(first_s * sr)``, ``hop = round(hop_s * sr)``
and ``win = round(window_s * sr)``, window ``k`` ends at ``end_k = first + k * hop`` (exclusive)
and starts at ``max(0, end_k - win)``. It is due once the stream holds ``end_k`` samples; there
is no partial tail. A stream of ``N >= first`` samples therefore yields
``(N - first) // hop + 1`` windows. Windows near the start are shorter than ``win`` and are not
padded here: padding is the model's preprocessing concern.

Two ways to take windows: :meth:`Windower.pop_due` returns every due window (lossless: file
analysis and fast replay), :meth:`Windower.pop_latest` returns only the newest and counts the
stale ones it skipped (live capture: latency stays bounded when compute falls behind).

Memory bound: the buffer keeps only samples from the start of the oldest window not yet
emitted, so :attr:`Windower.buffered_samples` stays below ``max(win, first) + pending * hop``
when ``pending`` windows are due and unpopped (below ``max(win, first)`` right after a pop).
Until the first window is emitted it keeps the whole stream, so that :meth:`finish` can return
a short stream whole. Samples that fall between windows
(``hop > win``) are never stored. Storage grows by doubling for large pushes and shrinks back
once they are consumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamser.constants import SAMPLE_RATE_HZ, WINDOW_S


@dataclass(frozen=True, eq=False)
class Window:
    """One analysis window: its index, its exact span on the stream clock and its samples.

    ``samples`` is a private copy holding exactly ``end_sample - start_sample`` float32 samples.
    Windows compare by identity: comparing the audio element-wise is never what a caller means.
    """

    index: int
    start_sample: int
    end_sample: int
    samples: np.ndarray = field(repr=False)
    sample_rate_hz: int = SAMPLE_RATE_HZ

    @property
    def t_start_s(self) -> float:
        """Window start on the stream clock, in seconds."""
        return self.start_sample / self.sample_rate_hz

    @property
    def t_end_s(self) -> float:
        """Window end (exclusive) on the stream clock, in seconds."""
        return self.end_sample / self.sample_rate_hz

    @property
    def num_samples(self) -> int:
        return self.end_sample - self.start_sample


def _to_samples(name: str, seconds: float, sample_rate_hz: int) -> int:
    n = round(seconds * sample_rate_hz)
    if n <= 0:
        raise ValueError(f"{name} must be at least one sample long, got {seconds} s")
    return n


class Windower:
    """Cuts due windows out of a mono 16 kHz stream pushed in blocks of any length."""

    def __init__(
        self,
        hop_s: float = 1.0,
        first_s: float = 1.0,
        window_s: float = WINDOW_S,
        sample_rate_hz: int = SAMPLE_RATE_HZ,
    ) -> None:
        if sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
        self.sample_rate_hz: int = sample_rate_hz
        self.hop_samples: int = _to_samples("hop_s", hop_s, sample_rate_hz)
        self.first_samples: int = _to_samples("first_s", first_s, sample_rate_hz)
        self.window_samples: int = _to_samples("window_s", window_s, sample_rate_hz)
        self.samples_total: int = 0
        """Samples pushed since the start (or the last reset): the stream clock."""
        self.windows_emitted: int = 0
        self.windows_skipped: int = 0
        """Due windows dropped by :meth:`pop_latest` because a newer one was due."""
        self._base_capacity = max(self.window_samples, self.first_samples) + self.hop_samples
        self._buf = np.zeros(self._base_capacity, dtype=np.float32)
        self._buf_start = 0  # stream index of self._buf[0]
        self._buf_len = 0
        self._next_index = 0
        self._finished = False

    # ----------------------------------------------------------------------------- geometry

    def _end_of(self, index: int) -> int:
        return self.first_samples + index * self.hop_samples

    def _start_of(self, index: int) -> int:
        return max(0, self._end_of(index) - self.window_samples)

    @property
    def buffered_samples(self) -> int:
        """Samples held for windows not yet emitted (see the module docstring for the bound)."""
        return self._buf_len

    @property
    def capacity_samples(self) -> int:
        """Samples of storage currently allocated (at least ``buffered_samples``)."""
        return self._buf.size

    def windows_due_for(self, n_samples: int) -> int:
        """Windows due in a stream of ``n_samples`` samples: ``(n - first) // hop + 1``, or 0.

        This does not count the single short window :meth:`finish` adds for a stream shorter
        than ``first``.
        """
        if n_samples < self.first_samples:
            return 0
        return (n_samples - self.first_samples) // self.hop_samples + 1

    # ----------------------------------------------------------------------------- stream in

    def push(self, samples: np.ndarray) -> None:
        """Append mono stream samples; keeps only those a not-yet-emitted window will need."""
        if self._finished:
            raise RuntimeError("push() after finish(): call reset() to start a new stream")
        x = np.asarray(samples)
        if x.ndim != 1:
            raise ValueError(f"expected a 1-D (mono) block, got shape {x.shape}")
        if x.dtype.kind != "f":
            raise TypeError(f"expected floating-point samples, got dtype {x.dtype}")
        n = x.size
        block_start = self.samples_total
        self.samples_total += n
        skip = max(0, self._buf_start - block_start)
        if skip >= n:
            return
        kept = x[skip:]
        needed = self._buf_len + kept.size
        if needed > self._buf.size:
            grown = np.empty(max(needed, 2 * self._buf.size), dtype=np.float32)
            grown[: self._buf_len] = self._buf[: self._buf_len]
            self._buf = grown
        self._buf[self._buf_len : needed] = kept
        self._buf_len = needed

    # ----------------------------------------------------------------------------- windows out

    def pop_due(self) -> list[Window]:
        """Every due window not yet emitted, oldest first (lossless)."""
        last = self.windows_due_for(self.samples_total) - 1
        out = [self._cut(k) for k in range(self._next_index, last + 1)]
        if out:
            self._advance_to(last + 1)
            self.windows_emitted += len(out)
        return out

    def pop_latest(self) -> tuple[Window | None, int]:
        """The newest due window and how many older due windows were skipped to reach it."""
        last = self.windows_due_for(self.samples_total) - 1
        if last < self._next_index:
            return None, 0
        skipped = last - self._next_index
        window = self._cut(last)
        self._advance_to(last + 1)
        self.windows_emitted += 1
        self.windows_skipped += skipped
        return window, skipped

    def finish(self) -> list[Window]:
        """End of stream: one window over the whole stream if it was too short for any window.

        Returns ``[Window(0, 0, N)]`` when ``0 < N < first`` (so a short file still gets one
        estimate), otherwise ``[]``. Drain due windows with :meth:`pop_due` or
        :meth:`pop_latest` first; ``finish`` does not return them. Idempotent; pushing after it
        requires :meth:`reset`.
        """
        if self._finished:
            return []
        self._finished = True
        n = self.samples_total
        if not (0 < n < self.first_samples) or self.windows_emitted:
            return []
        window = Window(0, 0, n, self._buf[:n].copy(), self.sample_rate_hz)
        self.windows_emitted += 1
        self._advance_to(1)
        return [window]

    def reset(self) -> None:
        """Drop all samples, counters and windows; the next push starts a new stream at 0."""
        self.samples_total = 0
        self.windows_emitted = 0
        self.windows_skipped = 0
        if self._buf.size > self._base_capacity:
            self._buf = np.zeros(self._base_capacity, dtype=np.float32)
        self._buf_start = 0
        self._buf_len = 0
        self._next_index = 0
        self._finished = False

    # ----------------------------------------------------------------------------- internals

    def _cut(self, index: int) -> Window:
        start, end = self._start_of(index), self._end_of(index)
        lo = start - self._buf_start
        samples = self._buf[lo : lo + (end - start)].copy()
        return Window(index, start, end, samples, self.sample_rate_hz)

    def _advance_to(self, next_index: int) -> None:
        """Make ``next_index`` the oldest pending window and discard samples before its start."""
        self._next_index = next_index
        keep_from = self._start_of(next_index)
        drop = keep_from - self._buf_start
        if drop <= 0:
            return
        if drop >= self._buf_len:
            self._buf_len = 0
        else:
            remaining = self._buf_len - drop
            self._buf[:remaining] = self._buf[drop : self._buf_len]
            self._buf_len = remaining
        self._buf_start = keep_from
        if self._buf.size > 4 * max(self._buf_len, self._base_capacity):
            smaller = np.zeros(max(2 * self._buf_len, self._base_capacity), dtype=np.float32)
            smaller[: self._buf_len] = self._buf[: self._buf_len]
            self._buf = smaller
