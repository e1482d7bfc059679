"""The events a live output sends beside the estimates, and how they are read off a run.

Some events are in the estimates themselves and are derived here, per stream, as the estimates
go by: speech starting or stopping (``is_speech`` changing; only where a speech detector ran) and
windows skipped because compute fell behind (the stream's running ``skipped_windows`` growing).
The others happen to the run as a whole and come from its controls: mute, recording and marks.

One marker is one line of text, the way lab recorders keep event streams: the event's name, then
the stream it belongs to (for stream events), then its detail, separated by single spaces::

    speech_on main          skipped ch2 3          mute_on          mark door opened
"""

from __future__ import annotations

from dataclasses import dataclass

from streamser.contracts import Estimate

SPEECH_ON = "speech_on"
SPEECH_OFF = "speech_off"
SKIPPED = "skipped"
"""Detail: how many windows were skipped since the stream's previous estimate."""
MUTE_ON = "mute_on"
MUTE_OFF = "mute_off"
RECORDING_ON = "recording_on"
RECORDING_OFF = "recording_off"
MARK = "mark"
"""Detail: the mark's note, as typed."""

STREAM_EVENTS: tuple[str, ...] = (SPEECH_ON, SPEECH_OFF, SKIPPED)
RUN_EVENTS: tuple[str, ...] = (MUTE_ON, MUTE_OFF, RECORDING_ON, RECORDING_OFF, MARK)


@dataclass(frozen=True)
class Marker:
    """One event: ``stream`` is None for events of the whole run (mute, recording, marks)."""

    event: str
    stream: str | None = None
    detail: str = ""

    @property
    def text(self) -> str:
        """The marker as one line (see the module docstring)."""
        parts = [self.event]
        if self.stream is not None:
            parts.append(self.stream)
        if self.detail:
            parts.append(" ".join(self.detail.split()))  # one line, whatever the note held
        return " ".join(parts)


class MarkerTracker:
    """Derives the stream events from each stream's estimates, in order (a synchronous stage).

    A stream starts out silent and with nothing skipped, so its first estimate already says
    ``speech_on`` when it holds speech, and ``skipped`` when windows were skipped before it.
    """

    def __init__(self) -> None:
        self._speech: dict[str, bool] = {}
        self._skipped: dict[str, int] = {}

    def update(self, est: Estimate) -> list[Marker]:
        """The events ``est`` shows, against the previous estimate of its stream."""
        out: list[Marker] = []
        newly_skipped = est.skipped_windows - self._skipped.get(est.stream, 0)
        self._skipped[est.stream] = est.skipped_windows
        if newly_skipped > 0:
            out.append(Marker(SKIPPED, est.stream, str(newly_skipped)))
        if est.speech is not None:  # no speech detector: no speech events
            was = self._speech.get(est.stream, False)
            if est.is_speech != was:
                out.append(Marker(SPEECH_ON if est.is_speech else SPEECH_OFF, est.stream))
            self._speech[est.stream] = est.is_speech
        return out
