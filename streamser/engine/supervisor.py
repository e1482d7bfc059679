"""Lost-device reconnection: watch the live source, and when it fails, look for it again.

A USB microphone unplugged mid-session should not end the session: the supervisor retries a
replacement every ``RETRY_S`` seconds, and when one opens with the same format it hands the new
source and its ring to the pipeline, dated on the stream clock so the gap counts as lost audio.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from streamser.audio.ring import RingBuffer
from streamser.audio.sources import AudioSource

log = logging.getLogger("streamser")

RETRY_S = 3.0
"""How often a lost input device is looked for again."""
POLL_S = 0.2
"""How often the live source is checked for failure."""
JOIN_S = 5.0

SourceFactory = Callable[[], AudioSource]
Commit = Callable[[AudioSource, int], None]
"""Switches the run to the replacement source, given the gap in native frames."""
Attach = Callable[[RingBuffer], Commit]
"""Attaches the run's readers to a replacement's ring before the source starts writing to it,
so no frame is missed, and returns how to commit the switch once the source runs."""


class DeviceSupervisor:
    """Owns reconnection for one run; ``current`` gives the source in use now."""

    def __init__(
        self,
        factory: SourceFactory,
        current: Callable[[], AudioSource],
        ring_frames: int,
        attach: Attach,
        *,
        retry_s: float = RETRY_S,
    ) -> None:
        self.factory, self.current = factory, current
        self.ring_frames, self.attach, self.retry_s = ring_frames, attach, retry_s
        self.reconnects = 0
        self.error_text: str | None = None
        """Why the input is missing while a replacement is being sought."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streamser-reconnect", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(JOIN_S)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            source = self.current()
            if not source.finished.wait(POLL_S) or source.error is None:
                continue
            self._reconnect(source, time.monotonic())

    def _reconnect(self, lost: AudioSource, lost_at: float) -> None:
        self.error_text = f"{lost.error}; retrying every {self.retry_s:g} s"
        log.warning("input lost: %s", self.error_text)
        lost.stop()
        while not self._stop.wait(self.retry_s):
            new = self._open_like(lost)
            if new is None:
                continue
            ring = RingBuffer(self.ring_frames, new.channels, policy=new.ring_policy())
            commit = self.attach(ring)
            try:
                new.start(ring)
            except Exception as e:
                log.debug("reconnected device failed to start: %s", e)
                new.stop()
                continue
            gap_frames = round((time.monotonic() - lost_at) * new.sample_rate_hz)
            commit(new, gap_frames)
            self.reconnects += 1
            self.error_text = None
            log.warning("input back after %.1f s: %s", time.monotonic() - lost_at, new.description)
            return

    def _open_like(self, lost: AudioSource) -> AudioSource | None:
        try:
            new = self.factory()
        except Exception as e:  # the device is still gone: keep trying
            log.debug("reconnect attempt failed: %s", e)
            return None
        if (new.sample_rate_hz, new.channels) != (lost.sample_rate_hz, lost.channels):
            new.stop()
            return None
        return new
