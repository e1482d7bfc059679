"""The numbers a live output carries per estimate: their names, units and order, in one place.

LSL sends all eleven as one sample; OSC splits them into an ``affect`` message (the first five)
and a ``probs`` message (the six class probabilities). A value the estimate does not have (no
speech detector; a window not run through the model with ``--skip-non-speech``) is NaN, so every
sample has the same shape.
"""

from __future__ import annotations

import math

from streamser.contracts import Estimate
from streamser.labels import CLASS_NAMES

AFFECT_CHANNELS: tuple[tuple[str, str], ...] = (
    ("arousal", "probability"),
    ("valence", "score"),
    ("arousal_smooth", "probability"),
    ("valence_smooth", "score"),
    ("speech", "fraction"),
)
"""(label, unit): arousal is P(high arousal), 0..1; valence the expected valence, -1..1; speech
the fraction of the window the speech detector heard as speech."""

PROB_CHANNELS: tuple[tuple[str, str], ...] = tuple(
    ("p_" + name.replace(" / ", "_"), "probability") for name in CLASS_NAMES
)
"""(label, unit) of the six class probabilities, in model order: ``p_low_negative`` first."""

CHANNELS = AFFECT_CHANNELS + PROB_CHANNELS
N_AFFECT = len(AFFECT_CHANNELS)

NAN = math.nan


def affect_values(est: Estimate) -> list[float]:
    """The first five channels of ``est``, NaN where a value is missing."""
    return [
        NAN if v is None else float(v)
        for v in (est.arousal, est.valence, est.arousal_smooth, est.valence_smooth, est.speech)
    ]


def prob_values(est: Estimate) -> list[float]:
    """The six class probabilities of ``est``, all NaN when the model did not run."""
    if est.probs is None:
        return [NAN] * len(PROB_CHANNELS)
    return [float(p) for p in est.probs]


def channel_values(est: Estimate) -> list[float]:
    """Every channel of ``est``, in :data:`CHANNELS` order."""
    return affect_values(est) + prob_values(est)
