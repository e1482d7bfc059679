"""The one message that crosses from the engine thread into the Textual loop.

The engine calls the subscriber on its own thread; :class:`EstimateRelay` is that subscriber.
It never touches widgets and carries no data: it posts :class:`EstimatesReady`, which
``post_message`` delivers thread-safely, and the app then reads what is new from the
controller's history (the run's one bounded history; the app keeps none of its own). When the
UI is busy, queued wake-ups coalesce (``can_replace``), so the queue cannot grow with the
inference rate, and no estimate is lost, since the history holds them all.
"""

from __future__ import annotations

import contextlib

from textual.message import Message
from textual.message_pump import MessagePump

from streamser.contracts import Estimate


class EstimatesReady(Message, bubble=False):
    """New estimates are in the controller's history."""

    def can_replace(self, message: Message) -> bool:
        """Any later wake-up stands in for this one: both say "read the history"."""
        return isinstance(message, EstimatesReady)


class EstimateRelay:
    """The subscriber handed to the controller: runs on the engine thread, posts wake-ups only."""

    def __init__(self, target: MessagePump) -> None:
        self._target = target

    def __call__(self, estimate: Estimate) -> None:
        """Wake the app; does nothing once the app has closed."""
        # RuntimeError: the app's event loop already closed; the engine outlived the UI briefly.
        with contextlib.suppress(RuntimeError):
            self._target.post_message(EstimatesReady())
