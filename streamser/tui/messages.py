"""Typed messages that carry estimates from the engine thread into the Textual loop.

The engine calls the subscriber on its own thread; :class:`EstimateRelay` is that subscriber.
It never touches widgets: it only posts :class:`NewEstimate`, which ``post_message`` delivers
thread-safely. When the UI is busy, queued estimate messages coalesce (``can_replace``) so the
queue cannot grow with the inference rate, yet no estimate is lost: every message carries the
recent tail of the stream, and the app keeps the estimates it has not seen yet.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque

from textual.message import Message
from textual.message_pump import MessagePump

from streamser.contracts import Estimate

RELAY_TAIL_LEN = 64
"""Estimates each message carries: how many messages may coalesce before the app must
refill a gap from the controller's history."""


class NewEstimate(Message, bubble=False):
    """``recent`` is the stream's tail (``RELAY_TAIL_LEN`` at most), oldest first."""

    def __init__(self, recent: tuple[Estimate, ...], *, tail_full: bool) -> None:
        super().__init__()
        self.recent = recent
        self.tail_full = tail_full
        """True when the relay's tail is at capacity: estimates older than ``recent`` may have
        been coalesced away, so a gap before it must be refilled from the history."""

    @property
    def estimate(self) -> Estimate:
        """The newest estimate."""
        return self.recent[-1]

    def can_replace(self, message: Message) -> bool:
        """Let the next queued ``NewEstimate`` stand in for this one if it holds its newest."""
        return (
            isinstance(message, NewEstimate)
            and message.recent[0].seq <= self.recent[-1].seq <= message.recent[-1].seq
        )


class EstimateRelay:
    """The subscriber handed to the controller: runs on the engine thread, posts messages only."""

    def __init__(self, target: MessagePump, tail_len: int = RELAY_TAIL_LEN) -> None:
        self._target = target
        self._tail: deque[Estimate] = deque(maxlen=tail_len)
        self._lock = threading.Lock()

    def __call__(self, estimate: Estimate) -> None:
        """Post the stream's tail ending with ``estimate``; does nothing once the app has closed."""
        with self._lock:
            self._tail.append(estimate)
            recent = tuple(self._tail)
            tail_full = len(self._tail) == self._tail.maxlen
        # RuntimeError: the app's event loop already closed; the engine outlived the UI briefly.
        with contextlib.suppress(RuntimeError):
            self._target.post_message(NewEstimate(recent, tail_full=tail_full))
