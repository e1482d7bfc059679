"""The input sample rates streamser accepts, checked in one place for every source.

A file whose header says 7 Hz, or a ``--samplerate 1``, is a mistake rather than audio: speech
needs at least telephone bandwidth (8 kHz), and nothing records above 384 kHz. Analysing such
input anyway gives estimates that look real and mean nothing, so every source refuses it with a
one-line :class:`SourceError` that says what to do.
"""

from __future__ import annotations

from streamser.audio.devices import SourceError
from streamser.constants import MAX_INPUT_RATE_HZ, MIN_INPUT_RATE_HZ

__all__ = ["check_input_rate", "plausible_rate"]


def plausible_rate(rate_hz: int) -> bool:
    """True for a sample rate in the accepted range (bounds included)."""
    return MIN_INPUT_RATE_HZ <= rate_hz <= MAX_INPUT_RATE_HZ


def check_input_rate(rate_hz: int, what: str, fix: str) -> None:
    """Raise :class:`SourceError` unless ``rate_hz`` is in the accepted range.

    The message reads ``{what} at {rate_hz} Hz, ...: {fix}``, e.g. ``what="input.wav is
    sampled"`` and ``fix`` the remedy for this kind of source; both must be one line.
    """
    if plausible_rate(rate_hz):
        return
    side = "below" if rate_hz < MIN_INPUT_RATE_HZ else "above"
    raise SourceError(
        f"{what} at {rate_hz} Hz, {side} the {MIN_INPUT_RATE_HZ} to {MAX_INPUT_RATE_HZ} Hz "
        f"streamser accepts: {fix}"
    )
