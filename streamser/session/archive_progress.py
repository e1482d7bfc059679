"""The progress of an archive analysis in hours of audio: done, per hour of wall time, ETA.

An archive is measured in hours of audio, and the figure that says whether a run will end
tonight is hours of audio per hour of wall time (the real-time factor's inverse), so the bar
counts audio seconds (tqdm then computes the ETA from them) and shows both in hours. It writes
to stderr and only on a terminal (``disable=None``), so pipes and logs stay clean.
"""

from __future__ import annotations

import sys
import time
from typing import Any

HOUR_S = 3600.0


class ArchiveProgress:
    """A tqdm bar over ``total_s`` seconds of audio; :meth:`advance` by the audio done."""

    def __init__(self, total_s: float, files: int) -> None:
        from tqdm import tqdm

        self.total_s = total_s
        self.done_s = 0.0
        self._t0 = time.monotonic()
        self._bar: Any = tqdm(
            total=max(total_s, 1e-9),
            desc=f"{files} file(s)",
            file=sys.stderr,
            leave=False,
            disable=None,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}<{remaining}]",
        )
        self._bar.set_postfix_str(self._postfix(), refresh=False)

    def advance(self, audio_s: float) -> None:
        self.done_s += audio_s
        self._bar.set_postfix_str(self._postfix(), refresh=False)
        self._bar.update(audio_s)

    @property
    def hours_per_hour(self) -> float | None:
        """Hours of audio analysed per hour of wall time so far."""
        wall_s = time.monotonic() - self._t0
        return self.done_s / wall_s if wall_s > 0 and self.done_s > 0 else None

    def _postfix(self) -> str:
        rate = self.hours_per_hour
        speed = f", {rate:.1f} h/h" if rate is not None else ""
        return f"{self.done_s / HOUR_S:.2f}/{self.total_s / HOUR_S:.2f} h of audio{speed}"

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> ArchiveProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
