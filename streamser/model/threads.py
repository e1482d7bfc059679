"""How many CPU threads a forward pass gets: :class:`ThreadPolicy`, adapting to contention."""

from __future__ import annotations


class ThreadPolicy:
    """How many CPU threads the next forward pass gets, from how fast the last ones ran.

    On a 2-core CPU two threads run a window 1.7x faster than one while the machine is
    otherwise idle, but 2-3x slower than one while another process keeps a core busy: a window
    runs about a thousand parallel regions, and each waits at its barrier for the thread the OS
    has descheduled (measured in benchmarks/README.md). So: start with every core; after
    ``patience`` windows in a row that ran ``slow_factor`` times slower per window than the
    best seen at that thread count, give one core away; every ``probe_every`` windows with a
    core given away, try one more thread again. Under lasting contention a probe costs one slow
    window; on an idle machine the policy never leaves the full count. Forward passes shorter
    than ``min_forward_s`` (the tiny demo model) are too short to judge and change nothing.
    """

    def __init__(
        self,
        max_threads: int,
        *,
        slow_factor: float = 1.5,
        patience: int = 2,
        probe_every: int = 16,
        min_forward_s: float = 0.05,
    ) -> None:
        self.max_threads = max(1, max_threads)
        self.threads = self.max_threads
        self.slow_factor = slow_factor
        self.patience = patience
        self.probe_every = probe_every
        self.min_forward_s = min_forward_s
        self.best_s_per_window: dict[int, float] = {}
        self.changes = 0
        self._slow = 0
        self._since_change = 0

    def record(self, forward_s: float, windows: int) -> int:
        """Account one forward pass run with ``self.threads``; returns the count for the next."""
        if forward_s < self.min_forward_s or windows < 1:
            return self.threads
        n, t = self.threads, forward_s / windows
        best = self.best_s_per_window.get(n)
        self.best_s_per_window[n] = t if best is None else min(t, best)
        self._since_change += 1
        self._slow = self._slow + 1 if best is not None and t > self.slow_factor * best else 0
        if n > 1 and (self._slow >= self.patience or (self._slow and self._since_change == 1)):
            self._change(n - 1)  # a probe that ran slow goes back at once
        elif n < self.max_threads and self._since_change >= self.probe_every:
            self._change(n + 1)
        return self.threads

    def _change(self, threads: int) -> None:
        self.threads = threads
        self.changes += 1
        self._slow = 0
        self._since_change = 0
